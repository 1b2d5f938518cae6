"""Dynamic batching: requests that arrive close together share one GPT batch, on one model thread.

A :class:`Job` is one speech request: its text chunks, its voice, and a queue on the event loop that
receives its audio chunk by chunk. :class:`Batcher` admits at most `max_queue` unfinished jobs
(:class:`QueueFull` beyond), and its thread repeatedly takes a group of up to `max_batch` chunks --
the next chunk of each waiting job in arrival order, then their following chunks, round robin -- and
has the :class:`~tts.serve.engine.Engine` make them. The thread waits up to `window_s` for a group to
fill, counted from the oldest waiting job's arrival or, for jobs that came while it was busy, from the
end of the last group (so clients that send their next request as soon as an answer arrives join the
next group instead of making a group of their own); a full group goes at once. A cancelled job leaves
the queue and its chunks not yet made are skipped.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from ..voices import Voice
from .engine import Engine, Piece
from .metrics import Metrics

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """The server holds as many requests as it may."""


@dataclass(frozen=True)
class Audio:
    index: int  # chunk index in its job
    wav: np.ndarray  # mono float32 at the model's rate


@dataclass(frozen=True)
class Failed:
    error: Exception


@dataclass(frozen=True)
class Finished:
    pass


Event = Audio | Failed | Finished


@dataclass(eq=False)
class Job:
    texts: list[str]
    voice: Voice
    generator: torch.Generator
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)  # Audio..., then Finished or Failed
    arrived: float = field(default_factory=time.monotonic)
    scheduled: int = 0  # chunks handed to the model so far
    made: int = 0  # chunks whose audio was delivered
    live: bool = True  # false once finished, failed or cancelled

    def deliver(self, event: Event) -> None:
        """From any thread: put an event on the job's queue, on its loop."""
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass


class Batcher:
    def __init__(self, engine: Engine, max_batch: int = 8, window_s: float = 0.05, max_queue: int = 64,
                 metrics: Metrics | None = None):
        if max_batch < 1 or max_queue < 1 or window_s < 0:
            raise ValueError("max_batch and max_queue must be at least 1 and the window non-negative")
        self.engine, self.max_batch, self.window_s, self.max_queue = engine, max_batch, window_s, max_queue
        self.metrics = metrics or Metrics()
        self._cond = threading.Condition()
        self._waiting: deque[Job] = deque()  # jobs with chunks not yet scheduled, in arrival order
        self._admitted: set[Job] = set()  # jobs not finished
        self._paused = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.busy_since: float | None = None  # when the current group started (None: idle)
        self._free_since = 0.0  # when the last group ended
        self.recent_job_seconds = 1.0  # moving average of a job's time with the model, for Retry-After

    # -- the event loop's side -------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        with self._cond:
            if self._stopping:
                raise QueueFull("the server is shutting down")
            if len(self._admitted) >= self.max_queue:
                raise QueueFull(f"the server already holds {self.max_queue} requests")
            self._admitted.add(job)
            self._waiting.append(job)
            self._cond.notify_all()

    def cancel(self, job: Job) -> bool:
        """Forget a job that is not finished (its client left or ran out of time); False if it had finished."""
        with self._cond:
            if job not in self._admitted:
                return False
            self._retire(job)
            return True

    @property
    def depth(self) -> int:
        """Requests admitted and not finished: waiting or being made."""
        return len(self._admitted)

    @property
    def waiting(self) -> int:
        """Requests none of whose chunks has reached the model yet."""
        with self._cond:
            return sum(1 for job in self._waiting if job.scheduled == 0)

    def retry_after(self) -> int:
        """Seconds a rejected client should wait: about one job's time per group ahead of it."""
        groups = max(1, self.depth // self.max_batch)
        return max(1, min(60, round(groups * self.recent_job_seconds)))

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def pause(self) -> None:
        """Take no new group until :meth:`resume` (the group being made is finished)."""
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tts-model", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finish the group being made, fail the jobs still waiting, and end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._cond:
            for job in list(self._admitted):
                self._retire(job)
                job.deliver(Failed(RuntimeError("the server shut down before this request was made")))

    # -- the model thread ------------------------------------------------------------------------
    def _retire(self, job: Job) -> None:
        """Caller holds the lock."""
        job.live = False
        self._admitted.discard(job)
        try:
            self._waiting.remove(job)
        except ValueError:
            pass

    def _unscheduled(self) -> int:
        return sum(len(job.texts) - job.scheduled for job in self._waiting)

    def _next_group(self) -> list[tuple[Job, int]] | None:
        """Wait for work and the batching window, then take a group; None when stopping."""
        with self._cond:
            while not self._stopping and (self._paused or not self._waiting):
                self._cond.wait()
            if self._stopping:
                return None
            # the window counts from when the model could start: the oldest job's arrival, or the end of
            # the last group when jobs came while it was busy (so those that come right after join them)
            deadline = max(self._waiting[0].arrived, self._free_since) + self.window_s
            while not self._stopping and not self._paused and self._unscheduled() < self.max_batch:
                left = deadline - time.monotonic()
                if left <= 0 or not self._waiting:
                    break
                self._cond.wait(left)
            if self._stopping or self._paused or not self._waiting:
                return [] if not self._stopping else None
            return self._take()

    def _take(self) -> list[tuple[Job, int]]:
        group: list[tuple[Job, int]] = []
        while len(group) < self.max_batch and self._waiting:
            for job in list(self._waiting):
                if len(group) == self.max_batch:
                    break
                group.append((job, job.scheduled))
                job.scheduled += 1
                if job.scheduled == len(job.texts):
                    self._waiting.remove(job)
        return group

    def _run(self) -> None:
        while True:
            group = self._next_group()
            if group is None:
                return
            if group:
                self._make(group)

    def _make(self, group: list[tuple[Job, int]]) -> None:
        self.busy_since = time.monotonic()
        jobs = {job for job, _ in group}
        self.metrics.batch(len(group), len(jobs))
        pieces = [Piece(job.texts[i], job.voice, job.generator, alive=lambda job=job: job.live, owner=job, index=i)
                  for job, i in group]
        try:
            for piece, result in self.engine.synthesize(pieces):
                job = piece.owner
                if not job.live:
                    continue
                if isinstance(result, Exception):
                    self._fail(job, result)
                    continue
                job.made += 1
                job.deliver(Audio(piece.index, result))
                if job.made == len(job.texts):
                    with self._cond:
                        self._retire(job)
                    job.deliver(Finished())
        except Exception as exc:  # noqa: BLE001 (a bug in the engine: fail this group, keep serving)
            log.exception("a group of %d chunks failed", len(group))
            for job in jobs:
                if job.live:
                    self._fail(job, exc)
        finally:
            seconds = (time.monotonic() - self.busy_since) / max(1, len(jobs))
            self.recent_job_seconds = 0.8 * self.recent_job_seconds + 0.2 * seconds
            self.busy_since = None
            self._free_since = time.monotonic()

    def _fail(self, job: Job, error: Exception) -> None:
        with self._cond:
            self._retire(job)
        job.deliver(Failed(error))
