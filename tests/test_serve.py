"""`tts serve` against a live uvicorn on 127.0.0.1 with the tiny random model: the official openai client,
streaming, every format, concurrent load and batching, bad input, a full queue, clients that leave, time
limits, failures that stay in their request, voices, the API key, health and metrics."""

from __future__ import annotations

import io
import json
import shutil
import socket
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf

from tests.serving import GatedEngine, live_server, wait_until
from tests.tiny import make_voice, speech_like
from tts import audio
from tts.pipeline import TextToSpeech
from tts.sampling.options import Options
from tts.serve.encoding import Encoders
from tts.serve.engine import Engine
from tts.voices import VoiceLibrary

QUICK = Options(candidates=2, batch_size=16, diffusion_steps=2, max_mel_tokens=16)
RATE = 24000  # the tiny Tortoise-layout model's output rate
CHUNK_SAMPLES = 16 * 4 * RATE // 22050 * 256  # random weights never stop: max_mel_tokens codes per chunk
THREE_CHUNKS = "The first paragraph.\n\nThe second paragraph.\n\nThe third paragraph."
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")


@pytest.fixture(scope="module")
def engine(tiny_tortoise_dir, tmp_path_factory):
    return Engine(TextToSpeech(tiny_tortoise_dir, cache=tmp_path_factory.mktemp("cache")), QUICK)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    user = tmp_path_factory.mktemp("served-voices")
    make_voice(user, "alice")
    make_voice(user, "bob", seconds=2.5)
    return VoiceLibrary(user)


@pytest.fixture(scope="module")
def server(engine, library):
    with live_server(engine, library) as live:
        yield live


@pytest.fixture
def gated(engine):
    gate = GatedEngine(engine)
    yield gate
    gate.open()  # never leave the model thread waiting


def client(live, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.url + "/v1", api_key=kwargs.pop("api_key", "unused"), max_retries=0, **kwargs)


def speech(live, **fields) -> httpx.Response:
    body = {"model": "tts-1", "input": "Hello there.", "voice": "alice", "response_format": "wav", **fields}
    return httpx.post(live.url + "/v1/audio/speech", json=body, timeout=60)


def read_wav(data: bytes) -> np.ndarray:
    wav, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == RATE
    return wav


def assert_error(response: httpx.Response, status: int, param: str | None = None, fragment: str = "") -> dict:
    assert response.status_code == status, response.text[:300]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and error["type"]
    assert error["param"] == param
    assert fragment in error["message"]
    return error


def in_thread(fn, *args, **kwargs) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run():
        try:
            out["result"] = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 (handed to the test)
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


# -- the openai client ---------------------------------------------------------------------------


def test_openai_client_create(server):
    result = client(server).audio.speech.create(model="tts-1", voice="alice", input="Hello there.",
                                                response_format="wav")
    wav = read_wav(result.content)
    assert len(wav) == CHUNK_SAMPLES and np.abs(wav).max() > 0


def test_openai_client_default_format_is_mp3(server):
    result = client(server).audio.speech.create(model="tts-1", voice={"id": "alice"}, input="Hello there.",
                                                extra_body={"instructions": "ignored", "unknown_field": 1})
    wav, rate = sf.read(io.BytesIO(result.content))
    assert rate == RATE and abs(len(wav) / rate - CHUNK_SAMPLES / RATE) < 0.15


def test_openai_client_streaming_response(server):
    with client(server).audio.speech.with_streaming_response.create(
            model="tts-1", voice="bob", input=THREE_CHUNKS, response_format="pcm") as response:
        assert response.headers["content-type"] == "audio/pcm"
        assert response.headers["x-sample-rate"] == str(RATE)
        assert "content-length" not in response.headers  # chunked transfer
        data = b"".join(response.iter_bytes())
    pause = int(0.6 * RATE)  # paragraph pauses
    assert len(data) == 2 * (3 * CHUNK_SAMPLES + 2 * pause)


