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


@dataclass
class MelReaderConfig:
    mel_channels: int = 80
    classes: int = 0  # the phoneme tokenizer's vocabulary; class 0 is the CTC blank
    channels: int = 256
    dilations: tuple[int, ...] = (1, 2, 4, 1, 2)  # one residual block each: +-28 frames (~0.3 s) of context


class MelReader(nn.Module):
    """Mel reader: a CTC model that reads the phones from a normalised log mel (B, mel_channels, T)
    -> log-probabilities (ceil(T / 2), B, classes), two mel frames to a CTC frame.

    Trained on real speech (`tts train mel_reader`), then frozen: it judges decoders. Its phone error
    rate on a decoder's output against the real mel's says how much of the phones the decoder lost,
    and its CTC loss on the output, added to a decoder's own (the DVAE task's ``phonetic``), asks the
    decoder to keep the phones distinct where a squared error would average them away."""

    def __init__(self, config: MelReaderConfig):
        super().__init__()
        self.config = config
        c = config.channels
        self.stem = nn.Conv1d(config.mel_channels, c, 5, stride=2, padding=2)
        self.norms = nn.ModuleList(nn.GroupNorm(1, c) for _ in config.dilations)
        self.convs = nn.ModuleList(nn.Conv1d(c, c, 5, padding=2 * d, dilation=d) for d in config.dilations)
        self.out = nn.Conv1d(c, config.classes, 1)

    @staticmethod
    def frames(mel_frames: torch.Tensor) -> torch.Tensor:
        """CTC frames of mels with `mel_frames` real frames (any shape)."""
        return (mel_frames + 1) // 2

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(mel))  # (B, c, ceil(T / 2))
        for norm, conv in zip(self.norms, self.convs):
            x = x + F.relu(conv(norm(x)))
        return self.out(x).float().log_softmax(dim=1).permute(2, 0, 1)
