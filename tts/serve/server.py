"""Run the server: load the model once, then uvicorn on the configured address until SIGTERM or Ctrl-C.

On SIGTERM uvicorn stops accepting connections and waits for the requests in flight (up to the request
time limit) before the model thread is stopped and the process exits.
"""

from __future__ import annotations

import logging

import python_multipart  # noqa: F401  (voice uploads: fail here, not on the first upload, when it is missing)
import uvicorn

from .app import create_app, load_engine
from .config import ServerConfig

SHUTDOWN_GRACE_S = 5.0  # beyond the request time limit, for the last bytes to go out


def serve(config: ServerConfig, log_level: str = "info") -> None:
    engine = load_engine(config)
    app = create_app(engine, config)
    settings = uvicorn.Config(app, host=config.host, port=config.port, log_level=log_level, lifespan="on",
                              timeout_graceful_shutdown=config.request_timeout_s + SHUTDOWN_GRACE_S)
    options = engine.options
    logging.getLogger("uvicorn.error").info(
        "model %s (%d Hz) on %s: %d candidates, %d diffusion steps, batches of up to %d chunks, queue of %d%s",
        engine.model_id, engine.sample_rate, engine.tts.device, options.candidates, options.diffusion_steps,
        config.max_batch, config.max_queue, ", API key required" if config.api_key else "")
    uvicorn.Server(settings).run()
