"""`tts serve`: an OpenAI-compatible speech server (FastAPI + uvicorn) with dynamic batching.

Modules, one job each: ``config`` (settings), ``engine`` (the model side: a group of chunks from any
requests in one GPT batch), ``batching`` (the bounded queue and the model thread), ``encoding``
(response formats), ``schema`` (the speech request), ``speech`` and ``voices_api`` (routes), ``errors``
(OpenAI-style error bodies), ``metrics`` (Prometheus text), ``state`` (what routes share, the API key),
``app`` (the application), ``server`` (uvicorn). Needs the ``serve`` extra: ``pip install .[serve]``.
"""

from .config import ServerConfig

__all__ = ["ServerConfig"]
