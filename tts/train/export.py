"""Assemble a model directory from trained components: phoneme GPT + diffusion decoder + the
universal HiFi-GAN vocoder (referenced, not copied), with the DVAE's silence codes for the fix-up."""

from __future__ import annotations

from pathlib import Path

import torch

from .. import audio
from ..checkpoints import UNIVERSAL_HIFIGAN, ModelCard, load_component, save_model_dir
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


def export_model(dst: str | Path, gpt_path: str | Path, diffusion_path: str | Path, dvae_path: str | Path,
                 name: str = "triforce-small", cond_seconds: float = 3.0, int8: bool = True,
                 diffusion_input: str = "codes", presets: dict | None = None) -> Path:
    gpt = load_component(gpt_path, "gpt")
    diffusion = load_component(diffusion_path, "diffusion")
    silence, end = silence_codes(load_component(dvae_path, "dvae"))
    cond_samples = int(cond_seconds * audio.HIFIGAN_SAMPLE_RATE)
    card = ModelCard(
        name=name, tokenizer="phonemes", phonemes=PhonemeTokenizer().to_dict(),
        cond_mel=audio.HIFIGAN_MEL.name, cond_samples=cond_samples, cond_norm="range",
        diffusion_mel=audio.HIFIGAN_MEL.name, diffusion_cond_samples=cond_samples,
        diffusion_input=diffusion_input, silence_code=silence, end_codes=end, presets=presets or {},
    )
    return save_model_dir(dst, card, int8=int8, gpt=gpt, diffusion=diffusion, vocoder=UNIVERSAL_HIFIGAN)
