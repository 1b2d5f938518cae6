"""Run the server: load the model once, then uvicorn on the configured address until SIGTERM or Ctrl-C.

On SIGTERM uvicorn stops accepting connections and waits for the requests in flight (up to the request
time limit) before the model thread is stopped and the process exits with status 0.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import sys
import threading
from collections.abc import Iterator

import python_multipart  # noqa: F401  (voice uploads: fail here, not on the first upload, when it is missing)
import uvicorn

from ..errors import TTSError
from .app import create_app, load_engine
from .config import ServerConfig

SHUTDOWN_GRACE_S = 5.0  # beyond the request time limit, for the last bytes to go out


def check_address(host: str, port: int) -> None:
    """TTSError now, before the model is loaded, if the address cannot be listened on."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as exc:
        raise TTSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def serve(config: ServerConfig, log_level: str = "info") -> None:
    check_address(config.host, config.port)
    engine = load_engine(config)
    app = create_app(engine, config)
    settings = uvicorn.Config(app, host=config.host, port=config.port, log_level=log_level, lifespan="on",
                              timeout_graceful_shutdown=config.request_timeout_s + SHUTDOWN_GRACE_S)
    options = engine.options
    logging.getLogger("uvicorn.error").info(
        "model %s (%d Hz) on %s: %d candidates, %d diffusion steps; batches of up to %d chunks, %d GPT rows at "
        "once; queue of %d%s", engine.model_id, engine.sample_rate, engine.tts.device, options.candidates,
        options.diffusion_steps, app.state.tts.batcher.max_batch, options.batch_size, config.max_queue,
        ", API key required" if config.api_key else "")
    server = uvicorn.Server(settings)
    if threading.current_thread() is not threading.main_thread():
        server.run()
        return
    # uvicorn handles SIGTERM itself (a graceful shutdown), then raises it again for the handler found
    # before it: this one makes that a normal exit.
    previous = signal.signal(signal.SIGTERM, _exit_normally)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_normally(_signum, _frame) -> None:
    sys.exit(0)


class _Server(uvicorn.Server):
    """uvicorn that says when it is listening."""

    def __init__(self, config: uvicorn.Config):
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets=None):
        await super().startup(sockets)
        self.ready.set()


@contextlib.contextmanager
def running(app, host: str = "127.0.0.1", log_level: str = "warning", start_timeout: float = 60.0) -> Iterator[str]:
    """Serve `app` in a background thread on a port of `host` the system picks; yields the base URL.
    On leaving, the server shuts down gracefully (requests in flight are finished)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    server = _Server(uvicorn.Config(app, log_level=log_level, lifespan="on", timeout_graceful_shutdown=30))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    try:
        if not server.ready.wait(start_timeout):
            raise TTSError("the server did not start")
        port = sock.getsockname()[1]
        yield f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(start_timeout)
        sock.close()
