"""Assemble a model directory from trained components: phoneme GPT + a decoder (the DVAE with its flow
decoder, or a diffusion decoder) + a vocoder (the universal HiFi-GAN, referenced, not copied, or one
trained by `tts train vocoder`, stored without the tensors it shares with the universal one), with the
DVAE's silence codes for the fix-up. Without a GPT the directory is decoder-only: it reconstructs
speech (`tts reconstruct`) but does not read text."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from pathlib import Path

import torch

from .. import audio
from ..checkpoints import UNIVERSAL_HIFIGAN, ModelCard, load_component, save_model_dir
from ..errors import TTSError
from ..models.dvae import DVAEConfig
from ..sampling.options import Options
from ..text.phonemes import PhonemeTokenizer

SILENCE_SECONDS = 2.0


@torch.no_grad()
def silence_codes(dvae) -> tuple[int, tuple[int, ...]]:
    """(code of steady silence, the last three codes of a clip of silence) for CodeFixup."""
    frames = audio.HIFIGAN_MEL.frames(int(SILENCE_SECONDS * audio.HIFIGAN_SAMPLE_RATE))
    silent = torch.full((1, audio.HIFIGAN_MEL.n_mels, frames), audio.LOG_SILENCE)
    codes = dvae.encode(audio.normalize_mel(silent))[0]
    steady = int(torch.mode(codes).values)
    return steady, tuple(int(c) for c in codes[-3:])


#: The stop rule of our models' presets: no stop before this fraction of the expected length. In the
#: corpus 95% of utterances have at least 0.8 of the mean codes per phoneme token (measured on the
#: first 2,176 utterances: mean 1.27, 5th percentile 1.02), so 0.7 cuts off no real utterance.
MIN_LENGTH_RATIO = 0.7


def codes_per_text_token(items: Sequence, downsample_factor: int) -> float:
    """Mean DVAE codes per phoneme token over a corpus's items (its whole audio over its whole text)."""
    mel = audio.HIFIGAN_MEL
    codes = sum(u.duration for u in items) * mel.sample_rate / (mel.hop_length * downsample_factor)
    return round(codes / sum(len(u.phonemes) for u in items), 4)


#: The share of training utterances whose text length a model's chunks may reach (ModelCard.chunk_tokens).
CHUNK_PERCENTILE = 99.0


def chunk_tokens(items: Sequence, percentile: float = CHUNK_PERCENTILE) -> int:
    """Phoneme tokens of a corpus utterance at `percentile` of their lengths: the longest text chunk a
    GPT trained on the corpus reads well (at the 12 h and 24 h corpora's 99th percentile, 147 tokens,
    where the GPT's limit is 252: the one sentence of the first 15 public ones longer than that, 244
    tokens, read well for 8 s and then babbled, on every voice)."""
    lengths = sorted(len(u.phonemes) for u in items)
    return lengths[min(len(lengths) - 1, math.ceil(percentile / 100 * len(lengths)) - 1)]


#: Mel frames per code of the DVAEs that `Options.max_mel_tokens` (Tortoise's 500 codes, ~23 s) was set
#: for: Tortoise's, which is the default DVAEConfig's.
DEFAULT_FRAMES_PER_CODE = DVAEConfig().downsample_factor