def test_audio_is_sent_as_each_chunk_is_made(gated, library):
    first = 2 * (CHUNK_SAMPLES + int(0.6 * RATE))  # the first chunk and its pause
    with live_server(gated, library, max_batch=1) as live:
        gated.allow(1)  # one batch: the first chunk only (the response starts with it)
        with httpx.stream("POST", live.url + "/v1/audio/speech", timeout=60,
                          json={"model": "tts-1", "input": THREE_CHUNKS, "voice": "alice",
                                "response_format": "pcm"}) as response:
            parts = response.iter_raw()
            received = next(parts)
            while len(received) < first:
                received += next(parts)
            assert len(received) == first
            assert gated.made == ["The first paragraph."] and live.batcher.depth == 1
            gated.open()
            received += b"".join(parts)
        assert len(received) == 2 * (3 * CHUNK_SAMPLES + 2 * int(0.6 * RATE))


def test_sse_stream_format(server):
    response = speech(server, response_format="pcm", stream_format="sse")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[len("data: "):]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert [e["type"] for e in events[-1:]] == ["speech.audio.done"]
    import base64

    pcm = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    assert len(pcm) == 2 * CHUNK_SAMPLES


# -- formats -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt, media", [("wav", "audio/wav"), ("flac", "audio/flac"), ("opus", "audio/opus"),
                                        ("mp3", "audio/mpeg")])
def test_formats_decode(server, fmt, media):
    response = speech(server, response_format=fmt)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media
    wav, rate = sf.read(io.BytesIO(response.content))
    assert rate == RATE and abs(len(wav) / rate - CHUNK_SAMPLES / RATE) < 0.15


def test_pcm_is_raw_16_bit_at_24_khz(server):
    response = speech(server, response_format="pcm")
    assert response.status_code == 200 and response.headers["x-sample-rate"] == "24000"
    assert len(response.content) == 2 * CHUNK_SAMPLES


@needs_ffmpeg
def test_aac_through_ffmpeg(server, tmp_path):
    response = speech(server, response_format="aac")
    assert response.status_code == 200 and response.headers["content-type"] == "audio/aac"
    path = tmp_path / "out.aac"
    path.write_bytes(response.content)
    decoded = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1", "-ar", "24000", "-"],
                             capture_output=True, check=True).stdout
    assert abs(len(decoded) / 2 / RATE - CHUNK_SAMPLES / RATE) < 0.15


def test_without_ffmpeg_mp3_is_whole_and_aac_is_refused(engine, library):
    with live_server(engine, library, encoders=Encoders(ffmpeg=None)) as live:
        response = speech(live, response_format="mp3")
        assert response.status_code == 200 and "content-length" in response.headers
        wav, rate = sf.read(io.BytesIO(response.content))
        assert rate == RATE and abs(len(wav) / rate - CHUNK_SAMPLES / RATE) < 0.15
        assert_error(speech(live, response_format="aac"), 400, "response_format", "needs ffmpeg")


def test_an_ffmpeg_that_does_not_run_is_no_ffmpeg(engine, library):
    with live_server(engine, library, encoders=Encoders.usable(shutil.which("false"))) as live:
        assert_error(speech(live, response_format="aac"), 400, "response_format", "needs ffmpeg")
        assert speech(live, response_format="mp3").status_code == 200


def test_an_encoder_failing_after_the_first_byte_cuts_the_stream(engine, library, tmp_path):
    fake = tmp_path / "ffmpeg"  # runs, reads all its input, then fails
    fake.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = -version ] && exit 0; done\n'
                    'cat > /dev/null\necho "simulated failure" >&2\nexit 1\n')
    fake.chmod(0o755)
    with live_server(engine, library, encoders=Encoders.usable(str(fake))) as live:
        with pytest.raises(httpx.RemoteProtocolError):  # never a short file that looks complete
            speech(live, response_format="aac", input=THREE_CHUNKS)
        wait_until(lambda: live.batcher.depth == 0, "the job to be released")
        assert 'tts_speech_requests_total{outcome="error"} 1' in live.metrics.render()
        assert speech(live, response_format="wav").status_code == 200


