"""Diffusion decoder and sampler pieces on tiny random models (no reference needed)."""

import pytest
import torch

from tts.audio import DIFFUSION_MEL_MAX, DIFFUSION_MEL_MIN, denormalize_mel, normalize_mel
from tts.models.diffusion import DiffusionConfig, DiffusionDecoder, infer_tortoise_config
from tts.sampling.diffusion import (
    BETA_END,
    BETA_START,
    SAME_RATE_FRAME_RATIO,
    TORTOISE_FRAME_RATIO,
    DDIMSampler,
    DDPMSampler,
    NoiseSchedule,
    Prediction,
    linear_betas,
    output_frames,
    predict,
    ramped_guidance,
    sample_loop,
    space_timesteps,
)
from tts.sampling.generate import generate_mel

TINY = DiffusionConfig(
    model_channels=32,
    num_layers=1,
    in_channels=8,
    out_channels=16,
    in_latent_channels=16,
    in_tokens=10,
    num_heads=2,
    code_converter_blocks=1,
    latent_conditioner_blocks=1,
    contextual_embedder_blocks=1,
    integrator_layers=1,
    plain_resblocks=1,
)
LATENT_FRAMES = 6


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = DiffusionDecoder(TINY).eval()
    latents = torch.randn(1, LATENT_FRAMES, TINY.in_latent_channels)
    with torch.no_grad():
        conditioning = model.get_conditioning(torch.randn(1, 2, TINY.in_channels, 20))
    return model, latents, conditioning


def run(tiny, seed=0, **options):
    model, latents, conditioning = tiny
    options = {"steps": 4, "cond_free": True, "cond_free_k": 2.0, **options}
    return generate_mel(
        model, latents, conditioning, generator=torch.Generator().manual_seed(seed), **options
    )


# ---- schedule ----


def test_linear_betas():
    betas = linear_betas(4000)
    assert betas.dtype == torch.float64 and betas.shape == (4000,)
    assert betas[0].item() == pytest.approx(BETA_START) == pytest.approx(2.5e-5)
    assert betas[-1].item() == pytest.approx(BETA_END) == pytest.approx(0.005)


def test_space_timesteps():
    eighty = space_timesteps(4000, 80)
    assert len(eighty) == 80 and eighty[:4] == [0, 51, 101, 152] and eighty[-1] == 3999
    assert space_timesteps(4000, 4000) == list(range(4000))
    assert space_timesteps(4000, 2) == [0, 3999]
    assert space_timesteps(4000, 1) == [0]
    with pytest.raises(ValueError):
        space_timesteps(4000, 4001)


def test_respaced_schedule_keeps_alpha_bar():
    full = torch.cumprod(1 - linear_betas(4000), dim=0)
    schedule = NoiseSchedule.respaced(80)
    assert len(schedule) == 80
    expected = full[schedule.timesteps].float()
    assert torch.allclose(schedule.alphas_cumprod, expected, rtol=1e-6, atol=0)
    assert schedule.alphas_cumprod_prev[0] == 1
    with pytest.raises(ValueError):
        NoiseSchedule.respaced(1)


def test_unrespaced_schedule_is_the_training_schedule():
    schedule = NoiseSchedule.respaced(4000)
    direct = NoiseSchedule.from_betas(linear_betas(4000), torch.arange(4000))
    assert torch.equal(schedule.timesteps, direct.timesteps)
    assert torch.allclose(schedule.log_betas, direct.log_betas, rtol=1e-5)
    assert torch.allclose(schedule.posterior_mean_coef1, direct.posterior_mean_coef1, rtol=1e-4)


# ---- guidance ----


def test_ramped_guidance_goes_from_k_over_n_to_k():
    assert ramped_guidance(2.0, 79, 80) == pytest.approx(2.0 / 80)  # first step (index N-1)
    assert ramped_guidance(2.0, 0, 80) == 2.0  # last step


def test_predict_mixes_eps_only():
    schedule = NoiseSchedule.respaced(10)
    x = torch.zeros(1, 2, 3)
    cond = torch.cat([torch.full((1, 2, 3), 0.3), torch.full((1, 2, 3), 0.5)], dim=1)
    uncond = torch.cat([torch.full((1, 2, 3), -0.1), torch.full((1, 2, 3), -0.9)], dim=1)
    guided = predict(schedule, x, 4, cond, uncond, guidance=1.5)
    plain = predict(schedule, x, 4, cond)
    assert torch.allclose(guided.eps, torch.full_like(x, 2.5 * 0.3 + 1.5 * 0.1))
    assert torch.equal(guided.log_variance, plain.log_variance)  # variance from the conditional output
    # v = -1 gives the posterior variance, v = +1 gives beta
    low = predict(schedule, x, 4, torch.cat([x, -torch.ones_like(x)], dim=1)).log_variance
    high = predict(schedule, x, 4, torch.cat([x, torch.ones_like(x)], dim=1)).log_variance
    assert torch.allclose(low, schedule.posterior_log_variance[4].expand_as(x))
    assert torch.allclose(high, schedule.log_betas[4].expand_as(x))


