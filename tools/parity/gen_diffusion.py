"""Golden fixtures for the diffusion decoder (DiffusionTts) and its DDPM sampler.

Runs in the reference environment (tortoise-tts 3.0.0); see make_fixtures.sh. The model keeps every
Tortoise width (1024 channels, 16 heads, 100 mels, 1024-wide latents, 8193 codes) with reduced depth:
the reference is built with `num_layers=MAIN_LAYERS`, then its hard-coded inner stacks are cut down
to the counts in CONFIG (same key names, fewer indices). CONFIG uses the field names of our
`DiffusionConfig`. Weights come from `seeded_state_dict`, loaded with strict=True.

diffusion_model.safetensors
  get_conditioning(cond_mels) on a batch of 2 x 2 clips; timestep_independent from latents (to the
  34 frames of 8 latents) and from codes (to 11 frames); forward with precomputed embeddings,
  conditioning-free, and the training form (aligned latents + conditioning latent,
  return_code_pred) in eval mode.
diffusion_sampling.safetensors
  The reference diffuser's p_sample_loop after torch.manual_seed(seed), as do_spectrogram_diffusion
  calls it: one run with ramped conditioning-free guidance, one without. These runs are float64
  (model, inputs and every random draw; the model's float32 islands, GroupNorm32, the attention
  softmax and the output cast, kept in float64 too): in float32, rounding moves a 6-step run by
  about 2e-6, too close to the tests' tolerance to hold on every CPU. The coefficient tables stay
  float32, as the reference extracts them. Also the reference's respacing for several step counts
  and those tables.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn
from tortoise.api import load_discrete_vocoder_diffuser
from tortoise.models import diffusion_decoder
from tortoise.models.arch_util import AttentionBlock
from tortoise.models.diffusion_decoder import DiffusionTts, TimestepEmbedSequential
from tortoise.utils.audio import denormalize_tacotron_mel
from tortoise.utils.diffusion import _extract_into_tensor, space_timesteps

from tools.parity.fixture import save_fixture
from tools.parity.seeded import parameter_shapes, seeded_noise, seeded_state_dict

CONFIG = {
    "model_channels": 1024,
    "num_layers": 2,
    "in_channels": 100,
    "out_channels": 200,
    "in_latent_channels": 1024,
    "in_tokens": 8193,
    "num_heads": 16,
    "dropout": 0.0,
    "code_converter_blocks": 1,
    "latent_conditioner_blocks": 1,
    "contextual_embedder_blocks": 1,
    "integrator_layers": 1,
    "plain_resblocks": 1,
    "use_fp16": False,
    "layer_drop": 0.0,
    "unconditioned_percentage": 0.0,
}
COND_SHAPE = (2, 2, 100, 44)  # (B, clips, mels, frames); 44 -> 22 -> 11 through the stride-2 convs
LATENT_FRAMES = 8  # -> 8 * 4 * 24000 // 22050 = 34 mel frames
FRAMES = LATENT_FRAMES * 4 * 24000 // 22050
CODE_FRAMES = LATENT_FRAMES + 3  # codes path checked at a short, non-integer upsampling
TIMESTEPS = [1234, 17]
SAMPLING_RUNS = [  # name, steps, cond_free, cond_free_k, temperature, seed
    ("cfg", 6, True, 2.0, 0.9, 1234),
    ("plain", 5, False, 2.0, 1.0, 99),
]
SPACING_COUNTS = [2, 5, 6, 30, 80, 100, 200, 400, 1000, 4000]
SCHEDULE_TABLES = [
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
    "posterior_log_variance_clipped",
]


def count_blocks(stack: nn.Module) -> int:
    return sum(isinstance(m, AttentionBlock) for m in stack)


@contextlib.contextmanager
def float32_islands_in_float64(model: DiffusionTts):
    """Within the block, `tensor.float()` leaves float64 tensors as they are (the reference's float32
    islands stay float64), float64 latents count as latents (the reference tests for float32), and
    the float32 timestep embedding is cast to float64 where it enters."""
    original, original_is_latent = torch.Tensor.float, diffusion_decoder.is_latent

    def float_(self, *args, **kwargs):
        return self if self.dtype == torch.float64 else original(self, *args, **kwargs)

    hook = model.time_embed.register_forward_pre_hook(lambda module, args: tuple(a.double() for a in args))
    torch.Tensor.float = float_
    diffusion_decoder.is_latent = lambda t: t.is_floating_point()
    try:
        yield
    finally:
        torch.Tensor.float = original
        diffusion_decoder.is_latent = original_is_latent
        hook.remove()


class Float64Run(nn.Module):
    """The reference model, cast to float64, with its float32 islands in float64 during every call."""

    def __init__(self, model: DiffusionTts):
        super().__init__()
        self.model = model.double()

    def forward(self, *args, **kwargs):
        with float32_islands_in_float64(self.model):
            return self.model(*args, **kwargs)

    def timestep_independent(self, *args, **kwargs):
        with float32_islands_in_float64(self.model):
            return self.model.timestep_independent(*args, **kwargs)


def build_reference() -> DiffusionTts:
    """Tortoise-width DiffusionTts with the inner stacks shortened to CONFIG's counts."""
    c = CONFIG
    model = DiffusionTts(
        model_channels=c["model_channels"],
        num_layers=c["num_layers"],
        in_channels=c["in_channels"],
        out_channels=c["out_channels"],
        in_latent_channels=c["in_latent_channels"],
        in_tokens=c["in_tokens"],
        dropout=c["dropout"],
        use_fp16=False,
        num_heads=c["num_heads"],
        layer_drop=0,
        unconditioned_percentage=0,
    )
    model.code_converter = model.code_converter[: c["code_converter_blocks"]]
    model.latent_conditioner = model.latent_conditioner[: 1 + c["latent_conditioner_blocks"]]
    model.contextual_embedder = model.contextual_embedder[: 2 + c["contextual_embedder_blocks"]]
    model.conditioning_timestep_integrator = model.conditioning_timestep_integrator[: c["integrator_layers"]]
    assert isinstance(model.conditioning_timestep_integrator, TimestepEmbedSequential)
    main, plain = list(model.layers[: c["num_layers"]]), list(model.layers[c["num_layers"] :])
    model.layers = nn.ModuleList(main + plain[: c["plain_resblocks"]])
    assert count_blocks(model.code_converter) == c["code_converter_blocks"]
    assert count_blocks(model.latent_conditioner) == c["latent_conditioner_blocks"]
    assert count_blocks(model.contextual_embedder) == c["contextual_embedder_blocks"]
    model.load_state_dict(seeded_state_dict(parameter_shapes(model)), strict=True)
    return model.eval()


