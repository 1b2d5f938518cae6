"""Choosing the torch device from a name: "cpu", "cuda", "cuda:N" or "auto" (CUDA when there is a GPU)."""

from __future__ import annotations

import torch

from .errors import TTSError


def resolve_device(name: str | None, index: int | None = None) -> torch.device:
    """The device `name` stands for; TTSError for an unknown name or CUDA without a GPU.

    `index` picks the GPU for a bare "cuda" (a training process's local rank).
    """
    if name in (None, "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TTSError(f"device {name!r} was asked for but no CUDA GPU is available (use cpu)")
        try:
            device = torch.device(name)
        except RuntimeError:
            raise TTSError(f"unknown device {name!r} (use cpu, cuda, cuda:N or auto)") from None
        return torch.device("cuda", index) if device.index is None and index is not None else device
    raise TTSError(f"unknown device {name!r} (use cpu, cuda, cuda:N or auto)")
