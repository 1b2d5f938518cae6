"""Audio I/O, resampling and the mel front-ends. Every audio constant is named here, once.

Three mel front-ends exist, each a frozen :class:`MelSpec` with its exact recipe:

- ``TORTOISE_AR_MEL``: what the Tortoise GPT and CLVP see (22.05 kHz, 80 bins, power spectrum,
  HTK mel scale with Slaney area normalisation, centred STFT). The model then divides the log mel
  by its per-channel ``mel_norms`` (a file of the model directory), see :func:`normalize_by_norms`.
- ``UNIVNET_MEL``: the Tortoise diffusion decoder / UnivNet vocoder space (24 kHz, 100 bins,
  magnitude spectrum, Slaney mel scale, centred STFT). The diffusion model works on it mapped
  linearly to [-1, 1] (:func:`normalize_mel` / :func:`denormalize_mel`).
- ``HIFIGAN_MEL``: our own models' space, the HiFi-GAN training convention (22.05 kHz, 80 bins,
  magnitude, Slaney mel scale, reflect padding of (n_fft - hop) / 2 = 384 samples each side and
  no centring, so one frame per hop). The universal HiFi-GAN weights resynthesise it transparently.

All three take log(clamp(x, 1e-5)).
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import TTSError
from .fileio import atomic_path
from .precision import at_least_float32

# Sample rates.
TORTOISE_SAMPLE_RATE = 22050  # GPT / CLVP / DVAE side of Tortoise; one code per 1024 samples
UNIVNET_SAMPLE_RATE = 24000  # Tortoise diffusion decoder and UnivNet vocoder output
HIFIGAN_SAMPLE_RATE = 22050  # our own models and the universal HiFi-GAN vocoder

# STFT framing shared by every front-end.
N_FFT = 1024
HOP_LENGTH = 256
WIN_LENGTH = 1024

LOG_FLOOR = 1e-5  # log(clamp(x, LOG_FLOOR)) in every front-end
LOG_SILENCE = math.log(LOG_FLOOR)  # -11.5129: the value of a silent bin

# The diffusion decoder's [-1, 1] range maps onto these log-mel bounds.
DIFFUSION_MEL_MIN = -11.512925148010254
DIFFUSION_MEL_MAX = 2.3143386840820312

# Tortoise conditioning clips: the GPT sees a (random) crop of this many samples at 22.05 kHz,
# the diffusion decoder the first this-many samples at 24 kHz.
TORTOISE_AR_COND_SAMPLES = 132_300  # 6 s -> 517 frames
TORTOISE_DIFFUSION_COND_SAMPLES = 102_400  # 4.27 s -> 401 frames

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
WRITE_SUBTYPES = {".wav": "PCM_16", ".flac": "PCM_16", ".ogg": "VORBIS"}


@dataclass(frozen=True)
class MelSpec:
    """The exact recipe of one log-mel front-end."""

    name: str
    sample_rate: int
    n_mels: int
    fmin: float
    fmax: float
    power: float  # 1: magnitude, 2: power
    htk: bool  # mel scale: HTK formula (True) or Slaney (False); filters are Slaney-normalised either way
    pad: int | None  # None: centred STFT (reflect pad n_fft // 2); else reflect pad this many samples, no centring
    n_fft: int = N_FFT
    hop_length: int = HOP_LENGTH
    win_length: int = WIN_LENGTH

    def frames(self, num_samples: int) -> int:
        """Number of frames produced for `num_samples` input samples."""
        padded = num_samples + 2 * (self.n_fft // 2 if self.pad is None else self.pad)
        return (padded - self.n_fft) // self.hop_length + 1


TORTOISE_AR_MEL = MelSpec("tortoise_ar", TORTOISE_SAMPLE_RATE, 80, 0.0, 8000.0, power=2.0, htk=True, pad=None)
UNIVNET_MEL = MelSpec("univnet", UNIVNET_SAMPLE_RATE, 100, 0.0, 12000.0, power=1.0, htk=False, pad=None)
HIFIGAN_MEL = MelSpec(
    "hifigan", HIFIGAN_SAMPLE_RATE, 80, 0.0, 8000.0, power=1.0, htk=False, pad=(N_FFT - HOP_LENGTH) // 2
)
MEL_SPECS = {spec.name: spec for spec in (TORTOISE_AR_MEL, UNIVNET_MEL, HIFIGAN_MEL)}


@functools.lru_cache(maxsize=None)
def _mel_filters(spec: MelSpec) -> torch.Tensor:
    import librosa

    fb = librosa.filters.mel(
        sr=spec.sample_rate, n_fft=spec.n_fft, n_mels=spec.n_mels, fmin=spec.fmin, fmax=spec.fmax,
        htk=spec.htk, norm="slaney",
    )
    return torch.from_numpy(fb).float()  # (n_mels, n_fft // 2 + 1)


def mel_spectrogram(wav: torch.Tensor, spec: MelSpec) -> torch.Tensor:
    """Log mel spectrogram of `wav` (S,) or (B, S) at `spec.sample_rate` -> (B, n_mels, frames)."""
    if wav.dim() == 1:
        wav = wav.unsqueeze(0)
    wav = at_least_float32(wav)
    pad = spec.n_fft // 2 if spec.pad is None else spec.pad
    wav = F.pad(wav.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    window = torch.hann_window(spec.win_length, periodic=True, device=wav.device)
    stft = torch.stft(
        wav, spec.n_fft, hop_length=spec.hop_length, win_length=spec.win_length, window=window,
        center=False, return_complex=True,
    )  # (B, n_fft // 2 + 1, frames)
    spectrum = stft.abs() if spec.power == 1.0 else stft.abs().pow(spec.power)
    mel = _mel_filters(spec).to(spectrum.device, spectrum.dtype) @ spectrum
    return torch.log(mel.clamp(min=LOG_FLOOR))


def normalize_by_norms(log_mel: torch.Tensor, mel_norms: torch.Tensor) -> torch.Tensor:
    """The Tortoise GPT/CLVP input: log mel (B, 80, T) divided per channel by the model's norms (80,)."""
    return log_mel / mel_norms.to(log_mel)[None, :, None]


