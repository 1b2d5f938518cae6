"""``POST /v1/audio/speech``: check the request, queue its chunks for the model, send the audio as it comes.

The response starts once the first chunk's audio exists, so anything that goes wrong before (an unknown
voice, nothing to say, a full queue, a failure in the model, the time limit) is a JSON error with its
status. Streaming formats then send each chunk as it is made (chunked transfer); FLAC, and mp3 without
ffmpeg, are sent whole. A client that leaves, or a request past the time limit, takes its unfinished chunks
out of the queue; past the first byte, the time limit cuts the connection.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ..audio import change_tempo
from ..errors import TTSError
from ..text.split import Chunk
from ..voices import UnknownVoice
from .batching import Audio, Failed, Finished, Job, QueueFull
from .encoding import MEDIA_TYPES, Encoder, EncoderMissing
from .errors import SERVER_ERROR, APIError, bad_request
from .schema import SpeechRequest, parse_speech
from .state import ServerState, require_key

log = logging.getLogger(__name__)

router = APIRouter()
BODY_SLACK = 64 * 1024  # bytes of JSON around the input text
BYTES_PER_CHAR = 6  # a JSON-escaped character (\uXXXX) at most


class ClientGone(Exception):
    pass


class TimeLimit(Exception):
    pass


class Watch:
    """Waits for a job's next event while noticing a client that disconnects and the request's deadline."""

    def __init__(self, request: Request, deadline: float):
        self.deadline = deadline
        self.gone = asyncio.ensure_future(self._watch(request.receive))

    @staticmethod
    async def _watch(receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    async def next(self, job: Job):
        if not job.events.empty():
            return job.events.get_nowait()
        getter = asyncio.ensure_future(job.events.get())
        try:
            done, _ = await asyncio.wait({getter, self.gone}, timeout=max(0.0, self.deadline - time.monotonic()),
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getter.done():
                getter.cancel()
        if getter in done:
            return getter.result()
        if self.gone in done:
            raise ClientGone()
        raise TimeLimit()

    def close(self) -> None:
        self.gone.cancel()


@dataclass
class Speech:
    """One request on its way out: its job, chunks, encoder and the figures it adds to the metrics."""

    state: ServerState
    request: SpeechRequest
    job: Job
    chunks: list[Chunk]
    started: float
    encoder: Encoder | None = None
    first_audio: bool = False
    outcome: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)  # one encoder call at a time

    @property
    def deadline(self) -> float:
        return self.started + self.state.config.request_timeout_s

    def pcm_for(self, event: Audio) -> np.ndarray:
        """The chunk at the requested speed, with the pause that follows it."""
        if not self.first_audio:
            self.first_audio = True
            self.state.metrics.speech_first_audio(time.monotonic() - self.started)
        wav = change_tempo(event.wav, self.request.speed)
        if event.index + 1 < len(self.chunks):
            options = self.state.engine.options
            pause = options.paragraph_pause if self.chunks[event.index].paragraph_end else options.sentence_pause
            wav = np.concatenate([wav, np.zeros(int(pause / self.request.speed * self.state.engine.sample_rate),
                                                np.float32)])
        self.state.metrics.audio_sent(len(wav) / self.state.engine.sample_rate)
        return wav

    async def encode(self, event: Audio) -> bytes:
        def feed() -> bytes:
            wav = self.pcm_for(event)
            with self.lock:
                return self.encoder.feed(wav)

        return await run_in_threadpool(feed)

    async def encode_end(self) -> bytes:
        def finish() -> bytes:
            with self.lock:
                return self.encoder.finish()

        return await run_in_threadpool(finish)

    def release_encoder(self) -> None:
        """Close the encoder on a worker thread once any call in progress is over (never blocks the loop)."""
        encoder, self.encoder = self.encoder, None
        if encoder is None:
            return

        def close() -> None:
            encoder.abort()
            with self.lock:
                encoder.close()

        asyncio.get_running_loop().run_in_executor(None, close)

    def frame(self, data: bytes) -> bytes:
        """Bytes as they go on the wire: raw, or one server-sent event carrying them."""
        if self.request.stream_format != "sse" or not data:
            return data
        event = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode("ascii")}
        return f"data: {json.dumps(event)}\n\n".encode()

    def done_event(self) -> bytes:
        if self.request.stream_format != "sse":
            return b""
        chars = len(self.request.input)
        usage = {"input_tokens": chars, "output_tokens": 0, "total_tokens": chars}
        return f"data: {json.dumps({'type': 'speech.audio.done', 'usage': usage})}\n\n".encode()

    def headers(self) -> dict[str, str]:
        return {"X-Sample-Rate": str(self.encoder.sample_rate), "Cache-Control": "no-store"}

    @property
    def media_type(self) -> str:
        return "text/event-stream" if self.request.stream_format == "sse" else MEDIA_TYPES[self.request.response_format]

    def finish(self, outcome: str) -> None:
        """Record the outcome once; take the job out of the queue and release the encoder."""
        if self.outcome is not None:
            return
        self.outcome = outcome
        self.state.batcher.cancel(self.job)
        self.release_encoder()
        self.state.metrics.speech_outcome(outcome)
        if outcome == "ok":
            self.state.metrics.speech_done(time.monotonic() - self.started)


def model_error(error: Exception) -> APIError:
    if isinstance(error, TTSError):
        return APIError(400, str(error), code="synthesis_failed")
    log.error("speech synthesis failed", exc_info=error)
    return APIError(500, f"speech synthesis failed ({type(error).__name__}: {error})", SERVER_ERROR)


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"the request body is larger than {limit} bytes", code="request_too_large")
    parts, size = [], 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise APIError(413, f"the request body is larger than {limit} bytes", code="request_too_large")
        parts.append(part)
    return b"".join(parts)


@router.post("/v1/audio/speech", dependencies=[require_key])
async def create_speech(request: Request):
    state: ServerState = request.app.state.tts
    config = state.config
    started = time.monotonic()
    raw = await read_body(request, BYTES_PER_CHAR * config.max_input_chars + BODY_SLACK)
    speech_request = parse_speech(raw, config.max_input_chars)
    try:
        voice = state.library.get(speech_request.voice)
    except (UnknownVoice, TTSError) as exc:  # an invalid name is no voice either
        raise APIError(404, str(exc), param="voice", code="voice_not_found") from None
    try:
        state.encoders.check(speech_request.response_format)
    except EncoderMissing as exc:
        raise bad_request(str(exc), param="response_format", code="unsupported_format") from None
    try:
        chunks = await run_in_threadpool(state.engine.split, speech_request.input)
    except TTSError as exc:
        raise bad_request(str(exc), param="input", code="nothing_to_say") from None
    job = Job([c.text for c in chunks], voice, state.engine.make_generator(), asyncio.get_running_loop())
    try:
        state.batcher.submit(job)
    except QueueFull as exc:
        state.metrics.speech_outcome("rejected")
        raise APIError(503, f"server busy: {exc}; retry later", SERVER_ERROR, code="queue_full",
                       headers={"Retry-After": str(state.batcher.retry_after())}) from None
    speech = Speech(state, speech_request, job, chunks, started)
    watch = Watch(request, speech.deadline)
    try:
        first = await watch.next(job)
        if isinstance(first, Failed):
            raise model_error(first.error)
        try:
            speech.encoder = await run_in_threadpool(state.encoders.open, speech_request.response_format,
                                                     state.engine.sample_rate)
        except TTSError as exc:
            raise encoding_error(exc) from None
        if speech.encoder.streams or speech_request.stream_format == "sse":
            try:
                opening = await speech.encode(first)  # a broken encoder is still a JSON error here
            except Exception as exc:  # noqa: BLE001
                raise encoding_error(exc) from None
            return SpeechResponse(speech, opening)
        headers = speech.headers()
        body = await whole(speech, first, watch)
        speech.finish("ok")
        return Response(body, media_type=speech.media_type, headers=headers)
    except ClientGone:
        speech.finish("cancelled")
        return Response(status_code=499)
    except TimeLimit:
        speech.finish("timeout")
        raise APIError(504, f"the request took longer than this server's limit of {config.request_timeout_s:g} s",
                       SERVER_ERROR, code="timeout") from None
    except BaseException:
        speech.finish("error")
        raise
    finally:
        watch.close()


def encoding_error(error: Exception) -> APIError:
    if not isinstance(error, TTSError):
        log.error("encoding failed", exc_info=error)
    return APIError(500, f"cannot encode the audio: {error}", SERVER_ERROR, code="encoding_failed")


async def whole(speech: Speech, event, watch: Watch) -> bytes:
    """Every chunk, then the encoder's whole output (formats that cannot stream)."""
    parts = []
    try:
        while not isinstance(event, Finished):
            if isinstance(event, Failed):
                raise model_error(event.error)
            parts.append(await speech.encode(event))
            event = await watch.next(speech.job)
        parts.append(await speech.encode_end())
    except (APIError, ClientGone, TimeLimit):
        raise
    except Exception as exc:  # noqa: BLE001 (libsndfile's and ffmpeg's failures)
        raise encoding_error(exc) from None
    return b"".join(parts)


