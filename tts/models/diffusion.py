"""Diffusion decoder: turns GPT latents (or speech codes) plus a speaker latent into a mel spectrogram.

Compatible with Tortoise's `DiffusionTts` checkpoints. The network predicts, for a noisy mel
`x_t` `(B, in_channels, T)` and a diffusion timestep, the noise and a variance interpolation
`(B, out_channels, T)` (out_channels = 2 * in_channels for Tortoise). Sampling lives in
`tts.sampling.diffusion`.

Data flow:
  speaker mels  --contextual_embedder, mean over clips and time-->  conditioning latent (B, 2*D)
  GPT latents   --latent_conditioner-->  (B, D, T_lat)  (or codes --code_embedding/code_converter)
                --code_norm, scaled/shifted by the conditioning latent, nearest upsampling-->
                aligned embeddings (B, D, T)        [timestep independent: computed once per clip]
  aligned embeddings --conditioning_timestep_integrator(t)--> (B, D, T)
  x_t --inp_block--> (B, D, T), concatenated with the above --integrating_conv--> (B, D, T)
      --layers(t)--> --out--> (B, out_channels, T)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tts.models.blocks import AttentionBlock, group_norm
from tts.precision import at_least_float32

TORTOISE_HEAD_WIDTH = 64  # channels per attention head in every Tortoise model


@dataclass
class DiffusionConfig:
    model_channels: int = 1024  # D: width of the main stack
    num_layers: int = 10  # residual + attention layers in the main stack
    in_channels: int = 100  # mel bins of x_t and of the speaker mels
    out_channels: int = 200  # eps (in_channels) + learned variance range (in_channels)
    in_latent_channels: int = 1024  # width of the GPT latents
    in_tokens: int = 8193  # speech-code vocabulary, for code conditioning
    num_heads: int = 16
    dropout: float = 0.0
    # Counts the reference hard-codes inside its module.
    code_converter_blocks: int = 3  # attention blocks after the code embedding
    latent_conditioner_blocks: int = 4  # attention blocks after the latent input conv
    contextual_embedder_blocks: int = 5  # attention blocks (at 2*D) of the speaker encoder
    integrator_layers: int = 3  # residual + attention layers applied to the aligned embeddings
    plain_resblocks: int = 3  # residual-only layers ending the main stack
    # Training-only regularisation (no effect in eval mode).
    use_fp16: bool = False  # autocast every main-stack layer but the first
    layer_drop: float = 0.0  # probability of skipping an inner main-stack layer
    unconditioned_percentage: float = 0.0  # fraction of the batch trained without conditioning

    @classmethod
    def tortoise(cls) -> DiffusionConfig:
        """The published decoder (`diffusion_decoder.pth`) as Tortoise builds it for inference."""
        return cls()


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (B,) timesteps -> (B, dim): cosines first, then sines."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    )
    angles = timesteps[:, None].float() * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class TimestepResBlock(nn.Module):
    """Residual block whose second normalisation is scaled and shifted by the timestep embedding.

    in_layers: norm, SiLU, 1x1 conv; out_layers: norm, SiLU, dropout, k3 conv. (B, C, T) -> (B, C, T).
    """

    def __init__(self, channels: int, emb_channels: int, dropout: float):
        super().__init__()
        self.in_layers = nn.Sequential(group_norm(channels), nn.SiLU(), nn.Conv1d(channels, channels, 1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * channels))
        self.out_layers = nn.Sequential(
            group_norm(channels), nn.SiLU(), nn.Dropout(dropout), nn.Conv1d(channels, channels, 3, padding=1)
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C, T); emb: (B, E); frames: optional (B, 1, T) 0/1 mask of real frames (see DiffusionDecoder)."""
        if frames is None:
            h = self.in_layers(x)
        else:
            h = self.in_layers[1:](self.in_layers[0](x, frames))
        scale, shift = self.emb_layers(emb).type(h.dtype)[..., None].chunk(2, dim=1)  # each (B, C, 1)
        norm, act, dropout, conv = self.out_layers
        h = dropout(act(norm(h, frames) * (1 + scale) + shift))
        if frames is not None:  # the k3 convolution must see zeros, not padding values, past the last real frame
            h = h * frames.to(h.dtype)
        return x + conv(h)


class DiffusionLayer(nn.Module):
    """A timestep residual block followed by self-attention with relative position bias."""

    def __init__(self, channels: int, heads: int, dropout: float):
        super().__init__()
        self.resblk = TimestepResBlock(channels, channels, dropout)
        self.attn = AttentionBlock(channels, heads, relative_position=True)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        return self.attn(self.resblk(x, emb, frames), frames=frames)


def _attention_stack(channels: int, heads: int, count: int) -> list[nn.Module]:
    return [AttentionBlock(channels, heads, relative_position=True) for _ in range(count)]


