"""A live uvicorn on 127.0.0.1 (a free port picked by the OS) serving `tts.serve` in a thread, and an engine
whose batches wait for the test's go-ahead, for tests that must control when the model works."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import uvicorn

from tts.serve.app import create_app
from tts.serve.config import ServerConfig
from tts.serve.encoding import Encoders
from tts.serve.engine import Engine, Piece
from tts.voices import VoiceLibrary

WAIT_S = 60.0  # generous: a 2-core machine under load


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config):
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets=None):
        await super().startup(sockets)
        self.ready.set()


class LiveServer:
    def __init__(self, app, sock: socket.socket):
        self.app = app
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
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
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=10))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        if not server.ready.wait(WAIT_S):
            raise RuntimeError("the test server did not start")
        yield LiveServer(app, sock)
    finally:
        server.should_exit = True
        thread.join(WAIT_S)
        sock.close()


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
