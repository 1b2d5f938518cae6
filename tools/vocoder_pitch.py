"""Does a vocoder keep voiced speech periodic? Vocode each voice's true mel of the public sentences and
measure, in each frame the recording's pitch track (pYIN) calls voiced, how periodic the output is at
the recording's pitch period:

    python -m tools.vocoder_pitch VOICE[,VOICE...] [--vocoder V.safetensors ...] [--sentences N] [--cache DIR]

Per voice, the recording's own periodicity, then per vocoder (the universal HiFi-GAN first, then each
`--vocoder`), averaged over sentences:

- periodicity: the normalised autocorrelation of a 1,024-sample frame at the recording's pitch period,
  averaged over the voiced frames (1: exactly periodic; a vocoder whose phase wanders renders voiced
  speech partly as noise, which lowers it);
- level: the output's RMS level against the recording's, in dB;
- band error: the mean absolute difference of the log magnitudes (1,024-point STFT) of the output and
  the recording, per frequency band (`BAND_EDGES_HZ`), which shows where in the spectrum a vocoder
  differs (the pruned one: below 500 Hz, where a high voice's lowest harmonics are).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import librosa
import numpy as np
import torch

from tts import audio
from tts.checkpoints import UNIVERSAL_HIFIGAN, load_hifigan
from tts.errors import TTSError
from tts.evaluate import read_sentences
from tts.train.gates import DEFAULT_SENTENCES, MEL, render

PITCH_RANGE_HZ = (60.0, 600.0)
FRAME, HOP = 1024, 256
BAND_EDGES_HZ = (0, 500, 1000, 2000, 4000, 6000, 8000, 11025)


def voiced_periods(wav: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(centre sample, pitch period in samples) of each frame pYIN calls voiced."""
    f0, voiced, _ = librosa.pyin(wav, fmin=PITCH_RANGE_HZ[0], fmax=PITCH_RANGE_HZ[1], sr=sample_rate,
                                 frame_length=FRAME, hop_length=HOP)  # frame i is centred on sample i * HOP
    frames = np.flatnonzero(voiced)
    return frames * HOP, np.round(sample_rate / f0[frames]).astype(int)


def periodicity(wav: np.ndarray, centres: np.ndarray, periods: np.ndarray) -> float:
    """Mean normalised autocorrelation of the frames around `centres` at lags `periods`."""
    padded = np.pad(wav.astype(np.float64), FRAME // 2)
    values = []
    for centre, lag in zip(centres, periods):
        frame = padded[centre:centre + FRAME]  # the frame centred on `centre` in the unpadded audio
        a, b = frame[:-lag], frame[lag:]
        norm = np.sqrt((a @ a) * (b @ b))
        if norm > 0:
            values.append(a @ b / norm)
    return float(np.mean(values)) if values else float("nan")


def level_db(output: np.ndarray, reference: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(output ** 2)) / max(np.sqrt(np.mean(reference ** 2)), 1e-9)))


def band_errors(output: np.ndarray, reference: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mean |log |STFT(output)| - log |STFT(reference)|| in each band of BAND_EDGES_HZ, over the frames
    both have."""
    def log_magnitude(x: np.ndarray) -> np.ndarray:  # (bins, frames)
        return np.log(np.maximum(np.abs(librosa.stft(x.astype(np.float32), n_fft=FRAME, hop_length=HOP)), 1e-5))

    out, ref = log_magnitude(output), log_magnitude(reference)
    frames = min(out.shape[1], ref.shape[1])
    diff = np.abs(out[:, :frames] - ref[:, :frames])
    freqs = librosa.fft_frequencies(sr=sample_rate, n_fft=FRAME)
    return np.array([diff[(freqs >= lo) & (freqs < hi)].mean() for lo, hi in zip(BAND_EDGES_HZ, BAND_EDGES_HZ[1:])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("voices")
    parser.add_argument("--vocoder", action="append", default=[], help="a hifigan component (repeatable)")
    parser.add_argument("--sentences", type=int, default=10)
    parser.add_argument("--cache", default="/work/gates")
    args = parser.parse_args()
    if args.sentences < 1:
        raise SystemExit(f"error: --sentences {args.sentences}: at least 1")
    torch.set_num_threads(1)
    names = [UNIVERSAL_HIFIGAN, *args.vocoder]
    vocoders = [load_hifigan(name).eval() for name in names]
    sentences = read_sentences(DEFAULT_SENTENCES)[:args.sentences]
    for voice in args.voices.split(","):
        wavs = render(voice, sentences, Path(args.cache))
        tracks = [voiced_periods(wav, MEL.sample_rate) for wav in wavs]
        own = np.nanmean([periodicity(wav, *track) for wav, track in zip(wavs, tracks)])
        print(f"{voice} recording: periodicity {own:.3f}", flush=True)
        for name, vocoder in zip(names, vocoders):
            rows = []
            for wav, track in zip(wavs, tracks):
                with torch.inference_mode():
                    out = vocoder(audio.mel_spectrogram(torch.from_numpy(wav), MEL)).reshape(-1).numpy()
                keep = track[0] + FRAME // 2 <= len(out)  # frames inside the output
                rows.append((periodicity(out, track[0][keep], track[1][keep]), level_db(out, wav[:len(out)]),
                             *band_errors(out, wav[:len(out)], MEL.sample_rate)))
            value, level, *bands = np.nanmean(np.array(rows), axis=0)
            errors = " ".join(f"{lo}-{hi}: {e:.2f}" for lo, hi, e in zip(BAND_EDGES_HZ, BAND_EDGES_HZ[1:], bands))
            print(f"{voice} {name}: periodicity {value:.3f}, level {level:+.2f} dB, band error (Hz) {errors}",
                  flush=True)

if __name__ == "__main__":
    try:
        main()
    except TTSError as exc:
        raise SystemExit(f"error: {exc}") from None
