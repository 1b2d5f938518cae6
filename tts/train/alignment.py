"""Alignment aids for training the GPT: guided attention on a few heads of its middle layers.

A decoder-only GPT must discover on its own which text its speech positions read. Guided attention
(Tachibana et al. 2017, DCTTS) gives a few heads a hint: their attention from each speech position
to the text, renormalised over the utterance's text tokens, is penalised by its distance from the
diagonal, ``W[j, k] = 1 - exp(-(k / N - j / M)^2 / (2 g^2))`` for speech position ``j`` of ``M``
and text token ``k`` of ``N``. The penalty is annealed away, so the heads keep the habit without
being held to a straight line. The model itself is not changed: the attention of the chosen heads
is recomputed from their queries and keys, captured by forward hooks on the GPT-2 blocks' ``c_attn``
projections (training only; inference never imports this module).

Sequence layout of :meth:`tts.models.gpt.SpeechGPT.forward`: ``[cond | start, text ids.., stop,
pad.. | start_mel, codes.., stop, pad..]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class AlignmentConfig:
    layers: tuple[int, ...] = ()  # GPT-2 blocks whose heads are guided (empty: off)
    heads: int = 2  # the first `heads` heads of each of those blocks
    weight: float = 1.0  # loss weight until `hold` steps...
    hold: int = 2000
    end: int = 6000  # ...then down linearly to 0 at `end`
    width: float = 0.2  # g of the guide

    def weight_at(self, step: int) -> float:
        if not self.layers or step >= self.end:
            return 0.0
        if step < self.hold:
            return self.weight
        return self.weight * (self.end - step) / max(1, self.end - self.hold)


class AttentionTap:
    """Keeps the output of `c_attn` (queries, keys, values: (B, T, 3 D)) of chosen GPT-2 blocks."""

    def __init__(self, gpt2: nn.Module, layers: tuple[int, ...], heads: int):
        self.heads = heads
        self.num_heads = gpt2.heads
        self.outputs: dict[int, torch.Tensor] = {}
        self.handles = [gpt2.h[i].attn.c_attn.register_forward_hook(self._hook(i)) for i in layers]

    def _hook(self, layer: int):
        def keep(_module, _inputs, output):
            self.outputs[layer] = output
        return keep

    def clear(self) -> None:
        self.outputs.clear()

    def speech_to_text(self, layer: int, text_start: int, text_width: int, speech_start: int, speech_width: int,
                       text_lengths: torch.Tensor) -> torch.Tensor:
        """Attention of the guided heads from speech positions to text tokens, renormalised over each
        row's real text: (B, heads, speech_width, text_width); zero beyond a row's text."""
        qkv = self.outputs[layer]
        b, _, three_d = qkv.shape
        d = three_d // 3
        head_dim = d // self.num_heads
        q, k, _ = qkv.split(d, dim=2)
        q = q[:, speech_start:speech_start + speech_width].reshape(b, speech_width, self.num_heads, head_dim)
        k = k[:, text_start:text_start + text_width].reshape(b, text_width, self.num_heads, head_dim)
        q, k = q[:, :, :self.heads].transpose(1, 2).float(), k[:, :, :self.heads].transpose(1, 2).float()
        logits = q @ k.transpose(-1, -2) / math.sqrt(head_dim)  # (B, heads, speech, text)
        real = torch.arange(text_width, device=qkv.device)[None, :] < text_lengths[:, None]  # (B, text)
        logits = logits.masked_fill(~real[:, None, None, :], float("-inf"))
        return logits.softmax(dim=-1)


def guide(speech_lengths: torch.Tensor, text_lengths: torch.Tensor, speech_width: int, text_width: int,
          width: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(penalty W (B, speech_width, text_width), mask of real speech positions (B, speech_width))."""
    device = speech_lengths.device
    j = torch.arange(speech_width, device=device)[None, :, None] / speech_lengths.clamp_min(1)[:, None, None].float()
    k = torch.arange(text_width, device=device)[None, None, :] / text_lengths.clamp_min(1)[:, None, None].float()
    penalty = 1 - torch.exp(-((k - j) ** 2) / (2 * width ** 2))
    rows = torch.arange(speech_width, device=device)[None, :] < speech_lengths[:, None]
    return penalty, rows


def guided_attention_loss(attention: torch.Tensor, speech_lengths: torch.Tensor, text_lengths: torch.Tensor,
                          width: float) -> torch.Tensor:
    """Mean over real speech positions and heads of the expected penalty of the attention (B, H, M, N)."""
    _, heads, m, n = attention.shape
    penalty, rows = guide(speech_lengths, text_lengths, m, n, width)
    per_row = (attention * penalty[:, None]).sum(-1)  # (B, H, M)
    return (per_row * rows[:, None]).sum() / (rows.sum() * heads).clamp_min(1)


def diagonality(attention: torch.Tensor, speech_lengths: torch.Tensor, text_lengths: torch.Tensor,
                width: float = 0.1) -> torch.Tensor:
    """Share of the attention mass within `width` of the diagonal (1 = perfectly aligned; about
    2 * width for attention spread evenly): a readable alignment gauge for the logs."""
    _, heads, m, n = attention.shape
    penalty, rows = guide(speech_lengths, text_lengths, m, n, width)
    near = (attention * (penalty < 1 - math.exp(-0.5))[:, None]).sum(-1)  # within one `width` of the diagonal
    return (near * rows[:, None]).sum() / (rows.sum() * heads).clamp_min(1)