class DiffusionDecoder(nn.Module):
    def __init__(self, config: DiffusionConfig):
        super().__init__()
        self.config = config
        d, heads = config.model_channels, config.num_heads

        # Speaker encoder: two stride-2 convolutions (no activation between them), then attention at 2*D.
        self.contextual_embedder = nn.Sequential(
            nn.Conv1d(config.in_channels, d, 3, stride=2, padding=1),
            nn.Conv1d(d, 2 * d, 3, stride=2, padding=1),
            *_attention_stack(2 * d, heads, config.contextual_embedder_blocks),
        )
        # Aligned conditioning: float latents or integer codes.
        self.latent_conditioner = nn.Sequential(
            nn.Conv1d(config.in_latent_channels, d, 3, padding=1),
            *_attention_stack(d, heads, config.latent_conditioner_blocks),
        )
        self.code_embedding = nn.Embedding(config.in_tokens, d)
        self.code_converter = nn.Sequential(*_attention_stack(d, heads, config.code_converter_blocks))
        self.code_norm = group_norm(d)
        self.unconditioned_embedding = nn.Parameter(torch.randn(1, d, 1))
        self.mel_head = nn.Conv1d(d, config.in_channels, 3, padding=1)  # training-time auxiliary output

        self.time_embed = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.conditioning_timestep_integrator = nn.ModuleList(
            DiffusionLayer(d, heads, config.dropout) for _ in range(config.integrator_layers)
        )
        self.inp_block = nn.Conv1d(config.in_channels, d, 3, padding=1)
        self.integrating_conv = nn.Conv1d(2 * d, d, 1)
        self.layers = nn.ModuleList(
            [DiffusionLayer(d, heads, config.dropout) for _ in range(config.num_layers)]
            + [TimestepResBlock(d, d, config.dropout) for _ in range(config.plain_resblocks)]
        )
        self.out = nn.Sequential(group_norm(d), nn.SiLU(), nn.Conv1d(d, config.out_channels, 3, padding=1))

    # ---- timestep-independent parts (computed once per utterance at inference) ----

    def get_conditioning(self, cond_mels: torch.Tensor) -> torch.Tensor:
        """Speaker latent (B, 2*D) from normalised mels (B, n_clips, in_channels, T) or (B, in_channels, T).

        Each clip is encoded to (B, 2*D, T/4); the clips are joined along time and averaged.
        """
        if cond_mels.dim() == 3:
            cond_mels = cond_mels.unsqueeze(1)
        b, n = cond_mels.shape[:2]
        h = self.contextual_embedder(cond_mels.flatten(0, 1))  # (B*n, 2D, T')
        h = h.reshape(b, n, *h.shape[1:]).permute(0, 2, 1, 3).flatten(2)  # (B, 2D, n*T')
        return h.mean(dim=-1)

    def unconditioned_embeddings(self, batch: int, frames: int) -> torch.Tensor:
        """The learned "no conditioning" embedding repeated to (batch, D, frames)."""
        return self.unconditioned_embedding.repeat(batch, 1, frames)

    def timestep_independent(
        self,
        aligned_conditioning: torch.Tensor,
        conditioning_latent: torch.Tensor,
        output_frames: int,
        return_code_pred: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Aligned embeddings (B, D, output_frames) from latents (B, T_lat, latent_dim) or codes (B, T_lat).

        `conditioning_latent` (B or 1, 2*D) scales and shifts the normalised embeddings. In training mode,
        a `unconditioned_percentage` share of the batch is replaced by the unconditioned embedding.
        With `return_code_pred`, also returns the auxiliary mel prediction (B, in_channels, output_frames),
        zeroed for unconditioned batch rows.
        """
        if aligned_conditioning.is_floating_point():
            h = self.latent_conditioner(aligned_conditioning.transpose(1, 2))  # (B, D, T_lat)
        else:
            h = self.code_embedding(aligned_conditioning).transpose(1, 2)  # (B, D, T_lat)
            h = self.code_converter(h)
        scale, shift = conditioning_latent[..., None].chunk(2, dim=1)  # each (B, D, 1)
        h = self.code_norm(h) * (1 + scale) + shift

        unconditioned = torch.zeros(h.shape[0], 1, 1, dtype=torch.bool, device=h.device)
        if self.training and self.config.unconditioned_percentage > 0:
            unconditioned = (
                torch.rand(h.shape[0], 1, 1, device=h.device) < self.config.unconditioned_percentage
            )
            h = torch.where(unconditioned, self.unconditioned_embeddings(h.shape[0], 1), h)
        h = F.interpolate(h, size=output_frames, mode="nearest")  # (B, D, T)
        if not return_code_pred:
            return h
        return h, self.mel_head(h) * unconditioned.logical_not()

    # ---- denoiser ----

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        aligned_conditioning: torch.Tensor | None = None,
        conditioning_latent: torch.Tensor | None = None,
        precomputed: torch.Tensor | None = None,
        conditioning_free: bool = False,
        return_code_pred: bool = False,
        frames: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Model output (B, out_channels, T) for noisy mels x (B, in_channels, T) at (B,) timesteps.

        Conditioning is either `precomputed` (from `timestep_independent`), or `aligned_conditioning`
        (latents or codes) with `conditioning_latent` (training form; `return_code_pred` also returns the
        auxiliary mel prediction). `conditioning_free` ignores all of it and uses the unconditioned embedding.

        `frames` (B, 1, T), a 0/1 mask, marks the real frames of inputs padded at the end (to a length
        bucket, for a captured graph): normalisations take their statistics over real frames only,
        attention hides padding keys, and convolutions see zeros past the last real frame, so the
        output at real frames equals that of the unpadded input (up to float rounding).
        """
        if return_code_pred and (precomputed is not None or conditioning_free):
            raise ValueError("return_code_pred needs aligned_conditioning, not precomputed/conditioning_free")
        b, _, t = x.shape
        code_pred = None
        if conditioning_free:
            code_emb = self.unconditioned_embeddings(b, t)
        elif precomputed is not None:
            code_emb = precomputed
        elif aligned_conditioning is not None and conditioning_latent is not None:
            code_emb = self.timestep_independent(
                aligned_conditioning, conditioning_latent, t, return_code_pred
            )
            if return_code_pred:
                code_emb, code_pred = code_emb
        else:
            raise ValueError("forward needs precomputed, or aligned_conditioning and conditioning_latent")

        emb = timestep_embedding(timesteps, self.config.model_channels)  # (B, D) float32, as Tortoise
        time_emb = self.time_embed(emb.double() if x.dtype == torch.float64 else emb)  # (B, D)
        for layer in self.conditioning_timestep_integrator:
            code_emb = layer(code_emb, time_emb, frames)  # (B, D, T)
        if frames is not None:
            x = x * frames.to(x.dtype)
        h = self.integrating_conv(torch.cat([self.inp_block(x), code_emb], dim=1))  # (B, D, T)
        h = self._main_stack(h, time_emb, frames)
        if frames is None:
            out = self.out(at_least_float32(h))  # (B, out_channels, T)
        else:
            norm, act, conv = self.out
            h = at_least_float32(h)
            out = conv(act(norm(h, frames)) * frames.to(h.dtype))
        return (out, code_pred) if return_code_pred else out

    def _main_stack(self, h: torch.Tensor, time_emb: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            if self._drop_layer(i):
                continue
            if self.config.use_fp16 and i > 0:
                with torch.autocast(h.device.type):
                    h = layer(h, time_emb, frames)
            else:
                h = layer(h, time_emb, frames)
        return h

    def _drop_layer(self, i: int) -> bool:
        """Layer drop in training: never the first or the last layer."""
        p = self.config.layer_drop
        if not self.training or p <= 0 or i == 0 or i == len(self.layers) - 1:
            return False
        return torch.rand(()).item() < p


def _count(state_dict: dict, pattern: str) -> int:
    """Number of distinct indices N among keys matching `pattern` (a regex with one group for N)."""
    regex = re.compile(pattern)
    return len({m.group(1) for key in state_dict if (m := regex.fullmatch(key))})


def infer_tortoise_config(state_dict: dict) -> DiffusionConfig:
    """Configuration of a `DiffusionTts`-layout state dict (values are tensors or shapes)."""

    def shape(key: str) -> tuple[int, ...]:
        value = state_dict[key]
        return tuple(value.shape) if hasattr(value, "shape") else tuple(value)

    d, in_channels = shape("inp_block.weight")[:2]
    bias_tables = [k for k in state_dict if k.endswith("relative_attention_bias.weight")]
    heads = shape(bias_tables[0])[1] if bias_tables else d // TORTOISE_HEAD_WIDTH
    return DiffusionConfig(
        model_channels=d,
        num_layers=_count(state_dict, r"layers\.(\d+)\.resblk\.in_layers\.0\.weight"),
        in_channels=in_channels,
        out_channels=shape("out.2.weight")[0],
        in_latent_channels=shape("latent_conditioner.0.weight")[1],
        in_tokens=shape("code_embedding.weight")[0],
        num_heads=heads,
        code_converter_blocks=_count(state_dict, r"code_converter\.(\d+)\.qkv\.weight"),
        latent_conditioner_blocks=_count(state_dict, r"latent_conditioner\.(\d+)\.qkv\.weight"),
        contextual_embedder_blocks=_count(state_dict, r"contextual_embedder\.(\d+)\.qkv\.weight"),
        integrator_layers=_count(state_dict, r"conditioning_timestep_integrator\.(\d+)\.attn\.qkv\.weight"),
        plain_resblocks=_count(state_dict, r"layers\.(\d+)\.in_layers\.0\.weight"),
    )
