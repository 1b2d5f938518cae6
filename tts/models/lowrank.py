"""Low-rank updates of the DVAE decoder's convolutions: the part of a fine-tuned voice that changes the
decoder itself, not only the speaker vector it is conditioned on.

Each convolution weight W (out, in, k) of the decoder gets an update B A, with A (r, in * k) and
B (out, r), so that the voice decodes with W + B A. Rank 4 over the shipped decoder is ~72k values
(0.3 MB in float32) against its 3.4M weights. The factors are stored in a voice's adapter as
``dvae_lowrank.<weight name>.a`` and ``.b`` (tts.adapters); :func:`merge` turns them into the full
weights that :meth:`tts.models.dvae.DVAE.decode` takes for that voice, leaving the shared model as it is.
"""

from __future__ import annotations

import torch
from torch import nn

PREFIX = "dvae_lowrank."  # adapter tensor names: PREFIX + weight name + ".a" / ".b"


def targets(dvae) -> dict[str, torch.Tensor]:
    """The decoder convolution weights an update may change, by their name in the DVAE."""
    return {f"decoder.{name}.weight": module.weight for name, module in dvae.decoder.named_modules()
            if isinstance(module, nn.Conv1d)}


def factor_names(weight_name: str) -> tuple[str, str]:
    return f"{PREFIX}{weight_name}.a", f"{PREFIX}{weight_name}.b"


def is_factor(name: str) -> bool:
    return name.startswith(PREFIX) and name.endswith((".a", ".b"))


def init_factors(dvae, rank: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Factors that change nothing yet: A random (scaled by 1/sqrt(fan in)), B zero."""
    factors = {}
    for name, weight in targets(dvae).items():
        fan_in = weight[0].numel()
        a_name, b_name = factor_names(name)
        factors[a_name] = torch.randn(rank, fan_in, generator=generator).to(weight.device) / fan_in ** 0.5
        factors[b_name] = torch.zeros(weight.shape[0], rank, device=weight.device)
    return factors


def check(dvae, factors: dict[str, torch.Tensor]) -> str | None:
    """None if `factors` fit this DVAE's decoder, else what does not fit (in words)."""
    weights = targets(dvae)
    for name in factors:
        if not is_factor(name) or name.removeprefix(PREFIX)[:-2] not in weights:
            return f"{name} is not a decoder weight of this model"
    for name, weight in weights.items():
        a_name, b_name = factor_names(name)
        if (a_name in factors) != (b_name in factors):
            return f"{name} has one factor of two"
        if a_name not in factors:
            continue
        a, b = factors[a_name], factors[b_name]
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1] or a.shape[1] != weight[0].numel() \
                or b.shape[0] != weight.shape[0]:
            return f"{name} is {tuple(weight.shape)}, its factors {tuple(a.shape)} and {tuple(b.shape)}"
    return None


def merge(dvae, factors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The decoder weights W + B A (in each weight's dtype) for every weight that has factors; with
    autograd when the factors require it."""
    merged = {}
    for name, weight in targets(dvae).items():
        a_name, b_name = factor_names(name)
        if a_name in factors:
            update = factors[b_name].to(weight.device, torch.float32) @ factors[a_name].to(weight.device, torch.float32)
            merged[name] = (weight.float() + update.view(weight.shape)).to(weight.dtype)
    return merged
