"""Deterministic random weights, identical in any environment with the same torch build.

The parity fixtures store only inputs and outputs (weights of Tortoise-width models would be far
too large). Both the reference (in its own virtual environment) and our tests fill their models
from :func:`seeded_state_dict`, which derives each tensor from its key name alone, so the result
does not depend on module construction order. Pure torch: importable from either environment.
"""

from __future__ import annotations

import math
import zlib

import torch


def seeded_tensor(name: str, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """A float32 tensor for parameter `name`, scaled so activations stay O(1) through a layer."""
    generator = torch.Generator().manual_seed((zlib.crc32(name.encode()) + 1_000_003 * seed) % 2**63)
    noise = torch.randn(shape, generator=generator, dtype=torch.float32)
    leaf = name.rsplit(".", 1)[-1]
    if len(shape) == 0:
        return noise * 0.1
    if len(shape) == 1:
        if leaf in ("weight", "g", "gamma"):  # normalisation gains
            return 1.0 + 0.1 * noise
        if leaf == "weight_g":
            return 1.0 + 0.1 * noise.abs()
        return 0.02 * noise  # biases
    if leaf == "weight_g":  # weight-norm magnitudes, shape (out, 1, 1)
        return 1.0 + 0.1 * noise.abs()
    if "emb" in name and len(shape) == 2:  # embedding tables and position tables
        return 0.02 * noise
    return noise / math.sqrt(math.prod(shape[1:]))


def seeded_state_dict(shapes: dict[str, tuple[int, ...]], seed: int = 0,
                      scales: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
    """One seeded tensor per key of `shapes` (key -> shape).

    `scales` maps a module name (a key prefix such as "res_stack.0.kernel_predictor.kernel_conv") to a
    factor for its weight's magnitude (`weight`, or weight norm's `weight_g`): how a fixture keeps a
    network's activations out of saturation. Both sides pass the same scales.
    """
    state = {name: seeded_tensor(name, tuple(shape), seed) for name, shape in shapes.items()}
    for name, factor in (scales or {}).items():
        for leaf in ("weight", "weight_g"):
            if f"{name}.{leaf}" in state:
                state[f"{name}.{leaf}"] = state[f"{name}.{leaf}"] * factor
    return state


def parameter_shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """Shapes of a module's parameters (buffers such as rotary frequencies are left as built)."""
    return {name: tuple(p.shape) for name, p in module.named_parameters()}


def seeded_noise(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Standard normal noise from its own generator (inputs, diffusion noise, vocoder noise)."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


# UnivNet with the default seeded weights is chaotic: a last-bit difference anywhere grows to a
# 10-20% different waveform (float32 against float64, or float64 with and without SIMD). Its
# predicted per-frame kernels sum C_in * K = 96 products and so have about ten times the gain of a
# plain layer; scaling the predictor's kernel and bias outputs down keeps the gated layers out of
# saturation, and the whole network well-conditioned (see tools.parity.conditioning).
UNIVNET_SCALES: dict[str, float] = {
    **{f"res_stack.{i}.kernel_predictor.kernel_conv": 0.03 for i in range(3)},
    **{f"res_stack.{i}.kernel_predictor.bias_conv": 0.3 for i in range(3)},
    "conv_post.1": 0.3,  # and the output convolution, to keep the final tanh out of saturation
}
