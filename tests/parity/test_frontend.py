"""Our mel front-ends and resampler against the Tortoise reference (fixture from tools/parity/gen_frontend.py).

The mels compare in float32, the resampler in float64 (see the generator).
"""

import pytest
import torch

from tools.parity.fixture import load_fixture, relative_error
from tts import audio

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def ref():
    tensors, _ = load_fixture("frontend")
    return tensors


def test_tortoise_ar_mel_matches_reference(ref):
    ours = audio.normalize_by_norms(audio.mel_spectrogram(ref["wav22"], audio.TORTOISE_AR_MEL), ref["mel_norms"])
    assert relative_error(ours, ref["ar_mel"]) <= TOLERANCE


def test_univnet_mel_matches_reference(ref):
    ours = audio.mel_spectrogram(ref["wav24"], audio.UNIVNET_MEL)
    assert relative_error(ours, ref["univnet_mel"]) <= TOLERANCE


def test_sinc_resample_matches_reference_in_float64(ref):
    _, meta = load_fixture("frontend")
    excerpt = ref["wav22"][:, : meta["resample_f64_samples"]].double()
    ours = audio.sinc_resample(excerpt, 22050, 24000)
    assert ours.dtype == torch.float64
    assert relative_error(ours, ref["wav24_f64"]) <= TOLERANCE


def test_frame_counts():
    assert audio.TORTOISE_AR_MEL.frames(audio.TORTOISE_AR_COND_SAMPLES) == 517
    assert audio.UNIVNET_MEL.frames(audio.TORTOISE_DIFFUSION_COND_SAMPLES) == 401
    assert audio.HIFIGAN_MEL.frames(256 * 50) == 50