def model_fixture(model: DiffusionTts) -> None:
    b = COND_SHAPE[0]
    cond_mels = seeded_noise(COND_SHAPE, seed=31).clamp(-1, 1)
    latents = seeded_noise((b, LATENT_FRAMES, CONFIG["in_latent_channels"]), seed=32)
    codes = torch.randint(
        0, CONFIG["in_tokens"], (b, LATENT_FRAMES), generator=torch.Generator().manual_seed(33)
    )
    x = seeded_noise((b, CONFIG["in_channels"], FRAMES), seed=34)
    timesteps = torch.tensor(TIMESTEPS)
    with torch.no_grad():
        conditioning = model.get_conditioning(cond_mels)  # (B, 2048)
        aligned = model.timestep_independent(latents, conditioning, FRAMES, False)  # (B, 1024, T)
        aligned_codes = model.timestep_independent(codes, conditioning, CODE_FRAMES, False)
        out = model(x, timesteps, precomputed_aligned_embeddings=aligned)  # (B, 200, T)
        out_free = model(x, timesteps, precomputed_aligned_embeddings=aligned, conditioning_free=True)
        out_train, mel_pred = model(
            x,
            timesteps,
            aligned_conditioning=latents,
            conditioning_latent=conditioning,
            return_code_pred=True,
        )
    for name, t in [
        ("conditioning", conditioning),
        ("aligned", aligned),
        ("out", out),
        ("out_free", out_free),
    ]:
        print(f"diffusion_model: {name} {tuple(t.shape)} rms {t.pow(2).mean().sqrt():.4f}")
    save_fixture(
        "diffusion_model",
        {
            "cond_mels": cond_mels,
            "latents": latents,
            "codes": codes,
            "x": x,
            "timesteps": timesteps,
            "conditioning": conditioning,
            "aligned": aligned,
            "aligned_codes": aligned_codes,
            "out": out,
            "out_free": out_free,
            "out_train": out_train,
            "mel_pred": mel_pred,
        },
        {
            "config": CONFIG,
            "frames": FRAMES,
            "code_frames": CODE_FRAMES,
            "reference_shapes": parameter_shapes(model),
            "seed": 0,
        },
    )


