"""UnivNet: Tortoise's vocoder, 100-band 24 kHz log-mel frames + Gaussian noise -> audio.

A noise sequence at the mel frame rate is widened by conv_pre and then upsampled by three
location-variable-convolution (LVC) blocks (x8, x8, x4 = hop 256). In each block a kernel predictor
reads the mel and emits, for every mel frame, the weights of a small convolution that is applied
only to the samples of that frame; its output drives a gated (sigmoid * tanh) residual update.

Reference quirks reproduced here:
- the location-variable convolution always runs undilated: the `dilations` only reach the plain
  convolution in front of it;
- `vocode` appends 10 frames of silence (-11.5129) to the mel, draws the noise for them too, and
  cuts their 2560 samples off again before clamping to [-1, 1].
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from tts.errors import TTSError
from tts.models.hifigan import fold_weight_norm

KPNET_INPUT_KERNEL = 5  # the kernel predictor's first convolution
KPNET_RESIDUAL_BLOCKS = 3


@dataclass
class UnivNetConfig:
    noise_dim: int = 64
    channels: int = 32  # width of the audio-rate stream
    strides: list[int] = field(default_factory=lambda: [8, 8, 4])  # upsampling per LVC block
    dilations: list[int] = field(default_factory=lambda: [1, 3, 9, 27])  # one gated layer per entry
    mel_channels: int = 100
    lvc_kernel_size: int = 3  # size of each predicted per-frame kernel
    kpnet_hidden_channels: int = 64
    kpnet_conv_size: int = 3
    leaky_slope: float = 0.2
    sample_rate: int = 24000
    pad_frames: int = 10  # silent frames appended by `vocode`, their audio dropped again
    pad_value: float = -11.5129  # log(1e-5), as Tortoise rounds it: the mel of silence

    @property
    def hop_length(self) -> int:
        """Audio samples per mel frame."""
        return math.prod(self.strides)

    @classmethod
    def tortoise(cls) -> UnivNetConfig:
        """The configuration of Tortoise's `vocoder.pth`."""
        return cls()


