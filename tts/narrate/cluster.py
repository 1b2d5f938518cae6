"""Narration on a Ray cluster: the chunks are made by Ray actors, each with its own loaded model;
this process (the driver) keeps every book's manifest and files.

    spec = ClusterSpec.parse("local:2")      # or "auto", "HOST:PORT", "ray://HOST:PORT"
    summaries = narrate_books(books, "joe", cluster=spec)

What each actor does is :class:`.runner.BatchMaker`'s job, the same as in one process: a batch of
chunks (batched and seeded as :func:`.runner.make_batches` and :func:`.runner.batch_seed` make
them, so a chunk comes out as it would in one process), failure isolation, duration checks and
retries. The actor returns each chunk's audio, or the reason it failed, through Ray's object store;
the driver writes the audio file and then the manifest row (:class:`.runner.Recorder`). The
manifest thus keeps one writer, and the workers need no shared filesystem.

Scheduling: the batches of every book go out longest first (by their longest chunk), one batch per
idle actor. An actor that dies (killed, out of memory, its node lost) loses only the batch it was
making: the batch goes back to the front of the queue and a new actor takes the dead one's place.
A batch that loses its worker twice is split into its chunks, and a chunk that loses its worker
twice on its own is recorded as failed, so one poisonous chunk cannot stop a book.

Ray is imported only here, and only when a run asks for a cluster (the `ray` extra).
"""

from __future__ import annotations

import collections
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import TTSError
from .plan import PlannedChunk
from .runner import (BatchMaker, Progress, Recorder, book_takes, combined_report, describe_error, make_batches,
                     start_progress)

log = logging.getLogger(__name__)

LOSSES_PER_BATCH = 2  # workers a batch may lose before it is split (a single chunk: before it fails)
START_TIMEOUT_SECONDS = 600.0  # how long no worker at all may take to start (load its model)
CONNECT_TIMEOUT_SECONDS = 10.0  # for the cluster's address to answer at all
DEATHS_WHILE_STARTING = 3  # a worker that dies this often in a row while loading the model stops the run
_ADDRESS = re.compile(r"(ray://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5}")  # fullmatch: HOST:PORT, ray://HOST:PORT
_LOCAL = re.compile(r"local:(\d+)")


@dataclass(frozen=True)
class ClusterSpec:
    """Where the workers run: ``address`` ("auto", "HOST:PORT", "ray://HOST:PORT"), or ``local`` (a
    cluster of this machine started for the run and stopped after it, with that many workers)."""

    address: str | None = None
    local: int | None = None
    cpus_per_worker: float = 1.0
    workers: int | None = None  # default: local's count, else as many as the cluster's GPUs (or CPUs) hold

    @classmethod
    def parse(cls, text: str, cpus_per_worker: float = 1.0, workers: int | None = None) -> ClusterSpec:
        """`--ray`'s value; TTSError naming it when it is none of the forms."""
        text = text.strip()
        local = _LOCAL.fullmatch(text)
        if cpus_per_worker <= 0:
            raise TTSError(f"--ray-cpus-per-worker must be above 0, got {cpus_per_worker:g}")
        if workers is not None and workers < 1:
            raise TTSError(f"--ray-workers must be at least 1, got {workers}")
        if local:
            if int(local.group(1)) < 1:
                raise TTSError(f"--ray {text}: a local cluster needs at least 1 worker")
            return cls(local=int(local.group(1)), cpus_per_worker=cpus_per_worker, workers=workers)
        if text == "auto" or _ADDRESS.fullmatch(text):
            return cls(address=text, cpus_per_worker=cpus_per_worker, workers=workers)
        raise TTSError(f"--ray {text!r} is not a Ray cluster: use auto, HOST:PORT, ray://HOST:PORT or local:N")


