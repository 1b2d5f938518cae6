"""Gaussian diffusion sampling for the diffusion decoder, in the normalised mel space [-1, 1].

The decoder was trained on a linear beta schedule of `TRAINED_STEPS` steps. Inference walks a
respaced subset of N of those steps; the model always sees the ORIGINAL timestep numbers. Its
output holds epsilon (first half of the channels) and a value v in [-1, 1] per bin that places
the log-variance between the posterior's (v = -1) and beta's (v = +1) ("learned range").

Pieces, each swappable:
  NoiseSchedule       float32 coefficient tables of a respaced schedule
  Denoiser            x_t, timesteps -> (conditional output, unconditional output or None)
                      (DecoderDenoiser: one model call per output; BatchedDenoiser: both in one call)
  predict()           model outputs -> Prediction(x0, eps, log_variance), with guidance mixed in
  DDPM/DDIM/DPM++     one reverse step from a Prediction (DPMSolverPP2M keeps the previous x0)
  sample_loop()       runs a sampler over the schedule
  initial_noise(), sample_eager()  a whole eager run; tts.sampling.generate.generate_mel (what the
                      pipeline calls) picks it or the graph-captured runner of diffusion_graph.py

Step indices may be Python ints or 0-d long device tensors: every table lookup goes through `at()`
and no step branches on the index in Python, so a whole step can run from device buffers alone
(the graph-captured runner in `diffusion_graph.py`) and gives bit-identical results to the int form.

Randomness comes only from the `torch.Generator` passed in. Draw order matches Tortoise's
(`noise * temperature` first, then one standard normal of x's shape per DDPM step, the last step
included), so a CPU generator seeded like Tortoise's `torch.manual_seed` reproduces its output.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple, Protocol

import torch

from ..audio import HOP_LENGTH, TORTOISE_SAMPLE_RATE, UNIVNET_SAMPLE_RATE
from ..precision import at_least_float32

logger = logging.getLogger(__name__)

TRAINED_STEPS = 4000  # length of the training schedule
# Linear betas of Ho et al. for 1000 steps (1e-4 .. 0.02), stretched to TRAINED_STEPS.
BETA_START = 1e-4 * 1000 / TRAINED_STEPS  # 2.5e-5
BETA_END = 0.02 * 1000 / TRAINED_STEPS  # 0.005

# Mel frames per GPT latent: 4 frames of hop 256 at 22.05 kHz per code, re-expressed at 24 kHz.
TORTOISE_FRAME_RATIO = Fraction(1024 // HOP_LENGTH * UNIVNET_SAMPLE_RATE, TORTOISE_SAMPLE_RATE)
SAME_RATE_FRAME_RATIO = Fraction(1024 // HOP_LENGTH)  # our own models: both sides at 22.05 kHz

ProgressFn = Callable[[int, int], None]


def output_frames(latent_frames: int, ratio: Fraction | int = TORTOISE_FRAME_RATIO) -> int:
    """Mel frames produced for `latent_frames` latents: floor(latent_frames * ratio)."""
    ratio = Fraction(ratio)
    return latent_frames * ratio.numerator // ratio.denominator


# ---- schedule ----


def linear_betas(trained_steps: int = TRAINED_STEPS) -> torch.Tensor:
    """(trained_steps,) float64 betas, linear from 1e-4 to 0.02 rescaled by 1000 / trained_steps."""
    scale = 1000 / trained_steps
    return torch.linspace(scale * 1e-4, scale * 0.02, trained_steps, dtype=torch.float64)


def space_timesteps(trained_steps: int, steps: int) -> list[int]:
    """`steps` original timesteps spread evenly over [0, trained_steps - 1], ascending.

    Tortoise's rule: a float cursor advancing by (trained_steps - 1) / (steps - 1), rounded
    (half to even) at each position; e.g. 4000 -> 80 gives 0, 51, 101, ..., 3999.
    """
    if not 1 <= steps <= trained_steps:
        raise ValueError(f"cannot take {steps} steps out of {trained_steps}")
    stride = (trained_steps - 1) / (steps - 1) if steps > 1 else 1
    taken, cursor = [], 0.0
    for _ in range(steps):
        taken.append(round(cursor))
        cursor += stride
    return sorted(set(taken))


def log_snr_timesteps(trained_steps: int, steps: int) -> list[int]:
    """`steps` distinct original timesteps whose log-SNR, lambda = log(alpha_t / sigma_t), is spread
    evenly between its values at timesteps 0 and trained_steps - 1; ascending, both ends included.

    Uniform-in-t spacing puts most of the change of lambda into the last few steps (on the linear
    schedule, 4000 -> 20 steps jump from lambda 1.7 to 5.3 in the final one), which multistep ODE
    solvers extrapolate badly; even lambda steps are what DPM-Solver++ is designed for. Targets are
    rounded to the nearest timestep and pushed apart where rounding would repeat one.
    """
    if not 2 <= steps <= trained_steps:
        raise ValueError(f"cannot take {steps} steps out of {trained_steps}")
    acp = torch.cumprod(1 - linear_betas(trained_steps), dim=0)
    lam = 0.5 * (torch.log(acp) - torch.log1p(-acp))  # (trained_steps,) decreasing in t
    targets = torch.linspace(float(lam[0]), float(lam[-1]), steps, dtype=torch.float64)
    nearest = [int((lam - t).abs().argmin()) for t in targets]  # ascending, possibly repeated
    for i in range(1, steps):  # strictly increasing ...
        nearest[i] = max(nearest[i], nearest[i - 1] + 1)
    nearest[-1] = trained_steps - 1
    for i in range(steps - 2, -1, -1):  # ... and still ending at the last timestep
        nearest[i] = min(nearest[i], nearest[i + 1] - 1)
    return nearest


SPACINGS: dict[str, Callable[[int, int], list[int]]] = {"uniform": space_timesteps, "log_snr": log_snr_timesteps}


@dataclass(frozen=True)
class NoiseSchedule:
    """Coefficients of a (respaced) schedule, one float32 entry per step index 0..N-1.

    Index i is the i-th kept original timestep `timesteps[i]`; sampling walks i = N-1 .. 0.
    """

    timesteps: torch.Tensor  # (N,) int64 original timestep fed to the model
    alphas_cumprod: torch.Tensor
    alphas_cumprod_prev: torch.Tensor
    sqrt_recip_alphas_cumprod: torch.Tensor  # x0 = this * x_t - sqrt_recipm1 * eps
    sqrt_recipm1_alphas_cumprod: torch.Tensor
    posterior_mean_coef1: torch.Tensor  # posterior mean = coef1 * x0 + coef2 * x_t
    posterior_mean_coef2: torch.Tensor
    posterior_log_variance: torch.Tensor  # clipped at step 0; the learned range's lower end
    log_betas: torch.Tensor  # the learned range's upper end

    def __len__(self) -> int:
        return len(self.timesteps)

    @classmethod
    def respaced(cls, steps: int, trained_steps: int = TRAINED_STEPS, spacing: str = "uniform") -> NoiseSchedule:
        """The linear training schedule reduced to `steps` steps (betas recomputed to keep alpha-bar).

        `spacing`: "uniform" in t (Tortoise's) or "log_snr" (see `log_snr_timesteps`).
        """
        if steps < 2:
            raise ValueError(f"diffusion needs at least 2 steps, got {steps}")
        kept = SPACINGS[spacing](trained_steps, steps)
        base_acp = torch.cumprod(1 - linear_betas(trained_steps), dim=0)[kept]  # (N,) float64
        betas = 1 - base_acp / torch.cat([base_acp.new_ones(1), base_acp[:-1]])
        return cls.from_betas(betas, torch.tensor(kept, dtype=torch.long))

    @classmethod
    def from_betas(cls, betas: torch.Tensor, timesteps: torch.Tensor) -> NoiseSchedule:
        """Tables for float64 `betas` (N,), computed in float64 and stored as float32."""
        acp = torch.cumprod(1 - betas, dim=0)
        acp_prev = torch.cat([acp.new_ones(1), acp[:-1]])
        posterior_var = betas * (1 - acp_prev) / (1 - acp)
        # The posterior variance is 0 at step 0: use step 1's value there before taking the log.
        posterior_log_var = torch.log(torch.cat([posterior_var[1:2], posterior_var[1:]]))
        tables = {
            "alphas_cumprod": acp,
            "alphas_cumprod_prev": acp_prev,
            "sqrt_recip_alphas_cumprod": torch.sqrt(1 / acp),
            "sqrt_recipm1_alphas_cumprod": torch.sqrt(1 / acp - 1),
            "posterior_mean_coef1": betas * torch.sqrt(acp_prev) / (1 - acp),
            "posterior_mean_coef2": (1 - acp_prev) * torch.sqrt(1 - betas) / (1 - acp),
            "posterior_log_variance": posterior_log_var,
            "log_betas": torch.log(betas),
        }
        return cls(timesteps=timesteps, **{k: v.float() for k, v in tables.items()})

    def to(self, device: torch.device | str) -> NoiseSchedule:
        return NoiseSchedule(**{k: getattr(self, k).to(device) for k in self.__dataclass_fields__})


def at(table: torch.Tensor, index: int | torch.Tensor) -> torch.Tensor:
    """table[index] as a 0-d tensor, for an int or a 0-d long tensor index (no host synchronisation)."""
    if isinstance(index, torch.Tensor):
        return table.index_select(0, index.view(1).to(table.device)).view(())
    return table[index]


# ---- model outputs -> prediction ----


class Prediction(NamedTuple):
    x0: torch.Tensor  # (B, C, T) predicted clean mel (clipped to [-1, 1] if asked)
    eps: torch.Tensor  # (B, C, T) predicted noise, after guidance
    log_variance: torch.Tensor  # (B, C, T) log-variance of the reverse step


def ramped_guidance(k: float, index: int, steps: int) -> float:
    """Tortoise's conditioning-free weight at step index i of N: k * (1 - i / N), k/N first, k last."""
    return k * (1 - index / steps)


Guidance = float | tuple[torch.Tensor, torch.Tensor]  # w, or the pair (1 + w, w) as 0-d tensors


def guidance_tables(k: float, steps: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(1 + w_i, w_i) for every step index i of the ramped schedule, float32 (N,) each.

    Computed in double and rounded once, exactly as the float form of `predict` rounds them.
    """
    weights = [ramped_guidance(k, i, steps) for i in range(steps)]
    plus = torch.tensor([1 + w for w in weights], dtype=torch.float32, device=device)
    return plus, torch.tensor(weights, dtype=torch.float32, device=device)


def predict(
    schedule: NoiseSchedule,
    x: torch.Tensor,
    index: int | torch.Tensor,
    output: torch.Tensor,
    uncond_output: torch.Tensor | None = None,
    guidance: Guidance = 0.0,
    clip_denoised: bool = True,
) -> Prediction:
    """Turn model output(s) (B, 2C, T) at step `index` into a Prediction for x_t (B, C, T).

    With an unconditional output, eps becomes (1 + w) * eps_cond - w * eps_uncond for the guidance
    weight w (a float, or the pair (1 + w, w) of 0-d tensors); the variance always comes from the
    conditional output.
    """
    c = x.shape[1]
    eps, var_value = output[:, :c], output[:, c:]
    if uncond_output is not None:
        plus, weight = (1 + guidance, guidance) if isinstance(guidance, (int, float)) else guidance
        eps = plus * eps - weight * uncond_output[:, :c]
    frac = (var_value + 1) / 2
    log_variance = frac * at(schedule.log_betas, index) + (1 - frac) * at(schedule.posterior_log_variance, index)
    x0 = at(schedule.sqrt_recip_alphas_cumprod, index) * x - at(schedule.sqrt_recipm1_alphas_cumprod, index) * eps
    if clip_denoised:
        x0 = x0.clamp(-1, 1)
    return Prediction(x0, eps, log_variance)


# ---- denoisers ----


class Denoiser(Protocol):
    """Evaluates the model on x_t (B, C, T) at original timesteps (B,).

    Returns the conditional output and, when guidance is on, the unconditional one (else None).
    A batched implementation may compute both in one model call.
    """

    def __call__(
        self, x: torch.Tensor, timesteps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]: ...


class DecoderDenoiser:
    """A DiffusionDecoder with precomputed aligned embeddings; one or two model calls per evaluation."""

    def __init__(self, model: torch.nn.Module, precomputed: torch.Tensor, cond_free: bool):
        self.model = model
        self.precomputed = precomputed  # (B, D, T)
        self.cond_free = cond_free

    def __call__(self, x: torch.Tensor, timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        cond = self.model(x, timesteps, precomputed=self.precomputed)
        uncond = self.model(x, timesteps, conditioning_free=True) if self.cond_free else None
        return cond, uncond


class BatchedDenoiser:
    """Both guidance passes in one model call: x twice along the batch, with the aligned embeddings
    for the first half and the learned unconditioned embedding for the second.

    The network treats batch rows independently (per-sample norms, attention within a sample), so
    this equals :class:`DecoderDenoiser` up to float rounding, in one launch of every kernel.
    """

    def __init__(self, model: torch.nn.Module, precomputed: torch.Tensor, cond_free: bool,
                 frames: torch.Tensor | None = None):
        """`frames` (B, 1, T): 0/1 mask of real frames when x and `precomputed` are padded at the end."""
        self.model = model
        self.cond_free = cond_free
        self.frames = frames
        if cond_free:
            b, _, t = precomputed.shape
            unconditioned = model.unconditioned_embeddings(b, t).to(precomputed.dtype)
            precomputed = torch.cat([precomputed, unconditioned])  # (2B, D, T)
            if frames is not None:
                self.frames = torch.cat([frames, frames])
        self.precomputed = precomputed

    def __call__(self, x: torch.Tensor, timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self.cond_free:
            return self.model(x, timesteps, precomputed=self.precomputed, frames=self.frames), None
        both = self.model(torch.cat([x, x]), torch.cat([timesteps, timesteps]), precomputed=self.precomputed,
                          frames=self.frames)
        cond, uncond = both.chunk(2)  # each (B, 2C, T)
        return cond, uncond


# ---- samplers: one reverse step each ----


class Sampler(Protocol):
    """One reverse step x_t -> x_{t-1} at step `index` (an int or a 0-d long tensor), given the
    model's Prediction. `reset` (optional) is called once before a run over `schedule` from x_T."""

    def reset(self, schedule: NoiseSchedule, x: torch.Tensor) -> None: ...

    def step(
        self,
        schedule: NoiseSchedule,
        index: int | torch.Tensor,
        x: torch.Tensor,
        pred: Prediction,
        generator: torch.Generator,
    ) -> torch.Tensor: ...


def _after_first(index: int | torch.Tensor, like: torch.Tensor) -> float | torch.Tensor:
    """1 for step indices > 0, 0 at index 0 (the final step), as a float or a 0-d tensor of `like`'s dtype."""
    if isinstance(index, torch.Tensor):
        return (index > 0).to(device=like.device, dtype=like.dtype)
    return 1.0 if index > 0 else 0.0


def _standard_normal(shape: torch.Size, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """N(0, 1) drawn on the generator's device (so a CPU generator gives the same numbers anywhere), in
    float32 (float64 in a float64 run, as the reference's `randn_like` draws there)."""
    dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
    noise = torch.randn(shape, generator=generator, device=generator.device, dtype=dtype)
    return noise.to(device=like.device, dtype=like.dtype)


class DDPMSampler:
    """Ancestral sampling: x_{t-1} ~ N(posterior mean, exp(log_variance)); noise drawn at every step."""

    def reset(self, schedule: NoiseSchedule, x: torch.Tensor) -> None:
        pass

    def step(
        self,
        schedule: NoiseSchedule,
        index: int | torch.Tensor,
        x: torch.Tensor,
        pred: Prediction,
        generator: torch.Generator,
    ) -> torch.Tensor:
        mean = at(schedule.posterior_mean_coef1, index) * pred.x0 + at(schedule.posterior_mean_coef2, index) * x
        noise = _standard_normal(x.shape, generator, x)  # drawn at index 0 too, to keep the stream aligned
        # no noise is added at the last step (index 0): written as a factor so that no branch depends on it
        return mean + _after_first(index, mean) * torch.exp(0.5 * pred.log_variance) * noise


class DDIMSampler:
    """DDIM on the same schedule; deterministic for eta = 0 (no noise drawn).

    With eta > 0 and a tensor index, noise is drawn at the last step too (and not added).
    """

    def __init__(self, eta: float = 0.0):
        self.eta = eta

    def reset(self, schedule: NoiseSchedule, x: torch.Tensor) -> None:
        pass

    def step(
        self,
        schedule: NoiseSchedule,
        index: int | torch.Tensor,
        x: torch.Tensor,
        pred: Prediction,
        generator: torch.Generator,
    ) -> torch.Tensor:
        acp, acp_prev = at(schedule.alphas_cumprod, index), at(schedule.alphas_cumprod_prev, index)
        # eps re-derived from the (clipped) x0 keeps the step consistent with it.
        scaled_x = at(schedule.sqrt_recip_alphas_cumprod, index) * x
        eps = (scaled_x - pred.x0) / at(schedule.sqrt_recipm1_alphas_cumprod, index)
        sigma = self.eta * torch.sqrt((1 - acp_prev) / (1 - acp)) * torch.sqrt(1 - acp / acp_prev)
        x_prev = pred.x0 * torch.sqrt(acp_prev) + torch.sqrt(1 - acp_prev - sigma**2) * eps
        if self.eta > 0 and (isinstance(index, torch.Tensor) or index > 0):
            x_prev = x_prev + _after_first(index, x_prev) * sigma * _standard_normal(x.shape, generator, x)
        return x_prev


class DPMSolverPP2M:
    """DPM-Solver++(2M) (Lu et al. 2022): a deterministic second-order multistep solver of the
    probability-flow ODE in the data-prediction form. It walks whatever respaced schedule it is
    given; every run gives it one spaced evenly in log-SNR (SAMPLER_SPACING).

    With alpha_t = sqrt(alpha-bar_t), sigma_t = sqrt(1 - alpha-bar_t), lambda_t = log(alpha_t / sigma_t)
    and h = lambda_s - lambda_t for a step t -> s:

        x_s = (sigma_s / sigma_t) x_t + alpha_s (1 - e^-h) D,   D = (1 + 1/(2r)) x0_t - 1/(2r) x0_prev

    where r = h_prev / h. The first step is first order (D = x0_t), and so is the last (s is clean
    data, sigma_s = 0, so x_s = x0_t). All coefficients are tabulated per step index in double
    precision by `reset`; the only state carried between steps is the previous x0.
    """

    def __init__(self):
        self.tables: dict[str, torch.Tensor] = {}
        self.previous_x0: torch.Tensor | None = None

    def reset(self, schedule: NoiseSchedule, x: torch.Tensor) -> None:
        acp = schedule.alphas_cumprod.double().cpu()
        acp_prev = schedule.alphas_cumprod_prev.double().cpu()  # the target of each step; 1 at index 0
        steps = len(acp)
        lam_t = 0.5 * (torch.log(acp) - torch.log1p(-acp))
        sigma_s = torch.sqrt(1 - acp_prev)
        x_coef = sigma_s / torch.sqrt(1 - acp)  # 0 at the last step
        d_coef = torch.sqrt(acp_prev).clone()  # alpha_s (1 - e^-h); e^-h = 0 at the last step
        current = torch.ones(steps, dtype=torch.float64)
        for i in range(steps - 1, 0, -1):
            h = 0.5 * (torch.log(acp_prev[i]) - torch.log1p(-acp_prev[i])) - lam_t[i]
            d_coef[i] = d_coef[i] * -torch.expm1(-h)
            if i < steps - 1:  # second order from the second step on (index 0, into clean data, stays first order)
                h_prev = lam_t[i] - lam_t[i + 1]
                current[i] = 1 + h / (2 * h_prev)
        previous = 1 - current
        device = schedule.alphas_cumprod.device
        tables = {"x": x_coef, "d": d_coef, "current": current, "previous": previous}
        # refilled in place when the shapes allow, so that a captured step keeps reading the same memory
        if all(name in self.tables and self.tables[name].shape == t.shape for name, t in tables.items()):
            for name, t in tables.items():
                self.tables[name].copy_(t)
        else:
            self.tables = {name: t.float().to(device) for name, t in tables.items()}
        if self.previous_x0 is not None and self.previous_x0.shape == x.shape and self.previous_x0.device == x.device:
            self.previous_x0.zero_()
        else:
            self.previous_x0 = torch.zeros_like(x)

    def step(
        self,
        schedule: NoiseSchedule,
        index: int | torch.Tensor,
        x: torch.Tensor,
        pred: Prediction,
        generator: torch.Generator,
    ) -> torch.Tensor:
        if self.previous_x0 is None or self.previous_x0.shape != x.shape:
            self.reset(schedule, x)
        t = self.tables
        d = at(t["current"], index) * pred.x0 + at(t["previous"], index) * self.previous_x0
        self.previous_x0.copy_(pred.x0)
        return at(t["x"], index) * x + at(t["d"], index) * d


SAMPLERS: dict[str, Callable[[], Sampler]] = {"ddpm": DDPMSampler, "ddim": DDIMSampler, "dpm++2m": DPMSolverPP2M}
SAMPLER_SPACING = {"ddpm": "uniform", "ddim": "uniform", "dpm++2m": "log_snr"}  # timesteps each walks


def sample_loop(
    denoiser: Denoiser,
    schedule: NoiseSchedule,
    x: torch.Tensor,
    sampler: Sampler,
    generator: torch.Generator,
    *,
    cond_free_k: float = 0.0,
    clip_denoised: bool = True,
    progress: ProgressFn | None = None,
) -> torch.Tensor:
    """Run `sampler` from x_T (B, C, T) through step indices N-1 .. 0 and return x_0 (B, C, T)."""
    steps = len(schedule)
    reset = getattr(sampler, "reset", None)  # optional: stateless samplers may leave it out
    if reset is not None:
        reset(schedule, x)
    for done, index in enumerate(reversed(range(steps)), start=1):
        timesteps = schedule.timesteps[index].to(x.device).expand(x.shape[0])  # (B,) original timesteps
        output, uncond = denoiser(x, timesteps)
        guidance = ramped_guidance(cond_free_k, index, steps) if uncond is not None else 0.0
        pred = predict(schedule, x, index, output, uncond, guidance, clip_denoised)
        x = sampler.step(schedule, index, x, pred, generator)
        if progress is not None:
            progress(done, steps)
    return x


def initial_noise(model: torch.nn.Module, latents: torch.Tensor, conditioning_latent: torch.Tensor, *,
                  temperature: float, generator: torch.Generator,
                  frame_ratio: Fraction | int = TORTOISE_FRAME_RATIO) -> tuple[torch.Tensor, torch.Tensor]:
    """What every sampling run starts from: aligned embeddings (B, D, T) of GPT latents (B, T_lat, D_lat)
    or codes (B, T_lat), and x_T = noise * temperature (B, in_channels, T), T = output_frames(T_lat).

    `model` is a DiffusionDecoder in eval mode; `conditioning_latent` (B or 1, 2*D) comes from its
    `get_conditioning`. x_T is float32 (float64 in a float64 run) whatever the model's precision.
    """
    frames = output_frames(latents.shape[1], frame_ratio)
    precomputed = model.timestep_independent(latents, conditioning_latent, frames)  # (B, D, T)
    shape = (latents.shape[0], model.config.in_channels, frames)
    x = at_least_float32(_standard_normal(torch.Size(shape), generator, precomputed)) * temperature  # x_t: float32
    return precomputed, x


def sample_eager(
    model: torch.nn.Module,
    precomputed: torch.Tensor,
    x: torch.Tensor,
    *,
    steps: int,
    sampler: str = "ddpm",
    cond_free: bool = True,
    cond_free_k: float = 2.0,
    generator: torch.Generator,
    progress: ProgressFn | None = None,
    batched: bool = True,
) -> torch.Tensor:
    """x_0 (B, C, T) from x_T (B, C, T) and aligned embeddings (B, D, T), step by step in Python.

    `batched`: both guidance passes in one model call (:class:`BatchedDenoiser`), else two calls.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown diffusion sampler {sampler!r}; choose from {sorted(SAMPLERS)}")
    logger.debug("diffusion: %s, %d steps, %d frames, cond_free=%s", sampler, steps, x.shape[-1], cond_free)
    schedule = NoiseSchedule.respaced(steps, spacing=SAMPLER_SPACING[sampler]).to(x.device)
    denoiser = (BatchedDenoiser if batched else DecoderDenoiser)(model, precomputed, cond_free)
    return sample_loop(
        denoiser, schedule, x, SAMPLERS[sampler](), generator, cond_free_k=cond_free_k, progress=progress
    )
