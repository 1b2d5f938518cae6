"""Does a vocoder keep the pitch? Vocode each voice's true mel of the public sentences and compare the
pitch track (pYIN) of the output with the recording's:

    python -m tools.vocoder_pitch VOICE[,VOICE...] [--vocoder V.safetensors ...] [--sentences N] [--cache DIR]

Per voice and vocoder (the universal HiFi-GAN first, then each `--vocoder`), averaged over sentences:

- cents: the median pitch error, in cents, over the frames both call voiced;
- unvoiced: the share of the recording's voiced frames that the output's track calls unvoiced (a
  vocoder whose phase wanders renders voiced speech as noise, which pYIN finds aperiodic);
- level: the output's RMS level against the recording's, in dB.
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


def pitch_track(wav: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(f0 Hz per frame, NaN where unvoiced; voiced flags) by pYIN."""
    f0, voiced, _ = librosa.pyin(wav, fmin=PITCH_RANGE_HZ[0], fmax=PITCH_RANGE_HZ[1], sr=sample_rate,
                                 frame_length=FRAME, hop_length=HOP)
    return f0, voiced


def pitch_agreement(reference: np.ndarray, output: np.ndarray, sample_rate: int) -> tuple[float, float]:
    """(median |pitch error| in cents where both are voiced, share of the reference's voiced frames
    that the output leaves unvoiced)."""
    f_ref, v_ref = pitch_track(reference, sample_rate)
    f_out, v_out = pitch_track(output, sample_rate)
    n = min(len(f_ref), len(f_out))
    f_ref, v_ref, f_out, v_out = f_ref[:n], v_ref[:n], f_out[:n], v_out[:n]
    both = v_ref & v_out
    cents = float(np.median(np.abs(1200 * np.log2(f_out[both] / f_ref[both])))) if both.any() else float("nan")
    lost = float((v_ref & ~v_out).sum() / max(1, v_ref.sum()))
    return cents, lost


def level_db(output: np.ndarray, reference: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(output ** 2)) / max(np.sqrt(np.mean(reference ** 2)), 1e-9)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("voices")
    parser.add_argument("--vocoder", action="append", default=[], help="a hifigan component (repeatable)")
    parser.add_argument("--sentences", type=int, default=10)
    parser.add_argument("--cache", default="/work/gates")
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = [UNIVERSAL_HIFIGAN, *args.vocoder]
    vocoders = [load_hifigan(name).eval() for name in names]
    sentences = read_sentences(DEFAULT_SENTENCES)[:args.sentences]
    for voice in args.voices.split(","):
        wavs = render(voice, sentences, Path(args.cache))
        for name, vocoder in zip(names, vocoders):
            rows = []
            for wav in wavs:
                with torch.inference_mode():
                    out = vocoder(audio.mel_spectrogram(torch.from_numpy(wav), MEL)).reshape(-1).numpy()
                ref = wav[:len(out)]
                rows.append((*pitch_agreement(ref, out, MEL.sample_rate), level_db(out, ref)))
            cents, lost, level = np.nanmean(np.array(rows), axis=0)
            print(f"{voice} {name}: cents {cents:.1f}, unvoiced {lost:.3f}, level {level:+.2f} dB", flush=True)


if __name__ == "__main__":
    try:
        main()
    except TTSError as exc:
        raise SystemExit(f"error: {exc}") from None