def max_chunk_codes(downsample_factor: int, gpt_limit: int) -> int:
    """The cap on one chunk's codes for a DVAE of `downsample_factor` mel frames a code: the same
    seconds as the options' default cap, within what the GPT can hold."""
    return min(gpt_limit, Options.max_mel_tokens * DEFAULT_FRAMES_PER_CODE // downsample_factor)


#: Sampling for our models (Tortoise's repetition penalty of 2.0 punishes codes that legitimately
#: repeat): at 4,000 GPT steps, eight candidates ranked by the code reader read the first 15 public
#: sentences at 17.0% mean WER (joe, kokoro-alpha) with a penalty of 1.3, 21.0% with 2.0;
#: temperature 0.6 instead of 0.8 did not help (docs/training/GATES.md).
SMALL_SAMPLING = {"repetition_penalty": 1.3}

#: Our models' presets, named for what they cost on a 2-core CPU (Tortoise's candidate counts fit its
#: GPU-sized models): the GPT's candidates per text chunk and the flow decoder's Euler steps. With the
#: default model, eight candidates instead of four read the 30 public sentences at 7.0% mean WER
#: instead of 7.4% (11 voices; within sampling noise, but joe went 10.7 -> 8.3) for 0.07 more
#: real-time factor (0.38 -> 0.45 on 2 threads, bf16 vocoder; docs/training/GATES.md), so `fast`,
#: the default, samples eight.
SMALL_PRESETS = {
    name: {**SMALL_SAMPLING, "candidates": candidates, "diffusion_steps": steps}
    for name, candidates, steps in (("ultra_fast", 1, 4), ("fast", 8, 8), ("standard", 16, 16), ("high_quality", 32, 32))
}


def under_presets(presets: dict | None, **settings) -> dict:
    """Every small-model preset (and any other in `presets`) with `settings` beneath its own."""
    return {name: {**settings, **(presets or {}).get(name, {})} for name in {*SMALL_PRESETS, *(presets or {})}}


def export_model(dst: str | Path, gpt_path: str | Path | None, diffusion_path: str | Path | None,
                 dvae_path: str | Path, flow_path: str | Path | None = None, name: str = "triforce-small",
                 cond_seconds: float = 3.0, int8: bool | Collection[str] = False,
                 dtype: torch.dtype | None = torch.float16,
                 diffusion_input: str = "codes", presets: dict | None = None,
                 corpus: str | Path | None = None, reader_path: str | Path | None = None,
                 vocoder_path: str | Path | None = None) -> Path:
    """Write DST. At most one of `diffusion_path` and `flow_path` (neither: the DVAE's coarse mel is
    the output, for gating a GPT early); `int8` stores large matrices as int8 (smallest; training
    restarts from it only approximately): True for every component, or the roles named (e.g. gpt,
    flow); the rest are floats in `dtype` (None: float32). With the GPT's training `corpus`, the card
    records its codes per phoneme token and the longest chunk of text it reads (:func:`chunk_tokens`),
    and the presets refuse a stop before
    :data:`MIN_LENGTH_RATIO` of the expected length. `reader_path`: the code reader of the DVAE's run
    (``reader.safetensors``), which then ranks the GPT's candidates; it must read this DVAE's codes.
    `vocoder_path`: a hifigan component (`tts train vocoder`) stored as the vocoder; without one the
    card references the universal HiFi-GAN."""
    if diffusion_path is not None and flow_path is not None:
        raise TTSError("give one decoder: a flow decoder (with its DVAE) or a diffusion decoder")
    dvae = load_component(dvae_path, "dvae")
    silence, end = silence_codes(dvae)
    cond_samples = int(cond_seconds * audio.HIFIGAN_SAMPLE_RATE)
    modules = {"vocoder": UNIVERSAL_HIFIGAN if vocoder_path is None else load_component(vocoder_path, "hifigan")}
    if gpt_path is not None:
        modules["gpt"] = load_component(gpt_path, "gpt")
    if reader_path is not None:
        if diffusion_path is not None:
            raise TTSError("a code reader ranks candidates with the DVAE's codebook: give it with a flow or DVAE decoder")
        reader = modules["reader"] = load_component(reader_path, "reader")
        if reader.config.codebook_dim != dvae.config.codebook_dim:
            raise TTSError(f"{reader_path} reads {reader.config.codebook_dim}-wide codes, the DVAE's are "
                           f"{dvae.config.codebook_dim}-wide")
        classes = PhonemeTokenizer().vocab_size
        if reader.config.classes != classes:
            raise TTSError(f"{reader_path} reads {reader.config.classes} phoneme classes, the tokenizer has {classes}")
    if diffusion_path is not None:
        modules["diffusion"] = load_component(diffusion_path, "diffusion")
        decoder = "diffusion"
    else:
        modules["dvae"] = dvae
        if flow_path is not None:
            modules["flow"] = load_component(flow_path, "flow")
        decoder = "flow" if flow_path is not None else "dvae"
        presets = {name: {**SMALL_PRESETS.get(name, {}), **(presets or {}).get(name, {})}
                   for name in {*SMALL_PRESETS, *(presets or {})}}
    per_token = longest = None
    if corpus is not None and gpt_path is not None:
        from .data import Corpus

        items = Corpus(corpus).items
        if not items:
            raise TTSError(f"corpus {corpus} has no utterances")
        per_token = codes_per_text_token(items, dvae.config.downsample_factor)
        longest = min(chunk_tokens(items), modules["gpt"].config.max_text_tokens - 1)
        presets = under_presets(presets, min_length_ratio=MIN_LENGTH_RATIO)
    if gpt_path is not None and dvae.config.downsample_factor != DEFAULT_FRAMES_PER_CODE:
        presets = under_presets(presets, max_mel_tokens=max_chunk_codes(
            dvae.config.downsample_factor, modules["gpt"].config.max_mel_tokens))
    card = ModelCard(
        name=name, tokenizer="phonemes", phonemes=PhonemeTokenizer().to_dict(),
        cond_mel=audio.HIFIGAN_MEL.name, cond_samples=cond_samples, cond_norm="range",
        diffusion_mel=audio.HIFIGAN_MEL.name, diffusion_cond_samples=cond_samples,
        diffusion_input=diffusion_input, silence_code=silence, end_codes=end, presets=presets or {},
        decoder=decoder, codes_per_text_token=per_token, chunk_tokens=longest,
    )
    return save_model_dir(dst, card, int8=int8, dtype=dtype, **modules)
