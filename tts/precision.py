"""Inference precision: float32, or half precision (bf16 / fp16) through autocast.

With "bf16" or "fp16", every model call runs under `torch.autocast` of that dtype: matrix products
and convolutions run in half precision, while the operations autocast keeps in float32 (norms,
softmax, ...) and this code's own float32 islands (diffusion GroupNorms, the sampling state x_t,
logit filtering) stay float32.

On CUDA the weights are also cast once (`prepare`), so no step re-casts them, and autocast's cast
cache is off (it is not allowed while CUDA graphs are captured). On the CPU the weights stay float32
(CPU kernels refuse half-precision norm parameters with float32 inputs) and the cast cache is on, so
each weight is converted once per `autocast` block.

bf16 is the choice on CPUs with AMX/AVX512-BF16 and on recent GPUs (float32's range, no overflow);
fp16 is for GPUs (more mantissa, smaller range).

The table of precisions (:data:`PRECISIONS`) is the one inference and training share; it names torch
dtypes rather than holding them, so that the command line can offer the choices without importing torch.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import TTSError

if TYPE_CHECKING:
    import torch
    from torch import nn

# name -> the torch dtype that matrix products and convolutions run in (None: float32, autocast off)
PRECISIONS: dict[str, str | None] = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}


def half_dtype(precision: str) -> torch.dtype | None:
    """The half-precision dtype of `precision`, None for float32; TTSError for an unknown name."""
    import torch

    if precision not in PRECISIONS:
        raise TTSError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    name = PRECISIONS[precision]
    return None if name is None else getattr(torch, name)


def autocast(device: torch.device | str, precision: str) -> contextlib.AbstractContextManager:
    """Autocast to `precision`'s half dtype on `device`; for float32, autocast switched off (also inside
    an enclosing half-precision block)."""
    import torch

    dtype = half_dtype(precision)
    device = torch.device(device)
    if dtype is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype, cache_enabled=device.type != "cuda")


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """A float32 island: `x` in float32, or kept in float64 (so that a float64 run, as the parity tools
    make, stays float64 throughout)."""
    import torch

    return x if x.dtype == torch.float64 else x.float()


#: what vocoders may run at: "auto" (see :func:`vocoder_precision`) or one of PRECISIONS
VOCODER_PRECISIONS = ("auto", *PRECISIONS)
VOCODER_PRECISION_ENV = "TTS_VOCODER_PRECISION"  # what "auto" means on the CPU where it is set


def vocoder_precision(device: torch.device | str, precision: str, choice: str = "auto",
                      native_bf16: bool | None = None) -> str:
    """The precision vocoders run at: `choice` when it names one; "auto": `precision` on CUDA; on the
    CPU, the environment variable TTS_VOCODER_PRECISION when set (it reaches every worker process, e.g.
    `tts narrate --ray`'s), else bf16 where the CPU multiplies bf16 natively
    (:func:`cpu_has_native_bf16`), else float32.

    Measured on this project's CPU (AVX512-BF16): bf16 moves the universal HiFi-GAN's waveform by 18%
    (relative L2; 5.7% of the STFT magnitudes: benchmarks/precision.py), yet with our default model
    Whisper hears the same words and Resemblyzer the same voice (15 sentences, voices joe and alpha,
    the same codes vocoded both ways: WER 16.8 / 16.8 and 24.3 / 23.0, similarity 0.902 / 0.901 and
    0.901 / 0.900), and synthesis takes a third less time. CPUs without native bf16 would emulate it,
    slower than float32, so they keep float32.
    """
    import torch

    half_dtype(precision)
    if choice != "auto":
        half_dtype(choice)
        return choice
    if torch.device(device).type == "cuda":
        return precision
    if env := os.environ.get(VOCODER_PRECISION_ENV):  # reaches worker processes too
        if env not in PRECISIONS:
            raise TTSError(f"{VOCODER_PRECISION_ENV}={env!r} is not a precision (choose from {', '.join(PRECISIONS)})")
        return env
    if native_bf16 is None:
        native_bf16 = cpu_has_native_bf16()
    return "bf16" if native_bf16 else "fp32"


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 products natively (AVX512-BF16 or AMX-BF16, as Linux's
    /proc/cpuinfo lists them) and torch's oneDNN kernels can use them. False where unknown."""
    import torch

    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    flags = next((line.partition(":")[2].split() for line in cpuinfo.splitlines() if line.startswith("flags")),
                 [])
    return bool({"avx512_bf16", "amx_bf16"} & set(flags)) and torch.backends.mkldnn.is_available()


def prepare(module: nn.Module, precision: str) -> nn.Module:
    """Cast `module`'s weights to `precision`'s dtype where that pays (CUDA), in place; returns it."""
    dtype = half_dtype(precision)
    device = next(module.parameters()).device
    return module.to(dtype) if dtype is not None and device.type == "cuda" else module
