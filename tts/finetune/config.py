"""The settings of one fine-tuning run (`tts voices finetune`)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from ..errors import TTSError

MIN_TOTAL_SECONDS = 6.0  # of clips, all together; 10-20 s is what the defaults are made for
HELDOUT_MIN_CLIPS = 3  # from this many clips on, one is held out to judge the adapter
# the held-out clip re-decoded may have this many more word errors than zero-shot and the decoder's tuning
# still be kept: the recogniser's errors on one short clip are noisy (awb-x77's updates missed 2 more of its
# 19 words and moved GPT speech by 1.6 WER points; docs/training/GATES.md)
HELDOUT_WORD_SLACK = 2


@dataclass(frozen=True)
class FinetuneConfig:
    """`steps` and `minutes` both bound the run (whichever comes first); `minutes` counts training time
    over every resumed part of the run. Learning rates are Adam steps relative to each vector's RMS."""

    steps: int = 300
    minutes: float = 8.0  # of training; with loading, transcribing and judging a run stays under 10 minutes
    lr: float = 0.06  # the decoders' speaker vectors
    gpt_lr: float = 0.003  # the GPT's voice latent (0.01 already overfitted two clips on a part-trained GPT)
    anchor: float = 1e-3  # pull towards the zero-shot vectors (squared distance relative to their RMS)
    crop_seconds: float = 2.5  # decoder windows (as the flow decoder was trained)
    noise_draws: int = 2  # flow times and noises drawn per clip window and step
    # tune the GPT's voice latent too (needs the clips' text). Off: over 30 sentences on six out-of-corpus voices
    # it moved similarity by +0.003 on average and cost the furthest voice 4 WER points (docs/training/GATES.md)
    gpt: bool = False
    decoder: bool = True  # tune the DVAE and flow decoders' speaker vectors
    rank: int = 4  # of the low-rank updates of the DVAE decoder's convolutions (0: only its speaker vector)
    decoder_lr: float = 1e-4  # Adam's step for the updates' factors (absolute)
    # weight of the code read-back: the DVAE encoder must read the tuned decoder's speech back as the codes
    # it was made from, on the clips and on the shipped voices' speech (keeps words that GPT codes carry)
    read_back: float = 0.005
    save_every_s: float = 10.0  # the resumable state is written this often (and on Ctrl-C)
    judge_steps: int = 8  # flow decoder steps when the held-out clip is re-decoded for the similarity
    seed: int = 0

    def validate(self) -> "FinetuneConfig":
        if self.steps < 1:
            raise TTSError(f"--steps must be at least 1, got {self.steps}")
        if not self.minutes > 0:
            raise TTSError(f"--minutes must be more than 0, got {self.minutes:g}")
        if self.rank < 0:
            raise TTSError(f"--rank must be 0 or more, got {self.rank}")
        if not (self.gpt or self.decoder):
            raise TTSError("nothing to fine-tune: both the GPT and the decoder are switched off")
        return self

    def training_hash(self) -> str:
        """What a resumed run must share with the one it continues (not the step or time budget)."""
        keep = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("steps", "minutes", "save_every_s")}
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]
