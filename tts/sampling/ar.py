"""Eager autoregressive sampling of speech codes from a :class:`~tts.models.gpt.SpeechGPT`.

The backbone is stepped one token at a time through a KV cache behind a small interface
(:class:`Decoder`): ``prefill`` runs the shared prefix once, ``step`` feeds one new token per row.
Two interchangeable implementations give the same result:

- :class:`DynamicCacheDecoder`: transformers' GPT-2 forward and DynamicCache, on a copy of the
  model's weights: the reference implementation, kept as a cross-check.
- :class:`StaticCacheDecoder`: a preallocated `(layers, B, heads, max_len, head_dim)` cache filled in
  place, stepped by the model's own :meth:`~tts.models.gpt.SpeechGPT.cached_forward`; the
  shape-static form that the graph-captured decoder (:mod:`.ar_graph`) builds on.

:func:`sample_batch` is the eager sampling loop. Which decoder runs where is chosen in one place,
:mod:`tts.sampling.generate`; this module knows nothing of graphs.
"""

from __future__ import annotations

import torch

from ..models.gpt import SpeechGPT
from ..models.gpt2 import to_transformers
from .logits import SamplingParams, draw, filter_logits

# Tortoise's autoregressive prefix is fed to HF generate() as placeholder ids: 1 at every prefix
# position, then the start code. The repetition penalty counts them, so we mark them as seen too.
PREFIX_PLACEHOLDER_ID = 1


class Decoder:
    """KV-cached stepping of the GPT-2 backbone. Hidden states returned are after GPT-2's ln_f."""

    def prefill(self, prefixes: list[torch.Tensor], rows: list[int]) -> torch.Tensor:
        """Run each prefix (1, P_i, D) once and share it with its rows -> last hidden (B, D).

        `rows[b]` is the index of the prefix that batch row b continues.
        """
        raise NotImplementedError

    def step(self, emb: torch.Tensor) -> torch.Tensor:
        """Feed one embedded token per row (B, 1, D) -> hidden (B, D)."""
        raise NotImplementedError


class DynamicCacheDecoder(Decoder):
    """transformers' own forward and DynamicCache; one shared prefix per batch."""

    def __init__(self, model: SpeechGPT):
        cfg = model.config
        self.gpt = to_transformers(model.gpt, cfg.text_positions + cfg.mel_positions)
        self.cache = None

    def prefill(self, prefixes: list[torch.Tensor], rows: list[int]) -> torch.Tensor:
        from transformers import DynamicCache

        if len(prefixes) != 1:
            raise ValueError("the dynamic-cache decoder takes one prefix per batch")
        self.cache = DynamicCache()
        # the cache passed as argument 2, whose keyword name changed within transformers 5.x
        out = self.gpt(None, self.cache, inputs_embeds=prefixes[0], use_cache=True)
        self.cache.batch_repeat_interleave(len(rows))
        return out.last_hidden_state[:, -1].expand(len(rows), -1)

    def step(self, emb: torch.Tensor) -> torch.Tensor:
        out = self.gpt(None, self.cache, inputs_embeds=emb, use_cache=True)
        return out.last_hidden_state[:, -1]


