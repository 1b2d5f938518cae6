"""Voice routes: list shipped and user voices, add one from uploaded clips, remove a user voice.

``POST /v1/audio/voices`` takes multipart form data: ``name`` and one or more clip files (any field name;
OpenAI's client sends ``audio_sample``), with optional ``shadow`` / ``replace`` flags meaning what
``tts voices add --shadow / --replace`` mean. The clips go through exactly the checks of
``tts voices add`` (:meth:`~tts.voices.VoiceLibrary.add`); OpenAI's ``consent`` field is ignored.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ..audio import AUDIO_EXTENSIONS
from ..errors import TTSError
from ..voices import UnknownVoice, Voice, VoiceConflict
from .errors import APIError, bad_request
from .state import ServerState, require_key

router = APIRouter(dependencies=[require_key])

MAX_CLIPS = 32
MAX_CLIP_BYTES = 32 * 1024 * 1024  # 30 s of 48 kHz stereo float WAV is 11.5 MB
MAX_UPLOAD_BYTES = 128 * 1024 * 1024
TRUE = ("1", "true", "yes", "on")


def voice_object(voice: Voice, shadows: bool = False) -> dict:
    clips = voice.clips
    created = max((int(p.stat().st_mtime) for p in clips), default=0)
    return {"id": voice.name, "object": "audio.voice", "name": voice.name, "type": "audio_sample",
            "created_at": created, "source": voice.source, "clips": len(clips), "shadows_shipped": shadows}


@router.get("/v1/audio/voices")
async def list_voices(request: Request) -> dict:
    library = request.app.state.tts.library

    def listing() -> list[dict]:
        return [voice_object(v, v.source == "user" and library.is_shipped(v.name)) for v in library.all()]

    return {"object": "list", "data": await run_in_threadpool(listing)}


def _flag(value) -> bool:
    return isinstance(value, str) and value.strip().lower() in TRUE


def _clip_name(upload: UploadFile, index: int) -> str:
    name = Path(upload.filename or "").name
    suffix = Path(name).suffix.lower()
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(name).stem)[:48] or f"clip{index}"
    return f"{stem}{suffix if suffix in AUDIO_EXTENSIONS else ''}"


@router.post("/v1/audio/voices")
async def add_voice(request: Request) -> dict:
    state: ServerState = request.app.state.tts
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        raise APIError(413, f"the upload is larger than {MAX_UPLOAD_BYTES // 2**20} MiB", code="request_too_large")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise bad_request("send the voice as multipart/form-data: a 'name' field and one or more clip files")
    try:
        form = await request.form(max_files=MAX_CLIPS, max_fields=64)
    except Exception as exc:  # python-multipart's and Starlette's parse errors
        raise bad_request(f"cannot read the form: {exc}") from None
    try:
        name = form.get("name")
        if not isinstance(name, str) or not name.strip():
            raise bad_request("you must provide a name for the voice", param="name", code="missing_required_parameter")
        uploads = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        if not uploads:
            raise bad_request("give at least one clip file", param="audio_sample", code="missing_required_parameter")
        for upload in uploads:
            if upload.size is not None and upload.size > MAX_CLIP_BYTES:
                raise APIError(413, f"clip {upload.filename!r} is larger than {MAX_CLIP_BYTES // 2**20} MiB",
                               param="audio_sample", code="file_too_large")
        shadow, replace = _flag(form.get("shadow")), _flag(form.get("replace"))
        with tempfile.TemporaryDirectory(prefix="tts-upload-") as scratch:
            paths = []
            for i, upload in enumerate(uploads):
                path = Path(scratch) / f"{i:02d}" / _clip_name(upload, i)
                path.parent.mkdir()
                path.write_bytes(await upload.read())
                paths.append(path)
            try:
                voice = await run_in_threadpool(state.library.add, name.strip(), paths, shadow=shadow,
                                                replace=replace)
            except VoiceConflict as exc:
                raise APIError(409, _without_scratch(str(exc), scratch), param="name", code="voice_exists") from None
            except TTSError as exc:
                raise bad_request(_without_scratch(str(exc), scratch), code="invalid_voice") from None
    finally:
        await form.close()
    return voice_object(voice, state.library.is_shipped(voice.name))


def _without_scratch(message: str, scratch: str) -> str:
    """A clip's error names it by its upload name, not by the server's scratch path."""
    return re.sub(re.escape(scratch) + r"/\d\d/", "", message)


@router.delete("/v1/audio/voices/{name}")
async def delete_voice(request: Request, name: str) -> dict:
    library = request.app.state.tts.library
    try:
        await run_in_threadpool(library.remove, name)
    except VoiceConflict as exc:
        raise APIError(403, str(exc), param="name", code="shipped_voice") from None
    except (UnknownVoice, TTSError) as exc:
        raise APIError(404, str(exc), param="name", code="voice_not_found") from None
    return {"id": name, "object": "audio.voice.deleted", "deleted": True}
