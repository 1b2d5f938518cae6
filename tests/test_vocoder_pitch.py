"""tools.vocoder_pitch: periodicity at the recording's pitch, on signals whose answers are known."""

import numpy as np
import pytest

from tools.vocoder_pitch import BAND_EDGES_HZ, band_errors, level_db, periodicity, voiced_periods

RATE = 22050


def tone(hz: float, seconds: float = 0.6) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * hz * t) + 0.2 * np.sin(4 * np.pi * hz * t)).astype(np.float32)


def test_a_tone_is_voiced_at_its_period_and_periodic_there():
    centres, periods = voiced_periods(tone(200), RATE)
    assert len(centres) > 20 and np.all(np.abs(periods - RATE / 200) <= 1)
    assert periodicity(tone(200), centres, periods) > 0.95


def test_noise_or_another_pitch_is_not_periodic_at_the_recordings_period():
    centres, periods = voiced_periods(tone(200), RATE)
    noise = np.random.default_rng(0).standard_normal(int(0.6 * RATE)).astype(np.float32)
    assert abs(periodicity(noise, centres, periods)) < 0.2
    assert periodicity(tone(200 * 2 ** (3 / 12)), centres, periods) < 0.6  # three semitones up


def test_level_is_the_rms_ratio_in_db():
    assert level_db(0.5 * tone(200), tone(200)) == pytest.approx(-6.02, abs=0.01)


def test_band_error_is_zero_for_the_recording_and_lands_in_the_band_that_differs():
    assert np.allclose(band_errors(tone(200), tone(200), RATE), 0)
    errors = band_errors(tone(200), tone(300), RATE)  # the same upper bands (silence), other harmonics
    assert len(errors) == len(BAND_EDGES_HZ) - 1 and errors.argmax() == 0 and errors[-1] < 0.1 * errors[0]
