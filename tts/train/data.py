"""Corpus access for the trainers: manifest, cached mels and codes, splits, length-bucketed batches.

Mels are the HiFi-GAN front-end (tts.audio.HIFIGAN_MEL), cached as float16 .npy under
`<corpus>/cache/mels/`; DVAE codes under `<corpus>/cache/codes/<dvae id>/`; pitch (tts.pitch) under
`<corpus>/cache/pitch/`. Caches are written atomically, so concurrent or interrupted runs never leave
a torn file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import audio
from ..errors import TTSError
from ..fileio import atomic_path
from ..pitch import f0

log = logging.getLogger(__name__)

MEL = audio.HIFIGAN_MEL


@dataclass(frozen=True)
class Utterance:
    id: str
    audio: Path
    text: str
    phonemes: str
    speaker: str
    duration: float


class Corpus:
    def __init__(self, root: str | Path, speakers: list[str] | None = None, min_seconds: float = 0.0,
                 max_seconds: float = float("inf")):
        self.root = Path(root)
        manifest = self.root / "manifest.jsonl"
        if not manifest.is_file():
            raise TTSError(f"{self.root} is not a corpus (no manifest.jsonl); build one with `tts data build-corpus`")
        items, bad = [], 0
        for line in manifest.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
                utt = Utterance(row["id"], self.root / row["audio"], row["normalized"], row["phonemes"],
                                row["speaker"], float(row["duration"]))
            except (ValueError, KeyError, TypeError):
                bad += 1
                continue
            if speakers and utt.speaker not in speakers:
                continue
            if min_seconds <= utt.duration <= max_seconds and utt.phonemes:
                items.append(utt)
        if bad:
            log.warning("skipped %d malformed manifest lines in %s", bad, manifest)
        if not items:
            raise TTSError(f"corpus {self.root} has no usable utterances")
        self.items = items
        self.speakers = sorted({u.speaker for u in items})
        self.by_speaker: dict[str, list[Utterance]] = defaultdict(list)
        for utt in items:
            self.by_speaker[utt.speaker].append(utt)

    def split(self, val_fraction: float) -> tuple[list[Utterance], list[Utterance]]:
        """Deterministic train/validation split by a hash of each id."""
        def is_val(utt: Utterance) -> bool:
            return int(hashlib.sha1(utt.id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < val_fraction

        train = [u for u in self.items if not is_val(u)]
        val = [u for u in self.items if is_val(u)] or train[:1]
        return train, val

    # -- cached features -------------------------------------------------------------------------
    def mel(self, utt: Utterance) -> np.ndarray:
        """(80, T) float32 log mel of an utterance (computed once, then cached)."""
        def compute() -> np.ndarray:
            wav = audio.load_audio(utt.audio, MEL.sample_rate)
            return audio.mel_spectrogram(torch.from_numpy(wav), MEL)[0].numpy()

        return self._cached(self.root / "cache" / "mels" / f"{utt.id}.npy", compute, np.float32, np.float16)

    def pitch(self, utt: Utterance) -> np.ndarray:
        """(T,) F0 in Hz per mel frame of an utterance, 0 where unvoiced (tts.pitch; cached)."""
        return self._cached(self.root / "cache" / "pitch" / f"{utt.id}.npy",
                            lambda: f0(audio.load_audio(utt.audio, MEL.sample_rate), MEL.sample_rate),
                            np.float32, np.float16)

    def codes(self, utt: Utterance, dvae, dvae_id: str) -> np.ndarray:
        """(L,) DVAE codes of an utterance's mel (computed once per DVAE, then cached)."""
        def compute() -> np.ndarray:
            with torch.no_grad():
                return dvae.encode(audio.normalize_mel(torch.from_numpy(self.mel(utt))[None]))[0].numpy()

        return self._cached(self.root / "cache" / "codes" / dvae_id / f"{utt.id}.npy", compute, np.int64, np.int16)

    @staticmethod
    def _cached(path: Path, compute, dtype, stored_dtype) -> np.ndarray:
        """The array at `path` as `dtype`, or `compute()` written there (atomically, as `stored_dtype`)."""
        if path.is_file():
            try:
                return np.load(path).astype(dtype)
            except (OSError, ValueError):
                log.warning("recomputing unreadable cache file %s", path)
        value = compute()
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, value.astype(stored_dtype))
        return value.astype(dtype)

    def cond_mel(self, speaker: str, exclude: str, frames: int, rng: random.Random) -> np.ndarray:
        """A conditioning clip: the mel of another utterance of `speaker`, randomly cropped or padded
        (with silence) to `frames` -> (80, frames)."""
        pool = self.by_speaker[speaker]
        choice = pool[rng.randrange(len(pool))]
        if choice.id == exclude and len(pool) > 1:
            choice = pool[(pool.index(choice) + 1) % len(pool)]
        return crop_or_pad(self.mel(choice), frames, rng)


def crop_or_pad(mel: np.ndarray, frames: int, rng: random.Random | None) -> np.ndarray:
    """Random (or leading, without rng) crop to `frames`, or pad at the end with the log floor."""
    t = mel.shape[1]
    if t >= frames:
        start = rng.randrange(t - frames + 1) if rng is not None else 0
        return mel[:, start:start + frames]
    return np.pad(mel, ((0, 0), (0, frames - t)), constant_values=audio.LOG_SILENCE)


def bucketed_batches(lengths: list[float], batch_size: int, rng: random.Random, shard: tuple[int, int] = (0, 1),
                     ) -> Iterator[list[int]]:
    """Endless batches of indices with similar lengths (less padding), shuffled; `shard` = (rank, world)
    gives each process every world-th batch."""
    rank, world = shard
    order = list(range(len(lengths)))
    pool = batch_size * 32
    while True:
        rng.shuffle(order)
        batches = []
        for i in range(0, len(order), pool):
            chunk = sorted(order[i:i + pool], key=lambda j: lengths[j])
            batches += [chunk[k:k + batch_size] for k in range(0, len(chunk), batch_size)]
        rng.shuffle(batches)
        batches = [b for b in batches if len(b) == batch_size] or batches
        for n, batch in enumerate(batches):
            if n % world == rank:
                yield batch


def pad_stack(arrays: list[np.ndarray], value: float, dtype=torch.float32) -> torch.Tensor:
    """Pad the last axis of each array to the longest and stack -> (B, ..., T_max)."""
    longest = max(a.shape[-1] for a in arrays)
    widths = [[(0, 0)] * (a.ndim - 1) + [(0, longest - a.shape[-1])] for a in arrays]
    return torch.from_numpy(np.stack([np.pad(a, w, constant_values=value) for a, w in zip(arrays, widths)])).to(dtype)


def _cache_one(args: tuple[str, int, int]) -> int:
    root, start, step = args
    torch.set_num_threads(1)
    corpus = Corpus(root)
    for utt in corpus.items[start::step]:
        corpus.mel(utt)
    return len(corpus.items[start::step])


def cache_mels(root: str | Path, workers: int = 2) -> int:
    """Compute every utterance's mel into the cache (in `workers` processes); returns the count."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return sum(pool.map(_cache_one, [(str(root), i, workers) for i in range(workers)]))
