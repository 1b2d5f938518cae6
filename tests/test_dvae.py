import numpy as np
import torch
import torch.nn.functional as F

from tts.models.dvae import DVAE, DVAEConfig


def tiny() -> DVAE:
    torch.manual_seed(0)
    return DVAE(DVAEConfig(mel_channels=16, channels=32, num_tokens=64, codebook_dim=16, resblocks=1))


def test_shapes_and_code_rate():
    model = tiny().eval()
    mel = torch.randn(2, 16, 37)
    recon, commitment, codes = model(mel)
    assert recon.shape == (2, 16, 36) and codes.shape == (2, 9) and commitment.ndim == 0
    assert torch.equal(model.encode(mel), codes)
    assert model.decode(codes).shape == (2, 16, 36)
    assert DVAEConfig.tortoise().downsample_factor == 4 and DVAEConfig.tortoise().num_tokens == 8192


def test_training_reduces_reconstruction_error_and_uses_the_codebook():
    model = tiny().train()
    mel = torch.randn(4, 16, 64).cumsum(-1) * 0.1  # smooth, learnable signal
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        recon, commitment, codes = model(mel)
        loss = F.mse_loss(recon, mel) + commitment
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(F.mse_loss(recon, mel).item())
    assert losses[-1] < 0.5 * losses[0]
    assert codes.unique().numel() > 4


def test_low_rank_updates_decode_as_merged_weights_and_leave_the_model_alone():
    import copy

    from tts.models import lowrank

    model = tiny().eval()
    codes = torch.randint(0, 64, (2, 9))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    factors = lowrank.init_factors(model, 2, torch.Generator().manual_seed(0))
    assert set(factors) == {n for w in lowrank.targets(model) for n in lowrank.factor_names(w)}
    assert torch.equal(model.decode(codes, weights=lowrank.merge(model, factors)), model.decode(codes))  # B = 0
    factors = {k: torch.randn_like(v) * 0.1 for k, v in factors.items()}
    merged = lowrank.merge(model, factors)
    changed = copy.deepcopy(model)
    changed.load_state_dict({**model.state_dict(), **merged})
    assert torch.allclose(model.decode(codes, weights=merged), changed.decode(codes), atol=1e-6)
    assert not torch.allclose(model.decode(codes, weights=merged), model.decode(codes))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the shared model is unchanged
    trainable = {k: v.requires_grad_() for k, v in factors.items()}
    model.decode_mel(codes, weights=lowrank.merge(model, trainable)).pow(2).mean().backward()
    assert all(v.grad is not None and v.grad.abs().sum() > 0 for v in trainable.values())
    assert lowrank.check(model, factors) is None
    name = next(iter(factors))
    assert "factors" in lowrank.check(model, {**factors, name: factors[name][:1, :-1]})
    assert "one factor of two" in lowrank.check(model, {name: factors[name]})
    assert "not a decoder weight" in lowrank.check(model, {"dvae_lowrank.encoder.0.weight.a": factors[name]})


def test_residual_levels_quantise_in_turn_what_the_levels_before_left():
    import pytest

    torch.manual_seed(0)
    model = DVAE(DVAEConfig(mel_channels=16, channels=32, num_tokens=8, codebook_dim=16, resblocks=1,
                            residual_tokens=32, residual_levels=2, ema_decay=0.8)).train()
    mel = torch.randn(4, 16, 64)
    for _ in range(30):  # the EMA fits every codebook to the encoder's outputs
        model.quantise(mel)
    model.eval()
    codes, residual = model.encode_residual(mel)
    assert torch.equal(codes, model.encode(mel)) and residual.shape == (4, 2, 16)
    z = F.normalize(model.encoder(mel), dim=1)
    errors = [(z - model.vectors(codes, residual[:, :n])).pow(2).mean() for n in range(3)]
    assert errors[2] < errors[1] < 0.6 * errors[0]
    assert torch.equal(model.vectors(codes, residual[:, :0]), model.vectors(codes))
    assert model.decode(codes, residual=residual).shape == (4, 16, 64)
    assert not torch.equal(model.decode(codes, residual=residual), model.decode(codes))
    with pytest.raises(ValueError, match="residual"):
        model.vectors(codes, torch.zeros(4, 3, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="residual"):
        tiny().encode_residual(mel)
    with pytest.raises(ValueError, match="residual_levels"):
        DVAE(DVAEConfig(mel_channels=16, channels=32, num_tokens=8, codebook_dim=16, residual_tokens=8, residual_levels=0))


def test_stages_gate_both_levels_and_the_first_alone():
    from tts.train.gates import Stages

    torch.manual_seed(0)
    dvae = DVAE(DVAEConfig(channels=32, num_tokens=8, codebook_dim=16, resblocks=1, residual_tokens=16)).eval()
    stages = Stages(vocoder=lambda mel: torch.zeros(mel.shape[-1] * 256), dvae=dvae)
    out = stages.run(np.random.default_rng(0).standard_normal(22050).astype(np.float32) * 0.1, None,
                     torch.Generator())
    assert set(out) == {"g0", "g1", "g1_first"}