def normalize_mel(log_mel: torch.Tensor) -> torch.Tensor:
    """Log mel -> the diffusion decoder's [-1, 1] space."""
    return 2 * ((log_mel - DIFFUSION_MEL_MIN) / (DIFFUSION_MEL_MAX - DIFFUSION_MEL_MIN)) - 1


def denormalize_mel(mel: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize_mel`."""
    return (mel + 1) / 2 * (DIFFUSION_MEL_MAX - DIFFUSION_MEL_MIN) + DIFFUSION_MEL_MIN


def resample(wav: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """High-quality resampling (soxr) of a mono float32 signal."""
    if orig_sr == new_sr:
        return wav
    import soxr

    return soxr.resample(wav, orig_sr, new_sr, quality="VHQ").astype(np.float32)


def sinc_resample(wav: torch.Tensor, orig_sr: int, new_sr: int, zero_crossings: int = 6,
                  rolloff: float = 0.99) -> torch.Tensor:
    """Band-limited windowed-sinc resampling (Hann window), the resampler Tortoise trained with.

    The Tortoise diffusion conditioning is computed from 22.05 kHz clips resampled to 24 kHz this
    way; using the same resampler keeps conditioning latents identical to the reference.
    wav: (..., S) float -> (..., ceil(S * new_sr / orig_sr)).
    """
    if orig_sr == new_sr:
        return wav
    g = math.gcd(orig_sr, new_sr)
    up, down = new_sr // g, orig_sr // g  # output / input samples per period
    cutoff = min(up, down) * rolloff  # anti-aliasing cut-off, in units of the reduced rates
    half_width = math.ceil(zero_crossings * down / cutoff)  # filter half length, input samples
    dtype = wav.dtype
    taps = torch.arange(-half_width, half_width + down, dtype=dtype, device=wav.device) / down
    phases = torch.arange(0, -up, -1, dtype=dtype, device=wav.device)[:, None] / up
    t = ((phases + taps[None, :]) * cutoff).clamp(-zero_crossings, zero_crossings)  # (up, K)
    window = torch.cos(t * math.pi / zero_crossings / 2) ** 2
    t = t * math.pi
    kernel = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t) * window * (cutoff / down)

    shape = wav.shape
    flat = F.pad(wav.reshape(-1, shape[-1]), (half_width, half_width + down))
    out = F.conv1d(flat[:, None], kernel[:, None, :], stride=down)  # (N, up, periods)
    out = out.transpose(1, 2).reshape(flat.shape[0], -1)
    target = math.ceil(up * shape[-1] / down)
    return out[:, :target].reshape(*shape[:-1], -1)


def load_audio(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """Read wav/flac/ogg/mp3 -> mono float32 at `sample_rate`. Raises TTSError if unreadable."""
    import soundfile as sf

    path = Path(path)
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (S, channels)
    except Exception as exc:  # soundfile raises several types (LibsndfileError, RuntimeError, OSError)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TTSError(f"cannot read audio file {path}: {reason}") from None
    if data.shape[0] == 0:
        raise TTSError(f"audio file {path} is empty")
    wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.all(np.isfinite(wav)):
        raise TTSError(f"audio file {path} contains invalid (NaN or infinite) samples")
    return resample(np.ascontiguousarray(wav), sr, sample_rate)


def check_writable(path: str | os.PathLike) -> Path:
    """Fail early (TTSError) if audio cannot be written to `path`: bad extension, no directory, no permission."""
    path = Path(path)
    if path.suffix.lower() not in WRITE_SUBTYPES:
        raise TTSError(f"cannot write {path}: unsupported extension (use {', '.join(WRITE_SUBTYPES)})")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise TTSError(f"cannot write {path}: directory {parent} does not exist")
    if path.is_dir():
        raise TTSError(f"cannot write {path}: it is a directory")
    if path.exists() and not os.access(path, os.W_OK):
        raise TTSError(f"cannot write {path}: permission denied")
    try:  # the only reliable test (permissions, read-only mounts, quotas): create a file there
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise TTSError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def save_audio(path: str | os.PathLike, wav: np.ndarray | torch.Tensor, sample_rate: int) -> Path:
    """Write a mono signal to .wav/.flac/.ogg atomically (temporary file + rename); 16-bit PCM for wav/flac."""
    import soundfile as sf

    path = check_writable(path)
    subtype = WRITE_SUBTYPES[path.suffix.lower()]
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().float().cpu().numpy()
    wav = np.clip(np.asarray(wav, dtype=np.float32).reshape(-1), -1.0, 1.0)
    try:
        with atomic_path(path) as tmp:
            sf.write(str(tmp), wav, sample_rate, subtype=subtype, format=path.suffix[1:].upper())
    except sf.LibsndfileError as exc:
        raise TTSError(f"cannot write {path}: {exc}") from None
    return path


# -- progressive writing ----------------------------------------------------------------------------

STDOUT = "-"  # the output name that means standard output (a streamed WAV)
_UNKNOWN_SIZE = 0xFFFFFFFF  # RIFF and data sizes of a WAV whose length is not known when the header is written


def wav_stream_header(sample_rate: int) -> bytes:
    """The 44-byte header of a mono 16-bit PCM WAV of unknown length (sizes 0xFFFFFFFF, as streaming
    writers such as ffmpeg and sox emit and read)."""
    import struct

    block = 2  # bytes per frame: one 16-bit channel
    return (b"RIFF" + struct.pack("<I", _UNKNOWN_SIZE) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * block, block, 16)
            + b"data" + struct.pack("<I", _UNKNOWN_SIZE))


def pcm16(wav: np.ndarray) -> bytes:
    """Float audio in [-1, 1] -> little-endian 16-bit PCM bytes (clipped, scaled by 32767, rounded)."""
    clipped = np.clip(np.asarray(wav, dtype=np.float32).reshape(-1), -1.0, 1.0)
    return np.round(clipped * 32767).astype("<i2").tobytes()


class AudioWriter:
    """Writes mono float32 chunks to `path` as they come: use as a context manager, `write(chunk)` each.

    A file (.wav/.flac/.ogg) is written progressively to a temporary file beside it and renamed
    into place when the block ends without error, so the destination is complete or absent (it
    appears only at the end; the temporary file grows meanwhile). `path` "-" streams a WAV to
    standard output, flushed after every chunk.
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int, stdout=None):
        self.to_stdout = str(path) == STDOUT
        self.path = Path(path) if not self.to_stdout else None
        if self.path is not None:
            check_writable(self.path)
        self.sample_rate = sample_rate
        self.stdout = stdout
        self.samples = 0
        self._stack = None
        self._file = None

    def __enter__(self) -> AudioWriter:
        import contextlib
        import sys

        import soundfile as sf

        self._stack = contextlib.ExitStack()
        if self.to_stdout:
            self._file = self.stdout if self.stdout is not None else sys.stdout.buffer
            self._file.write(wav_stream_header(self.sample_rate))
            return self
        tmp = self._stack.enter_context(atomic_path(self.path))
        subtype = WRITE_SUBTYPES[self.path.suffix.lower()]
        try:
            self._file = self._stack.enter_context(
                sf.SoundFile(str(tmp), "w", self.sample_rate, 1, subtype=subtype, format=self.path.suffix[1:].upper()))
        except (sf.LibsndfileError, RuntimeError) as exc:
            self._stack.close()
            raise TTSError(f"cannot write {self.path}: {exc}") from None
        return self

    def write(self, chunk: np.ndarray) -> None:
        chunk = np.clip(np.asarray(chunk, dtype=np.float32).reshape(-1), -1.0, 1.0)
        if self.to_stdout:
            self._file.write(pcm16(chunk))
            self._file.flush()
        else:
            self._file.write(chunk)
            self._file.flush()
        self.samples += len(chunk)

    def __exit__(self, *exc) -> bool:
        if self.to_stdout and self._file is not None:
            self._file.flush()
        return self._stack.__exit__(*exc)


def change_tempo(wav: np.ndarray, factor: float) -> np.ndarray:
    """Speech `factor` times as fast at the same pitch (phase vocoder); `factor` 1 returns `wav` itself."""
    if factor == 1.0 or len(wav) == 0:
        return wav
    import librosa

    n_fft = 2048
    padded = np.pad(wav, (0, max(0, n_fft - len(wav))))
    out = librosa.effects.time_stretch(np.asarray(padded, dtype=np.float32), rate=factor, n_fft=n_fft)
    return out[:max(1, round(len(wav) / factor))].astype(np.float32)
