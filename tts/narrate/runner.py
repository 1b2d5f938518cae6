"""The work loop: pending chunks -> batches through the pipeline -> checked audio files -> the manifest.

Batches hold up to ``options.text_batch`` chunks of similar length (sorted by length within a
window of upcoming chunks, so that the GPT's batch rows finish together while the book is still
made roughly in reading order). Each batch is one :meth:`TextToSpeech.synthesize_chunks` call with
its own generator, seeded from the book's seed and the keys and takes of the chunks in it.

Failure isolation: if a batch raises, its chunks are tried one at a time; a chunk that raises alone,
or whose audio is implausibly short or long for its text (:class:`DurationCheck`) after ``retries``
new takes, is recorded as failed with its reason and the run goes on. Writing is different: a
chunk's audio that cannot be written (a full disk) stops the run with a TTSError, the chunks
already committed being safe.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..audio import save_audio
from ..errors import TTSError
from ..quality import DurationCheck, audio_problems
from .loudness import measure_loudness
from .plan import PlannedChunk
from .store import Manifest

log = logging.getLogger(__name__)

CHUNKS_DIR = "chunks"
CHUNK_SUFFIX = ".flac"
SORT_WINDOW_BATCHES = 8  # chunks are grouped by length within this many batches' worth


@dataclass
class Progress:
    """Where a run stands; passed to the progress callback after every step."""

    chunks_total: int
    chars_total: int
    chunks_done: int = 0
    chunks_failed: int = 0
    chars_done: float = 0.0  # finished chunks plus the finished share of the batch in flight
    audio_seconds: float = 0.0
    started: float = 0.0
    finished: float | None = None  # set when the run ends

    @classmethod
    def combine(cls, states: list[Progress]) -> Progress:
        """Several books' states as one (started with the first, finished with the last)."""
        finished = [s.finished for s in states]
        return cls(sum(s.chunks_total for s in states), sum(s.chars_total for s in states),
                   sum(s.chunks_done for s in states), sum(s.chunks_failed for s in states),
                   sum(s.chars_done for s in states), sum(s.audio_seconds for s in states),
                   min(s.started for s in states), None if None in finished else max(finished))

    @property
    def elapsed(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    @property
    def speed(self) -> float | None:
        """Seconds of audio made per second of work ("x real time")."""
        return self.audio_seconds / self.elapsed if self.elapsed > 0 and self.audio_seconds else None

    @property
    def eta(self) -> float | None:
        """Seconds left, from the characters still to say at the rate so far."""
        if self.chars_done <= 0:
            return None
        return self.elapsed / self.chars_done * max(0.0, self.chars_total - self.chars_done)


@dataclass(frozen=True)
class Failure:
    chunk: PlannedChunk
    reason: str


def batch_seed(book_seed: int, chunks: list[PlannedChunk], takes: dict[str, int], attempt: int = 0) -> int:
    """A 63-bit seed from the book's seed, the batch's chunk keys and takes, and the retry attempt."""
    text = f"{book_seed}|{attempt}|" + ",".join(f"{c.key}:{takes.get(c.key, 0)}" for c in chunks)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def make_batches(chunks: list[PlannedChunk], size: int) -> list[list[PlannedChunk]]:
    """Groups of up to `size` chunks of similar length, keeping reading order window by window."""
    window = size * SORT_WINDOW_BATCHES
    batches = []
    for first in range(0, len(chunks), window):
        ordered = sorted(chunks[first:first + window], key=lambda c: len(c.text))
        batches += [ordered[i:i + size] for i in range(0, len(ordered), size)]
    return batches


class BatchMaker:
    """One batch through the pipeline with failure isolation (see the module docstring); what becomes of
    each chunk goes to ``keep(chunk, wav)`` or ``fail(chunk, reason)``, in that order: the good ones
    first. Where the outcomes are recorded is the caller's business: :class:`Runner` writes them
    here, a Ray worker (:mod:`.cluster`) returns them to the driver that writes them."""

    def __init__(self, tts, cond, options, book_seed: int, check: DurationCheck = DurationCheck(), retries: int = 1):
        self.tts, self.cond, self.options = tts, cond, options
        self.book_seed, self.check, self.retries = book_seed, check, retries

    def make(self, batch: list[PlannedChunk], takes: dict[str, int], keep: Callable[[PlannedChunk, np.ndarray], None],
             fail: Callable[[PlannedChunk, str], None], units: Callable[[float], None] | None = None) -> None:
        """``units(chars)``: the characters of the call in flight said so far (progress within a batch)."""
        self.keep, self.fail, self.units = keep, fail, units or (lambda chars: None)
        self._run_batch(batch, takes)

    def _run_batch(self, batch: list[PlannedChunk], takes: dict[str, int]) -> None:
        try:
            wavs = self._synthesize(batch, takes, 0)
            if len(wavs) != len(batch):
                raise RuntimeError(f"the pipeline returned {len(wavs)} results for {len(batch)} chunks")
        except Exception as exc:
            if len(batch) == 1:
                self.fail(batch[0], f"synthesis error: {describe_error(exc)}")
                return
            log.info("batch of %d chunks failed (%s); trying them one at a time", len(batch), describe_error(exc))
            for chunk in batch:
                self._run_batch([chunk], takes)
            return
        retry = []
        for chunk, wav in zip(batch, wavs):  # keep the good ones first: retries take time
            problem = self._problem(chunk, wav)
            if problem:
                retry.append((chunk, problem))
            else:
                self.keep(chunk, wav)
        for chunk, problem in retry:
            self._retry(chunk, problem, takes)

    def _retry(self, chunk: PlannedChunk, problem: str, takes: dict[str, int]) -> None:
        """Synthesise an implausible chunk alone with new seeds until it passes or retries run out."""
        for attempt in range(1, self.retries + 1):
            log.info("chunk %s: %s; retrying (%d/%d)", chunk.label, problem, attempt, self.retries)
            try:
                wav = self._synthesize([chunk], takes, attempt)[0]
            except Exception as exc:
                problem = f"synthesis error: {describe_error(exc)}"
                continue
            problem = self._problem(chunk, wav)
            if problem is None:
                self.keep(chunk, wav)
                return
        self.fail(chunk, problem)

    def _problem(self, chunk: PlannedChunk, wav: np.ndarray) -> str | None:
        problems = audio_problems(wav, self.tts.sample_rate, chunk.text, self.check, silent=False)
        return problems[0].message if problems else None

    def _synthesize(self, batch: list[PlannedChunk], takes: dict[str, int], attempt: int) -> list[np.ndarray]:
        seed = batch_seed(self.book_seed, batch, takes, attempt)
        generator = self.tts.make_generator(replace(self.options, seed=seed))
        batch_chars = sum(len(c.text) for c in batch)
        return self.tts.synthesize_chunks([c.text for c in batch], self.cond, self.options, generator=generator,
                                          progress=lambda done, total: self.units(batch_chars * done / max(total, 1)))


class Recorder:
    """The outcomes of one book's chunks: audio file then manifest row for a kept chunk (atomic; a
    TTSError for a file that cannot be written stops the run), the reason for a failed one, and the
    book's :class:`Progress`."""

    def __init__(self, manifest: Manifest, outdir: Path, settings_hash: str, sample_rate: int, state: Progress,
                 report: Callable[[Progress], None] | None = None):
        self.manifest, self.outdir = manifest, Path(outdir)
        self.settings_hash, self.sample_rate = settings_hash, sample_rate
        self.state, self.report = state, report or (lambda state: None)
        self.failures: list[Failure] = []
        self.settled_chars = 0
        (self.outdir / CHUNKS_DIR).mkdir(parents=True, exist_ok=True)

    def keep(self, chunk: PlannedChunk, wav: np.ndarray) -> None:
        relative = f"{CHUNKS_DIR}/{chunk.key}{CHUNK_SUFFIX}"
        save_audio(self.outdir / relative, wav, self.sample_rate)  # atomic; TTSError stops the run
        seconds = len(wav) / self.sample_rate
        self.manifest.mark_done(chunk.key, relative, len(wav), seconds,
                                measure_loudness(wav, self.sample_rate), self.settings_hash)
        self.state.chunks_done += 1
        self.state.audio_seconds += seconds
        self._advance(len(chunk.text))

    def fail(self, chunk: PlannedChunk, reason: str) -> None:
        log.info("chunk %s failed: %s", chunk.label, reason)
        self.manifest.mark_failed(chunk.key, reason, self.settings_hash)
        self.failures.append(Failure(chunk, reason))
        self.state.chunks_failed += 1
        self._advance(len(chunk.text))

    def partial(self, chars: float) -> None:
        """`chars` more characters of the batch in flight are said (not yet settled)."""
        self.state.chars_done = self.settled_chars + chars
        self.report(self.state)

    def _advance(self, chars: int) -> None:
        self.settled_chars += chars
        self.state.chars_done = float(self.settled_chars)
        self.report(self.state)


def start_progress(chunks: list[PlannedChunk]) -> Progress:
    return Progress(len(chunks), sum(len(c.text) for c in chunks), started=time.perf_counter())


def combined_report(states: list[Progress], progress: Callable[[Progress], None] | None
                    ) -> Callable[[Progress], None] | None:
    """A progress callback for one book's state that shows `progress` the run's state: the one book's
    own when it is alone, else the sum over every book."""
    if progress is None or len(states) == 1:
        return progress
    return lambda state: progress(Progress.combine(states))


def book_takes(manifest: Manifest) -> dict[str, int]:
    """Each chunk's take (how often it was regenerated): part of its batch's seed."""
    return {key: row.take for key, row in manifest.rows().items()}


class Runner:
    """One book's pending chunks, batch by batch in this process."""

    def __init__(self, tts, cond, options, manifest: Manifest, outdir: Path, settings_hash: str, book_seed: int,
                 check: DurationCheck = DurationCheck(), retries: int = 1,
                 progress: Callable[[Progress], None] | None = None):
        self.maker = BatchMaker(tts, cond, options, book_seed, check, retries)
        self.manifest, self.outdir, self.settings_hash = manifest, Path(outdir), settings_hash
        self.sample_rate, self.text_batch = tts.sample_rate, options.text_batch
        self.report = progress
        self.failures: list[Failure] = []

    def run(self, chunks: list[PlannedChunk], state: Progress | None = None) -> Progress:
        """Make `chunks`, counting them in `state` (a new Progress for them by default)."""
        state = state or start_progress(chunks)
        state.started = time.perf_counter()
        recorder = Recorder(self.manifest, self.outdir, self.settings_hash, self.sample_rate, state, self.report)
        self.failures = recorder.failures
        takes = book_takes(self.manifest)
        recorder.report(state)
        for batch in make_batches(chunks, self.text_batch):
            self.maker.make(batch, takes, recorder.keep, recorder.fail, recorder.partial)
        state.finished = time.perf_counter()
        return state


def describe_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text and not isinstance(exc, TTSError) else \
        (text[0] if text else type(exc).__name__)
