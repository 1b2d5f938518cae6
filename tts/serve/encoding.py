"""Audio encoders for the speech endpoint: mono float32 chunks in, bytes of one response_format out.

Each :class:`Encoder` takes audio with :meth:`~Encoder.feed` as it is made and returns the bytes ready so
far; :meth:`~Encoder.finish` returns the rest. Formats that can be sent before the whole audio exists
stream (``streams`` is true): pcm, wav (a header with unknown sizes, as streaming writers emit), opus
(Ogg pages, by libsndfile), and mp3 and aac (ADTS) through ffmpeg. FLAC is sent whole: its header
carries the length, and a FLAC of unknown length is not readable by libsndfile. Without ffmpeg, mp3 is
encoded whole by libsndfile and aac is refused (:class:`EncoderMissing`).

Rates: pcm is raw 16-bit little-endian mono at 24 kHz, as OpenAI's; opus at 24 kHz when the model's
rate is not one Opus supports; every other format at the model's own rate.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import subprocess
import tempfile
import threading

import numpy as np

from ..audio import pcm16, wav_stream_header
from ..errors import TTSError

log = logging.getLogger(__name__)

FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
MEDIA_TYPES = {"mp3": "audio/mpeg", "opus": "audio/opus", "aac": "audio/aac", "flac": "audio/flac",
               "wav": "audio/wav", "pcm": "audio/pcm"}
PCM_SAMPLE_RATE = 24_000  # OpenAI's raw pcm rate; clients assume it
OPUS_SAMPLE_RATES = (8000, 12000, 16000, 24000, 48000)
OPUS_FALLBACK_RATE = 24_000
MP3_BITRATE = "64k"  # mono speech
AAC_BITRATE = "64k"
_READ_SIZE = 1 << 16


class EncoderMissing(TTSError):
    """The format needs an encoder this server does not have."""


class Encoder:
    streams: bool = True  # bytes come out while audio goes in
    sample_rate: int  # of the encoded audio

    def feed(self, wav: np.ndarray) -> bytes:
        raise NotImplementedError

    def finish(self) -> bytes:
        return b""

    def abort(self) -> None:
        """Unblock a call in progress on another thread, if the encoder can (called before :meth:`close`)."""

    def close(self) -> None:
        """Release what the encoder holds (after finish, or to abandon it)."""


class Resampler:
    """Chunk-by-chunk resampling (soxr's streaming resampler); the identity when the rates match."""

    def __init__(self, in_rate: int, out_rate: int):
        self.stream = None
        if in_rate != out_rate:
            import soxr

            self.stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")

    def __call__(self, wav: np.ndarray, last: bool = False) -> np.ndarray:
        wav = np.asarray(wav, dtype=np.float32).reshape(-1)
        if self.stream is None:
            return wav
        return self.stream.resample_chunk(wav, last=last)


class PcmEncoder(Encoder):
    def __init__(self, sample_rate: int):
        self.sample_rate = PCM_SAMPLE_RATE
        self.resample = Resampler(sample_rate, PCM_SAMPLE_RATE)

    def feed(self, wav: np.ndarray) -> bytes:
        return pcm16(self.resample(wav))

    def finish(self) -> bytes:
        return pcm16(self.resample(np.zeros(0, np.float32), last=True))


class WavEncoder(Encoder):
    """16-bit PCM WAV whose header gives unknown sizes (0xFFFFFFFF), so it can go out before the audio."""

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self.header = wav_stream_header(sample_rate)

    def feed(self, wav: np.ndarray) -> bytes:
        head, self.header = self.header, b""
        return head + pcm16(wav)

    def finish(self) -> bytes:
        head, self.header = self.header, b""
        return head


class SoundFileEncoder(Encoder):
    """libsndfile writing into memory. Streaming hands out what it has appended after each write (Ogg
    never goes back); otherwise the whole file comes out of :meth:`finish`."""

    def __init__(self, sample_rate: int, container: str, subtype: str, streams: bool, out_rate: int | None = None):
        import soundfile as sf

        self.streams = streams
        self.sample_rate = out_rate or sample_rate
        self.resample = Resampler(sample_rate, self.sample_rate)
        self.buffer = io.BytesIO()
        self.sent = 0
        try:
            self.file = sf.SoundFile(self.buffer, "w", self.sample_rate, 1, subtype=subtype, format=container)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise TTSError(f"cannot encode {container}/{subtype}: {exc}") from None

    def _new_bytes(self) -> bytes:
        if not self.streams:
            return b""
        data = self.buffer.getbuffer()[self.sent:].tobytes()
        self.sent += len(data)
        return data

    def feed(self, wav: np.ndarray) -> bytes:
        self.file.write(np.clip(self.resample(wav), -1.0, 1.0))
        return self._new_bytes()

    def finish(self) -> bytes:
        rest = self.resample(np.zeros(0, np.float32), last=True)
        if len(rest):
            self.file.write(np.clip(rest, -1.0, 1.0))
        self.file.close()
        return self._new_bytes() if self.streams else self.buffer.getvalue()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.file.close()


class FfmpegEncoder(Encoder):
    """ffmpeg fed 16-bit PCM on standard input; what it writes to standard output is collected by a thread."""

    def __init__(self, ffmpeg: str, sample_rate: int, output_args: list[str]):
        self.sample_rate = sample_rate
        self.errors = tempfile.TemporaryFile()
        command = [ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "s16le", "-ar", str(sample_rate), "-ac", "1",
                   "-i", "pipe:0", *output_args, "pipe:1"]
        try:
            self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors)
        except OSError as exc:
            self.errors.close()
            raise EncoderMissing(f"cannot run ffmpeg ({ffmpeg}): {exc.strerror or exc}") from None
        self.lock = threading.Lock()
        self.out: list[bytes] = []
        self.reader = threading.Thread(target=self._read, name="ffmpeg-reader", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            data = self.process.stdout.read1(_READ_SIZE)
            if not data:
                return
            with self.lock:
                self.out.append(data)

    def _drain(self) -> bytes:
        with self.lock:
            data, self.out = b"".join(self.out), []
        return data

    def _failure(self) -> TTSError:
        self.errors.seek(0)
        lines = self.errors.read().decode(errors="replace").strip().splitlines()
        return TTSError(f"ffmpeg failed: {lines[-1] if lines else f'exit status {self.process.returncode}'}")

    def feed(self, wav: np.ndarray) -> bytes:
        try:
            self.process.stdin.write(pcm16(wav))
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError):
            self.process.wait()
            raise self._failure() from None
        return self._drain()

    def finish(self) -> bytes:
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.close()
        self.process.wait()
        self.reader.join()
        if self.process.returncode != 0:
            raise self._failure()
        return self._drain()

    def abort(self) -> None:
        if self.process.poll() is None:
            self.process.kill()

    def close(self) -> None:
        self.abort()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(Exception):
                stream.close()
        self.errors.close()


