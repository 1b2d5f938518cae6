"""Faster diffusion sampling: batched guidance, the static-buffer step runner, DPM-Solver++(2M), log-SNR spacing."""

import pytest
import torch

from tests.test_diffusion_sampler import TINY, OracleDenoiser
from tts.models.diffusion import DiffusionDecoder
from tts.sampling.diffusion import (
    SAMPLERS,
    BatchedDenoiser,
    DDIMSampler,
    DecoderDenoiser,
    DPMSolverPP2M,
    NoiseSchedule,
    linear_betas,
    log_snr_timesteps,
    sample_loop,
)
from tts.sampling.diffusion_graph import DiffusionRunner
from tts.sampling.generate import generate_mel

FRAMES = 23


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = DiffusionDecoder(TINY).eval()
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        latents = torch.randn(2, 6, TINY.in_latent_channels, generator=g)
        conditioning = model.get_conditioning(torch.randn(2, 2, TINY.in_channels, 20, generator=g))
        precomputed = model.timestep_independent(latents, conditioning, FRAMES)
    x = torch.randn(2, TINY.in_channels, FRAMES, generator=g)
    return model, precomputed, x


@torch.no_grad()
def test_batched_denoiser_equals_two_calls(tiny):
    model, precomputed, x = tiny
    timesteps = torch.tensor([17, 3210])
    two = DecoderDenoiser(model, precomputed, cond_free=True)(x, timesteps)
    one = BatchedDenoiser(model, precomputed, cond_free=True)(x, timesteps)
    for a, b in zip(two, one):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    plain = BatchedDenoiser(model, precomputed, cond_free=False)(x, timesteps)
    assert plain[1] is None and torch.equal(plain[0], model(x, timesteps, precomputed=precomputed))


@torch.no_grad()
@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
@pytest.mark.parametrize("cond_free", [True, False])
def test_runner_steps_equal_the_sample_loop_bit_for_bit(tiny, sampler, cond_free):
    """The step with its index in a device tensor (the graph-capturable form), run eagerly."""
    from tts.sampling.diffusion import SAMPLER_SPACING

    model, precomputed, x = tiny
    expected_rng, runner_rng = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    schedule = NoiseSchedule.respaced(5, spacing=SAMPLER_SPACING[sampler])
    expected = sample_loop(BatchedDenoiser(model, precomputed, cond_free), schedule, x, SAMPLERS[sampler](),
                           expected_rng, cond_free_k=2.0)
    runner = DiffusionRunner(model)
    assert not runner.graphs.enabled
    seen = []
    out = runner.sample(precomputed, x, steps=5, sampler=sampler, cond_free=cond_free, cond_free_k=2.0,
                        generator=runner_rng, progress=lambda done, total: seen.append(done))
    assert torch.equal(out, expected)
    assert torch.equal(runner_rng.get_state(), expected_rng.get_state())
    assert seen == [1, 2, 3, 4, 5]
    # the same slot again (buffers reused): the same result
    again = runner.sample(precomputed, x, steps=5, sampler=sampler, cond_free=cond_free, cond_free_k=2.0,
                          generator=torch.Generator().manual_seed(1))
    assert torch.equal(again, expected)


@torch.no_grad()
def test_runner_keeps_a_few_slots(tiny):
    from tts.sampling.diffusion_graph import KEPT_SLOTS

    model, precomputed, x = tiny
    runner = DiffusionRunner(model)
    for steps in range(2, KEPT_SLOTS + 4):
        runner.sample(precomputed, x, steps=steps, sampler="ddim", generator=torch.Generator())
    assert len(runner.slots) == KEPT_SLOTS


@torch.no_grad()
def test_masked_padding_leaves_the_real_frames_unchanged(tiny):
    from tools.parity.seeded import parameter_shapes, seeded_state_dict

    _, precomputed, x = tiny
    model = DiffusionDecoder(TINY).eval()  # seeded weights: no zero-initialised attention outputs
    model.load_state_dict(seeded_state_dict(parameter_shapes(model)))
    timesteps = torch.tensor([10, 3000])
    frames = torch.zeros(2, 1, FRAMES + 9)
    frames[..., :FRAMES] = 1
    padded_x = torch.nn.functional.pad(x, (0, 9), value=3.0)  # padding values must not matter
    padded_pre = torch.nn.functional.pad(precomputed, (0, 9), value=-2.0)
    for kwargs in ({"precomputed": precomputed}, {"conditioning_free": True}):
        plain = model(x, timesteps, **kwargs)
        padded_kwargs = {"precomputed": padded_pre} if "precomputed" in kwargs else kwargs
        masked = model(padded_x, timesteps, frames=frames, **padded_kwargs)[..., :FRAMES]
        # the unconditioned embedding is constant over time: its GroupNorms are ill-conditioned (about 1e-4)
        assert (masked - plain).norm() / plain.norm() < 2e-4


@torch.no_grad()
@pytest.mark.parametrize("sampler", ["ddim", "dpm++2m"])
def test_length_buckets_give_the_unpadded_result(tiny, sampler):
    model, precomputed, x = tiny
    exact = DiffusionRunner(model, frame_bucket=1).sample(precomputed, x, steps=5, sampler=sampler,
                                                         generator=torch.Generator())
    bucketed = DiffusionRunner(model, frame_bucket=16)
    out = bucketed.sample(precomputed, x, steps=5, sampler=sampler, generator=torch.Generator())
    assert out.shape == x.shape and (out - exact).norm() / exact.norm() < 1e-4
    assert next(iter(bucketed.slots))[1] == 32  # 23 frames ran as 32
    shorter = bucketed.sample(precomputed[..., :20], x[..., :20], steps=5, sampler=sampler,
                              generator=torch.Generator())  # same bucket, same slot
    assert len(bucketed.slots) == 1 and shorter.shape == (2, TINY.in_channels, 20)
    alone = DiffusionRunner(model).sample(precomputed[..., :20], x[..., :20], steps=5, sampler=sampler,
                                          generator=torch.Generator())
    assert (shorter - alone).norm() / alone.norm() < 1e-4