class KernelPredictor(nn.Module):
    """Mel (B, M, T) -> per-frame kernels (B, L, C_in, C_out, K, T) and biases (B, L, C_out, T)."""

    def __init__(self, config: UnivNetConfig, in_channels: int, out_channels: int):
        super().__init__()
        hidden, size, slope = config.kpnet_hidden_channels, config.kpnet_conv_size, config.leaky_slope
        # (L, C_in, C_out, K): layers, channels in and out of each predicted kernel, its size
        self.kernel_shape = (len(config.dilations), in_channels, out_channels, config.lvc_kernel_size)
        self.input_conv = nn.Sequential(
            nn.Conv1d(config.mel_channels, hidden, KPNET_INPUT_KERNEL, padding=KPNET_INPUT_KERNEL // 2),
            nn.LeakyReLU(slope),
        )
        # Index 0 is a parameter-free slot (the reference's zero-rate dropout), kept for the key names.
        self.residual_convs = nn.ModuleList(
            nn.Sequential(
                nn.Identity(),
                nn.Conv1d(hidden, hidden, size, padding=size // 2),
                nn.LeakyReLU(slope),
                nn.Conv1d(hidden, hidden, size, padding=size // 2),
                nn.LeakyReLU(slope),
            )
            for _ in range(KPNET_RESIDUAL_BLOCKS)
        )
        layers, c_in, c_out, k = self.kernel_shape
        self.kernel_conv = nn.Conv1d(hidden, layers * c_in * c_out * k, size, padding=size // 2)
        self.bias_conv = nn.Conv1d(hidden, layers * c_out, size, padding=size // 2)

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, t = mel.shape
        h = self.input_conv(mel)  # (B, hidden, T)
        for block in self.residual_convs:
            h = h + block(h)
        layers, c_in, c_out, k = self.kernel_shape
        kernels = self.kernel_conv(h).reshape(b, layers, c_in, c_out, k, t)
        biases = self.bias_conv(h).reshape(b, layers, c_out, t)
        return kernels, biases


def location_variable_conv(
    x: torch.Tensor, kernels: torch.Tensor, biases: torch.Tensor, hop: int
) -> torch.Tensor:
    """Convolve each `hop`-sample frame of x with its own kernel (stride 1, undilated, 'same' padding).

    x: (B, C_in, T * hop); kernels: (B, C_in, C_out, K, T); biases: (B, C_out, T) -> (B, C_out, T * hop).

    Summation order is the reference's: one matrix product per frame, (hop, C_in * K) @ (C_in * K, C_out),
    batched over (B, T), with the products summed over input channels major and taps minor. The
    same products in another order (an einsum that picks its own contraction) differ in the last bits,
    which the chaotic randomly-initialised vocoder of the parity tests grows into large differences.
    """
    b, c_in, length = x.shape
    c_out, k, frames = kernels.shape[2:]
    if length != frames * hop:
        raise ValueError(f"{length} samples do not match {frames} frames of {hop}")
    pad = (k - 1) // 2
    x = F.pad(x, (pad, pad))  # (B, C_in, T * hop + 2 pad)
    windows = x.unfold(2, hop + 2 * pad, hop)  # (B, C_in, T, hop + 2 pad): each frame with its margins
    taps = windows.unfold(3, k, 1)  # (B, C_in, T, hop, K)
    taps = taps.permute(0, 2, 3, 1, 4).reshape(b * frames, hop, c_in * k)  # (B T, hop, C_in K)
    weights = kernels.permute(0, 4, 1, 3, 2).reshape(b * frames, c_in * k, c_out)  # (B T, C_in K, C_out)
    out = torch.bmm(taps, weights).reshape(b, frames, hop, c_out)  # (B, T, hop, C_out)
    out = out.permute(0, 3, 1, 2) + biases.unsqueeze(-1)  # (B, C_out, T, hop)
    return out.reshape(b, c_out, length)


class LVCBlock(nn.Module):
    """Upsample (B, C, N) -> (B, C, N * stride), then one gated LVC residual layer per dilation.

    `hop` is the number of samples per mel frame at this block's output rate.
    """

    def __init__(self, config: UnivNetConfig, stride: int, hop: int):
        super().__init__()
        c, k, slope = config.channels, config.lvc_kernel_size, config.leaky_slope
        self.hop = hop
        self.kernel_predictor = KernelPredictor(config, c, 2 * c)
        self.convt_pre = nn.Sequential(
            nn.LeakyReLU(slope),
            nn.ConvTranspose1d(
                c, c, 2 * stride, stride, padding=stride // 2 + stride % 2, output_padding=stride % 2
            ),
        )
        self.conv_blocks = nn.ModuleList(
            nn.Sequential(
                nn.LeakyReLU(slope),
                nn.Conv1d(c, c, k, padding=d * (k - 1) // 2, dilation=d),
                nn.LeakyReLU(slope),
            )
            for d in config.dilations
        )

    def forward(self, x: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        """x: (B, C, T * hop / stride); mel: (B, M, T) -> (B, C, T * hop)."""
        c = x.shape[1]
        x = self.convt_pre(x)  # (B, C, T * hop)
        kernels, biases = self.kernel_predictor(mel)
        for i, conv in enumerate(self.conv_blocks):
            h = location_variable_conv(conv(x), kernels[:, i], biases[:, i], self.hop)  # (B, 2C, T * hop)
            x = x + torch.sigmoid(h[:, :c]) * torch.tanh(h[:, c:])
        return x


class UnivNet(nn.Module):
    """Mel (B, mel_channels, T) + noise (B, noise_dim, T) -> audio (B, 1, T * hop)."""

    def __init__(self, config: UnivNetConfig):
        super().__init__()
        self.config = config
        c, slope = config.channels, config.leaky_slope
        self.res_stack = nn.ModuleList()
        hop = 1
        for stride in config.strides:
            hop *= stride
            self.res_stack.append(LVCBlock(config, stride, hop))
        self.conv_pre = nn.Conv1d(config.noise_dim, c, 7, padding=3, padding_mode="reflect")
        self.conv_post = nn.Sequential(
            nn.LeakyReLU(slope),
            nn.Conv1d(c, 1, 7, padding=3, padding_mode="reflect"),
            nn.Tanh(),
        )

    def forward(self, mel: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(z)  # (B, C, T)
        for block in self.res_stack:
            x = block(x, mel)  # (B, C, T * stride_0 ... stride_i)
        return self.conv_post(x)  # (B, 1, T * hop)

    @torch.no_grad()
    def vocode(
        self,
        mel: torch.Tensor,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Mel (B, mel_channels, T) -> audio (B, T * hop) in [-1, 1], as Tortoise's `inference()`.

        `noise`, if given, is (B, noise_dim, T + pad_frames); otherwise it is drawn as
        `torch.randn(B, noise_dim, T + pad_frames, generator=generator)` on the mel's device.
        """
        cfg = self.config
        b, _, t = mel.shape
        # (B, M, pad); the value rounded to float32 whatever the mel's dtype, as Tortoise builds it
        silence = mel.new_full((b, cfg.mel_channels, cfg.pad_frames), cfg.pad_value, dtype=torch.float32).to(mel.dtype)
        mel = torch.cat([mel, silence], dim=2)  # (B, M, T + pad)
        shape = (b, cfg.noise_dim, t + cfg.pad_frames)
        if noise is None:
            noise = torch.randn(shape, generator=generator, dtype=mel.dtype, device=mel.device)
        elif tuple(noise.shape) != shape:
            raise ValueError(f"noise must be {shape}, got {tuple(noise.shape)}")
        audio = self.forward(mel, noise)[:, 0, : t * cfg.hop_length]  # (B, T * hop)
        return audio.clamp(-1.0, 1.0)


def tortoise_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Tortoise `vocoder.pth` layout (`['model_g']`, weight_g/weight_v pairs) -> this module's weights.

    Accepts the whole checkpoint dict too; already folded entries pass through unchanged.
    """
    if "model_g" in sd and isinstance(sd["model_g"], dict):
        sd = sd["model_g"]
    return fold_weight_norm(sd)


def _weight(sd: dict[str, torch.Tensor], stem: str) -> torch.Tensor:
    """`stem.weight`, or its direction `stem.weight_v` (same shape) in a weight-norm layout."""
    for key in (stem + ".weight", stem + ".weight_v"):
        if key in sd:
            return sd[key]
    raise TTSError(f"not a UnivNet checkpoint: no {stem}.weight")


def infer_tortoise_config(sd: dict[str, torch.Tensor]) -> UnivNetConfig:
    """Rebuild the configuration of a UnivNet state dict (either weight layout) from its shapes.

    Dilations are not visible in shapes: n gated layers get Tortoise's 1, 3, 9, ... (powers of 3).
    Each upsampling kernel is twice its stride.
    """
    if "model_g" in sd and isinstance(sd["model_g"], dict):
        sd = sd["model_g"]
    pre = _weight(sd, "conv_pre")  # (C, noise_dim, 7)
    blocks = sorted({int(m.group(1)) for k in sd if (m := re.match(r"res_stack\.(\d+)\.", k))})
    if not blocks:
        raise TTSError("not a UnivNet checkpoint: no res_stack blocks")
    strides = [_weight(sd, f"res_stack.{i}.convt_pre.1").shape[-1] // 2 for i in blocks]
    layers = len({m.group(1) for k in sd if (m := re.match(r"res_stack\.0\.conv_blocks\.(\d+)\.", k))})
    kp = "res_stack.0.kernel_predictor"
    first = _weight(sd, f"{kp}.input_conv.0")  # (hidden, mels, 5)
    kernel_rows = _weight(sd, f"{kp}.kernel_conv").shape[0]  # layers * C * 2C * K
    channels = pre.shape[0]
    return UnivNetConfig(
        noise_dim=pre.shape[1],
        channels=channels,
        strides=strides,
        dilations=[3**i for i in range(layers)],
        mel_channels=first.shape[1],
        lvc_kernel_size=kernel_rows // (layers * channels * 2 * channels),
        kpnet_hidden_channels=first.shape[0],
        kpnet_conv_size=_weight(sd, f"{kp}.kernel_conv").shape[-1],
    )


__all__ = [
    "KernelPredictor",
    "LVCBlock",
    "UnivNet",
    "UnivNetConfig",
    "infer_tortoise_config",
    "location_variable_conv",
    "tortoise_state_dict",
]