class StreamBroken(Exception):
    """The stream cannot go on (time limit, a failure in the model or encoder): the connection is cut."""


class SpeechResponse(StreamingResponse):
    """Audio chunk by chunk as the model makes them; whatever ends it, the job and encoder are released."""

    def __init__(self, speech: Speech, opening: bytes):
        self.speech = speech
        super().__init__(self._chunks(opening), media_type=speech.media_type, headers=speech.headers())

    async def _chunks(self, opening: bytes):
        speech = self.speech
        yield speech.frame(opening)
        while True:
            try:
                event = await asyncio.wait_for(speech.job.events.get(), max(0.0, speech.deadline - time.monotonic()))
            except TimeoutError:
                speech.finish("timeout")
                raise StreamBroken("past the request time limit") from None
            if isinstance(event, Finished):
                break
            if isinstance(event, Failed):
                model_error(event.error)  # logs it
                raise StreamBroken(f"synthesis failed: {event.error}")
            try:
                data = await speech.encode(event)
            except Exception as exc:  # noqa: BLE001
                raise StreamBroken(encoding_error(exc).message) from None
            yield speech.frame(data)
        try:
            tail = await speech.encode_end()
        except Exception as exc:  # noqa: BLE001
            raise StreamBroken(encoding_error(exc).message) from None
        yield speech.frame(tail) + speech.done_event()
        speech.finish("ok")

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except* StreamBroken as group:
            log.warning("speech stream cut off: %s", group.exceptions[0])
            self.speech.finish("error")
        finally:
            self.speech.finish("cancelled")  # no-op when already finished: the client left mid-stream
