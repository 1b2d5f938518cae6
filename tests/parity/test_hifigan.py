"""HiFi-GAN latent decoder against Tortoise v3's HifiganGenerator (fixture from gen_vocoders.py, in float64)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.tortoise_keys import meta_tensors as meta_state_dict
from tests.tortoise_keys import reference_shapes, shapes_of
from tools.parity.fixture import load_fixture, relative_error
from tools.parity.seeded import seeded_state_dict
from tts.checkpoints import unfold_weight_norm
from tts.errors import TTSError
from tts.models.hifigan import (
    HifiGanConfig,
    HifiGanGenerator,
    decode_latents,
    fold_weight_norm,
    infer_tortoise_config,
    tortoise_state_dict,
)

TOLERANCE = 1e-5


def test_latent_decoder_config_has_reference_keys_and_shapes():
    with torch.device("meta"):
        model = HifiGanGenerator(HifiGanConfig.tortoise_latent_decoder())
    ours = shapes_of(model.state_dict())
    mapped = shapes_of(tortoise_state_dict(meta_state_dict(reference_shapes("hifidecoder"))))
    assert ours == mapped
    reference = reference_shapes("hifidecoder")
    assert sum(torch.Size(s).numel() for s in reference.values()) == 17_844_226
    without_g = sum(torch.Size(s).numel() for k, s in reference.items() if not k.endswith("weight_g"))
    assert sum(v.numel() for v in model.parameters()) == without_g


def test_universal_config_has_no_condition():
    with torch.device("meta"):
        model = HifiGanGenerator(HifiGanConfig.universal())
    assert model.cond_layer is None
    assert not any(k.startswith("cond_layer") for k in model.state_dict())
    assert model.state_dict()["conv_pre.weight"].shape == (512, 80, 7)
    assert HifiGanConfig.universal().hop_length == 256


def test_infer_tortoise_config_from_reference_keys():
    sd = meta_state_dict(reference_shapes("hifidecoder"))
    assert infer_tortoise_config(sd) == HifiGanConfig.tortoise_latent_decoder()
    assert infer_tortoise_config(fold_weight_norm(sd)) == HifiGanConfig.tortoise_latent_decoder()


@pytest.mark.parametrize("cond_channels", [0, 6])
def test_infer_tortoise_config_round_trips_a_small_model(cond_channels):
    config = HifiGanConfig(
        in_channels=5, upsample_rates=[4, 2], upsample_kernel_sizes=[8, 4], upsample_initial_channel=16,
        resblock_kernel_sizes=[3, 5], resblock_dilations=[[1, 3, 5], [1, 3, 5]], cond_channels=cond_channels,
        sample_rate=24000 if cond_channels else 22050,
    )
    model = HifiGanGenerator(config)
    stored = unfold_weight_norm(model.state_dict(), keep=("cond_layer.",))
    assert infer_tortoise_config(stored) == config
    restored = HifiGanGenerator(infer_tortoise_config(stored))
    restored.load_state_dict(tortoise_state_dict(stored), strict=True)
    x = torch.randn(2, 5, 7)
    cond = torch.randn(2, cond_channels) if cond_channels else None
    with torch.no_grad():
        assert restored(x, cond).shape == (2, 1, 7 * 8)
        assert relative_error(restored(x, cond), model(x, cond)) < 1e-6


def test_missing_weight_v_is_a_user_error():
    with pytest.raises(TTSError):
        fold_weight_norm({"conv_pre.weight_g": torch.ones(2, 1, 1)})
    with pytest.raises(TTSError):
        fold_weight_norm({"conv_pre.weight_v": torch.ones(2, 3, 1)})


def test_decode_latents_matches_reference_v3_path():
    ref, meta = load_fixture("hifigan_decoder")
    weights = seeded_state_dict(reference_shapes("hifidecoder"))
    # The fixture is float64 (in float32, rounding alone moves this output by ~1e-6). The reference
    # keeps weight norm and computes each weight from g and v in float64: fold it in float64 too.
    decoder = HifiGanGenerator(HifiGanConfig.tortoise_latent_decoder()).eval().double()
    decoder.load_state_dict(tortoise_state_dict({k: v.double() for k, v in weights.items()}), strict=True)
    latents, conditioning = ref["latents"].double(), ref["conditioning"].double()  # (1, 12, 1024), (1, 1024)
    wav = decode_latents(decoder, latents, conditioning)
    frames = int(int(latents.shape[1] * 4.0) * (24000 / 22050))
    assert wav.shape == (1, 256 * frames)
    err = relative_error(wav, ref["wav"])
    assert err <= TOLERANCE, f"relative error {err:.2e} ({meta['call']})"

    # A batch of two gives each item the answer it gets alone; one conditioning row may be shared.
    pair = decode_latents(decoder, torch.cat([latents, latents.flip(1)]), conditioning)
    assert relative_error(pair[:1], ref["wav"]) <= TOLERANCE
    alone = decode_latents(decoder, latents.flip(1), conditioning)
    assert relative_error(pair[1:], alone) <= TOLERANCE


def test_generator_requires_its_condition():
    config = dataclasses.replace(
        HifiGanConfig.tortoise_latent_decoder(), in_channels=4, cond_channels=3, upsample_initial_channel=8,
        upsample_rates=[2], upsample_kernel_sizes=[4], resblock_kernel_sizes=[3], resblock_dilations=[[1]],
    )
    with pytest.raises(ValueError):
        HifiGanGenerator(config)(torch.randn(1, 4, 5))
