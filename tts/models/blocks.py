"""Building blocks shared by several models (the GPT's conditioning encoder, the diffusion decoder).

Shapes follow the convolutional convention `(B, C, T)` unless noted.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tts.precision import at_least_float32


class GroupNorm32(nn.GroupNorm):
    """GroupNorm that computes in (at least) float32 and returns the input dtype.

    With `frames` (B, 1, T), a 0/1 mask of the real frames of a padded batch, the statistics are
    taken over the real frames only, so that padding does not change the result there.
    """

    def forward(self, x: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        if frames is None:
            return super().forward(at_least_float32(x)).type(x.dtype)
        b, c, t = x.shape
        grouped = at_least_float32(x).reshape(b, self.num_groups, c // self.num_groups, t)  # (B, G, C/G, T)
        keep = frames.to(grouped.dtype).reshape(b, 1, 1, t)
        count = keep.sum(dim=(2, 3), keepdim=True) * (c // self.num_groups)
        mean = (grouped * keep).sum(dim=(2, 3), keepdim=True) / count
        var = ((grouped - mean).square() * keep).sum(dim=(2, 3), keepdim=True) / count
        y = ((grouped - mean) * torch.rsqrt(var + self.eps)).reshape(b, c, t)
        if self.affine:
            y = y * self.weight.to(y.dtype)[:, None] + self.bias.to(y.dtype)[:, None]
        return y.type(x.dtype)


def group_norm(channels: int) -> GroupNorm32:
    """The Tortoise normalisation layer: 32 groups, fewer for narrow layers, always dividing `channels`."""
    groups = 8 if channels <= 16 else 16 if channels <= 64 else 32
    while channels % groups:
        groups //= 2
    if groups <= 2:
        raise ValueError(f"no usable group count for {channels} channels")
    return GroupNorm32(groups, channels)


def zero_module(module: nn.Module) -> nn.Module:
    """Zero a module's parameters in place (used for residual branch outputs at initialisation)."""
    for p in module.parameters():
        p.detach().zero_()
    return module


class RelativePositionBias(nn.Module):
    """T5-style bucketed relative position bias, one learned scalar per (bucket, head); bidirectional."""

    def __init__(self, heads: int, scale: float, num_buckets: int = 32, max_distance: int = 64):
        super().__init__()
        self.scale = scale
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.relative_attention_bias = nn.Embedding(num_buckets, heads)

    def buckets(self, q_len: int, k_len: int, device: torch.device) -> torch.Tensor:
        """(q_len, k_len) bucket index of each query/key offset."""
        offset = torch.arange(k_len, device=device)[None, :] - torch.arange(q_len, device=device)[:, None]
        n = -offset
        half = self.num_buckets // 2  # one half of the buckets for each direction
        bucket = (n < 0).long() * half
        n = n.abs()
        exact = half // 2  # offsets below this get a bucket of their own
        log_scaled = exact + (
            torch.log(n.float() / exact) / math.log(self.max_distance / exact) * (half - exact)
        ).long()
        log_scaled = log_scaled.clamp(max=half - 1)
        return bucket + torch.where(n < exact, n, log_scaled)

    def forward(self, q_len: int, k_len: int, device: torch.device) -> torch.Tensor:
        """Additive attention bias of shape (1, heads, q_len, k_len), already multiplied by `scale`."""
        bias = self.relative_attention_bias(self.buckets(q_len, k_len, device))  # (q, k, heads)
        return bias.permute(2, 0, 1).unsqueeze(0) * self.scale


class AttentionBlock(nn.Module):
    """Pre-norm self-attention over time with a residual connection, on `(B, C, T)` tensors.

    The fused `qkv` projection is laid out head-major (for each head: its q, k, v channels), the
    layout of the Tortoise checkpoints.
    """

    def __init__(self, channels: int, heads: int, relative_position: bool = False):
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels do not split into {heads} heads")
        self.heads = heads
        self.norm = group_norm(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))
        head_dim = channels // heads
        self.relative_pos_embeddings = (
            RelativePositionBias(heads, scale=head_dim**0.5) if relative_position else None
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                frames: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C, T); mask: optional (B, T) of 0/1 keys, applied after the softmax as Tortoise does.

        `frames` (B, 1, T): 0/1 mask of the real frames of a padded batch; padding frames are left out
        of the normalisation statistics and hidden as keys (before the softmax), so the real frames'
        outputs do not depend on the padding.
        """
        b, c, t = x.shape
        qkv = self.qkv(self.norm(x, frames)).reshape(b, self.heads, 3 * c // self.heads, t)
        q, k, v = (y.contiguous() for y in qkv.transpose(2, 3).chunk(3, dim=-1))  # each (B, H, T, D); contiguous
        # inputs let scaled_dot_product_attention use its fused kernel instead of the unfused fallback
        if self.relative_pos_embeddings is None and mask is None and frames is None:
            h = F.scaled_dot_product_attention(q, k, v)  # fused kernel
        else:  # written out: the fused kernels take no bias here, and this keeps bf16 matmuls under autocast
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])  # (B, H, T, T)
            if self.relative_pos_embeddings is not None:
                scores = scores + self.relative_pos_embeddings(t, t, x.device)
            if frames is not None:
                scores = at_least_float32(scores).masked_fill(frames.reshape(b, 1, 1, t) == 0, float("-inf"))
            weights = at_least_float32(scores).softmax(dim=-1)
            if mask is not None:  # Tortoise masks after the softmax
                weights = weights * mask[:, None, None, :].to(weights.dtype)
            h = weights.to(v.dtype) @ v
        h = h.transpose(2, 3).reshape(b, c, t)  # (B, C, T)
        return x + self.proj_out(h)


class SpeakerEncoder(nn.Module):
    """A reference clip's normalised log mel (B, mel_channels, F) -> one speaker vector (B, dim).

    Dilated convolutions over time, then the mean and standard deviation of each channel over the
    clip's frames (statistics pooling, as x-vectors do), projected to `dim`. Small on purpose: it
    conditions decoders on timbre, it does not identify speakers.
    """

    def __init__(self, mel_channels: int, channels: int, dim: int, layers: int = 4):
        super().__init__()
        convs = [nn.Conv1d(mel_channels, channels, 3, padding=1)]
        convs += [nn.Conv1d(channels, channels, 3, padding=2 ** i, dilation=2 ** i) for i in range(1, layers)]
        self.convs = nn.ModuleList(convs)
        self.proj = nn.Linear(2 * channels, dim)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = mel
        for i, conv in enumerate(self.convs):
            y = F.gelu(conv(x))
            x = y if i == 0 else x + y  # (B, channels, F)
        stats = torch.cat([x.mean(dim=2), x.float().std(dim=2).type(x.dtype)], dim=1)  # (B, 2 channels)
        return self.proj(stats)