class ConstantDenoiser:
    """eps +1 conditional, -1 unconditional; records the timesteps it is called with."""

    def __init__(self, cond_free: bool):
        self.cond_free = cond_free
        self.calls = []

    def __call__(self, x, timesteps):
        self.calls.append(timesteps.tolist())
        cond = torch.cat([torch.ones_like(x), torch.zeros_like(x)], dim=1)
        return cond, (-cond if self.cond_free else None)


class RecordingSampler:
    def __init__(self):
        self.eps = []

    def step(self, schedule, index, x, pred: Prediction, generator):
        self.eps.append(pred.eps.mean().item())
        return x


def test_sample_loop_ramps_guidance_and_feeds_original_timesteps():
    steps, k = 5, 2.0
    schedule = NoiseSchedule.respaced(steps)
    denoiser, sampler = ConstantDenoiser(cond_free=True), RecordingSampler()
    sample_loop(denoiser, schedule, torch.zeros(2, 3, 4), sampler, torch.Generator(), cond_free_k=k)
    expected_t = [[t, t] for t in reversed(space_timesteps(4000, steps))]
    assert denoiser.calls == expected_t
    # eps = (1 + k_i) * 1 - k_i * (-1) with k_i = k * (1 - i / N), i = N-1 .. 0
    expected_eps = [1 + 2 * k * (1 - i / steps) for i in reversed(range(steps))]
    assert sampler.eps == pytest.approx(expected_eps)


def test_no_guidance_without_unconditional_output():
    sampler = RecordingSampler()
    sample_loop(
        ConstantDenoiser(cond_free=False),
        NoiseSchedule.respaced(3),
        torch.zeros(1, 3, 4),
        sampler,
        torch.Generator(),
        cond_free_k=2.0,
    )
    assert sampler.eps == pytest.approx([1.0, 1.0, 1.0])


def test_model_calls_per_step_batched_and_unbatched(tiny):
    model = tiny[0]
    calls = []
    handle = model.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    try:
        run(tiny, steps=3, cond_free=True, batched=False)
        assert calls == [1] * 6  # two calls per step
        calls.clear()
        run(tiny, steps=3, cond_free=True)
        assert calls == [2] * 3  # one call per step on a doubled batch
        calls.clear()
        run(tiny, steps=3, cond_free=False)
        assert calls == [1] * 3
    finally:
        handle.remove()


# ---- samplers on an oracle: a denoiser that knows the clean signal ----


class OracleDenoiser:
    """The exact noise of x_t for a known x0 (variance channel -1); expects ORIGINAL timesteps."""

    def __init__(self, x0):
        self.x0 = x0
        self.alpha_bar = torch.cumprod(1 - linear_betas(4000), dim=0)

    def __call__(self, x, timesteps):
        a = self.alpha_bar[timesteps].float()[:, None, None]
        eps = (x - a.sqrt() * self.x0) / (1 - a).sqrt()
        return torch.cat([eps, -torch.ones_like(x)], dim=1), None


@pytest.mark.parametrize("sampler", [DDIMSampler(), DDPMSampler()])
def test_samplers_recover_the_clean_signal_from_an_oracle(sampler):
    x0 = 0.8 * torch.tanh(torch.randn(1, 4, 10, generator=torch.Generator().manual_seed(1)))
    x_t = torch.randn(1, 4, 10, generator=torch.Generator().manual_seed(2))
    out = sample_loop(
        OracleDenoiser(x0), NoiseSchedule.respaced(20), x_t, sampler, torch.Generator().manual_seed(3)
    )
    assert torch.allclose(out, x0, atol=1e-4)


# ---- randomness ----


def test_ddim_is_deterministic_given_the_start_noise():
    x0 = torch.zeros(1, 4, 10)
    x_t = torch.randn(1, 4, 10, generator=torch.Generator().manual_seed(2))
    denoiser = ConstantDenoiser(cond_free=False)
    a = sample_loop(denoiser, NoiseSchedule.respaced(6), x_t, DDIMSampler(), torch.Generator().manual_seed(1))
    b = sample_loop(denoiser, NoiseSchedule.respaced(6), x_t, DDIMSampler(), torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, x0)


def test_ddim_generate_mel_is_reproducible(tiny):
    a, b = run(tiny, seed=5, sampler="ddim"), run(tiny, seed=5, sampler="ddim")
    assert torch.equal(a, b)
    assert not torch.equal(a, run(tiny, seed=5, sampler="ddpm"))


