"""A live uvicorn on 127.0.0.1 (a free port picked by the OS) serving `tts.serve` in a thread, and an engine
whose batches wait for the test's go-ahead, for tests that must control when the model works."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from tts.serve.app import create_app
from tts.serve.config import ServerConfig
from tts.serve.encoding import Encoders
from tts.serve.engine import Engine, Piece
from tts.serve.server import running
from tts.voices import VoiceLibrary

WAIT_S = 60.0  # generous: a 2-core machine under load


class LiveServer:
    def __init__(self, app, url: str):
        self.app = app
        self.url = url
        self.port = int(url.rsplit(":", 1)[1])
        self.state = app.state.tts

    @property
    def batcher(self):
        return self.state.batcher

    @property
    def metrics(self):
        return self.state.metrics


@contextlib.contextmanager
def live_server(engine: Engine, library: VoiceLibrary, encoders: Encoders | None = None,
                **config) -> Iterator[LiveServer]:
    app = create_app(engine, ServerConfig(**config), encoders=encoders or Encoders.find(), library=library)
    with running(app) as url:
        try:
            yield LiveServer(app, url)
        finally:
            if isinstance(engine, GatedEngine):
                engine.open()  # a failed test must not leave the model thread waiting at shutdown


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Poll a state the server reaches on its own (no fixed sleeps), failing after a generous timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class GatedEngine(Engine):
    """An Engine whose every batch first waits for a permit (:meth:`allow`, :meth:`open`); it records the
    text of each piece it made."""

    def __init__(self, engine: Engine):
        super().__init__(engine.tts, engine.options)
        self.permits = threading.Semaphore(0)
        self.opened = threading.Event()
        self.made: list[str] = []
        self.batches: list[int] = []

    def allow(self, batches: int = 1) -> None:
        for _ in range(batches):
            self.permits.release()

    def open(self) -> None:
        self.opened.set()
        self.permits.release()

    def synthesize(self, pieces: list[Piece]):
        while not self.opened.is_set() and not self.permits.acquire(timeout=0.05):
            pass
        self.batches.append(len(pieces))
        for piece, result in super().synthesize(pieces):
            self.made.append(piece.text)
            yield piece, result
