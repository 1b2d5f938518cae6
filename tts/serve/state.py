"""What every route shares (the app's ``state.tts``), and the API-key check."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import Depends, Request

from ..voices import VoiceLibrary
from .batching import Batcher
from .config import ServerConfig
from .encoding import Encoders
from .engine import Engine
from .errors import APIError
from .metrics import Metrics


@dataclass
class ServerState:
    config: ServerConfig
    engine: Engine
    batcher: Batcher
    encoders: Encoders
    library: VoiceLibrary
    metrics: Metrics
    started: float = 0.0  # time.time() when the server started
    draining: bool = False  # shutting down: finishing what it holds, taking nothing new


def check_key(request: Request) -> None:
    key = request.app.state.tts.config.api_key
    if key is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise APIError(401, "missing API key: send the header 'Authorization: Bearer KEY'", code="missing_api_key",
                       headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(given.strip().encode(), key.encode()):
        raise APIError(401, "incorrect API key", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


require_key = Depends(check_key)