# ---- DPM-Solver++(2M) on a Gaussian "data set", whose probability-flow ODE is solved exactly ----

ALPHA_BAR = torch.cumprod(1 - linear_betas(4000), dim=0)


class GaussianOracle:
    """The exact denoiser E[x0 | x_t] for x0 ~ N(mu, s^2) per element (variance channel -1)."""

    def __init__(self, mu: float, s: float):
        self.mu, self.s = mu, s

    def __call__(self, x, timesteps):
        a = ALPHA_BAR[timesteps].double()[:, None, None]
        x64 = x.double()
        x0 = self.mu + a.sqrt() * self.s**2 / (a * self.s**2 + 1 - a) * (x64 - a.sqrt() * self.mu)
        eps = (x64 - a.sqrt() * x0) / (1 - a).sqrt()
        return torch.cat([eps.float(), -torch.ones_like(x)], dim=1), None

    def ode_solution(self, x_T):
        """The ODE keeps each element's z-score: x0 = mu + s (x_T - a mu) / sqrt(a s^2 + 1 - a)."""
        a = ALPHA_BAR[-1].double()
        return self.mu + self.s * (x_T.double() - a.sqrt() * self.mu) / (a * self.s**2 + 1 - a).sqrt()


def ode_error(sampler, steps, spacing, oracle, x_T):
    out = sample_loop(oracle, NoiseSchedule.respaced(steps, spacing=spacing), x_T, sampler, torch.Generator(),
                      clip_denoised=False)
    exact = oracle.ode_solution(x_T)
    return float((out.double() - exact).norm() / exact.norm())


@pytest.mark.parametrize("mu, s", [(-0.3, 0.4), (0.2, 0.3), (0.5, 0.05)])
def test_dpm_solver_reaches_the_ode_solution_in_fewer_steps_than_ddim(mu, s):
    oracle = GaussianOracle(mu, s)
    x_T = torch.randn(1, 4, 50, generator=torch.Generator().manual_seed(2))
    dpm_20 = ode_error(DPMSolverPP2M(), 20, "log_snr", oracle, x_T)
    ddim = {n: ode_error(DDIMSampler(), n, "uniform", oracle, x_T) for n in (20, 80, 400)}
    assert dpm_20 < 0.015
    assert dpm_20 < ddim[80]  # 20 DPM-Solver++ steps beat 80 DDIM steps (Tortoise's spacing)
    assert ddim[400] < ddim[80] < ddim[20]  # DDIM converges to the same solution, first order
    # second order (3x the steps, about a ninth of the error) until float32 rounding takes over
    assert ode_error(DPMSolverPP2M(), 60, "log_snr", oracle, x_T) < max(dpm_20 / 4, 5e-4)


@pytest.mark.parametrize("sampler", [DPMSolverPP2M(), DDIMSampler()])
def test_exact_x0_oracle_is_recovered(sampler):
    x0 = 0.8 * torch.tanh(torch.randn(1, 4, 10, generator=torch.Generator().manual_seed(1)))
    x_t = torch.randn(1, 4, 10, generator=torch.Generator().manual_seed(2))
    out = sample_loop(OracleDenoiser(x0), NoiseSchedule.respaced(8, spacing="log_snr"), x_t, sampler,
                      torch.Generator())
    assert torch.allclose(out, x0, atol=1e-4)


def test_dpm_solver_is_deterministic(tiny):
    model, precomputed, _ = tiny
    latents = torch.randn(1, 6, TINY.in_latent_channels, generator=torch.Generator().manual_seed(0))
    conditioning = precomputed.new_zeros(1, 2 * TINY.model_channels)
    with torch.no_grad():
        runs = [generate_mel(model, latents, conditioning, steps=6, sampler="dpm++2m", temperature=0.0,
                             generator=torch.Generator().manual_seed(seed)) for seed in (1, 2)]
    assert torch.equal(runs[0], runs[1]) and runs[0].abs().max() <= 1


def test_log_snr_spacing():
    for steps in (2, 3, 10, 80, 400, 4000):
        kept = log_snr_timesteps(4000, steps)
        assert len(kept) == steps == len(set(kept)) and kept == sorted(kept) and (kept[0], kept[-1]) == (0, 3999)
    lam = 0.5 * (ALPHA_BAR.log() - (-ALPHA_BAR).log1p())
    gaps = lam[log_snr_timesteps(4000, 20)].diff().abs()
    assert gaps.max() / gaps.min() < 1.5  # even in log-SNR (uniform-t spacing: over 10x)
    with pytest.raises(ValueError):
        log_snr_timesteps(4000, 1)


# ---- on a GPU ----


@pytest.mark.cuda
@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_cuda_graph_runner_equals_eager(tiny, sampler):
    import copy

    model, precomputed, x = copy.deepcopy(tiny[0]).cuda(), tiny[1].cuda(), tiny[2].cuda()
    out, states = [], []
    for graphs in (False, True):
        generator = torch.Generator("cuda").manual_seed(3)
        with torch.no_grad():
            out.append(DiffusionRunner(model, graphs=graphs).sample(
                precomputed, x, steps=6, sampler=sampler, cond_free=True, generator=generator))
        states.append(generator.get_state())
    torch.testing.assert_close(out[1], out[0], rtol=1e-5, atol=1e-5)
    assert torch.equal(states[0], states[1])
