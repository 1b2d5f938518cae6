"""Fine-tuned voices: a small adapter per (model, voice) that replaces the voice's conditioning vectors.

`tts voices finetune NAME` (tts.finetune) tunes the vectors a model conditions on (the GPT's voice
latent, the DVAE and flow decoders' speaker vectors) and low-rank updates of the DVAE decoder's
weights (tts.models.lowrank) to the voice's clips and stores them here, in the user data directory,
never in the voice folder:

    <data dir>/adapters/<model id>/<voice name>/<clip fingerprint, 20 hex>.safetensors

The model id and the clips' fingerprint are the key: another model, or changed clips, finds no
adapter (the voice is zero-shot again until it is fine-tuned anew). :meth:`TextToSpeech.conditioning`
applies the adapter, so `speak`, `narrate` and `serve` all use it. This module is the inference
side: reading, writing and removing adapters; nothing here trains.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import TTSError
from .fileio import atomic_path
from .models import lowrank
from .voices import Voice, user_data_dir

log = logging.getLogger(__name__)

FORMAT = "tts-voice-adapter/1"
PARTS = ("gpt", "dvae_speaker", "flow_speaker")  # the Conditioning fields an adapter may replace
DECODER_UPDATE = "dvae_lowrank"  # the part name of low-rank decoder updates (tensors lowrank.PREFIX + ...)
KEY_HEX = 20  # fingerprint characters in the file name
_ADAPTER_FILE = re.compile(rf"[0-9a-f]{{{KEY_HEX}}}\.safetensors")
_STATE_FILE = re.compile(rf"\.[0-9a-f]{{{KEY_HEX}}}\.partial\.safetensors")


@dataclass
class AdapterInfo:
    """What an adapter is for and how it was made (stored as the file's metadata)."""

    voice: str
    model_id: str
    clips: str  # the voice's clip fingerprint (Voice.fingerprint) when it was tuned
    steps: int = 0
    train_seconds: float = 0.0
    transcribed: bool = False  # the GPT's clip texts came from the speech recogniser
    heldout: str | None = None  # the clip held out to judge the adapter (3 or more clips)
    similarity_before: float | None = None
    similarity_after: float | None = None
    created: str = ""
    format: str = FORMAT

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "AdapterInfo":
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown adapter format {data.get('format')!r}")
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


@dataclass
class VoiceAdapter:
    info: AdapterInfo
    # a Conditioning field (PARTS) -> its tuned value (1, D); low-rank decoder factors (lowrank.PREFIX...)
    tensors: dict[str, torch.Tensor]

    def apply(self, cond, dvae=None):
        """`cond` (a tts.pipeline.Conditioning) with the fields this adapter tunes replaced, and with the
        voice's own decoder weights when it has low-rank updates (`dvae`: the model's DVAE they update)."""
        return tuned_conditioning(cond, self.tensors, dvae, self.info.voice)

    @property
    def digest(self) -> str:
        """A short hash of the tuned values (what speech made with the adapter depends on)."""
        h = hashlib.sha256()
        for name in sorted(self.tensors):
            h.update(name.encode() + self.tensors[name].detach().float().cpu().numpy().tobytes())
        return h.hexdigest()[:16]

    @property
    def parts(self) -> list[str]:
        return adapter_parts(self.tensors)


def adapter_parts(tensors: dict[str, torch.Tensor]) -> list[str]:
    """The parts a set of tuned tensors replaces: Conditioning fields, and DECODER_UPDATE."""
    parts = [p for p in PARTS if p in tensors]
    return parts + [DECODER_UPDATE] if any(lowrank.is_factor(k) for k in tensors) else parts


def tuned_conditioning(cond, tensors: dict[str, torch.Tensor], dvae=None, voice: str = "voice"):
    """`cond` with the vectors of `tensors` in place of its own and, when `tensors` hold low-rank decoder
    factors, `dvae`'s decoder weights with the updates merged in (``cond.dvae_weights``). TTSError when
    they do not fit the model."""
    changes = {}
    for name, value in tensors.items():
        if name not in PARTS:
            continue
        old = getattr(cond, name)
        if old is not None:
            if tuple(old.shape) != tuple(value.shape):
                raise TTSError(f"the fine-tuned {voice!r} does not fit this model ({name} is "
                               f"{tuple(value.shape)}, expected {tuple(old.shape)}); fine-tune it again")
            changes[name] = value.to(device=old.device, dtype=old.dtype)
    factors = {k: v for k, v in tensors.items() if lowrank.is_factor(k)}
    if factors and dvae is not None:
        problem = lowrank.check(dvae, factors)
        if problem is not None:
            raise TTSError(f"the fine-tuned {voice!r} does not fit this model ({problem}); fine-tune it again")
        changes["dvae_weights"] = lowrank.merge(dvae, factors)
    return dataclasses.replace(cond, **changes)


class AdapterStore:
    """The adapters of every model and voice under `root` (default: `<user data dir>/adapters`)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root else user_data_dir() / "adapters"

    def folder(self, model_id: str, name: str) -> Path:
        return self.root / model_id / name

    def path(self, model_id: str, voice: Voice, fingerprint: str | None = None) -> Path:
        return self.folder(model_id, voice.name) / f"{(fingerprint or voice.fingerprint())[:KEY_HEX]}.safetensors"

    def state_path(self, model_id: str, voice: Voice, fingerprint: str | None = None) -> Path:
        """Where an unfinished fine-tuning keeps its state (hidden: never taken for an adapter)."""
        final = self.path(model_id, voice, fingerprint)
        return final.with_name(f".{final.stem}.partial.safetensors")

    def lock_path(self, model_id: str, voice: Voice) -> Path:
        return self.folder(model_id, voice.name) / ".lock"

    def load(self, model_id: str, voice: Voice, fingerprint: str | None = None) -> VoiceAdapter | None:
        """The adapter of `voice` (with its clips as they are now) for the model, or None. A damaged
        file is ignored with a warning."""
        fingerprint = fingerprint or voice.fingerprint()
        path = self.path(model_id, voice, fingerprint)
        if not path.is_file():
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                info = AdapterInfo.from_json((f.metadata() or {}).get("adapter", "{}"))
                tensors = {k: f.get_tensor(k).float() for k in f.keys() if k in PARTS or lowrank.is_factor(k)}
        except Exception as exc:  # noqa: BLE001 - a damaged adapter must not stop speech
            log.warning("ignoring unreadable voice adapter %s (%s)", path, exc)
            return None
        if info.clips != fingerprint or info.model_id != model_id or info.voice != voice.name:
            log.warning("ignoring voice adapter %s: it was made for other clips or another model", path)
            return None
        return VoiceAdapter(info, tensors)

    def save(self, adapter: VoiceAdapter) -> Path:
        """Write `adapter` atomically; adapters of the same voice for older clips are removed."""
        from safetensors.torch import save_file

        info = adapter.info
        folder = self.folder(info.model_id, info.voice)
        name = f"{info.clips[:KEY_HEX]}.safetensors"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TTSError(f"cannot write to {folder}: {exc.strerror or exc}") from None
        tensors = {k: v.detach().float().cpu().contiguous() for k, v in adapter.tensors.items()}
        with atomic_path(folder / name) as tmp:
            save_file(tensors, str(tmp), metadata={"adapter": info.to_json()})
        for old in folder.iterdir():  # adapters and unfinished runs for clips the voice no longer has
            stale = _ADAPTER_FILE.fullmatch(old.name) or _STATE_FILE.fullmatch(old.name)
            if stale and not old.name.lstrip(".").startswith(info.clips[:KEY_HEX]):
                old.unlink(missing_ok=True)
        return folder / name

    def remove(self, model_id: str, name: str) -> bool:
        """Drop every adapter (and unfinished fine-tuning) of voice `name` for the model; False if none."""
        folder = self.folder(model_id, name)
        if not folder.is_dir():
            return False
        found = any(p.name != ".lock" for p in folder.iterdir())
        try:
            shutil.rmtree(folder)
        except OSError as exc:
            raise TTSError(f"cannot remove {folder}: {exc.strerror or exc}") from None
        return found

    def stamp(self, model_id: str, voice: Voice, fingerprint: str | None = None) -> int | None:
        """The adapter file's modification time (ns), or None when there is none: a cheap change marker."""
        try:
            return self.path(model_id, voice, fingerprint).stat().st_mtime_ns
        except OSError:
            return None

    def is_tuned(self, model_id: str, voice: Voice) -> bool:
        """Whether `voice`, with its clips as they are now, has an adapter for the model."""
        return self.folder(model_id, voice.name).is_dir() and self.path(model_id, voice).is_file()
