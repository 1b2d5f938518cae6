"""Discrete VAE: log mel (B, mel_channels, T) <-> speech codes (B, T / downsample).

Encoder: conv stem, residual blocks, strided convolutions (x2 each) down to the code rate, then a
projection into the codebook space. Quantiser: encoder outputs and codebook entries are unit
vectors (l2-normalised lookup, which keeps the whole codebook in use); the nearest entry is chosen;
the codebook is learned by exponential moving averages of the encoder outputs assigned to each entry
(VQ-VAE with EMA), with unused entries restarted from random encoder outputs. Decoder: mirror image with nearest-neighbour
upsampling; with ``pitch_bins > 0`` the upsampled stages also hear a pitch contour per mel frame
(log F0 and voicing): the true one in training (tts.pitch), otherwise the decoder's own prediction
from the codes. An MSE decoder that must guess the pitch smears the harmonics into a haze; given a
contour, even the predicted mean one, it can draw them (FastSpeech 2's variance adaptor does the
same for its mel decoder). With ``residual_tokens > 0``, ``residual_levels`` more codebooks (plain
vectors, not unit ones) quantise in turn what the levels before left of the encoder's output, as in
residual vector quantisation (SoundStream): 1 + residual_levels codes a step, the first what a GPT
predicts, the others the detail it left. With ``context_blocks > 0``, dilated blocks at the code rate before the first upsampling
widen what each frame hears to a few seconds. With ``speaker_dim > 0`` the decoder also hears a speaker vector (from a clip of the
same speaker, :class:`~tts.models.blocks.SpeakerEncoder`) added after each of its residual blocks,
so the codes need not spend their few bits on timbre and carry content instead (as LSCodec does).
In the Tortoise configuration: 80 mels, 8192 codes, x4 downsampling (one code per
1024 samples at 22.05 kHz).

The model works on log mels mapped to [-1, 1] (:func:`tts.audio.normalize_mel`); losses live in
the trainer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..pitch import FMAX, FMIN
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
    pitch_bins: int = 0  # > 0: the decoder renders a pitch contour (log F0 in this many bins + unvoiced)
    residual_tokens: int = 0  # > 0: residual codebooks of this size quantise what the first level left
    residual_levels: int = 1  # how many residual codebooks, each quantising what the levels before left

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


LOG_F0_CENTER, LOG_F0_SCALE = math.log(150.0), 0.5  # the pitch predictor's normalised log F0


class PitchPredictor(nn.Module):
    """Code-rate decoder features (B, ch, L) -> per mel frame (B, 2, L * factor): normalised log F0
    (the mean of what the codes leave open: a smooth, valid contour) and the voicing logit."""

    def __init__(self, channels: int, factor: int, layers: int = 3):
        super().__init__()
        self.factor = factor
        self.convs = nn.ModuleList(nn.Conv1d(channels, channels, 5, padding=2 * 2**i, dilation=2**i) for i in range(layers))
        self.out = nn.Conv1d(channels, 2 * factor, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = x + F.relu(conv(x))
        b, _, length = x.shape
        return self.out(x).view(b, 2, self.factor, length).transpose(2, 3).reshape(b, 2, length * self.factor)


def pitch_from_hz(hz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """F0 in Hz per mel frame (B, T), 0 where unvoiced (tts.pitch.f0) -> (log F0 (B, T), voiced (B, T) bool)."""
    voiced = hz > 0
    return torch.log(hz.clamp_min(1.0)), voiced


def pitch_from_prediction(predicted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """PitchPredictor output (B, 2, T) -> (log F0 (B, T), voiced (B, T) bool)."""
    return predicted[:, 0].float() * LOG_F0_SCALE + LOG_F0_CENTER, predicted[:, 1] > 0


class PitchEmbedding(nn.Module):
    """(log F0, voiced) per frame -> (B, ch, T): a table of `bins` log-spaced pitches from FMIN to FMAX,
    read with linear interpolation between neighbours, plus one entry for unvoiced frames. A table (not
    a scalar) lets each pitch learn its own harmonic comb. Starts at zero: a trained decoder that gains
    it is unchanged until it learns."""

    def __init__(self, bins: int, channels: int):
        super().__init__()
        self.bins = bins
        self.table = nn.Embedding(bins + 1, channels)
        nn.init.zeros_(self.table.weight)

    def forward(self, log_f0: torch.Tensor, voiced: torch.Tensor) -> torch.Tensor:
        low, high = math.log(FMIN), math.log(FMAX)
        pos = ((log_f0.float() - low) / (high - low) * (self.bins - 1)).clamp(0, self.bins - 1)
        below = pos.floor().long().clamp(max=self.bins - 2)
        frac = (pos - below)[..., None]
        emb = self.table(below + 1) * (1 - frac) + self.table(below + 2) * frac  # (B, T, ch)
        emb = torch.where(voiced[..., None], emb, self.table.weight[0])
        return emb.transpose(1, 2)


class Quantizer(nn.Module):
    """Nearest-neighbour codebook with EMA updates (in training mode) and dead-code restarts.
    With `unit` the inputs and entries are unit vectors (the first level); without, plain vectors
    (the residual levels, whose inputs are what the levels before them left)."""

    def __init__(self, num_tokens: int, dim: int, decay: float, restart_below: float, unit: bool = True):
        super().__init__()
        self.decay = decay
        self.restart_below = restart_below
        self.unit = unit
        start = torch.randn(num_tokens, dim)
        self.register_buffer("codebook", F.normalize(start, dim=1) if unit else 1e-3 * start)
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
        if self.unit:
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
        means = self.ema_sum / smoothed[:, None]
        self.codebook.copy_(F.normalize(means, dim=1) if self.unit else means)
        dead = self.ema_count < self.restart_below * self.ema_count.mean()
        if dead.any():
            self._restart(dead, flat)

    def _restart(self, which: torch.Tensor, flat: torch.Tensor) -> None:
        """Move the entries `which` (K,) bool onto random encoder outputs, with the average usage."""
        picks = flat[torch.randint(0, flat.shape[0], (int(which.sum()),), device=flat.device)]
        picks = picks + 1e-3 * torch.randn_like(picks)
        if self.unit:
            picks = F.normalize(picks, dim=1)
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
        if config.residual_tokens:
            if config.residual_levels < 1:
                raise ValueError(f"residual_levels must be at least 1 with residual_tokens (got {config.residual_levels})")
            self.residuals = nn.ModuleList(
                Quantizer(config.residual_tokens, config.codebook_dim, config.ema_decay, config.restart_below, unit=False)
                for _ in range(config.residual_levels))
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
        if config.pitch_bins:
            if not config.downsamples:
                raise ValueError("pitch_bins need a code rate below the frame rate (downsamples >= 1)")
            first_up = next(i for i, layer in enumerate(self.decoder) if isinstance(layer, nn.Upsample))
            upsampled_blocks = sum(isinstance(layer, ResBlock) for layer in list(self.decoder)[first_up:])
            self.pitch_predictor = PitchPredictor(ch, config.downsample_factor)
            self.pitch_embed = nn.ModuleList(PitchEmbedding(config.pitch_bins, ch) for _ in range(upsampled_blocks))
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

    @property
    def pitched(self) -> bool:
        return bool(self.config.pitch_bins)

    def _decode(self, quantised: torch.Tensor, speaker: torch.Tensor | None,
                pitch: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """(B, codebook_dim, L) -> normalised mel (B, C, L * f); `speaker` (B, speaker_dim); `pitch`
        (log F0, voiced), each (B, L * f), for a pitched decoder (None: its own prediction)."""
        return self.decode_with_pitch(quantised, speaker, pitch)[0]

    def decode_with_pitch(self, quantised: torch.Tensor, speaker: torch.Tensor | None,
                          pitch: tuple[torch.Tensor, torch.Tensor] | None = None,
                          ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`_decode`, also returning the pitch predictor's output (B, 2, L * f) (None when the
        decoder has no pitch input). The predictor reads detached features: its loss shapes only itself."""
        if self.conditioned and speaker is None:
            raise ValueError("this DVAE's decoder needs a speaker vector (DVAE.speaker)")
        x, block, upsampled, predicted, pitch_block = quantised, 0, False, None, 0
        for layer in self.decoder:
            if not upsampled and isinstance(layer, nn.Upsample):
                x, upsampled = self.context(x), True  # (B, ch, L): the last code-rate stage
                if self.pitched:
                    predicted = self.pitch_predictor(x.detach())  # (B, 2, L * f)
                    pitch = pitch_from_prediction(predicted) if pitch is None else pitch
            x = layer(x)
            if isinstance(layer, ResBlock):
                if self.conditioned:
                    x = x + self.speaker_proj[block](speaker).to(x.dtype)[:, :, None]
                    block += 1
                if upsampled and self.pitched:
                    embedded = self.pitch_embed[pitch_block](*pitch)  # (B, ch, L * f)
                    factor = embedded.shape[-1] // x.shape[-1]
                    if factor > 1:
                        embedded = F.avg_pool1d(embedded, factor)
                    x = x + embedded.to(x.dtype)
                    pitch_block += 1
        return x, predicted

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
        if self.has_residual:
            fine, _ = self.quantise_residual(F.normalize(z, dim=1) - quantised.detach())
            quantised = quantised + fine
        commitment = self.config.commitment * F.mse_loss(F.normalize(z, dim=1), quantised.detach())
        return quantised, commitment, codes

    @property
    def has_residual(self) -> bool:
        return bool(self.config.residual_tokens)

    @torch.no_grad()
    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """Normalised mel (B, C, T) -> codes (B, T // f)."""
        z = F.normalize(self.encoder(self._trim(mel)), dim=1)
        b, d, t = z.shape
        return self.quantizer.codes(z.transpose(1, 2).reshape(-1, d).float()).view(b, t)

    def quantise_residual(self, rest: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the first level left (B, codebook_dim, L) -> (its quantisation by the residual levels,
        summed (B, codebook_dim, L); the codes of each level (B, levels, L)); in training mode the
        residual codebooks learn (EMA)."""
        total, codes = torch.zeros_like(rest), []
        for level in self.residuals:
            fine, level_codes = level(rest - total)
            total, codes = total + fine, codes + [level_codes]
        return total, torch.stack(codes, 1)

    @torch.no_grad()
    def encode_residual(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised mel (B, C, T) -> (codes (B, T // f), residual codes (B, levels, T // f)): each
        residual level quantises what the levels before left. Needs ``residual_tokens``."""
        if not self.has_residual:
            raise ValueError("this DVAE has no residual codebook (residual_tokens = 0)")
        z = F.normalize(self.encoder(self._trim(mel)), dim=1).float()  # (B, D, L)
        b, d, t = z.shape
        flat = z.transpose(1, 2).reshape(-1, d)
        codes = self.quantizer.codes(flat)
        rest, residual = flat - self.quantizer.codebook[codes], []
        for level in self.residuals:
            level_codes = level.codes(rest)
            rest, residual = rest - level.codebook[level_codes], residual + [level_codes.view(b, t)]
        return codes.view(b, t), torch.stack(residual, 1)

    def vectors(self, codes: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """Codes (B, L) [and residual codes (B, n, L) of the first n <= residual_levels levels] -> the
        decoder's input (B, codebook_dim, L)."""
        quantised = self.quantizer.codebook[codes]
        if residual is not None:
            if residual.dim() != 3 or residual.shape[1] > len(self.residuals):
                raise ValueError(f"residual codes must be (B, n <= {len(self.residuals)}, L), got {tuple(residual.shape)}")
            for level, level_codes in zip(self.residuals, residual.unbind(1)):
                quantised = quantised + level.codebook[level_codes]
        return quantised.transpose(1, 2)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, speaker: torch.Tensor | None = None,
               pitch: tuple[torch.Tensor, torch.Tensor] | None = None,
               weights: dict[str, torch.Tensor] | None = None,
               residual: torch.Tensor | None = None) -> torch.Tensor:
        """Codes (B, L) -> normalised mel (B, C, L * f); `speaker` (B, speaker_dim) from
        :meth:`speaker` when the decoder is conditioned; `pitch` as in :meth:`_decode`; `weights`
        (name -> tensor) replace the model's own for this call (a fine-tuned voice's decoder,
        tts.models.lowrank.merge), the module itself unchanged; `residual` (B, n, L): the codes of the
        first n residual levels (:meth:`encode_residual`), None to decode from the first level alone."""
        return self.decode_mel(codes, speaker, pitch, weights, residual)

    def decode_mel(self, codes: torch.Tensor, speaker: torch.Tensor | None = None,
                   pitch: tuple[torch.Tensor, torch.Tensor] | None = None,
                   weights: dict[str, torch.Tensor] | None = None,
                   residual: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`decode` with autograd (gradients reach `speaker` and `weights`: fine-tuning a voice)."""
        quantised = self.vectors(codes, residual)
        if not weights:
            return self._decode(quantised, speaker, pitch)
        return torch.func.functional_call(_Decoding(self), {f"dvae.{k}": v for k, v in weights.items()},
                                          (quantised, speaker, pitch))


class _Decoding(nn.Module):
    """The DVAE's decoder as a module's forward, for torch.func.functional_call (which calls forward)."""

    def __init__(self, dvae: DVAE):
        super().__init__()
        self.dvae = dvae

    def forward(self, quantised, speaker, pitch):
        return self.dvae._decode(quantised, speaker, pitch)
