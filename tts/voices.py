"""Voices: folders of reference clips (`NAME/*.wav|flac|ogg|mp3`, Tortoise's format).

Shipped voices live in the repository's `voices/`; voices a user adds live in a user data
directory (`--voices-dir`, `$TTS_VOICES_DIR`, or `$XDG_DATA_HOME/tts/voices`). A user voice may
shadow a shipped one only when added with `shadow=True`. Nothing is written into a voice folder
except by :meth:`VoiceLibrary.add`; cached conditioning latents go to the cache directory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import audio
from .errors import TTSError
from .silence import SILENT_RMS, is_silent

log = logging.getLogger(__name__)

SHIPPED_VOICES_DIR = Path(__file__).resolve().parent.parent / "voices"
VOICE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # the whole name: fullmatch (`$` would allow a final "\n")

# Clip checks for `voices add` (at the clip's own rate, after mixing to mono).
SILENCE_RMS = SILENT_RMS  # the silence level (defined in tts.silence), under the name this module gave it
MIN_CLIP_SECONDS = 2.0
MAX_CLIP_SECONDS = 30.0
CLIPPED_LEVEL = 0.999  # |sample| at or above this counts as clipped ...
MAX_CLIPPED_FRACTION = 0.001  # ... and more than 0.1% of such samples rejects the clip
STORED_SAMPLE_RATE = audio.TORTOISE_SAMPLE_RATE  # clips are stored as mono FLAC at this rate


class UnknownVoice(TTSError):
    """No voice (or no user voice, for removal) of the name asked for."""


class VoiceConflict(TTSError):
    """The name is taken: a shipped voice (without `shadow`), an existing user voice (without `replace`), or a
    shipped voice that cannot be removed."""


def _xdg(var: str, fallback: str) -> Path:
    return Path(os.environ.get(var) or Path.home() / fallback)


def user_voices_dir(override: str | os.PathLike | None = None) -> Path:
    if override:
        return Path(override)
    if os.environ.get("TTS_VOICES_DIR"):
        return Path(os.environ["TTS_VOICES_DIR"])
    return _xdg("XDG_DATA_HOME", ".local/share") / "tts" / "voices"


def user_data_dir(override: str | os.PathLike | None = None) -> Path:
    """Where the user's own data other than voices lives (fine-tuned voice adapters): `override`,
    `$TTS_DATA_DIR`, or `$XDG_DATA_HOME/tts`."""
    if override:
        return Path(override)
    if os.environ.get("TTS_DATA_DIR"):
        return Path(os.environ["TTS_DATA_DIR"])
    return _xdg("XDG_DATA_HOME", ".local/share") / "tts"


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    if override:
        return Path(override)
    if os.environ.get("TTS_CACHE_DIR"):
        return Path(os.environ["TTS_CACHE_DIR"])
    return _xdg("XDG_CACHE_HOME", ".cache") / "tts"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not VOICE_NAME.fullmatch(name):
        raise TTSError(
            f"invalid voice name {name!r}: use lowercase letters, digits, '-' and '_' (up to 64), starting with a letter or digit"
        )
    return name


def audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in audio.AUDIO_EXTENSIONS)


def check_clip(wav: np.ndarray, sample_rate: int, path: Path) -> None:
    """Raise TTSError if the clip is too short or long, silent, or clipped."""
    seconds = len(wav) / sample_rate
    if not MIN_CLIP_SECONDS <= seconds <= MAX_CLIP_SECONDS:
        raise TTSError(f"clip {path} is {seconds:.1f} s long; clips must be {MIN_CLIP_SECONDS:g}-{MAX_CLIP_SECONDS:g} s")
    if is_silent(wav):
        raise TTSError(f"clip {path} is silent")
    if float(np.mean(np.abs(wav) >= CLIPPED_LEVEL)) > MAX_CLIPPED_FRACTION:
        raise TTSError(f"clip {path} is clipped (too many samples at full scale); record it at a lower level")


@dataclass(frozen=True)
class Voice:
    name: str
    folder: Path
    source: str  # "shipped" or "user"

    @property
    def clips(self) -> list[Path]:
        return audio_files(self.folder)

    def fingerprint(self) -> str:
        """Hash of the clips' names and contents: changes whenever the clips do."""
        h = hashlib.sha256()
        for clip in self.clips:
            h.update(clip.name.encode() + b"\0")
            h.update(clip.read_bytes())
        return h.hexdigest()

    def load_clips(self, sample_rate: int) -> list[np.ndarray]:
        """Every readable clip as mono float32 at `sample_rate`; unreadable or silent ones are skipped with a warning."""
        clips, problems = [], []
        for path in self.clips:
            try:
                wav = audio.load_audio(path, sample_rate)
                if len(wav) < sample_rate * 0.5 or np.abs(wav).max() < SILENCE_RMS:
                    raise TTSError(f"clip {path} is too short or silent")
            except TTSError as exc:
                problems.append(str(exc))
                log.warning("skipping %s", exc)
                continue
            clips.append(wav)
        if not clips:
            detail = f" ({problems[0]})" if problems else " (the folder has no .wav/.flac/.ogg/.mp3 files)"
            raise TTSError(f"voice {self.name!r} has no usable clips{detail}")
        return clips