def test_speed_changes_the_length(server):
    normal = len(read_wav(speech(server).content))
    fast = len(read_wav(speech(server, speed=2.0).content))
    slow = len(read_wav(speech(server, speed=0.5).content))
    assert abs(fast - normal / 2) <= 2 and abs(slow - normal * 2) <= 2


# -- load ----------------------------------------------------------------------------------------


def test_sixteen_concurrent_requests_succeed(server):
    api = client(server)

    def one(i: int) -> np.ndarray:
        result = api.audio.speech.create(model="tts-1", voice="alice" if i % 2 else "bob",
                                         input=f"Request number {i}.", response_format="wav")
        return read_wav(result.content)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(16)))
    assert all(len(wav) == CHUNK_SAMPLES and np.isfinite(wav).all() and np.abs(wav).max() > 0 for wav in results)


def test_requests_waiting_together_share_a_batch(gated, library):
    with live_server(gated, library, max_batch=8) as live:
        live.batcher.pause()
        threads = [in_thread(speech, live, input=f"Request number {i}.", voice="alice" if i % 2 else "bob")
                   for i in range(12)]
        wait_until(lambda: live.batcher.depth == 12, "12 requests to be queued")
        gated.open()
        live.batcher.resume()
        for thread, out in threads:
            thread.join(60)
            assert out["result"].status_code == 200
            assert len(read_wav(out["result"].content)) == CHUNK_SAMPLES
        assert sorted(gated.batches, reverse=True) == [8, 4]
        assert "tts_batch_requests_bucket{le=\"4\"} 1" in live.metrics.render()


def test_a_request_sounds_the_same_in_a_batch_as_alone(engine, library):
    """With greedy sampling and a fixed seed nothing random is left: batch-mates change nothing."""
    import dataclasses

    greedy = Engine(engine.tts, dataclasses.replace(QUICK, top_k=1, seed=7))
    with live_server(greedy, library, max_batch=8) as live:
        alone = read_wav(speech(live, input="Hello there.").content)
        live.batcher.pause()
        others = [in_thread(speech, live, input=text, voice=voice) for text, voice in
                  (("A much longer sentence than the one we compare.", "bob"), ("Short.", "alice"),
                   ("Hello there.", "alice"), ("Something else entirely, said by Bob.", "bob"))]
        wait_until(lambda: live.batcher.depth == 4, "four requests to be queued")
        live.batcher.resume()
        for thread, _ in others:
            thread.join(60)
        together = read_wav(others[2][1]["result"].content)
        batches = live.metrics.batch_requests
        assert (batches.count, batches.sum) == (2, 5)  # the lone request, then the four together
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_a_long_input_is_split_as_speak_splits_it(server, engine):
    text = " ".join(["This sentence is long enough that several of them will not fit in one chunk of text."] * 20)
    chunks = engine.split(text)
    assert len(chunks) > 1
    response = speech(server, input=text, response_format="pcm")
    assert len(response.content) == 2 * (len(chunks) * CHUNK_SAMPLES + (len(chunks) - 1) * int(0.25 * RATE))


def test_full_queue_is_refused_with_retry_after(gated, library):
    with live_server(gated, library, max_queue=2, max_batch=1) as live:
        waiting = [in_thread(speech, live, input=f"Waiting {i}.") for i in range(2)]
        wait_until(lambda: live.batcher.depth == 2, "two requests to be held")
        refused = speech(live)
        error = assert_error(refused, 503, None, "busy")
        assert error["code"] == "queue_full" and int(refused.headers["retry-after"]) >= 1
        with pytest.raises(openai.InternalServerError):  # what an openai client sees (it retries these)
            client(live).audio.speech.create(model="tts-1", voice="alice", input="Hi.")
        gated.open()
        for thread, out in waiting:
            thread.join(60)
            assert out["result"].status_code == 200
        assert "tts_speech_requests_total{outcome=\"rejected\"} 2" in live.metrics.render()


