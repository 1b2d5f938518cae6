"""An adversarial critic for the DVAE decoder's mels (training only; nothing here ships).

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
        x, features = mel[:, None], []  # (B, 1, C, T)
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.2)
            features.append(x)
        return self.out(x), features


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