class VoiceLibrary:
    def __init__(self, user_dir: str | os.PathLike | None = None, shipped_dir: Path = SHIPPED_VOICES_DIR):
        self.user_dir = user_voices_dir(user_dir)
        self.shipped_dir = Path(shipped_dir)

    def _voices_in(self, folder: Path, source: str) -> dict[str, Voice]:
        if not folder.is_dir():
            return {}
        return {p.name: Voice(p.name, p, source) for p in sorted(folder.iterdir())
                if p.is_dir() and VOICE_NAME.fullmatch(p.name)}

    def all(self) -> list[Voice]:
        """Every voice by name; a user voice replaces a shipped one of the same name."""
        voices = {**self._voices_in(self.shipped_dir, "shipped"), **self._voices_in(self.user_dir, "user")}
        return [voices[name] for name in sorted(voices)]

    def shipped(self) -> list[Voice]:
        """The voices that ship with the product, by name (whether or not a user voice shadows them)."""
        return list(self._voices_in(self.shipped_dir, "shipped").values())

    def is_shipped(self, name: str) -> bool:
        return (self.shipped_dir / name).is_dir()

    def get(self, name: str) -> Voice:
        check_name(name)
        for voice in self.all():
            if voice.name == name:
                return voice
        available = ", ".join(v.name for v in self.all()) or "none; add one with `tts voices add`"
        raise UnknownVoice(f"unknown voice {name!r} (available: {available})")

    def add(self, name: str, clips: list[str | os.PathLike], shadow: bool = False, replace: bool = False) -> Voice:
        """Check each clip, store them resampled to mono FLAC in the user directory, all or nothing."""
        check_name(name)
        if not clips:
            raise TTSError("give at least one clip")
        if self.is_shipped(name) and not shadow:
            raise VoiceConflict(f"{name!r} is a shipped voice; pass --shadow to add a user voice that replaces it")
        target = self.user_dir / name
        if (target.exists() or target.is_symlink()) and not replace:
            raise VoiceConflict(f"voice {name!r} already exists in {self.user_dir}; pass --replace to overwrite it")
        loaded = []
        for clip in clips:
            path = Path(clip)
            if not path.is_file():
                raise TTSError(f"clip {path} does not exist")
            wav = audio.load_audio(path, STORED_SAMPLE_RATE)
            check_clip(wav, STORED_SAMPLE_RATE, path)
            loaded.append((path, wav))
        try:
            self.user_dir.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=self.user_dir))
        except OSError as exc:
            raise TTSError(f"cannot write to {self.user_dir}: {exc.strerror or exc}") from None
        try:
            used: set[str] = set()
            for i, (path, wav) in enumerate(loaded):
                stem = re.sub(r"[^A-Za-z0-9_-]+", "_", path.stem)[:48] or "clip"
                stem = stem if stem not in used else f"{stem}_{i}"
                used.add(stem)
                audio.save_audio(staging / f"{stem}.flac", wav, STORED_SAMPLE_RATE)
            _remove_folder(target)
            os.replace(staging, target)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise TTSError(f"cannot write voice {name!r} to {self.user_dir}: {exc.strerror or exc}") from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return Voice(name, target, "user")

    def remove(self, name: str) -> None:
        """Delete user voice `name`; a voice folder that is a symbolic link loses the link, not its target."""
        check_name(name)
        target = self.user_dir / name
        if not target.is_dir():
            if self.is_shipped(name):
                raise VoiceConflict(f"{name!r} is a shipped voice and cannot be removed")
            raise UnknownVoice(f"no user voice named {name!r} in {self.user_dir}")
        _remove_folder(target)


def _remove_folder(path: Path) -> None:
    """Remove a voice folder, or only the link if it is a symbolic link (dangling or not); TTSError on failure."""
    try:
        if path.is_symlink():
            path.unlink()
        elif path.exists():
            shutil.rmtree(path)
    except OSError as exc:
        raise TTSError(f"cannot remove {path}: {exc.strerror or exc}") from None
