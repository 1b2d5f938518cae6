"""Generation settings: one frozen dataclass, named presets, one `validate()`, one resolver.

Presets are Tortoise's (api.py `tts_with_preset`); :func:`resolve` is how every command (speak,
eval, narrate, the benchmarks) turns a preset name, a model card's adjustments of that preset and the
user's overrides into Options. Free of torch, so that the command line can list the presets and
samplers without importing it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import TTSError

if TYPE_CHECKING:
    from .logits import SamplingParams

# The diffusion samplers by name: the keys of tts.sampling.diffusion.SAMPLERS (a test keeps them equal).
SAMPLERS = ("ddpm", "ddim", "dpm++2m")


@dataclass(frozen=True)
class Options:
    # autoregressive candidates
    candidates: int = 16  # code sequences sampled per text chunk; the reranker keeps the best
    batch_size: int = 16  # candidates decoded together
    temperature: float = 0.8
    top_k: int = 50  # Tortoise's implicit HF default
    top_p: float = 0.8
    repetition_penalty: float = 2.0
    max_mel_tokens: int = 500  # speech codes per chunk at most (~23 s for Tortoise)
    # no stop code before this fraction of the chunk's expected codes (text tokens x the model card's
    # codes_per_text_token; without that, off): an undertrained GPT stops early and cuts words off. 0: off
    min_length_ratio: float = 0.0
    # diffusion decoder
    diffusion_steps: int = 30
    sampler: str = "ddpm"  # "ddpm" (Tortoise), "ddim" or "dpm++2m" (deterministic, fewer steps needed)
    cond_free: bool = False  # conditioning-free guidance (a second, unconditioned pass per step, batched)
    cond_free_k: float = 2.0
    diffusion_temperature: float = 1.0
    # long text
    text_batch: int = 4  # chunks whose candidates the GPT samples together
    sentence_pause: float = 0.25  # seconds of silence between chunks
    paragraph_pause: float = 0.6  # seconds after a paragraph break
    seed: int | None = None  # None: a fresh random seed per call

    def sampling(self) -> SamplingParams:
        from .logits import SamplingParams

        return SamplingParams(self.temperature, self.top_k, self.top_p, self.repetition_penalty)

    def validate(self) -> Options:
        """Raise TTSError naming the first invalid setting; return self."""
        checks = [
            (self.candidates >= 1, "candidates must be at least 1"),
            (self.batch_size >= 1, "batch size must be at least 1"),
            (self.text_batch >= 1, "text batch must be at least 1"),
            (self.temperature > 0, "temperature must be positive"),
            (self.top_k >= 0, "top-k must be 0 (off) or positive"),
            (0 < self.top_p <= 1, "top-p must be in (0, 1]"),
            (self.repetition_penalty > 0, "repetition penalty must be positive"),
            (self.max_mel_tokens >= 1, "max mel tokens must be at least 1"),
            (0 <= self.min_length_ratio < 1.5, f"min length ratio must be in [0, 1.5), got {self.min_length_ratio}"),
            (1 <= self.diffusion_steps <= 4000, "diffusion steps must be between 1 and 4000"),
            (self.sampler in SAMPLERS, f"sampler must be one of {', '.join(SAMPLERS)}"),
            (self.cond_free_k >= 0, "cond-free k must be non-negative"),
            (self.diffusion_temperature >= 0, "diffusion temperature must be non-negative"),
            (self.sentence_pause >= 0 and self.paragraph_pause >= 0, "pauses must be non-negative"),
        ]
        for ok, message in checks:
            if not ok:
                raise TTSError(message)
        return self


PRESETS: dict[str, Options] = {
    "ultra_fast": Options(candidates=16, diffusion_steps=30, cond_free=False),
    "fast": Options(candidates=96, diffusion_steps=80, cond_free=True),
    "standard": Options(candidates=256, diffusion_steps=200, cond_free=True),
    "high_quality": Options(candidates=256, diffusion_steps=400, cond_free=True),
}


def preset(name: str, **overrides) -> Options:
    """A named preset with `overrides` applied (None values are ignored), validated."""
    return resolve(name, None, **overrides)


def resolve(name: str, card: Any = None, **overrides) -> Options:
    """The options a command runs with, validated: preset `name`, then what the model card changes in
    that preset (`card.presets[name]`, a mapping of fields; `card` may be None), then `overrides`
    (None values ignored: a flag the user did not pass). A field set by both the card and an
    override takes the override. TTSError for an unknown preset or field, or an invalid value."""
    if name not in PRESETS:
        raise TTSError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)})")
    card_presets: Mapping[str, Mapping[str, Any]] = getattr(card, "presets", None) or {}
    adjustments = dict(card_presets.get(name) or {})
    fields = {f.name for f in dataclasses.fields(Options)}
    for source, changes in (("the model card's preset", adjustments), ("the options", overrides)):
        unknown = sorted(set(changes) - fields)
        if unknown:
            raise TTSError(f"{source} {name!r} sets unknown option {unknown[0]!r}")
    chosen = {**adjustments, **{k: v for k, v in overrides.items() if v is not None}}
    return dataclasses.replace(PRESETS[name], **chosen).validate()
