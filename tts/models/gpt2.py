"""The GPT-2 decoder stack, written out: the backbone of :class:`tts.models.gpt.SpeechGPT`.

Same parameter names and shapes as transformers' ``GPT2Model`` without its token and position
tables (``h.{i}.ln_1``, ``h.{i}.attn.c_attn``, ``h.{i}.attn.c_proj``, ``h.{i}.ln_2``,
``h.{i}.mlp.c_fc``, ``h.{i}.mlp.c_proj``, ``ln_f``), so Tortoise's checkpoints and ours load
unchanged, and the same operations in the same order (pre-norm blocks, one fused
scaled_dot_product_attention per layer, tanh GELU), so the outputs agree with transformers' to the
last bit. Importing transformers costs 1.5-2 s on this CPU, most of a cold `tts speak`'s load time;
this module needs only torch. :func:`to_transformers` builds the transformers twin of a stack for
cross-checks.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

LAYER_NORM_EPS = 1e-5
INIT_STD = 0.02  # GPT-2's initializer range


class KVCache(Protocol):
    """Where a cached forward keeps keys and values: storage and attention span are the cache's
    business (a growing prefix, a fixed window of a preallocated buffer, ...)."""

    attn_mask: torch.Tensor | None  # (B, 1, T, S) bool, True where a query may attend; or None
    is_causal: bool  # queries attend causally among the T new positions (prefill)

    def update(self, layer: int, keys: torch.Tensor,
               values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store one layer's new keys and values (B, H, T, hd); return what the queries attend to
        (B, H, S, hd)."""
        ...


class Conv1D(nn.Module):
    """GPT-2's linear layer, its weight stored (in, out) as in the checkpoints: (..., in) -> (..., out)."""

    def __init__(self, n_in: int, n_out: int, std: float = INIT_STD):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.empty(n_out))
        nn.init.normal_(self.weight, std=std)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight)
        return out.view(*x.shape[:-1], out.shape[-1])


class SelfAttention(nn.Module):
    """Causal multi-head self-attention; keys and values optionally through a :class:`KVCache`."""

    def __init__(self, dim: int, heads: int, dropout: float, proj_std: float):
        super().__init__()
        self.heads = heads
        self.c_attn = Conv1D(dim, 3 * dim)
        self.c_proj = Conv1D(dim, dim, std=proj_std)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        b, t, dim = x.shape
        q, k, v = self.c_attn(x).split(dim, dim=2)
        q, k, v = (y.view(b, t, self.heads, -1).transpose(1, 2) for y in (q, k, v))  # (B, H, T, hd)
        if cache is None:
            att = F.scaled_dot_product_attention(q, k, v, is_causal=t > 1)
        else:
            keys, values = cache.update(layer, k, v)  # (B, H, S, hd)
            att = F.scaled_dot_product_attention(q, keys, values, attn_mask=cache.attn_mask,
                                                 is_causal=cache.is_causal)
        att = att.transpose(1, 2).reshape(b, t, dim)  # (B, T, D)
        return self.resid_dropout(self.c_proj(att))


class MLP(nn.Module):
    def __init__(self, dim: int, dropout: float, proj_std: float):
        super().__init__()
        self.c_fc = Conv1D(dim, 4 * dim)
        self.c_proj = Conv1D(4 * dim, dim, std=proj_std)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln_1(x)), then + mlp(ln_2(x))."""

    def __init__(self, dim: int, heads: int, dropout: float, proj_std: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = SelfAttention(dim, heads, dropout, proj_std)
        self.ln_2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = MLP(dim, dropout, proj_std)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        x = self.attn(self.ln_1(x), cache, layer) + x
        return self.mlp(self.ln_2(x)) + x


class GPT2Stack(nn.Module):
    """Embedded inputs (B, T, D) -> hidden states after the final norm (B, T, D)."""

    def __init__(self, layers: int, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        # GPT-2's scaled init of the two residual projections per block (1 / sqrt(2 * layers))
        proj_std = INIT_STD / math.sqrt(2 * layers)
        self.drop = nn.Dropout(dropout)
        self.h = nn.ModuleList(Block(dim, heads, dropout, proj_std) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Without `cache`: causal attention over the T positions. With it: the T new positions
        attend to what the cache returns (its keys and values are updated in place)."""
        x = self.drop(x)
        for i, block in enumerate(self.h):
            x = block(x, cache, i)
        return self.ln_f(x)


def to_transformers(stack: GPT2Stack, max_positions: int) -> nn.Module:
    """transformers' GPT2Model holding `stack`'s weights (a copy), with its token and position tables
    removed: the reference implementation, fed with ``inputs_embeds``, for cross-checks."""
    from transformers import GPT2Config, GPT2Model

    dim = stack.ln_f.normalized_shape[0]
    config = GPT2Config(
        vocab_size=1, n_positions=max_positions, n_embd=dim, n_layer=len(stack.h), n_head=stack.heads,
        layer_norm_epsilon=LAYER_NORM_EPS, activation_function="gelu_pytorch_tanh",
        resid_pdrop=stack.drop.p, embd_pdrop=stack.drop.p, attn_pdrop=0.0,
        bos_token_id=None, eos_token_id=None, use_cache=True,
    )
    config._attn_implementation = "sdpa"
    model = GPT2Model(config)
    del model.wte
    model.wpe = _NoPositions()
    model.load_state_dict(stack.state_dict(), strict=True)
    param = next(stack.parameters())
    return model.to(device=param.device, dtype=param.dtype).train(stack.training)


class _NoPositions(nn.Module):
    """Stands in for GPT-2's own position embedding, which our models do not use."""

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        return torch.zeros((), device=position_ids.device)
