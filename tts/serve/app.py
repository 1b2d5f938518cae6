"""The FastAPI application: routes, error bodies, the API key, request counting, and the model thread's life.

    engine = load_engine(config)            # the model, loaded once per process
    app = create_app(engine, config)        # serve it with uvicorn (tts.serve.server.serve does)
"""

from __future__ import annotations

import contextlib
import time

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse

from ..pipeline import TextToSpeech, resolve_device
from ..voices import VoiceLibrary
from . import errors, metrics, speech, voices_api
from .batching import Batcher
from .config import ServerConfig
from .encoding import Encoders
from .engine import Engine
from .state import ServerState, require_key

MODEL_ALIASES = ("tts-1", "tts-1-hd")  # OpenAI's names, which clients send: all mean this server's model


def load_engine(config: ServerConfig) -> Engine:
    """Load the model named by `config` and fix the generation options (TTSError if either is wrong)."""
    config.validate()
    resolve_device(config.device)
    tts = TextToSpeech(config.model_dir, device=config.device, precision=config.precision)
    return Engine(tts, config.options(tts.models.card.presets))


def group_size(config: ServerConfig, engine: Engine) -> int:
    """Chunks per batch: `max_batch`, or fewer if their candidates would not fit in one GPT call of the
    engine's rows (more would share nothing and only make the first wait for the others)."""
    options = engine.options
    return min(config.max_batch, max(1, options.batch_size // options.candidates))


class CountRequests:
    """ASGI middleware: every HTTP answer counted by route and status."""

    def __init__(self, app, figures: metrics.Metrics):
        self.app, self.figures = app, figures

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            self.figures.count_request(getattr(route, "path", "unmatched"), status[0])


def create_app(engine: Engine, config: ServerConfig | None = None, encoders: Encoders | None = None,
               library: VoiceLibrary | None = None) -> FastAPI:
    config = (config or ServerConfig()).validate()
    if encoders is None:
        encoders = Encoders.find() if config.ffmpeg == "auto" else Encoders.usable(config.ffmpeg)
    figures = metrics.Metrics()
    batcher = Batcher(engine, max_batch=group_size(config, engine), window_s=config.batch_window_ms / 1000,
                      max_queue=config.max_queue, metrics=figures)
    state = ServerState(config, engine, batcher, encoders, library or VoiceLibrary(config.voices_dir), figures)
    figures.add_gauge("tts_queue_depth", "Speech requests held: waiting or being made.", lambda: batcher.depth)
    figures.add_gauge("tts_queue_waiting", "Speech requests none of whose chunks has reached the model yet.",
                      lambda: batcher.waiting)
    figures.add_gauge("tts_model_busy", "1 while the model is making a batch.",
                      lambda: int(batcher.busy_since is not None))

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        state.started = time.time()
        batcher.start()
        try:
            yield
        finally:
            state.draining = True
            batcher.stop()

    app = FastAPI(title="tts", summary="OpenAI-compatible text to speech", lifespan=lifespan)
    app.state.tts = state
    errors.install(app)
    app.add_middleware(CountRequests, figures=figures)
    app.include_router(speech.router)
    app.include_router(voices_api.router)

    @app.get("/health")
    async def health() -> JSONResponse:
        ready = batcher.alive and not state.draining
        body = {"status": "ok" if ready else "unavailable", "live": True, "ready": ready, "model": engine.model_id,
                "sample_rate": engine.sample_rate, "queue_depth": batcher.depth, "max_queue": config.max_queue}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", dependencies=[require_key])
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(figures.render(), media_type=metrics.CONTENT_TYPE)

    def model_objects() -> list[dict]:
        return [{"id": name, "object": "model", "created": int(state.started), "owned_by": "tts"}
                for name in (engine.model_id, *MODEL_ALIASES)]

    @app.get("/v1/models", dependencies=[require_key])
    async def list_models() -> dict:
        return {"object": "list", "data": model_objects()}

    @app.get("/v1/models/{model_id}", dependencies=[require_key])
    async def get_model(model_id: str) -> dict:
        for model in model_objects():
            if model["id"] == model_id:
                return model
        raise errors.APIError(404, f"the model {model_id!r} does not exist", param="model", code="model_not_found")

    return app