def raw_request(port: int, body: dict) -> socket.socket:
    payload = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    return sock


def test_a_client_that_leaves_before_its_audio_is_taken_out_of_the_queue(gated, library):
    with live_server(gated, library) as live:
        sock = raw_request(live.port, {"model": "tts-1", "input": "Nobody will hear this.", "voice": "alice"})
        wait_until(lambda: live.batcher.depth == 1, "the request to be queued")
        sock.close()
        wait_until(lambda: live.batcher.depth == 0, "the request to be cancelled")
        gated.open()
        assert speech(live, input="Somebody hears this.").status_code == 200
        assert gated.made == ["Somebody hears this."]
        assert 'tts_speech_requests_total{outcome="cancelled"} 1' in live.metrics.render()


def test_a_client_that_leaves_mid_stream_cancels_the_rest(gated, library):
    with live_server(gated, library, max_batch=1) as live:
        gated.allow(1)
        with httpx.stream("POST", live.url + "/v1/audio/speech", timeout=60,
                          json={"model": "tts-1", "input": THREE_CHUNKS, "voice": "alice",
                                "response_format": "pcm"}) as response:
            next(response.iter_raw())
        wait_until(lambda: live.batcher.depth == 0, "the stream to be cancelled")
        gated.open()
        assert speech(live, input="Next.").status_code == 200
        assert gated.made == ["The first paragraph.", "Next."]


def test_request_time_limit(gated, library):
    with live_server(gated, library, request_timeout_s=0.5) as live:
        error = assert_error(speech(live), 504)
        assert error["code"] == "timeout" and live.batcher.depth == 0
        gated.open()
        assert speech(live, input="In time.").status_code == 200
        assert gated.made == ["In time."]


def test_a_failure_stays_in_its_request(gated, library, monkeypatch, tmp_path):
    broken = library.user_dir / "broken"
    broken.mkdir(exist_ok=True)
    (broken / "clip.wav").write_bytes(b"not audio at all")
    real = gated.tts.sample_candidates

    def poisoned(texts, *args, **kwargs):
        if any("poison" in t.lower() for t in texts):
            raise RuntimeError("the model broke")
        return real(texts, *args, **kwargs)

    monkeypatch.setattr(gated.tts, "sample_candidates", poisoned)
    try:
        with live_server(gated, library) as live:
            requests = [{"input": "A good request."}, {"input": "Poison pill."}, {"input": "Broken voice.",
                                                                                 "voice": "broken"},
                        {"input": "Another good one.", "voice": "bob"}]
            live.batcher.pause()
            threads = [in_thread(speech, live, **fields) for fields in requests]
            wait_until(lambda: live.batcher.depth == 4, "four requests to be queued")
            gated.open()
            live.batcher.resume()
            for thread, _ in threads:
                thread.join(60)
            good, poison, bad_voice, other = (out["result"] for _, out in threads)
            assert good.status_code == 200 and other.status_code == 200
            assert len(read_wav(good.content)) == CHUNK_SAMPLES
            assert_error(poison, 500, None, "the model broke")
            assert_error(bad_voice, 400, None, "no usable clips")
            assert speech(live).status_code == 200 and live.batcher.alive
    finally:
        shutil.rmtree(broken)


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fields, status, param, fragment", [
    ({"input": ""}, 400, "input", "empty"),
    ({"input": "  \n\t "}, 400, "input", "empty"),
    ({"input": "!!! ... ?"}, 400, "input", "nothing to say"),
    ({"input": "x" * 4097}, 413, "input", "at most 4096"),
    ({"voice": "nobody"}, 404, "voice", "unknown voice 'nobody'"),
    ({"voice": "Not A Name"}, 404, "voice", "invalid voice name"),
    ({"voice": {"id": "nobody"}}, 404, "voice", "unknown voice"),
    ({"response_format": "ogg"}, 400, "response_format", "unknown response_format"),
    ({"speed": 5}, 400, "speed", "between 0.25 and 4.0"),
    ({"stream_format": "video"}, 400, "stream_format", "stream_format"),
    ({"input": None}, 400, "input", "input"),
    ({"voice": None}, 400, "voice", "voice"),
    ({"input": 5}, 422, "input", "must be a string"),
    ({"speed": "fast"}, 422, "speed", "must be a number"),
])
def test_bad_requests_get_openai_errors(server, fields, status, param, fragment):
    assert_error(speech(server, **fields), status, param, fragment)


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe", b""])
def test_malformed_json_is_422(server, body):
    response = httpx.post(server.url + "/v1/audio/speech", content=body, headers={"content-type": "application/json"})
    assert_error(response, 422)


