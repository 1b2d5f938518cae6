"""tools.vocoder_pitch: pitch error and voicing lost, on tones whose answers are known."""

import numpy as np
import pytest

from tools.vocoder_pitch import level_db, pitch_agreement

RATE = 22050


def tone(hz: float, seconds: float = 0.6) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * hz * t) + 0.2 * np.sin(4 * np.pi * hz * t)).astype(np.float32)


def test_the_same_tone_agrees_and_a_semitone_up_is_a_hundred_cents_off():
    cents, lost = pitch_agreement(tone(200), tone(200), RATE)
    assert cents < 5 and lost == 0
    cents, _ = pitch_agreement(tone(200), tone(200 * 2 ** (1 / 12)), RATE)
    assert cents == pytest.approx(100, abs=15)


def test_noise_in_place_of_a_tone_loses_its_voicing():
    noise = np.random.default_rng(0).standard_normal(int(0.6 * RATE)).astype(np.float32) * 0.3
    _, lost = pitch_agreement(tone(200), noise, RATE)
    assert lost > 0.8


def test_level_is_the_rms_ratio_in_db():
    assert level_db(0.5 * tone(200), tone(200)) == pytest.approx(-6.02, abs=0.01)