def sampling_fixture(model: DiffusionTts, conditioning: torch.Tensor) -> None:
    tensors = {
        "latents": seeded_noise((1, LATENT_FRAMES, CONFIG["in_latent_channels"]), seed=41),
        "conditioning": conditioning,
    }
    runs = []
    model64 = Float64Run(model)
    latents64, conditioning64 = tensors["latents"].double(), conditioning.double()
    for name, steps, cond_free, k, temperature, seed in SAMPLING_RUNS:
        diffuser = load_discrete_vocoder_diffuser(
            desired_diffusion_steps=steps, cond_free=cond_free, cond_free_k=k
        )
        torch.manual_seed(seed)
        with torch.no_grad():  # do_spectrogram_diffusion's calls, with the noise drawn in float64
            precomputed = model64.timestep_independent(latents64, conditioning64, FRAMES, False)
            shape = (1, CONFIG["in_channels"], FRAMES)
            noise = torch.randn(shape, dtype=torch.float64) * temperature
            normalised = diffuser.p_sample_loop(model64, shape, noise=noise, progress=False,
                                                model_kwargs={"precomputed_aligned_embeddings": precomputed})
            mel = denormalize_tacotron_mel(normalised)[:, :, :FRAMES]
        saturated = (normalised.abs() >= 0.999).float().mean()
        print(
            f"diffusion_sampling[{name}]: mel {tuple(mel.shape)} std {normalised.std():.4f} "
            f"saturated {saturated:.3f}"
        )
        tensors[f"{name}_mel"] = normalised
        tensors[f"{name}_log_mel"] = mel
        runs.append(
            {
                "name": name,
                "steps": steps,
                "cond_free": cond_free,
                "cond_free_k": k,
                "temperature": temperature,
                "seed": seed,
                "dtype": "float64",
            }
        )
        if name == "cfg":  # the respaced schedule as the reference's sampler sees it (float32)
            index = torch.arange(steps)
            tensors["schedule_timesteps"] = torch.tensor(diffuser.timestep_map)
            for table in SCHEDULE_TABLES:
                tensors[f"schedule_{table}"] = _extract_into_tensor(getattr(diffuser, table), index, (steps,))
            tensors["schedule_log_betas"] = _extract_into_tensor(np.log(diffuser.betas), index, (steps,))
    spacing = {str(n): sorted(space_timesteps(4000, [n])) for n in SPACING_COUNTS}
    save_fixture(
        "diffusion_sampling", tensors, {"config": CONFIG, "runs": runs, "spacing": spacing, "seed": 0}
    )


if __name__ == "__main__":
    torch.set_num_threads(1)
    reference = build_reference()
    model_fixture(reference)
    with torch.no_grad():
        speaker = reference.get_conditioning(seeded_noise((1, 2, 100, 44), seed=42).clamp(-1, 1))
    sampling_fixture(reference, speaker)
