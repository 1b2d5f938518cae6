"""Discrete VAE: log mel (B, mel_channels, T) <-> speech codes (B, T / downsample).

Encoder: conv stem, residual blocks, strided convolutions (x2 each) down to the code rate, then a
projection into the codebook space. Quantiser: encoder outputs and codebook entries are unit
vectors (l2-normalised lookup, which keeps the whole codebook in use); the nearest entry is chosen;
the codebook is learned by exponential moving averages of the encoder outputs assigned to each entry
(VQ-VAE with EMA), with unused entries restarted from random encoder outputs. Decoder: mirror image with nearest-neighbour
upsampling; with ``context_blocks > 0``, dilated blocks at the code rate before the first upsampling
widen what each frame hears to a few seconds. With ``speaker_dim > 0`` the decoder also hears a speaker vector (from a clip of the
same speaker, :class:`~tts.models.blocks.SpeakerEncoder`) added after each of its residual blocks,
so the codes need not spend their few bits on timbre and carry content instead (as LSCodec does).
In the Tortoise configuration: 80 mels, 8192 codes, x4 downsampling (one code per
1024 samples at 22.05 kHz).

The model works on log mels mapped to [-1, 1] (:func:`tts.audio.normalize_mel`); losses live in
the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import SpeakerEncoder


@dataclass
class DVAEConfig:
    mel_channels: int = 80
    channels: int = 512  # hidden width
    num_tokens: int = 8192  # codebook size
    codebook_dim: int = 512
    downsamples: int = 2  # each halves the frame rate: 2 -> x4
    resblocks: int = 3  # residual blocks at each resolution
    kernel_size: int = 3
    ema_decay: float = 0.99
    restart_below: float = 0.03  # restart codes used less than this fraction of the average
    commitment: float = 0.25  # weight of the commitment term in `forward`'s loss
    speaker_dim: int = 0  # > 0: the decoder is conditioned on a speaker vector of this size
    speaker_channels: int = 128  # width of the speaker encoder
    context_blocks: int = 0  # dilated blocks at the code rate in the decoder (dilation 1, 2, 4, ...)

    @classmethod
    def tortoise(cls) -> "DVAEConfig":
        return cls()

    @property
    def downsample_factor(self) -> int:
        return 2**self.downsamples


class ResBlock(nn.Module):
    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2), nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2), nn.ReLU(),
            nn.Conv1d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class ContextBlock(nn.Module):
    """Dilated residual convolution at the code rate: lets the decoder read the codes around a frame
    (six blocks reach +-63 codes, ~3 s) for the sentence's intonation. Its output projection starts at
    zero, so blocks added to a trained decoder leave it unchanged until they learn."""

    def __init__(self, channels: int, kernel_size: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=dilation * (kernel_size // 2), dilation=dilation)
        self.out = nn.Conv1d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.out(F.relu(self.conv(x)))


class Quantizer(nn.Module):
    """Nearest-neighbour codebook with EMA updates (in training mode) and dead-code restarts."""

    def __init__(self, num_tokens: int, dim: int, decay: float, restart_below: float):
        super().__init__()
        self.decay = decay
        self.restart_below = restart_below
        self.register_buffer("codebook", F.normalize(torch.randn(num_tokens, dim), dim=1))
        self.register_buffer("ema_count", torch.zeros(num_tokens))
        self.register_buffer("ema_sum", torch.zeros(num_tokens, dim))

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        """z (N, dim), unit length -> nearest code index (N,)."""
        distances = (
            z.pow(2).sum(1, keepdim=True) - 2 * z @ self.codebook.t() + self.codebook.pow(2).sum(1)[None, :]
        )
        return distances.argmin(dim=1)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (B, dim, T) -> (quantised z with straight-through gradient (B, dim, T), codes (B, T))."""
        z = F.normalize(z, dim=1)  # codes live on the unit sphere: nearest = most similar direction
        b, d, t = z.shape
        flat = z.transpose(1, 2).reshape(-1, d)
        codes = self.codes(flat.detach().float())
        if self.training:
            self._ema_update(flat.detach().float(), codes)
        quantised = self.codebook[codes].view(b, t, d).transpose(1, 2).to(z.dtype)
        return z + (quantised - z).detach(), codes.view(b, t)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        num_tokens = self.codebook.shape[0]
        if self.ema_count.sum() == 0:  # first training batch: start the codebook on the data
            self._restart(torch.ones(num_tokens, dtype=torch.bool, device=flat.device), flat)
            codes = self.codes(flat)
        onehot = F.one_hot(codes, num_tokens).type(flat.dtype)  # (N, K)
        counts, sums = onehot.sum(0), onehot.t() @ flat
        if _distributed():
            torch.distributed.all_reduce(counts)
            torch.distributed.all_reduce(sums)
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + 1e-5) / (n + num_tokens * 1e-5) * n  # Laplace smoothing
        self.codebook.copy_(F.normalize(self.ema_sum / smoothed[:, None], dim=1))
        dead = self.ema_count < self.restart_below * self.ema_count.mean()
        if dead.any():
            self._restart(dead, flat)

    def _restart(self, which: torch.Tensor, flat: torch.Tensor) -> None:
        """Move the entries `which` (K,) bool onto random encoder outputs, with the average usage."""
        picks = flat[torch.randint(0, flat.shape[0], (int(which.sum()),), device=flat.device)]
        picks = F.normalize(picks + 1e-3 * torch.randn_like(picks), dim=1)
        if _distributed():
            torch.distributed.broadcast(picks, 0)
        usage = max(float(self.ema_count.mean()), flat.shape[0] / self.codebook.shape[0])
        self.codebook[which] = picks
        self.ema_sum[which] = picks * usage
        self.ema_count[which] = usage


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


