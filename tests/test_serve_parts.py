"""The server's parts on their own: encoders, the batcher's scheduling, metrics text, tempo change."""

from __future__ import annotations

import asyncio
import io
import shutil
import wave

import numpy as np
import pytest
import soundfile as sf

from tests.tiny import speech_like
from tts.audio import change_tempo
from tts.errors import TTSError
from tts.serve.batching import Audio, Batcher, Finished, Job
from tts.serve.encoding import EncoderMissing, Encoders
from tts.serve.metrics import Metrics

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")


def chunks(rate: int, seconds: float = 0.6, count: int = 3) -> list[np.ndarray]:
    return [speech_like(seconds, rate, seed=i) for i in range(count)]


def encode(encoder, pieces) -> tuple[list[bytes], bytes]:
    fed = [encoder.feed(piece) for piece in pieces]
    tail = encoder.finish()
    encoder.close()
    return fed, b"".join(fed) + tail


def test_unknown_and_missing_formats():
    with pytest.raises(TTSError, match="unknown response_format 'ogg'"):
        Encoders(None).check("ogg")
    with pytest.raises(EncoderMissing, match="needs ffmpeg"):
        Encoders(None).check("aac")
    assert Encoders(None).streams("wav") and not Encoders(None).streams("mp3")
    assert Encoders("ffmpeg").streams("mp3") and not Encoders("ffmpeg").streams("flac")


def test_wav_streams_with_a_header_of_unknown_size():
    pieces = chunks(24000)
    fed, data = encode(Encoders(None).open("wav", 24000), pieces)
    assert all(fed)  # every chunk goes out at once
    wav, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == 24000 and len(wav) == sum(map(len, pieces))
    with wave.open(io.BytesIO(data)) as reader:
        assert len(reader.readframes(10 ** 7)) == 2 * len(wav)


def test_pcm_is_resampled_to_24_khz():
    pieces = chunks(22050)
    _, data = encode(Encoders(None).open("pcm", 22050), pieces)
    assert abs(len(data) // 2 - sum(map(len, pieces)) * 24000 / 22050) <= 2


@pytest.mark.parametrize("rate, out_rate", [(24000, 24000), (22050, 24000)])
def test_opus_streams_ogg_pages(rate, out_rate):
    pieces = chunks(rate, seconds=1.5)
    encoder = Encoders(None).open("opus", rate)
    fed, data = encode(encoder, pieces)
    assert any(fed) and encoder.sample_rate == out_rate
    wav, got = sf.read(io.BytesIO(data))
    assert got == out_rate and abs(len(wav) / got - 4.5) < 0.05


@pytest.mark.parametrize("fmt, ffmpeg", [("flac", None), ("mp3", None),
                                         pytest.param("mp3", "ffmpeg", marks=needs_ffmpeg)])
def test_whole_and_ffmpeg_formats_decode(fmt, ffmpeg):
    encoders = Encoders(shutil.which(ffmpeg) if ffmpeg else None)
    fed, data = encode(encoders.open(fmt, 22050), chunks(22050))
    if not encoders.streams(fmt):
        assert not any(fed)
    wav, rate = sf.read(io.BytesIO(data))
    assert rate == 22050 and abs(len(wav) / rate - 1.8) < 0.1


def test_a_broken_ffmpeg_is_an_error():
    encoder = Encoders("/nonexistent/ffmpeg")
    with pytest.raises(EncoderMissing, match="cannot run ffmpeg"):
        encoder.open("aac", 24000)


class FakeEngine:
    """Records the groups it is given and makes silence."""

    def __init__(self):
        self.groups: list[list[str]] = []

    def synthesize(self, pieces):
        self.groups.append([piece.text for piece in pieces])
        for piece in pieces:
            if piece.alive():
                yield piece, np.zeros(10, np.float32)


def test_groups_take_each_request_in_turn():
    async def run():
        engine = FakeEngine()
        batcher = Batcher(engine, max_batch=4, window_s=0, max_queue=8)
        loop = asyncio.get_running_loop()
        jobs = {name: Job([f"{name}{i}" for i in range(n)], None, None, loop) for name, n in
                (("a", 3), ("b", 1), ("c", 2))}
        batcher.pause()
        batcher.start()
        for job in jobs.values():
            batcher.submit(job)
        assert batcher.depth == 3 and batcher.waiting == 3
        batcher.resume()
        for job in jobs.values():
            events = []
            while not events or not isinstance(events[-1], Finished):
                events.append(await asyncio.wait_for(job.events.get(), 30))
            assert [e.index for e in events if isinstance(e, Audio)] == list(range(len(job.texts)))
        batcher.stop()
        return engine.groups, batcher.depth

    groups, depth = asyncio.run(run())
    assert groups == [["a0", "b0", "c0", "a1"], ["a2", "c1"]] and depth == 0


def test_the_queue_is_bounded_and_cancel_frees_a_place():
    from tts.serve.batching import QueueFull

    async def run():
        batcher = Batcher(FakeEngine(), max_batch=1, max_queue=2)
        loop = asyncio.get_running_loop()
        first, second, third = (Job(["x"], None, None, loop) for _ in range(3))
        batcher.submit(first)
        batcher.submit(second)
        with pytest.raises(QueueFull):
            batcher.submit(third)
        assert batcher.cancel(first) and not batcher.cancel(first)
        batcher.submit(third)
        assert batcher.depth == 2 and batcher.retry_after() >= 1

    asyncio.run(run())


def test_metrics_text():
    metrics = Metrics()
    metrics.count_request('/v1/"x"', 200)
    metrics.batch(3, 2)
    metrics.speech_done(0.3)
    metrics.add_gauge("tts_queue_depth", "Depth.", lambda: 4)
    text = metrics.render()
    assert 'tts_http_requests_total{endpoint="/v1/\\"x\\"",status="200"} 1' in text
    assert 'tts_batch_chunks_bucket{le="2"} 0' in text and 'tts_batch_chunks_bucket{le="4"} 1' in text
    assert 'tts_speech_latency_seconds_bucket{le="+Inf"} 1' in text and "tts_speech_latency_seconds_sum 0.3" in text
    assert "# TYPE tts_queue_depth gauge\ntts_queue_depth 4" in text


def test_change_tempo_keeps_pitch_and_scales_length():
    wav = speech_like(2.0, 24000)
    assert change_tempo(wav, 1.0) is wav
    for factor in (0.5, 1.5, 4.0):
        assert len(change_tempo(wav, factor)) == round(len(wav) / factor)
    assert len(change_tempo(wav[:100], 0.25)) == 400


def test_a_batch_is_one_gpt_call_unless_its_rows_are_capped():
    from types import SimpleNamespace

    from tts.serve.app import group_size
    from tts.serve.config import ServerConfig

    config = ServerConfig(preset="ultra_fast", max_batch=8)
    options = config.options()
    assert (options.candidates, options.batch_size) == (16, 128)  # 8 chunks x 16 candidates together
    assert group_size(config, SimpleNamespace(options=options)) == 8
    capped = config.replace(gpt_batch=40)
    assert capped.options().batch_size == 40
    assert group_size(capped, SimpleNamespace(options=capped.options())) == 2  # what fits in 40 rows
    alone = config.replace(max_batch=1)
    assert alone.options().batch_size == 16 and group_size(alone, SimpleNamespace(options=alone.options())) == 1
    with pytest.raises(TTSError, match="max batch"):
        config.replace(max_batch=0)
