"""Adversarial critics: one for the DVAE decoder's mels, two kinds for a vocoder's audio (its waveform
at several periods, its spectrogram at several resolutions; training only, nothing here ships).

Why: a decoder trained on squared error outputs the mean of the mels its codes leave open. Where the
codes do not fix the pitch, that mean is a haze over the harmonics, which the vocoder renders as hoarse
speech (docs/training/GATES.md, G1). A critic that tells real mels from decoded ones pushes the decoder
to commit to one sharp rendering instead (the mel-GAN post-filters of parametric TTS; VQGAN's
autoencoder uses the same device on images).

The critic is a small 2-D convolutional net over (mel bin, frame) patches that scores each patch
(least-squares GAN). The decoder also matches the critic's inner features of the real mel (feature
matching, as HiFi-GAN does), which keeps the adversarial pull on what the recording has. The weight of
the adversarial terms is set each step from the gradients at the decoder's last layer (VQGAN's
adaptive weight), so that they pull as hard as the reconstruction, times a fixed factor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def through(layers: nn.ModuleList, x: torch.Tensor, slope: float = 0.1) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """x through each layer and a leaky ReLU: (the last output, every layer's output)."""
    features = []
    for layer in layers:
        x = F.leaky_relu(layer(x), slope)
        features.append(x)
    return x, features


class MelCritic(nn.Module):
    """Normalised mel (B, C, T) -> (patch scores (B, 1, C', T'), inner feature maps)."""

    def __init__(self, channels: int = 32):
        super().__init__()
        c = channels
        specs = [(1, c, (3, 9), (1, 1)), (c, 2 * c, (3, 9), (2, 2)), (2 * c, 4 * c, (3, 9), (2, 2)),
                 (4 * c, 4 * c, (3, 3), (2, 1))]  # (in, out, kernel (bins, frames), stride)
        self.layers = nn.ModuleList(
            nn.utils.parametrizations.weight_norm(
                nn.Conv2d(i, o, k, stride=s, padding=(k[0] // 2, k[1] // 2))) for i, o, k, s in specs)
        self.out = nn.utils.parametrizations.weight_norm(nn.Conv2d(4 * c, 1, (3, 3), padding=(1, 1)))

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x, features = through(self.layers, mel[:, None], slope=0.2)  # from (B, 1, C, T)
        return self.out(x), features


class PeriodCritic(nn.Module):
    """Audio (B, S) read as a (S / period, period) image: 2-D convolutions along each column (one phase
    of the period) score how periodic the audio is at that period (HiFi-GAN's multi-period
    discriminator, at a quarter of its width). -> (scores (B, 1, S', period), inner feature maps)."""

    def __init__(self, period: int, channels: int = 16):
        super().__init__()
        self.period = period
        c = channels
        widths = [1, c, 4 * c, 8 * c, 8 * c]
        convs = [nn.Conv2d(i, o, (5, 1), stride=(3, 1), padding=(2, 0)) for i, o in zip(widths, widths[1:])]
        convs.append(nn.Conv2d(8 * c, 8 * c, (5, 1), padding=(2, 0)))
        self.layers = nn.ModuleList(nn.utils.parametrizations.weight_norm(conv) for conv in convs)
        self.out = nn.utils.parametrizations.weight_norm(nn.Conv2d(8 * c, 1, (3, 1), padding=(1, 0)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        pad = -wav.shape[-1] % self.period
        x = F.pad(wav[:, None], (0, pad), mode="reflect")  # (B, 1, S + pad)
        x, features = through(self.layers, x.view(x.shape[0], 1, -1, self.period))  # from (B, 1, S / period, period)
        return self.out(x), features


class MultiPeriodCritic(nn.Module):
    """One :class:`PeriodCritic` per period; the periods are coprime, so together they see the
    audio's periodic structure at many lags. Voiced speech is periodic; a vocoder trained only on
    spectral losses renders it with a wandering phase, which these critics catch."""

    def __init__(self, periods: tuple[int, ...] = (2, 3, 5, 7, 11), channels: int = 16):
        super().__init__()
        self.critics = nn.ModuleList(PeriodCritic(p, channels) for p in periods)

    def forward(self, wav: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        return [critic(wav) for critic in self.critics]


class SpectrogramCritic(nn.Module):
    """Audio (B, S) -> its magnitude spectrogram at one resolution, (B, 1, n_fft / 2 + 1, frames),
    scored by 2-D convolutions over (bin, frame) patches (UnivNet's multi-resolution discriminator, at
    half its width). Linear magnitudes, so the loud low harmonics weigh most: a vocoder that renders
    them blurred is told apart where a log spectrum would spread its attention over quiet bins.
    -> (scores (B, 1, bins', frames), inner feature maps)."""

    def __init__(self, n_fft: int, hop: int, channels: int = 16):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        c = channels
        convs = [nn.Conv2d(1, c, (9, 3), stride=(2, 1), padding=(4, 1))]
        convs += [nn.Conv2d(c, c, (9, 3), stride=(2, 1), padding=(4, 1)) for _ in range(3)]
        convs.append(nn.Conv2d(c, c, (3, 3), padding=(1, 1)))
        self.layers = nn.ModuleList(nn.utils.parametrizations.weight_norm(conv) for conv in convs)
        self.out = nn.utils.parametrizations.weight_norm(nn.Conv2d(c, 1, (3, 3), padding=(1, 1)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        window = torch.hann_window(self.n_fft, device=wav.device)
        magnitudes = torch.stft(wav.float(), self.n_fft, self.hop, window=window, return_complex=True).abs()
        x, features = through(self.layers, magnitudes[:, None])  # from (B, 1, bins, frames)
        return self.out(x), features


class MultiResolutionCritic(nn.Module):
    """One :class:`SpectrogramCritic` per (n_fft, hop): fine frequency resolution resolves the
    harmonics of a high voice, fine time resolution the onsets of consonants."""

    def __init__(self, resolutions: tuple[tuple[int, int], ...], channels: int = 16):
        super().__init__()
        self.critics = nn.ModuleList(SpectrogramCritic(n_fft, hop, channels) for n_fft, hop in resolutions)

    def forward(self, wav: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        return [critic(wav) for critic in self.critics]


def judge_frozen(critic: nn.Module, x: torch.Tensor):
    """The critic's verdict on `x` with the critic's own parameters frozen, so that the generator's
    adversarial loss moves the generator only; gradients still flow back to `x`."""
    critic.requires_grad_(False)
    try:
        return critic(x)
    finally:
        critic.requires_grad_(True)


def critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN: real patches toward 1, decoded ones toward 0."""
    return ((real_scores.float() - 1) ** 2).mean() + (fake_scores.float() ** 2).mean()


def generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """The decoder wants its patches scored as real."""
    return ((fake_scores.float() - 1) ** 2).mean()


def feature_matching(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Mean L1 distance between the critic's inner features of the real and the decoded mel."""
    return sum(F.l1_loss(f.float(), r.detach().float()) for r, f in zip(real, fake)) / len(real)


def adaptive_weight(reconstruction: torch.Tensor, adversarial: torch.Tensor, last: torch.Tensor,
                    limit: float = 1e4) -> torch.Tensor:
    """|grad of reconstruction| / |grad of adversarial| at the parameter `last` (the decoder's output
    layer), so that the adversarial term pulls on it as hard as the reconstruction does."""
    g_rec = torch.autograd.grad(reconstruction, last, retain_graph=True)[0]
    g_adv = torch.autograd.grad(adversarial, last, retain_graph=True)[0]
    return (g_rec.norm() / (g_adv.norm() + 1e-4)).clamp(0.0, limit).detach()