def kv_cache_buffers(model: SpeechGPT, batch: int, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zeroed keys and values (layers, batch, heads, max_len, head_dim) in the model's dtype and device."""
    cfg = model.config
    param = model.mel_head.weight
    shape = (cfg.layers, batch, cfg.heads, max_len, cfg.model_dim // cfg.heads)
    keys = torch.zeros(shape, dtype=param.dtype, device=param.device)
    return keys, torch.zeros_like(keys)


class _PrefixCache:
    """The StaticCacheDecoder's buffers as seen by one forward: new positions start..end-1 of cache rows
    `rows` are written, and the queries attend to positions first..end-1."""

    def __init__(self, decoder: StaticCacheDecoder, rows, start: int, end: int, first: int, steps: int):
        self.keys, self.values = decoder.keys, decoder.values
        self.rows, self.start, self.end, self.first = rows, start, end, first
        self.is_causal = steps > 1
        mask = decoder.key_mask
        self.attn_mask = None if mask is None or steps > 1 else mask[rows, :, :, first:end]  # (b, 1, 1, S)

    def update(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.keys[layer, self.rows, :, self.start:self.end] = keys
        self.values[layer, self.rows, :, self.start:self.end] = values
        span = slice(self.first, self.end)
        return self.keys[layer, self.rows, :, span], self.values[layer, self.rows, :, span]


class StaticCacheDecoder(Decoder):
    """Preallocated KV cache (layers, B, heads, max_len, head_dim), stepped by :meth:`SpeechGPT.cached_forward`.

    Prefixes of different lengths are right-aligned (the shorter ones start later in the cache) so
    that every row decodes at the same position; a key mask hides the unused leading slots.
    """

    def __init__(self, model: SpeechGPT, batch: int, max_len: int,
                 cache: tuple[torch.Tensor, torch.Tensor] | None = None):
        """`cache`: reuse preallocated (keys, values) of shape (layers, batch, heads, max_len, head_dim)."""
        self.model = model
        self.dim = model.config.model_dim
        if cache is None:
            cache = kv_cache_buffers(model, batch, max_len)
        self.keys, self.values = cache
        self.length = 0  # positions filled
        self.key_mask = None  # (B, 1, 1, max_len) bool, True at usable positions; None: all usable

    def _forward(self, x: torch.Tensor, rows, start: int, first: int = 0) -> torch.Tensor:
        """x (b, T, D) at cache positions start..start+T-1 of cache rows `rows`, attending to
        positions first..start+T-1 -> (b, T, D) after ln_f."""
        t = x.shape[1]
        return self.model.cached_forward(x, _PrefixCache(self, rows, start, start + t, first, t))

    def prefill(self, prefixes: list[torch.Tensor], rows: list[int]) -> torch.Tensor:
        if self.length != 0:
            raise RuntimeError("prefill on a cache that is already in use")
        longest = max(p.shape[1] for p in prefixes)
        batch = len(rows)
        owner = torch.tensor(rows, device=self.keys.device)
        hidden = torch.empty(batch, self.dim, dtype=prefixes[0].dtype, device=prefixes[0].device)
        pads = torch.zeros(batch, dtype=torch.long, device=self.keys.device)
        for index, prefix in enumerate(prefixes):
            mine = (owner == index).nonzero().flatten()
            if len(mine) == 0:
                continue
            first = longest - prefix.shape[1]
            lead = int(mine[0])
            hidden[mine] = self._forward(prefix, slice(lead, lead + 1), first, first)[:, -1]
            others = mine[1:]  # rows after the first share its prefix: copy the cache over
            if len(others):
                self.keys[:, others, :, first:longest] = self.keys[:, lead:lead + 1, :, first:longest]
                self.values[:, others, :, first:longest] = self.values[:, lead:lead + 1, :, first:longest]
            pads[mine] = first
        if bool(pads.any()):
            positions = torch.arange(self.keys.shape[3], device=pads.device)
            self.key_mask = (positions[None, :] >= pads[:, None])[:, None, None, :]
        self.length = longest
        return hidden

    def step(self, emb: torch.Tensor) -> torch.Tensor:
        hidden = self._forward(emb, slice(None), self.length)[:, -1]
        self.length += 1
        return hidden


def eager_decoder(model: SpeechGPT, cache: str, batch: int, prefixes: list[torch.Tensor], max_tokens: int) -> Decoder:
    """The eager KV-cache decoder `cache` ("static" or "dynamic") for one batch of rows continuing `prefixes`."""
    if cache == "static":
        longest = max(p.shape[1] for p in prefixes)
        return StaticCacheDecoder(model, batch, longest + max_tokens)
    if cache == "dynamic":
        if len(prefixes) != 1:
            raise ValueError("the dynamic cache decodes one text per batch; use batch_size <= num_samples")
        return DynamicCacheDecoder(model)
    raise ValueError(f"unknown cache {cache!r}")


def row_minimums(min_codes: list[int] | None, rows: list[int], device: torch.device) -> torch.Tensor:
    """Each row's minimum codes before the stop code (B,) long, from one minimum per prefix (0 without)."""
    per_prefix = min_codes or [0] * (max(rows) + 1)
    return torch.tensor([per_prefix[r] for r in rows], dtype=torch.long, device=device)


def sample_batch(model: SpeechGPT, decoder: Decoder, prefixes: list[torch.Tensor], rows: list[int], max_tokens: int,
                 params: SamplingParams, generator: torch.Generator | None,
                 min_codes: list[int] | None = None) -> torch.Tensor:
    """Sample one batch eagerly: row b continues prefix rows[b] (1, P, D) -> codes (B, max_tokens),
    padded with the stop code after each row ends. `min_codes[i]`: codes a row continuing prefix i
    draws before it may stop (None: no minimum, Tortoise's loop exactly)."""
    cfg = model.config
    device = prefixes[0].device
    stop = cfg.stop_mel_token
    batch = len(rows)
    minimum = None if min_codes is None else row_minimums(min_codes, rows, device)  # (B,)
    seen = torch.zeros(batch, cfg.number_mel_codes, dtype=torch.bool, device=device)
    seen[:, PREFIX_PLACEHOLDER_ID] = True  # every prefix is longer than one position
    seen[:, cfg.start_mel_token] = True
    out = torch.full((batch, max_tokens), stop, dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    hidden = decoder.prefill(prefixes, rows)
    for i in range(max_tokens):
        held = None if minimum is None else i < minimum  # (B,) rows with fewer than their minimum codes
        logits = filter_logits(model.logits(hidden), seen, params, stop, held)
        token = draw(logits, generator).masked_fill(finished, stop)
        out[:, i] = token
        seen.scatter_(1, token[:, None], True)
        finished |= token == stop
        if bool(finished.all()) or i + 1 == max_tokens:
            break
        hidden = decoder.step(model.embed_mel(token[:, None], offset=i + 1))
    return out
