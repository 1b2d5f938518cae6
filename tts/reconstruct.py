"""`tts reconstruct`: recordings -> the model's codes -> speech, file by file.

Every input is read and checked before the model loads, and every output name is settled first, so
a bad input or an unwritable destination stops the command before anything is made; each output is
written atomically (complete or absent).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from . import audio
from .errors import TTSError

OUTPUT_SUFFIX = ".wav"  # outputs written into a directory


def plan_outputs(inputs: list[str], output: str) -> list[Path]:
    """Where each input's reconstruction goes: OUTPUT itself for one input (or OUTPUT/<stem>.wav when
    OUTPUT is a directory); OUTPUT/<stem>.wav for several (the directory is made if missing)."""
    out = Path(output)
    if len(inputs) == 1 and not out.is_dir():
        return [audio.check_writable(out)]
    if out.exists() and not out.is_dir():
        raise TTSError(f"{out} is not a directory: with several inputs, -o names a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TTSError(f"cannot create {out}: {exc.strerror or exc}") from None
    targets = [out / (Path(src).stem + OUTPUT_SUFFIX) for src in inputs]
    seen: dict[Path, str] = {}
    for src, target in zip(inputs, targets):
        if target in seen:
            raise TTSError(f"{seen[target]} and {src} would both be written to {target}: rename one")
        seen[target] = src
    return [audio.check_writable(t) for t in targets]


def reconstruct_files(inputs: list[str], output: str, voice: str | None = None, steps: int = 8, seed: int = 0,
                      model_dir: str | os.PathLike | None = None, device: str = "cpu",
                      voices_dir: str | os.PathLike | None = None) -> Iterator[tuple[str, Path, float]]:
    """Reconstruct each input into its output; yields (input, output, seconds written) as each is done."""
    from .device import resolve_device
    from .pipeline import TextToSpeech, check_speech
    from .voices import VoiceLibrary

    for src in inputs:
        if not Path(src).is_file():
            raise TTSError(f"no such audio file {src}")
    targets = plan_outputs(inputs, output)
    resolve_device(device)
    voice_obj = VoiceLibrary(voices_dir).get(voice) if voice is not None else None
    tts = TextToSpeech(model_dir, device=device)
    wavs = []
    for src in inputs:  # read and check everything before the first output is made
        wav = audio.load_audio(src, tts.sample_rate)
        try:
            check_speech(wav, tts.sample_rate)
        except TTSError as exc:
            raise TTSError(f"{src}: {exc}") from None
        wavs.append(wav)
    cond = tts.conditioning(voice_obj) if voice_obj is not None else None
    for src, target, wav in zip(inputs, targets, wavs):
        out = tts.reconstruct(wav, cond, steps=steps, seed=seed)
        audio.save_audio(target, out, tts.sample_rate)
        yield src, target, len(out) / tts.sample_rate


__all__ = ["plan_outputs", "reconstruct_files"]
