"""Flow decoder: refines the DVAE's coarse mel into a sharp one by conditional flow matching.

Shallow flow matching with a data-dependent prior (the seed design's "DVAE output is the
diffusion prior"; PriorGrad, DiffSinger's shallow reflow): the flow starts at the coarse mel plus a
little noise, ``x0 = coarse + prior_noise * eps``, and follows straight paths to the real mel
``x1``: ``x_t = (1 - t) x0 + t x1``, whose velocity ``x1 - x0`` the network learns. Sampling is a few
Euler steps from t = 0 to 1. Because the start is already close, a small network and few steps do.

The velocity network hears the current point ``x_t``, the coarse mel, the codes (embedded and
repeated to the frame rate) and, through FiLM in every block, the flow time and a speaker vector
from a clip of the voice (:class:`~tts.models.blocks.SpeakerEncoder`). Blocks are dilated
depthwise convolutions followed by a pointwise MLP (ConvNeXt style); the receptive field covers
about a second and a half. All mels are normalised to [-1, 1] (:func:`tts.audio.normalize_mel`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import SpeakerEncoder, group_norm, zero_module
from .diffusion import timestep_embedding


@dataclass
class FlowConfig:
    mel_channels: int = 80
    channels: int = 256
    layers: int = 8
    kernel_size: int = 5
    dilation_cycle: int = 4  # dilations 1, 2, 4, 8, 1, 2, ...
    num_codes: int = 1024  # DVAE codebook size (one more id pads)
    code_dim: int = 64
    frames_per_code: int = 4  # the DVAE's downsampling
    speaker_dim: int = 128
    speaker_channels: int = 128
    time_dim: int = 128
    prior_noise: float = 0.2  # standard deviation of the noise around the coarse mel at t = 0


class FlowBlock(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilation: int, cond_dim: int):
        super().__init__()
        self.dwconv = nn.Conv1d(channels, channels, kernel_size, padding=dilation * (kernel_size // 2),
                                dilation=dilation, groups=channels)
        self.norm = group_norm(channels)
        self.film = nn.Linear(cond_dim, 2 * channels)
        self.mlp = nn.Sequential(nn.Conv1d(channels, 2 * channels, 1), nn.GELU(),
                                 zero_module(nn.Conv1d(2 * channels, channels, 1)))

    def forward(self, x: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, C, T); cond (B, cond_dim); mask (B, 1, T) of real frames."""
        scale, shift = self.film(cond)[:, :, None].chunk(2, dim=1)  # (B, C, 1) each
        h = self.norm(self.dwconv(x * mask)) * (1 + scale) + shift
        return x + self.mlp(h) * mask


class FlowDecoder(nn.Module):
    def __init__(self, config: FlowConfig):
        super().__init__()
        self.config = config
        c = config
        self.code_embedding = nn.Embedding(c.num_codes + 1, c.code_dim)
        self.speaker_encoder = SpeakerEncoder(c.mel_channels, c.speaker_channels, c.speaker_dim)
        self.time_mlp = nn.Sequential(nn.Linear(c.time_dim, c.time_dim), nn.SiLU(), nn.Linear(c.time_dim, c.time_dim))
        cond_dim = c.time_dim + c.speaker_dim
        self.input = nn.Conv1d(2 * c.mel_channels + c.code_dim, c.channels, 1)
        self.blocks = nn.ModuleList(
            FlowBlock(c.channels, c.kernel_size, 2 ** (i % c.dilation_cycle), cond_dim) for i in range(c.layers))
        self.out_norm = group_norm(c.channels)
        self.output = zero_module(nn.Conv1d(c.channels, c.mel_channels, 1))

    def speaker(self, ref_mel: torch.Tensor) -> torch.Tensor:
        """Normalised mel of a reference clip (B, C, F) -> (B, speaker_dim)."""
        return self.speaker_encoder(ref_mel)

    def forward(self, x: torch.Tensor, t: torch.Tensor, coarse: torch.Tensor, codes: torch.Tensor,
                speaker: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Velocity at (x, t): x, coarse (B, C, T) with T = frames_per_code * L; t (B,) in [0, 1];
        codes (B, L); speaker (B, speaker_dim); mask (B, 1, T) -> (B, C, T)."""
        if mask is None:
            mask = torch.ones_like(x[:, :1])
        codes = self.code_embedding(codes).transpose(1, 2)  # (B, code_dim, L)
        codes = codes.repeat_interleave(self.config.frames_per_code, dim=2)[..., :x.shape[-1]]
        h = self.input(torch.cat([x, coarse, codes.to(x.dtype)], dim=1))  # (B, channels, T)
        cond = torch.cat([self.time_mlp(timestep_embedding(t * 1000, self.config.time_dim).to(x.dtype)),
                          speaker.to(x.dtype)], dim=1)
        for block in self.blocks:
            h = block(h, cond, mask)
        return self.output(F.silu(self.out_norm(h))) * mask

    def prior(self, coarse: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The flow's start: the coarse mel plus noise (B, C, T)."""
        noise = torch.randn(coarse.shape, generator=generator, device=coarse.device, dtype=coarse.dtype)
        return coarse + self.config.prior_noise * noise

    @torch.no_grad()
    def generate(self, coarse: torch.Tensor, codes: torch.Tensor, ref_mel: torch.Tensor | None = None,
                 steps: int = 8, generator: torch.Generator | None = None,
                 speaker: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Coarse mel (B, C, T) and its codes (B, L) -> refined normalised mel (B, C, T), by `steps`
        Euler steps; the speaker comes from `ref_mel` (B, C, F) or is given as `speaker`."""
        if steps < 1:
            raise ValueError("steps must be at least 1")
        if speaker is None:
            speaker = self.speaker(ref_mel)
        x = self.prior(coarse, generator)
        for i in range(steps):
            t = torch.full((x.shape[0],), i / steps, device=x.device)
            x = x + self(x, t, coarse, codes, speaker, mask) / steps
        return x.clamp(-1.0, 1.0)