class Encoders:
    """Which formats this server can write, and encoders for them. `ffmpeg`: its path, or None for none."""

    def __init__(self, ffmpeg: str | None):
        self.ffmpeg = ffmpeg

    @classmethod
    def find(cls) -> Encoders:
        """With the ffmpeg on PATH, if it runs."""
        return cls.usable(shutil.which("ffmpeg"))

    @classmethod
    def usable(cls, ffmpeg: str | None) -> Encoders:
        """With `ffmpeg` if `ffmpeg -version` succeeds, else without (and a warning)."""
        if ffmpeg is not None:
            try:
                ok = subprocess.run([ffmpeg, "-hide_banner", "-version"], stdin=subprocess.DEVNULL,
                                    capture_output=True, timeout=30).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                ok = False
            if not ok:
                log.warning("%s does not run: mp3 is encoded whole by libsndfile and aac is not offered", ffmpeg)
                ffmpeg = None
        return cls(ffmpeg)

    def check(self, fmt: str) -> None:
        """TTSError for an unknown format, EncoderMissing for one this server cannot write."""
        if fmt not in FORMATS:
            raise TTSError(f"unknown response_format {fmt!r} (use one of {', '.join(FORMATS)})")
        if fmt == "aac" and self.ffmpeg is None:
            raise EncoderMissing("response_format 'aac' needs ffmpeg, which this server does not have "
                                 f"(use one of {', '.join(f for f in FORMATS if f != 'aac')})")

    def streams(self, fmt: str) -> bool:
        return fmt != "flac" and not (fmt == "mp3" and self.ffmpeg is None)

    def open(self, fmt: str, sample_rate: int) -> Encoder:
        self.check(fmt)
        if fmt == "pcm":
            return PcmEncoder(sample_rate)
        if fmt == "wav":
            return WavEncoder(sample_rate)
        if fmt == "opus":
            rate = sample_rate if sample_rate in OPUS_SAMPLE_RATES else OPUS_FALLBACK_RATE
            return SoundFileEncoder(sample_rate, "OGG", "OPUS", streams=True, out_rate=rate)
        if fmt == "flac":
            return SoundFileEncoder(sample_rate, "FLAC", "PCM_16", streams=False)
        if fmt == "mp3":
            if self.ffmpeg is None:
                return SoundFileEncoder(sample_rate, "MP3", "MPEG_LAYER_III", streams=False)
            return FfmpegEncoder(self.ffmpeg, sample_rate, ["-b:a", MP3_BITRATE, "-f", "mp3"])
        return FfmpegEncoder(self.ffmpeg, sample_rate, ["-c:a", "aac", "-b:a", AAC_BITRATE, "-f", "adts"])
