"""Making sampled speech codes ready for the decoder: Tortoise's fix-up, with the codes of its DVAE.

From the first stop code on, codes become the DVAE's code of silence; the last codes of the padded
row become what the DVAE emits for a clip ending in silence; latents are cut where a run of silence
codes begins. Tortoise's codes (83; 45, 45, 248; a run of 9) are :data:`TORTOISE_FIXUP`, the
defaults of every model card; our own models carry the codes of their own DVAE in their card.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CodeFixup:
    """How raw sampled codes are made ready for the decoder, per the DVAE that defined the codes.

    From the first stop code on, codes become `silence_code`; the last codes of the padded row become
    `end_codes` (what the DVAE emits for a clip ending in silence). Latents are cut where
    `silence_run` consecutive silence codes have been seen.
    """

    silence_code: int
    end_codes: tuple[int, ...]
    silence_run: int

    def fix(self, codes: torch.Tensor, stop_code: int, start_code: int | None = None) -> torch.Tensor:
        """codes (N, L) padded with `stop_code` -> fixed copy (N, L). Rows without a stop are unchanged.

        A sampled `start_code` is no DVAE code either (a weak model can emit it): it ends speech as a stop does.
        """
        codes = codes.clone()
        for row in codes:
            stops = end_positions(row, stop_code, start_code)
            if len(stops) == 0:
                continue
            row[int(stops[0]):] = self.silence_code
            row[-len(self.end_codes):] = torch.tensor(self.end_codes, dtype=row.dtype)
        return codes

    def speech_length(self, codes: torch.Tensor) -> int:
        """Number of leading positions of one fixed row (L,) whose latents the decoder should get."""
        run = 0
        for i, code in enumerate(codes.tolist()):
            run = run + 1 if code == self.silence_code else 0
            if run >= self.silence_run:
                return i
        return codes.shape[0]


def end_positions(row: torch.Tensor, stop_code: int, start_code: int | None = None) -> torch.Tensor:
    """Positions (K, 1) in one row of sampled codes (L,) that end speech: the stop code, and the start code."""
    ends = row == stop_code
    if start_code is not None:
        ends |= row == start_code
    return ends.nonzero()


TORTOISE_FIXUP = CodeFixup(silence_code=83, end_codes=(45, 45, 248), silence_run=9)