class DVAE(nn.Module):
    def __init__(self, config: DVAEConfig):
        super().__init__()
        self.config = config
        ch, k = config.channels, config.kernel_size
        enc = [nn.Conv1d(config.mel_channels, ch, k, padding=k // 2), nn.ReLU()]
        for _ in range(config.downsamples):
            enc += [ResBlock(ch, k) for _ in range(config.resblocks)]
            enc += [nn.Conv1d(ch, ch, 4, stride=2, padding=1), nn.ReLU()]
        enc += [ResBlock(ch, k) for _ in range(config.resblocks)]
        enc += [nn.Conv1d(ch, config.codebook_dim, 1)]
        self.encoder = nn.Sequential(*enc)
        self.quantizer = Quantizer(config.num_tokens, config.codebook_dim, config.ema_decay, config.restart_below)
        dec = [nn.Conv1d(config.codebook_dim, ch, k, padding=k // 2), nn.ReLU()]
        dec += [ResBlock(ch, k) for _ in range(config.resblocks)]
        for _ in range(config.downsamples):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv1d(ch, ch, k, padding=k // 2), nn.ReLU()]
            dec += [ResBlock(ch, k) for _ in range(config.resblocks)]
        dec += [nn.Conv1d(ch, config.mel_channels, 1)]
        self.decoder = nn.Sequential(*dec)
        if config.context_blocks and not config.downsamples:
            raise ValueError("context_blocks need a code rate below the frame rate (downsamples >= 1)")
        self.context = nn.Sequential(*(ContextBlock(ch, k, 2**i) for i in range(config.context_blocks)))
        if config.speaker_dim:
            self.speaker_encoder = SpeakerEncoder(config.mel_channels, config.speaker_channels, config.speaker_dim)
            blocks = sum(isinstance(layer, ResBlock) for layer in self.decoder)
            self.speaker_proj = nn.ModuleList(nn.Linear(config.speaker_dim, ch) for _ in range(blocks))

    @property
    def conditioned(self) -> bool:
        return bool(self.config.speaker_dim)

    def speaker(self, ref_mel: torch.Tensor) -> torch.Tensor:
        """Normalised mel of a reference clip (B, C, F) -> speaker vector (B, speaker_dim)."""
        return self.speaker_encoder(ref_mel)

    def _decode(self, quantised: torch.Tensor, speaker: torch.Tensor | None) -> torch.Tensor:
        """(B, codebook_dim, L) -> normalised mel (B, C, L * f); `speaker` (B, speaker_dim)."""
        if self.conditioned and speaker is None:
            raise ValueError("this DVAE's decoder needs a speaker vector (DVAE.speaker)")
        x, block, upsampled = quantised, 0, False
        for layer in self.decoder:
            if not upsampled and isinstance(layer, nn.Upsample):
                x, upsampled = self.context(x), True  # (B, ch, L): the last code-rate stage
            x = layer(x)
            if self.conditioned and isinstance(layer, ResBlock):
                x = x + self.speaker_proj[block](speaker).to(x.dtype)[:, :, None]
                block += 1
        return x

    def _trim(self, mel: torch.Tensor) -> torch.Tensor:
        usable = mel.shape[-1] // self.config.downsample_factor * self.config.downsample_factor
        return mel[..., :usable]

    def forward(self, mel: torch.Tensor, ref_mel: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised mel (B, C, T) -> (reconstruction (B, C, T'), commitment loss, codes (B, T' / f)).

        T' is T rounded down to a multiple of the downsampling factor. `ref_mel` (B, C, F): a clip of
        the same speaker, for a speaker-conditioned decoder.
        """
        quantised, commitment, codes = self.quantise(mel)
        speaker = self.speaker(ref_mel) if self.conditioned else None
        return self._decode(quantised, speaker), commitment, codes

    def quantise(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised mel (B, C, T) -> (quantised vectors with straight-through gradient
        (B, codebook_dim, T' / f), commitment loss, codes (B, T' / f)); T' as in :meth:`forward`."""
        z = self.encoder(self._trim(mel))  # (B, codebook_dim, T'/f)
        quantised, codes = self.quantizer(z)
        commitment = self.config.commitment * F.mse_loss(F.normalize(z, dim=1), quantised.detach())
        return quantised, commitment, codes

    @torch.no_grad()
    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """Normalised mel (B, C, T) -> codes (B, T // f)."""
        z = F.normalize(self.encoder(self._trim(mel)), dim=1)
        b, d, t = z.shape
        return self.quantizer.codes(z.transpose(1, 2).reshape(-1, d).float()).view(b, t)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, speaker: torch.Tensor | None = None) -> torch.Tensor:
        """Codes (B, L) -> normalised mel (B, C, L * f); `speaker` (B, speaker_dim) from
        :meth:`speaker` when the decoder is conditioned."""
        return self.decode_mel(codes, speaker)

    def decode_mel(self, codes: torch.Tensor, speaker: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`decode` with autograd (gradients reach `speaker`: fine-tuning a voice's vector)."""
        return self._decode(self.quantizer.codebook[codes].transpose(1, 2), speaker)
