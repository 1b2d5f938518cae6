"""The autoregressive speech model: a GPT-2 over [voice | text | speech codes] (Tortoise's UnifiedVoice).

Sequence layout (one row of the batch):

    [cond] [start_text t_1 .. t_n stop_text] [start_mel c_1 .. c_m stop_mel]
     1      n + 2                             m + 2

`cond` is one conditioning vector from the reference clips. Text and speech each have their own
embedding and learned position table (positions restart at 0 for each); the GPT-2 backbone
(:mod:`tts.models.gpt2`) has no token or position tables of its own. The hidden state at each
position predicts the next token: text positions through `text_head`, speech positions through
`mel_head`. The diffusion decoder consumes the final-normed hidden states at the speech positions
("latents").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import AttentionBlock
from .gpt2 import GPT2Stack, KVCache

HEAD_DIM = 64  # every Tortoise attention head is 64 channels wide


@dataclass
class GPTConfig:
    layers: int = 30
    model_dim: int = 1024
    heads: int = 16
    text_positions: int = 404  # rows of the text position table
    mel_positions: int = 608  # rows of the speech position table
    number_text_tokens: int = 255  # text vocabulary; the start token comes after it
    stop_text_token: int = 0
    number_mel_codes: int = 8194  # speech codes + start + stop
    mel_channels: int = 80  # conditioning mel bins
    conditioning_blocks: int = 6  # attention blocks in the conditioning encoder
    samples_per_code: int = 1024  # audio samples (at the AR sample rate) per speech code
    dropout: float = 0.1  # GPT-2 residual and embedding dropout (training only)

    @classmethod
    def tortoise(cls) -> "GPTConfig":
        return cls()

    @property
    def start_text_token(self) -> int:
        return self.number_text_tokens

    @property
    def start_mel_token(self) -> int:
        return self.number_mel_codes - 2

    @property
    def stop_mel_token(self) -> int:
        return self.number_mel_codes - 1

    @property
    def max_text_tokens(self) -> int:
        """Longest text id sequence the model can take (it adds start and stop)."""
        return self.text_positions - 3

    @property
    def max_mel_tokens(self) -> int:
        """Most speech codes the model can generate or read (it adds start and stop)."""
        return self.mel_positions - 2


class ConditioningEncoder(nn.Module):
    """Mel of one reference clip (B, mel_channels, T) -> one voice vector (B, model_dim)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.init = nn.Conv1d(config.mel_channels, config.model_dim, kernel_size=1)
        self.attn = nn.Sequential(*[AttentionBlock(config.model_dim, config.heads) for _ in range(config.conditioning_blocks)])

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        h = self.attn(self.init(mel))  # (B, D, T)
        return h[:, :, 0]  # Tortoise reads the first frame, not a mean


class PositionTable(nn.Module):
    """Learned absolute positions: (B, T, ...) -> (T, D) embeddings of positions 0..T-1."""

    def __init__(self, rows: int, dim: int):
        super().__init__()
        self.emb = nn.Embedding(rows, dim)
        nn.init.normal_(self.emb.weight, std=0.02)

    def forward(self, length: int, offset: int = 0) -> torch.Tensor:
        return self.emb.weight[offset:offset + length]


class SpeechGPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        dim = config.model_dim
        self.conditioning_encoder = ConditioningEncoder(config)
        self.text_embedding = nn.Embedding(config.number_text_tokens + 1, dim)
        self.mel_embedding = nn.Embedding(config.number_mel_codes, dim)
        self.gpt = GPT2Stack(config.layers, dim, config.heads, config.dropout)
        self.mel_pos_embedding = PositionTable(config.mel_positions, dim)
        self.text_pos_embedding = PositionTable(config.text_positions, dim)
        self.final_norm = nn.LayerNorm(dim)
        self.text_head = nn.Linear(dim, config.number_text_tokens + 1)
        self.mel_head = nn.Linear(dim, config.number_mel_codes)
        for table in (self.text_embedding, self.mel_embedding):
            nn.init.normal_(table.weight, std=0.02)

    # -- conditioning ------------------------------------------------------------------------
    def get_conditioning(self, cond_mels: torch.Tensor) -> torch.Tensor:
        """cond_mels (B, n_clips, mel_channels, T) -> (B, D): each clip encoded, then averaged."""
        if cond_mels.dim() == 3:
            cond_mels = cond_mels.unsqueeze(1)
        return torch.stack([self.conditioning_encoder(cond_mels[:, i]) for i in range(cond_mels.shape[1])], 1).mean(1)

    # -- embeddings ----------------------------------------------------------------------------
    def frame_text(self, text: torch.Tensor) -> torch.Tensor:
        """Text ids (B, n) -> model input (B, n + 2): [start_text, ids, stop_text]."""
        text = F.pad(text, (1, 0), value=self.config.start_text_token)
        return F.pad(text, (0, 1), value=self.config.stop_text_token)

    def embed_text(self, framed_text: torch.Tensor) -> torch.Tensor:
        """(B, n) framed ids -> (B, n, D) embeddings with text positions."""
        return self.text_embedding(framed_text) + self.text_pos_embedding(framed_text.shape[1])

    def embed_mel(self, codes: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """(B, m) speech codes at positions offset.. -> (B, m, D)."""
        return self.mel_embedding(codes) + self.mel_pos_embedding(codes.shape[1], offset)

    def prefix_embeddings(self, cond_latent: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Generation prefix [cond | framed text | start_mel]: (B, D), (B, n) -> (B, n + 4, D)."""
        start = torch.full((text.shape[0], 1), self.config.start_mel_token, dtype=torch.long, device=text.device)
        return torch.cat([cond_latent.unsqueeze(1), self.embed_text(self.frame_text(text)), self.embed_mel(start)], 1)

    def cached_forward(self, x: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """The GPT-2 blocks over new positions x (B, T, D) embedded, keys and values through `cache`
        -> hidden states after GPT-2's final norm (B, T, D): the one step of every KV-cache decoder
        (eager and graph-captured)."""
        return self.gpt(x, cache)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Backbone output at speech positions (B, T, D) -> speech-code logits (B, T, number_mel_codes)."""
        return self.mel_head(self.final_norm(hidden))

    # -- full-sequence pass (training, latents, scoring) ---------------------------------------
    def forward(self, cond_latent: torch.Tensor, text: torch.Tensor, codes: torch.Tensor,
                code_lengths: torch.Tensor | None = None, return_latent: bool = False):
        """Teacher-forced pass over text ids (B, n) and speech codes (B, m).

        `code_lengths` (B,) marks the real length of each row of `codes`; positions from
        length + 1 on are replaced by the stop code (Tortoise lets the model see one code past the
        end). Returns the speech latents (B, m, D) if `return_latent`, else
        (text_logits (B, V_text, n + 2), mel_logits (B, V_mel, m + 2)) aligned with
        :meth:`targets`.
        """
        codes = self.pad_codes(codes, code_lengths)
        text_in = self.frame_text(text)
        mel_in = F.pad(F.pad(codes, (0, 1), value=self.config.stop_mel_token), (1, 0), value=self.config.start_mel_token)
        emb = torch.cat([cond_latent.unsqueeze(1), self.embed_text(text_in), self.embed_mel(mel_in)], 1)
        hidden = self.gpt(emb)[:, 1:]  # drop the cond position
        hidden = self.final_norm(hidden)
        text_hidden, mel_hidden = hidden[:, : text_in.shape[1]], hidden[:, -mel_in.shape[1]:]
        if return_latent:
            return mel_hidden[:, :-2]
        return self.text_head(text_hidden).transpose(1, 2), self.mel_head(mel_hidden).transpose(1, 2)

    def pad_codes(self, codes: torch.Tensor, code_lengths: torch.Tensor | None) -> torch.Tensor:
        if code_lengths is None:
            return codes
        keep = torch.arange(codes.shape[1], device=codes.device)[None, :] <= code_lengths[:, None]
        return torch.where(keep, codes, torch.full_like(codes, self.config.stop_mel_token))

    def targets(self, text: torch.Tensor, codes: torch.Tensor, code_lengths: torch.Tensor | None = None):
        """Next-token targets matching :meth:`forward`'s logits: (B, n + 2) and (B, m + 2)."""
        stop_text, stop_mel = self.config.stop_text_token, self.config.stop_mel_token
        codes = self.pad_codes(codes, code_lengths)
        return F.pad(text, (0, 2), value=stop_text), F.pad(codes, (0, 2), value=stop_mel)


def infer_tortoise_config(state_dict: dict[str, torch.Tensor]) -> GPTConfig:
    """Rebuild a GPTConfig from a Tortoise-layout autoregressive state dict (counts and shapes)."""
    def count(pattern: str) -> int:
        found = {int(m.group(1)) for k in state_dict if (m := re.match(pattern, k))}
        return max(found) + 1 if found else 0

    dim = state_dict["text_embedding.weight"].shape[1]
    return GPTConfig(
        layers=count(r"gpt\.h\.(\d+)\."),
        model_dim=dim,
        heads=dim // HEAD_DIM,
        text_positions=state_dict["text_pos_embedding.emb.weight"].shape[0],
        mel_positions=state_dict["mel_pos_embedding.emb.weight"].shape[0],
        number_text_tokens=state_dict["text_embedding.weight"].shape[0] - 1,
        number_mel_codes=state_dict["mel_embedding.weight"].shape[0],
        mel_channels=state_dict["conditioning_encoder.init.weight"].shape[1],
        conditioning_blocks=count(r"conditioning_encoder\.attn\.(\d+)\."),
    )


# Buffers that GPT-2 checkpoints saved by older transformers versions carry per layer (a causal
# mask and a constant); they are not weights and are dropped by name.
_LEGACY_GPT2_BUFFERS = re.compile(r"gpt\.h\.\d+\.attn\.(bias|masked_bias)$")


def tortoise_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Tortoise autoregressive.pth layout -> ours: identical names, minus legacy GPT-2 mask buffers."""
    return {k: v for k, v in state_dict.items() if not _LEGACY_GPT2_BUFFERS.match(k)}