def test_a_body_far_over_the_limit_is_413_before_it_is_read(server):
    response = httpx.post(server.url + "/v1/audio/speech", content=b"x" * (2 * 1024 * 1024),
                          headers={"content-type": "application/json"})
    assert_error(response, 413, None, "larger than")


def test_unknown_paths_and_methods_get_openai_errors(server):
    assert_error(httpx.get(server.url + "/v1/nothing"), 404)
    assert_error(httpx.get(server.url + "/v1/audio/speech"), 405)


def test_openai_client_raises_on_errors(server):
    api = client(server)
    with pytest.raises(openai.NotFoundError, match="unknown voice"):
        api.audio.speech.create(model="tts-1", voice="nobody", input="Hi.")
    with pytest.raises(openai.BadRequestError, match="empty"):
        api.audio.speech.create(model="tts-1", voice="alice", input="")


# -- models, voices, health, metrics, the API key -------------------------------------------------


def test_models(server, engine):
    ids = [m.id for m in client(server).models.list()]
    assert ids[0] == engine.model_id and "tts-1" in ids
    assert client(server).models.retrieve("tts-1").id == "tts-1"
    assert_error(httpx.get(server.url + "/v1/models/gpt-9"), 404, "model")


def test_voices_list_shipped_and_user(server):
    voices = {v["id"]: v for v in httpx.get(server.url + "/v1/audio/voices").json()["data"]}
    assert voices["alice"]["source"] == "user" and voices["alice"]["clips"] == 2
    assert voices["joe"]["source"] == "shipped" and voices["joe"]["object"] == "audio.voice"


def wav_bytes(seconds: float, seed: int = 0) -> bytes:
    out = io.BytesIO()
    sf.write(out, speech_like(seconds, seed=seed), audio.TORTOISE_SAMPLE_RATE, format="WAV")
    return out.getvalue()


def test_add_speak_with_and_remove_a_voice(server):
    api = client(server)
    if hasattr(api.audio, "voices"):  # openai clients with OpenAI's custom-voice API
        voice = api.audio.voices.create(name="carol", audio_sample=("carol.wav", wav_bytes(3.0), "audio/wav"),
                                        consent="cons_unused")
        assert voice.id == "carol" and voice.object == "audio.voice"
    else:
        response = httpx.post(server.url + "/v1/audio/voices", data={"name": "carol", "consent": "cons_unused"},
                              files={"audio_sample": ("carol.wav", wav_bytes(3.0), "audio/wav")})
        assert response.json()["id"] == "carol"
    assert speech(server, voice="carol").status_code == 200
    files = [("clips", ("one.wav", wav_bytes(2.5, 1), "audio/wav")),
             ("clips", ("two.wav", wav_bytes(3.5, 2), "audio/wav"))]
    response = httpx.post(server.url + "/v1/audio/voices", data={"name": "carol"}, files=files)
    assert_error(response, 409, "name", "already exists")
    response = httpx.post(server.url + "/v1/audio/voices", data={"name": "carol", "replace": "true"}, files=files)
    assert response.status_code == 200 and response.json()["clips"] == 2
    deleted = httpx.delete(server.url + "/v1/audio/voices/carol").json()
    assert deleted == {"id": "carol", "object": "audio.voice.deleted", "deleted": True}
    assert_error(speech(server, voice="carol"), 404, "voice")
    assert_error(httpx.delete(server.url + "/v1/audio/voices/carol"), 404, "name")


