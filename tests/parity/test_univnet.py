"""UnivNet against Tortoise's UnivNetGenerator (fixture from tools/parity/gen_vocoders.py).

The seeded weights are scaled (UNIVNET_SCALES) to keep the network well-conditioned: with plain seeded
weights it is chaotic and no float32 fixture reproduces on another CPU.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.tortoise_keys import meta_tensors as meta_state_dict
from tests.tortoise_keys import reference_shapes, shapes_of
from tools.parity.fixture import load_fixture, relative_error
from tools.parity.seeded import UNIVNET_SCALES, seeded_state_dict
from tts.checkpoints import unfold_weight_norm
from tts.errors import TTSError
from tts.models.univnet import UnivNet, UnivNetConfig, infer_tortoise_config, tortoise_state_dict

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def seeded_model() -> UnivNet:
    weights = seeded_state_dict(reference_shapes("vocoder_univnet_before_remove_weight_norm"), scales=UNIVNET_SCALES)
    model = UnivNet(UnivNetConfig.tortoise()).eval()
    model.load_state_dict(tortoise_state_dict(weights), strict=True)
    return model


def test_tortoise_config_has_reference_keys_and_shapes():
    with torch.device("meta"):
        model = UnivNet(UnivNetConfig.tortoise())
    ours = shapes_of(model.state_dict())
    assert ours == reference_shapes("vocoder_univnet_after_remove_weight_norm")
    stored = meta_state_dict(reference_shapes("vocoder_univnet_before_remove_weight_norm"))
    mapped = tortoise_state_dict(stored)
    assert shapes_of(mapped) == ours


def test_infer_tortoise_config_from_either_layout():
    for name in ("vocoder_univnet_before_remove_weight_norm", "vocoder_univnet_after_remove_weight_norm"):
        sd = meta_state_dict(reference_shapes(name))
        assert infer_tortoise_config(sd) == UnivNetConfig.tortoise()
        assert infer_tortoise_config({"model_g": sd}) == UnivNetConfig.tortoise()


def test_infer_tortoise_config_round_trips_a_small_model():
    config = dataclasses.replace(
        UnivNetConfig.tortoise(), noise_dim=8, channels=4, strides=[4, 2], dilations=[1, 3],
        mel_channels=12, lvc_kernel_size=5, kpnet_hidden_channels=6, kpnet_conv_size=5,
    )
    model = UnivNet(config)
    stored = unfold_weight_norm(model.state_dict(), keep=("cond_layer.",))
    assert infer_tortoise_config(stored) == config
    restored = UnivNet(infer_tortoise_config(stored))
    restored.load_state_dict(tortoise_state_dict(stored), strict=True)
    mel, z = torch.randn(1, 12, 6), torch.randn(1, 8, 6)
    with torch.no_grad():
        assert relative_error(restored(mel, z), model(mel, z)) < 1e-6


def test_weight_norm_folding_matches_torch_exactly():
    conv = torch.nn.utils.parametrizations.weight_norm(torch.nn.Conv1d(5, 7, 3))
    g = conv.parametrizations.weight.original0.detach()
    v = conv.parametrizations.weight.original1.detach()
    folded = tortoise_state_dict({"c.weight_g": g * 1.7, "c.weight_v": v, "c.bias": conv.bias.detach()})
    with torch.no_grad():
        conv.parametrizations.weight.original0.mul_(1.7)
        assert torch.equal(folded["c.weight"], conv.weight)
    with pytest.raises(TTSError):
        tortoise_state_dict({"c.weight_g": g})


def test_vocode_matches_reference_inference(seeded_model):
    ref, meta = load_fixture("univnet")
    wav = seeded_model.vocode(ref["mel"], noise=ref["z"])
    assert wav.shape == (2, 256 * ref["mel"].shape[-1])
    err = relative_error(wav, ref["wav"])
    assert err <= TOLERANCE, f"relative error {err:.2e} ({meta['call']})"


def test_forward_matches_reference_before_trimming(seeded_model):
    ref, _ = load_fixture("univnet")
    mel = torch.cat([ref["mel"], torch.full((2, 100, 10), -11.5129)], dim=2)
    with torch.no_grad():
        wav = seeded_model(mel, ref["z"])[:, 0, : ref["wav"].shape[-1]].clamp(-1, 1)
    assert relative_error(wav, ref["wav"]) <= TOLERANCE


def test_vocode_draws_its_noise_from_the_generator():
    config = dataclasses.replace(UnivNetConfig.tortoise(), channels=4, strides=[4, 2], mel_channels=12)
    model = UnivNet(config).eval()
    mel = torch.randn(2, 12, 5)
    wav = model.vocode(mel, generator=torch.Generator().manual_seed(3))
    shape = (2, config.noise_dim, 5 + config.pad_frames)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    assert wav.shape == (2, 40)
    assert torch.equal(wav, model.vocode(mel, noise=noise))
    assert wav.abs().max() <= 1.0
    with pytest.raises(ValueError):
        model.vocode(mel, noise=noise[:, :, :-1])