def test_generator_reproducibility_and_global_rng_untouched(tiny):
    state = torch.get_rng_state()
    a, b, c = run(tiny, seed=7), run(tiny, seed=7), run(tiny, seed=8)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_ddpm_draws_start_noise_then_one_normal_per_step(tiny):
    model, latents, conditioning = tiny
    steps, frames = 4, output_frames(LATENT_FRAMES)
    used = torch.Generator().manual_seed(11)
    generate_mel(model, latents, conditioning, steps=steps, generator=used)
    replay = torch.Generator().manual_seed(11)
    for _ in range(steps + 1):
        torch.randn(1, TINY.in_channels, frames, generator=replay)
    assert torch.equal(used.get_state(), replay.get_state())


def test_temperature_zero_ddim_ignores_the_seed(tiny):
    assert torch.equal(
        run(tiny, seed=1, sampler="ddim", temperature=0.0), run(tiny, seed=2, sampler="ddim", temperature=0.0)
    )


# ---- generate_mel plumbing ----


def test_generate_mel_shape_range_and_progress(tiny):
    seen = []
    mel = run(tiny, steps=3, progress=lambda step, total: seen.append((step, total)))
    assert mel.shape == (1, TINY.in_channels, LATENT_FRAMES * 4 * 24000 // 22050)
    assert mel.abs().max() <= 1.0 + 1e-6
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_generate_mel_rejects_unknown_sampler(tiny):
    with pytest.raises(ValueError, match="sampler"):
        run(tiny, sampler="euler")


def test_output_frames():
    assert output_frames(8) == 34
    assert output_frames(100, TORTOISE_FRAME_RATIO) == 100 * 4 * 24000 // 22050
    assert output_frames(8, SAME_RATE_FRAME_RATIO) == 32
    assert output_frames(8, 4) == 32


def test_mel_normalisation_constants():
    assert denormalize_mel(torch.tensor(-1.0)).item() == pytest.approx(DIFFUSION_MEL_MIN)
    assert denormalize_mel(torch.tensor(1.0)).item() == pytest.approx(DIFFUSION_MEL_MAX)
    x = torch.linspace(-1, 1, 7)
    assert torch.allclose(normalize_mel(denormalize_mel(x)), x, atol=1e-6)


# ---- the decoder with a small non-Tortoise configuration ----


def test_small_custom_decoder_end_to_end():
    config = DiffusionConfig(
        model_channels=128,
        num_layers=2,
        in_channels=80,
        out_channels=160,
        in_latent_channels=64,
        in_tokens=50,
        num_heads=2,
        code_converter_blocks=1,
        latent_conditioner_blocks=2,
        contextual_embedder_blocks=1,
        integrator_layers=1,
        plain_resblocks=1,
    )
    torch.manual_seed(0)
    model = DiffusionDecoder(config).eval()
    assert infer_tortoise_config(model.state_dict()) == config
    with torch.no_grad():
        conditioning = model.get_conditioning(torch.randn(2, 80, 30))  # one clip, no clip axis
        assert conditioning.shape == (2, 256)
        codes = torch.randint(0, 50, (2, 5))
        assert model.timestep_independent(codes, conditioning, 20).shape == (2, 128, 20)
        out = model(
            torch.randn(2, 80, 20),
            torch.tensor([5, 300]),
            aligned_conditioning=codes,
            conditioning_latent=conditioning,
        )
        assert out.shape == (2, 160, 20)
    mel = generate_mel(
        model,
        torch.randn(2, 5, 64),
        conditioning,
        steps=2,
        frame_ratio=SAME_RATE_FRAME_RATIO,
        generator=torch.Generator().manual_seed(0),
    )
    assert mel.shape == (2, 80, 20)


def test_training_forward_unconditioned_rows_and_backward():
    config = DiffusionConfig(
        **{**TINY.__dict__, "num_layers": 3, "unconditioned_percentage": 1.0, "layer_drop": 0.5}
    )
    torch.manual_seed(0)
    model = DiffusionDecoder(config).train()
    latents, conditioning = torch.randn(2, 4, 16), torch.randn(2, 64)
    emb, mel_pred = model.timestep_independent(latents, conditioning, 9, return_code_pred=True)
    assert torch.equal(emb, model.unconditioned_embeddings(2, 9))
    assert torch.count_nonzero(mel_pred) == 0
    out, _ = model(
        torch.randn(2, 8, 9),
        torch.tensor([1, 3999]),
        aligned_conditioning=latents,
        conditioning_latent=conditioning,
        return_code_pred=True,
    )
    out.square().mean().backward()
    assert model.unconditioned_embedding.grad is not None and model.inp_block.weight.grad is not None