@pytest.mark.parametrize("name, clip, status, fragment", [
    ("dave", wav_bytes(1.0), 400, "clips must be 2-30 s"),
    ("dave", b"not audio", 400, "cannot read audio file"),
    ("Dave!", wav_bytes(3.0), 400, "invalid voice name"),
    ("joe", wav_bytes(3.0), 409, "shipped voice"),
])
def test_voice_upload_has_the_checks_of_voices_add(server, name, clip, status, fragment):
    response = httpx.post(server.url + "/v1/audio/voices", data={"name": name}, files={"audio_sample": ("c.wav", clip)})
    error = assert_error(response, status, "name" if status == 409 else None, fragment)
    assert "tts-upload-" not in error["message"]  # clips are named as uploaded


def test_silent_clip_and_missing_parts(server):
    silent = io.BytesIO()
    sf.write(silent, np.zeros(3 * 22050, np.float32), 22050, format="WAV")
    response = httpx.post(server.url + "/v1/audio/voices", data={"name": "dave"},
                          files={"audio_sample": ("quiet.wav", silent.getvalue())})
    assert_error(response, 400, None, "clip quiet.wav is silent")
    assert_error(httpx.post(server.url + "/v1/audio/voices", data={"name": "dave"}, files={}), 400)
    assert_error(httpx.post(server.url + "/v1/audio/voices", files={"audio_sample": ("c.wav", wav_bytes(3))}), 400,
                 "name")


def test_shipped_voices_are_shadowed_only_with_the_flag_and_never_removed(server):
    files = {"audio_sample": ("c.wav", wav_bytes(3.0))}
    response = httpx.post(server.url + "/v1/audio/voices", data={"name": "joe", "shadow": "true"}, files=files)
    assert response.status_code == 200 and response.json()["shadows_shipped"]
    assert httpx.delete(server.url + "/v1/audio/voices/joe").status_code == 200  # the user voice
    assert_error(httpx.delete(server.url + "/v1/audio/voices/joe"), 403, "name", "shipped voice")


def test_health_and_metrics(server):
    health = httpx.get(server.url + "/health")
    assert health.status_code == 200 and health.json()["ready"] is True
    assert speech(server).status_code == 200
    text = httpx.get(server.url + "/metrics").text
    for name in ("tts_http_requests_total", "tts_queue_depth", "tts_batch_chunks_bucket",
                 "tts_speech_latency_seconds_bucket", "tts_audio_seconds_total",
                 "tts_speech_first_audio_seconds_count"):
        assert name in text
    assert 'tts_http_requests_total{endpoint="/v1/audio/speech",status="200"}' in text


def test_api_key(engine, library):
    with live_server(engine, library, api_key="sesame") as live:
        assert httpx.get(live.url + "/health").status_code == 200
        for path in ("/v1/models", "/v1/audio/voices", "/metrics"):
            assert_error(httpx.get(live.url + path), 401)
            assert_error(httpx.get(live.url + path, headers={"Authorization": "Bearer wrong"}), 401)
            assert httpx.get(live.url + path, headers={"Authorization": "Bearer sesame"}).status_code == 200
        with pytest.raises(openai.AuthenticationError):
            client(live, api_key="wrong").audio.speech.create(model="tts-1", voice="alice", input="Hi.")
        result = client(live, api_key="sesame").audio.speech.create(model="tts-1", voice="alice", input="Hi.",
                                                                    response_format="wav")
        assert len(read_wav(result.content)) == CHUNK_SAMPLES
