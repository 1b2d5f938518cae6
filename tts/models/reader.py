"""Code reader: a small CTC model that reads the phones back from DVAE codes.

It is trained beside the DVAE (the phoneme probe of `tts train dvae` with ``task.ctc``), where its
short reach (three codes either side) forces the codebook to carry the phones. Shipped with a model,
it ranks sampled code sequences by how well they read as the text they were sampled for: the job
Tortoise gives its CLVP, at a fraction of the cost. A candidate that drops, slurs or repeats words
reads badly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: Each code is read as this many CTC frames, so that fast speech (up to two phones a code) fits.
FRAMES_PER_CODE = 2


@dataclass
class ReaderConfig:
    codebook_dim: int = 32  # the DVAE's code vectors it reads
    classes: int = 0  # the phoneme tokenizer's vocabulary; class 0 (its pad id) is the CTC blank
    channels: int = 256


class CodeReader(nn.Module):
    """Quantised code vectors (B, codebook_dim, L) -> CTC log-probabilities (FRAMES_PER_CODE L, B, classes)."""

    def __init__(self, config: ReaderConfig):
        super().__init__()
        self.config = config
        c = config.channels
        self.net = nn.Sequential(
            nn.Conv1d(config.codebook_dim, c, 3, padding=1), nn.ReLU(),
            nn.Conv1d(c, c, 3, padding=1), nn.ReLU(),
            nn.Conv1d(c, config.classes, 1),
        )

    def forward(self, quantised: torch.Tensor) -> torch.Tensor:
        x = quantised.repeat_interleave(FRAMES_PER_CODE, dim=2)
        return self.net(x).float().log_softmax(dim=1).permute(2, 0, 1)

    @torch.no_grad()
    def scores(self, quantised: torch.Tensor, lengths: torch.Tensor, phones: list[int]) -> torch.Tensor:
        """How well each of N code sequences reads as `phones` (tokenizer ids, from
        :meth:`tts.text.phonemes.PhonemeTokenizer.phone_ids`): the CTC log-likelihood per phone (N,),
        higher is better; -inf for a sequence too short to hold them. quantised (N, codebook_dim, L),
        lengths (N,) of real codes."""
        n = quantised.shape[0]
        if not phones:
            return quantised.new_zeros(n, dtype=torch.float32)
        log_probs = self(quantised)  # (2L, N, classes)
        targets = torch.tensor(phones, device=quantised.device).expand(n, -1)
        nll = F.ctc_loss(log_probs, targets, (lengths * FRAMES_PER_CODE).long(),
                         torch.full((n,), len(phones), dtype=torch.long, device=quantised.device),
                         blank=0, reduction="none", zero_infinity=False)  # (N,), inf where impossible
        return -nll / len(phones)
