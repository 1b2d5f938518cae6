import torch
import torch.nn.functional as F

from tts.models.dvae import DVAE, DVAEConfig, spectral_contrast


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


def test_spectral_contrast_raises_peaks_and_leaves_flat_spectra_alone():
    flat = torch.full((1, 16, 3), -4.0)
    assert torch.equal(spectral_contrast(flat, 1.5), flat)
    peaked = flat.clone()
    peaked[:, 8] = -2.0  # one bin 2 above its neighbours; the mean of 5 bins is 0.4 above them
    sharp = spectral_contrast(peaked, 1.5)
    torch.testing.assert_close(sharp[:, 8], torch.full((1, 3), -2.0 + 0.5 * 1.6))
    torch.testing.assert_close(sharp[:, 7], torch.full((1, 3), -4.0 - 0.5 * 0.4))  # the valley beside it deepens
    assert torch.equal(sharp[:, :6], flat[:, :6])
    assert spectral_contrast(peaked, 1.0) is peaked


def test_the_contrast_post_filter_applies_when_decoding_not_in_training():
    plain = tiny().eval()
    sharpened = DVAE(DVAEConfig(**{**plain.config.__dict__, "contrast": 1.5})).eval()
    sharpened.load_state_dict(plain.state_dict())
    mel = torch.randn(1, 16, 32)
    codes = plain.encode(mel)
    torch.testing.assert_close(sharpened.decode(codes), spectral_contrast(plain.decode(codes), 1.5))
    torch.testing.assert_close(sharpened(mel)[0], plain(mel)[0])  # the training loss sees the decoder itself


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


def test_gate_reports_the_decoder_with_and_without_its_post_filter():
    import numpy as np

    from tts.train.gates import Stages

    torch.manual_seed(0)
    dvae = DVAE(DVAEConfig(mel_channels=80, channels=16, num_tokens=32, codebook_dim=8, resblocks=1,
                           speaker_dim=8, speaker_channels=8, contrast=1.5)).eval()
    stages = Stages(vocoder=lambda mel: mel[:, 10], dvae=dvae)  # one mel bin stands in for a waveform
    wav = np.random.default_rng(0).standard_normal(22050).astype(np.float32) * 0.1
    out = stages.run(wav, torch.zeros(1, 80, 64), torch.Generator())
    assert set(out) == {"g0", "g1", "g1_no_contrast"}
    assert not np.allclose(out["g1"], out["g1_no_contrast"])
