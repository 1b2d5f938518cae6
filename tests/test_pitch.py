"""YIN pitch per mel frame (tts.pitch): frames line up with the mel, tones are found, silence and
noise are unvoiced."""

import numpy as np
import pytest
import torch

from tts import audio
from tts.pitch import f0

SR = audio.HIFIGAN_MEL.sample_rate


def tone(hz: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return sum(0.3 / k * np.sin(2 * np.pi * k * hz * t) for k in range(1, 6))  # a harmonic series


@pytest.mark.parametrize("hz", [85.0, 150.0, 220.0, 400.0])
def test_a_harmonic_tone_is_voiced_at_its_pitch(hz):
    track = f0(tone(hz, 1.0))
    middle = track[5:-5]
    assert (middle > 0).all()
    assert np.abs(np.log(middle / hz)).max() < 0.01  # within a sixth of a semitone


def test_frames_match_the_mel_and_silence_and_noise_are_unvoiced():
    rng = np.random.default_rng(0)
    wav = np.concatenate([np.zeros(SR // 2), tone(180.0, 0.5), 0.1 * rng.standard_normal(SR // 2)])
    track = f0(wav)
    assert len(track) == audio.mel_spectrogram(torch.from_numpy(wav).float(), audio.HIFIGAN_MEL).shape[-1]
    frames = len(track) // 3
    assert (track[:frames - 3] == 0).all()  # silence
    assert (track[frames + 3:2 * frames - 3] > 0).all()  # the tone
    assert (track[2 * frames + 5:-3] > 0).mean() < 0.1  # white noise: (almost) never voiced


def test_short_and_wrong_rate_audio():
    assert f0(np.zeros(10)).shape == (audio.HIFIGAN_MEL.frames(10),)
    with pytest.raises(ValueError, match="Hz"):
        f0(np.zeros(1000), 16000)
