"""A voice's clips as fine-tuning takes them: every clip readable and speech, enough of them in
total, and each clip's text (from a transcript file, or heard by the offline speech recogniser)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import audio
from ..errors import TTSError
from ..fileio import read_lines
from ..silence import is_silent
from ..text.normalize import has_speech
from ..voices import Voice
from .config import MIN_TOTAL_SECONDS

RECOGNISER_SAMPLE_RATE = 16_000  # the recogniser and the speaker judge take 16 kHz mono


@dataclass
class Clip:
    name: str  # the clip's file name in the voice folder
    wav: np.ndarray  # mono float32 at the model's sample rate

    def seconds(self, sample_rate: int) -> float:
        return len(self.wav) / sample_rate


def voice_clips(voice: Voice, sample_rate: int, min_total_seconds: float = MIN_TOTAL_SECONDS) -> list[Clip]:
    """Every clip of `voice` at `sample_rate`; TTSError (one line) for a voice without clips, an unreadable
    or silent clip, or too little audio in total (saying how much is needed)."""
    paths = voice.clips
    if not paths:
        raise TTSError(f"voice {voice.name!r} has no clips (in {voice.folder}); add some with `tts voices add`")
    clips = []
    for path in paths:
        wav = audio.load_audio(path, sample_rate)
        if is_silent(wav):
            raise TTSError(f"clip {path} is silent: remove it from voice {voice.name!r} to fine-tune it")
        clips.append(Clip(path.name, wav))
    total = sum(c.seconds(sample_rate) for c in clips)
    if total < min_total_seconds:
        raise TTSError(f"voice {voice.name!r} has {total:.1f} s of clips; fine-tuning needs at least "
                       f"{min_total_seconds:g} s in total (10-20 s is best): add clips with `tts voices add`")
    return clips


def read_transcripts(path: str | os.PathLike, voice: Voice) -> dict[str, str]:
    """Clip file name -> text, from a file of lines ``CLIP<TAB>TEXT`` or ``CLIP|TEXT`` (CLIP: the clip's
    file name, with or without its extension; blank lines and lines starting with # are skipped).
    TTSError unless every clip of the voice has exactly one line with something to say, and every line
    names one of its clips."""
    path = Path(path)
    lines = read_lines(path, "transcript file")
    names = [p.name for p in voice.clips]
    by_key = {}
    for name in names:
        by_key.setdefault(name, name)
        by_key.setdefault(Path(name).stem, name)
    texts: dict[str, str] = {}
    unknown, repeated = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cut = min((i for i in (line.find("\t"), line.find("|")) if i >= 0), default=-1)
        if cut < 0:
            raise TTSError(f"line {number} of {path} is not 'CLIP<TAB>TEXT' or 'CLIP|TEXT': {line.strip()[:60]!r}")
        key, text = line[:cut].strip(), line[cut + 1:].strip()
        name = by_key.get(key) or by_key.get(Path(key).name)
        if name is None:
            unknown.append(key)
        elif name in texts:
            repeated.append(name)
        elif not has_speech(text):
            raise TTSError(f"line {number} of {path} gives clip {name} no words to say")
        else:
            texts[name] = text
    missing = [n for n in names if n not in texts]
    if unknown or missing or repeated:
        problems = []
        if missing:
            problems.append(f"no text for {', '.join(missing)}")
        if unknown:
            problems.append(f"lines for clips it does not have: {', '.join(unknown)}")
        if repeated:
            problems.append(f"more than one line for {', '.join(dict.fromkeys(repeated))}")
        raise TTSError(f"transcript file {path} does not match the clips of voice {voice.name!r}: "
                       + "; ".join(problems))
    return texts


def transcribe(voice: Voice, transcriber, on_clip: Callable[[str, str], None] | None = None) -> dict[str, str]:
    """Clip file name -> the text `transcriber` (tts.evaluate.Transcriber) hears in it; TTSError for a clip
    in which it hears no words."""
    texts = {}
    for path in voice.clips:
        text = transcriber.transcribe(audio.load_audio(path, RECOGNISER_SAMPLE_RATE)).strip()
        if not has_speech(text):
            raise TTSError(f"the speech recogniser heard no words in clip {path}; pass its text with "
                           "--transcripts FILE")
        texts[path.name] = text
        if on_clip is not None:
            on_clip(path.name, text)
    return texts