class NarrationWorker:
    """A Ray actor: one loaded model and the voice's conditioning latents; makes one batch per call.

    A model that cannot be loaded does not kill the actor: :meth:`ready` reports it and the driver
    stops the run with that message."""

    def __init__(self, model_dir: str, device: str, clips: list[np.ndarray]):
        self.error = None
        try:
            from ..pipeline import TextToSpeech

            self.tts = TextToSpeech(model_dir, device=device)
            self.cond = self.tts.conditioning_from_clips(clips)
        except Exception as exc:
            self.error = describe_error(exc)

    def ready(self) -> str | None:
        return self.error

    def make(self, batch: list[PlannedChunk], takes: dict[str, int], options, book_seed: int, check,
             retries: int) -> tuple[float, list[tuple[int, np.ndarray | None, str | None]]]:
        """(seconds it took; (index in `batch`, audio or None, reason or None) for each chunk, kept ones first)."""
        start = time.perf_counter()
        index = {chunk.key: i for i, chunk in enumerate(batch)}
        outcomes = []
        BatchMaker(self.tts, self.cond, options, book_seed, check, retries).make(
            batch, takes, keep=lambda chunk, wav: outcomes.append((index[chunk.key], wav, None)),
            fail=lambda chunk, reason: outcomes.append((index[chunk.key], None, reason)))
        return time.perf_counter() - start, outcomes


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_SECONDS) -> None:
    """TTSError unless something accepts connections at the cluster address HOST:PORT (or ray://HOST:PORT)."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise TTSError(f"cannot connect to the Ray cluster at {address}: {exc.strerror or exc} "
                       "(is `ray start --head` running there?)") from None


@dataclass
class Task:
    book: int  # index into the run's books
    batch: list[PlannedChunk]
    losses: int = 0  # workers lost while making it


def longest_first(tasks: list[Task]) -> list[Task]:
    """Batches by their longest chunk, then their total length, longest first (stable otherwise)."""
    return sorted(tasks, key=lambda t: (-max(len(c.text) for c in t.batch), -sum(len(c.text) for c in t.batch)))


def after_loss(task: Task) -> tuple[list[Task], PlannedChunk | None]:
    """What a batch whose worker died becomes: (batches to make again, first; a chunk that fails)."""
    task.losses += 1
    if task.losses < LOSSES_PER_BATCH:
        return [task], None
    if len(task.batch) > 1:
        return [Task(task.book, [chunk]) for chunk in task.batch], None
    return [], task.batch[0]


@dataclass
class Slot:
    """One worker place in the pool: its actor, and what it is doing."""

    actor: object
    starting: object | None  # the ready() call in flight while the actor loads its model
    task: Task | None = None
    deaths: int = 0  # in a row while starting


@dataclass
class RayEngine:
    """Synthesis on Ray actors (see the module docstring). A context manager: connects to (or starts)
    the cluster on entry, disconnects (or stops it) on exit; the model card is read without weights."""

    spec: ClusterSpec
    model_dir: str | Path | None = None
    device: str | None = None  # "cpu", "cuda", or None/"auto": a GPU per worker where the cluster has GPUs
    slots: list[Slot] = field(default_factory=list)
    # What a run cost, for benchmarks/narrate.py: "connect" (to the cluster, or starting it), "startup"
    # (until the first worker had its model), "worker" (seconds inside make(), all workers), "driver"
    # (seconds this process spent fetching and writing results), "batches", "chunks", "lost" (workers)
    timings: dict = field(default_factory=dict)

    def __post_init__(self):
        from .. import audio
        from ..checkpoints import read_model_card
        from ..pipeline import default_model_dir

        if self.device not in (None, "auto", "cpu", "cuda"):
            raise TTSError(f"--device {self.device} with --ray: the workers take cpu, cuda or auto")
        self.model_path = str(Path(self.model_dir) if self.model_dir else default_model_dir())
        self.card, self.model_id = read_model_card(self.model_path)
        self.sample_rate = audio.MEL_SPECS[self.card.diffusion_mel].sample_rate
        self.cond_rate = audio.MEL_SPECS[self.card.cond_mel].sample_rate

    # -- the cluster -----------------------------------------------------------------------------
    def __enter__(self) -> RayEngine:
        try:
            import ray
        except ImportError:
            raise TTSError("--ray needs Ray: pip install '.[ray]'") from None
        self.ray = ray
        spec = self.spec
        settings = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False}
        if spec.address not in (None, "auto"):
            check_reachable(spec.address)  # Ray itself would retry an address where nothing answers for ever
        started = time.perf_counter()
        try:
            if spec.local is not None:
                ray.init(num_cpus=spec.local * spec.cpus_per_worker, **settings)
            else:
                ray.init(address=spec.address, **settings)
        except Exception as exc:
            what = "start a local Ray cluster" if spec.local is not None else \
                f"connect to the Ray cluster at {spec.address}"
            raise TTSError(f"cannot {what}: {describe_error(exc)}") from None
        try:
            self._plan_workers(ray.cluster_resources())
        except BaseException:
            ray.shutdown()
            raise
        log.info("Ray: %d workers, %s each", self.workers, self.resources)
        self.timings = {"connect": time.perf_counter() - started, "startup": None, "worker": 0.0, "driver": 0.0,
                        "batches": 0, "chunks": 0, "lost": 0}
        return self

    def __exit__(self, *exc) -> None:
        for slot in self.slots:
            self._kill(slot)
        self.ray.shutdown()

    def _plan_workers(self, resources: dict) -> None:
        """How many workers, what each asks of the cluster, and the device it runs the model on."""
        spec, gpus, cpus = self.spec, float(resources.get("GPU", 0)), float(resources.get("CPU", 0))
        use_gpus = gpus > 0 and self.device != "cpu"
        if self.device == "cuda" and not use_gpus:
            raise TTSError("--device cuda: the Ray cluster has no GPUs")
        if use_gpus:
            self.workers = spec.workers or spec.local or max(1, int(gpus))
            self.resources = {"num_cpus": spec.cpus_per_worker, "num_gpus": min(1.0, gpus / self.workers)}
        else:
            self.workers = spec.workers or spec.local or max(1, int(cpus // spec.cpus_per_worker))
            self.resources = {"num_cpus": spec.cpus_per_worker}
        if spec.cpus_per_worker > cpus:
            raise TTSError(f"--ray-cpus-per-worker {spec.cpus_per_worker:g}: the Ray cluster has {cpus:g} CPUs")
        self.worker_device = "cuda" if use_gpus else "cpu"
        self.actor_class = self.ray.remote(max_restarts=0, max_task_retries=0, **self.resources)(NarrationWorker)

    def _new_slot(self, clips_ref) -> Slot:
        actor = self.actor_class.remote(self.model_path, self.worker_device, clips_ref)
        return Slot(actor, actor.ready.remote())

    def _kill(self, slot: Slot) -> None:
        try:
            self.ray.kill(slot.actor)
        except Exception:  # already gone
            pass

    # -- the run ---------------------------------------------------------------------------------
    def synthesize(self, jobs: list, voice, options, check, retries: int,
                   progress: Callable[[Progress], None] | None) -> None:
        """Make every job's (book's) pending chunks on the workers; see the module docstring."""
        ray = self.ray
        clips_ref = ray.put(voice.load_clips(self.cond_rate))
        states = [start_progress(job.todo) for job in jobs]
        report = combined_report(states, progress)
        recorders = [Recorder(job.manifest, job.outdir, job.digest, self.sample_rate, state, report)
                     for job, state in zip(jobs, states)]
        takes = [book_takes(job.manifest) for job in jobs]
        queue = collections.deque(longest_first([Task(i, batch) for i, job in enumerate(jobs)
                                                 for batch in make_batches(job.todo, options.text_batch)]))
        begun = time.perf_counter()
        self.slots = [self._new_slot(clips_ref) for _ in range(self.workers)]
        running: dict = {}  # ObjectRef of a make() call -> its slot
        if report:
            report(states[0] if len(states) == 1 else Progress.combine(states))
        while queue or running:
            for slot in self.slots:
                if queue and slot.starting is None and slot.task is None:
                    slot.task = task = queue.popleft()
                    job = jobs[task.book]
                    batch_takes = {c.key: takes[task.book].get(c.key, 0) for c in task.batch}
                    running[slot.actor.make.remote(task.batch, batch_takes, options, job.seed, check, retries)] = slot
            starting = {slot.starting: slot for slot in self.slots if slot.starting is not None}
            waiting = list(running) + list(starting)
            done, _ = ray.wait(waiting, num_returns=1, timeout=None if running else START_TIMEOUT_SECONDS)
            if not done:
                raise TTSError(f"no Ray worker started in {START_TIMEOUT_SECONDS:.0f} s: the cluster may lack the "
                               f"resources each one asks for ({self._asks()})")
            ref = done[0]
            if ref in starting:
                self._started(starting[ref], ref, clips_ref)
                if self.timings["startup"] is None and starting[ref].starting is None:
                    self.timings["startup"] = time.perf_counter() - begun
                continue
            slot = running.pop(ref)
            task, slot.task = slot.task, None
            fetched = time.perf_counter()
            try:
                seconds, outcomes = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:  # not synthesis (BatchMaker isolates that): say why
                reason = f"worker error: {describe_error(exc.cause if exc.cause is not None else exc)}"
                seconds, outcomes = 0.0, [(i, None, reason) for i in range(len(task.batch))]
            except ray.exceptions.RayError as exc:  # the worker died, or its node, or the result with it
                log.warning("lost a Ray worker with a batch of %d chunks (%s); making them again",
                            len(task.batch), describe_error(exc))
                again, failed = after_loss(task)
                queue.extendleft(reversed(again))
                if failed is not None:
                    recorders[task.book].fail(failed, "its Ray worker was lost twice while making it "
                                                      "(killed, out of memory, or its node lost)")
                self._replace(slot, clips_ref)
                self.timings["lost"] += 1
                continue
            recorder = recorders[task.book]
            for index, wav, reason in outcomes:
                if wav is not None:
                    recorder.keep(task.batch[index], wav)
                else:
                    recorder.fail(task.batch[index], reason)
            del outcomes
            self.timings["worker"] += seconds
            self.timings["driver"] += time.perf_counter() - fetched
            self.timings["batches"] += 1
            self.timings["chunks"] += len(task.batch)
        for job, state, recorder in zip(jobs, states, recorders):
            state.finished = time.perf_counter()
            job.made(state, recorder.failures)

    def _started(self, slot: Slot, ref, clips_ref) -> None:
        slot.starting = None
        try:
            error = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            slot.deaths += 1
            if slot.deaths >= DEATHS_WHILE_STARTING:
                raise TTSError(f"Ray workers keep dying while loading the model ({describe_error(exc)})") from None
            log.warning("a Ray worker died while loading the model (%s); starting another", describe_error(exc))
            deaths = slot.deaths
            self._replace(slot, clips_ref)
            slot.deaths = deaths
            return
        if error is not None:
            raise TTSError(f"a Ray worker cannot load the model {self.model_path}: {error}")
        slot.deaths = 0

    def _replace(self, slot: Slot, clips_ref) -> None:
        """A new actor in the dead one's place (the slot object stays, so the pool keeps its size)."""
        self._kill(slot)
        fresh = self._new_slot(clips_ref)
        slot.actor, slot.starting, slot.task, slot.deaths = fresh.actor, fresh.starting, None, 0

    def _asks(self) -> str:
        gpus = self.resources.get("num_gpus")
        return f"{self.resources['num_cpus']:g} CPUs" + (f" and {gpus:g} GPU" if gpus else "")

