"""The body of ``POST /v1/audio/speech``, read and checked as OpenAI's API does.

Fields: ``model`` (optional, and accepted whatever it names: this server has one model), ``input``,
``voice`` (a name, or ``{"id": NAME}``), ``response_format`` (default mp3), ``speed`` (0.25-4, default 1)
and ``stream_format`` (``audio``, the default, or ``sse``). Other fields (``instructions``, ...) are
ignored. A body that is not a JSON object, or a field of the wrong type, is 422; a missing or
unacceptable value is 400; input over the server's limit is 413.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .encoding import FORMATS
from .errors import APIError, bad_request

MIN_SPEED, MAX_SPEED = 0.25, 4.0
STREAM_FORMATS = ("audio", "sse")


@dataclass(frozen=True)
class SpeechRequest:
    input: str
    voice: str
    response_format: str = "mp3"
    speed: float = 1.0
    stream_format: str = "audio"


def malformed(message: str, param: str | None = None) -> APIError:
    return APIError(422, message, param=param, code="invalid_request")


def _typed(body: dict, name: str, kinds: tuple[type, ...], what: str, default=None):
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise malformed(f"'{name}' must be {what}", param=name)
    return value


def parse_speech(raw: bytes, max_input_chars: int) -> SpeechRequest:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise malformed(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise malformed("the body must be a JSON object")
    _typed(body, "model", (str,), "a string")
    text = _typed(body, "input", (str,), "a string")
    voice = body.get("voice")
    if isinstance(voice, dict):
        voice = voice.get("id")
        if voice is not None and not isinstance(voice, str):
            raise malformed("'voice.id' must be a string", param="voice")
    elif voice is not None and not isinstance(voice, str):
        raise malformed("'voice' must be a string or an object with an 'id'", param="voice")
    fmt = _typed(body, "response_format", (str,), "a string", "mp3")
    speed = _typed(body, "speed", (int, float), "a number", 1.0)
    stream_format = _typed(body, "stream_format", (str,), "a string", "audio")

    if text is None:
        raise bad_request("you must provide an input parameter", param="input", code="missing_required_parameter")
    if not voice:
        raise bad_request("you must provide a voice parameter", param="voice", code="missing_required_parameter")
    if len(text) > max_input_chars:
        raise APIError(413, f"input is {len(text)} characters long; this server takes at most {max_input_chars}",
                       param="input", code="string_above_max_length")
    if not text.strip():
        raise bad_request("input is empty", param="input", code="empty_input")
    if fmt not in FORMATS:
        raise bad_request(f"unknown response_format {fmt!r} (use one of {', '.join(FORMATS)})",
                          param="response_format", code="invalid_value")
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise bad_request(f"speed must be between {MIN_SPEED} and {MAX_SPEED}, not {speed}", param="speed",
                          code="invalid_value")
    if stream_format not in STREAM_FORMATS:
        raise bad_request(f"unknown stream_format {stream_format!r} (use audio or sse)", param="stream_format",
                          code="invalid_value")
    return SpeechRequest(input=text, voice=voice, response_format=fmt, speed=float(speed),
                         stream_format=stream_format)
