"""Autoregressive sampling of speech codes from a :class:`~tts.models.gpt.SpeechGPT`.

The backbone is stepped one token at a time through a KV cache behind a small interface
(:class:`Decoder`): ``prefill`` runs the shared prefix once, ``step`` feeds one new token per row.
Two interchangeable implementations give the same result:

- :class:`DynamicCacheDecoder`: the GPT-2 module's own forward with transformers' DynamicCache.
- :class:`StaticCacheDecoder`: a preallocated `(layers, B, heads, max_len, head_dim)` cache filled in
  place, running the same GPT-2 blocks; the shape-static form that CUDA graphs need.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..models.gpt import SpeechGPT
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
        self.gpt = model.gpt
        self.cache = None

    def prefill(self, prefixes: list[torch.Tensor], rows: list[int]) -> torch.Tensor:
        from transformers import DynamicCache

        if len(prefixes) != 1:
            raise ValueError("the dynamic-cache decoder takes one prefix per batch")
        self.cache = DynamicCache()
        out = self.gpt(inputs_embeds=prefixes[0], past_key_values=self.cache, use_cache=True)
        self.cache.batch_repeat_interleave(len(rows))
        return out.last_hidden_state[:, -1].expand(len(rows), -1)

    def step(self, emb: torch.Tensor) -> torch.Tensor:
        out = self.gpt(inputs_embeds=emb, past_key_values=self.cache, use_cache=True)
        return out.last_hidden_state[:, -1]


def kv_cache_buffers(model: SpeechGPT, batch: int, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zeroed keys and values (layers, batch, heads, max_len, head_dim) in the model's dtype and device."""
    cfg = model.config
    param = model.mel_head.weight
    shape = (cfg.layers, batch, cfg.heads, max_len, cfg.model_dim // cfg.heads)
    keys = torch.zeros(shape, dtype=param.dtype, device=param.device)
    return keys, torch.zeros_like(keys)


class StaticCacheDecoder(Decoder):
    """Preallocated KV cache (layers, B, heads, max_len, head_dim); runs the HF GPT-2 blocks' submodules.

    Prefixes of different lengths are right-aligned (the shorter ones start later in the cache) so
    that every row decodes at the same position; a key mask hides the unused leading slots.
    """

    def __init__(self, model: SpeechGPT, batch: int, max_len: int,
                 cache: tuple[torch.Tensor, torch.Tensor] | None = None):
        """`cache`: reuse preallocated (keys, values) of shape (layers, batch, heads, max_len, head_dim)."""
        cfg = model.config
        self.blocks = model.gpt.h
        self.ln_f = model.gpt.ln_f
        self.heads = cfg.heads
        self.dim = cfg.model_dim
        if cache is None:
            cache = kv_cache_buffers(model, batch, max_len)
        self.keys, self.values = cache
        self.length = 0  # positions filled
        self.key_mask = None  # (B, 1, 1, max_len) bool, True at usable positions; None: all usable

    def _forward(self, x: torch.Tensor, rows, start: int, first: int = 0) -> torch.Tensor:
        """x (b, T, D) at cache positions start..start+T-1 of cache rows `rows`, attending to
        positions first..start+T-1 -> (b, T, D) after ln_f."""
        b, t, _ = x.shape
        end = start + t
        mask = None if self.key_mask is None or t > 1 else self.key_mask[rows, :, :, first:end]
        for i, block in enumerate(self.blocks):
            q, k, v = block.attn.c_attn(block.ln_1(x)).split(self.dim, dim=2)
            q, k, v = (y.view(b, t, self.heads, -1).transpose(1, 2) for y in (q, k, v))  # (B, H, T, hd)
            self.keys[i, rows, :, start:end] = k
            self.values[i, rows, :, start:end] = v
            att = F.scaled_dot_product_attention(
                q, self.keys[i, rows, :, first:end], self.values[i, rows, :, first:end], attn_mask=mask,
                is_causal=t > 1,
            )
            x = x + block.attn.c_proj(att.transpose(1, 2).reshape(b, t, self.dim))
            x = x + block.mlp(block.ln_2(x))
        return self.ln_f(x)

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


@dataclass(frozen=True)
class CodeFixup:
    """How raw sampled codes are made ready for the decoder, per the DVAE that defined the codes.

    From the first stop code on, codes become `silence_code`; the last codes of the padded row become
    `end_codes` (what the DVAE emits for a clip ending in silence). Latents are cut where
    `silence_run` consecutive silence codes have been seen.
    """

    silence_code: int = 83
    end_codes: tuple[int, ...] = (45, 45, 248)
    silence_run: int = 9

    def fix(self, codes: torch.Tensor, stop_code: int) -> torch.Tensor:
        """codes (N, L) padded with `stop_code` -> fixed copy (N, L). Rows without a stop are unchanged."""
        codes = codes.clone()
        for row in codes:
            stops = (row == stop_code).nonzero()
            if len(stops) == 0:
                continue
            row[int(stops[0]):] = self.silence_code
            row[-len(self.end_codes):] = torch.tensor(self.end_codes, dtype=row.dtype)
        return codes

    def speech_length(self, codes: torch.Tensor) -> int:
        """Number of leading positions of one fixed row (L,) whose latents the decoder should get."""
        run = 0
        for i, code in enumerate(codes.tolist()):
            run = run + 1 if code == self.silence_code else 0
            if run >= self.silence_run:
                return i
        return codes.shape[0]


def sample_codes(
    model: SpeechGPT,
    cond_latent: torch.Tensor,
    text: torch.Tensor,
    *,
    num_samples: int,
    batch_size: int,
    max_tokens: int,
    params: SamplingParams,
    generator: torch.Generator | None = None,
    cache: str = "auto",
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Sample `num_samples` code sequences for one text (n,) and one voice (D,) -> (num_samples, max_tokens).

    Rows are padded with the stop code after they end. Batches of `batch_size` rows are decoded
    together; `progress(rows_done)` is called after each batch.
    """
    return sample_codes_many(model, cond_latent, [text], num_samples=num_samples, batch_size=batch_size,
                             max_tokens=max_tokens, params=params, generator=generator, cache=cache,
                             progress=progress)[0]


def sample_codes_many(
    model: SpeechGPT,
    cond_latent: torch.Tensor | Sequence[torch.Tensor],
    texts: list[torch.Tensor],
    *,
    num_samples: int,
    batch_size: int,
    max_tokens: int,
    params: SamplingParams,
    generator: torch.Generator | None = None,
    cache: str = "auto",
    progress: Callable[[int], None] | None = None,
) -> list[torch.Tensor]:
    """`num_samples` code sequences for each of several texts -> one (num_samples, max_tokens) tensor per
    text. `cond_latent` is one voice (D,) for every text, or a sequence with one voice per text. Rows of
    different texts share batches (the static cache right-aligns their prefixes).

    `cache`: "static" (eager loop over :class:`StaticCacheDecoder`), "dynamic" (transformers'
    DynamicCache), "graph" (:class:`~tts.sampling.ar_graph.GraphDecoder`: the whole decode step
    CUDA-graph captured on a GPU, run eagerly elsewhere), or "auto": "graph" on CUDA, else "static".
    """
    cfg = model.config
    if max_tokens > cfg.max_mel_tokens:
        raise ValueError(f"max_tokens {max_tokens} exceeds the model's {cfg.max_mel_tokens}")
    if cache == "auto":
        cache = "graph" if model.mel_head.weight.device.type == "cuda" else "static"
    if cache not in ("static", "dynamic", "graph"):
        raise ValueError(f"unknown cache {cache!r}")
    conds = [cond_latent] * len(texts) if isinstance(cond_latent, torch.Tensor) else list(cond_latent)
    if len(conds) != len(texts):
        raise ValueError(f"{len(conds)} conditioning latents for {len(texts)} texts")
    prefixes = [model.prefix_embeddings(c.reshape(1, -1), t.reshape(1, -1)) for c, t in zip(conds, texts)]  # (1, P_i, D)
    jobs = [i for i in range(len(texts)) for _ in range(num_samples)]  # prefix index of each row
    out = []
    for done in range(0, len(jobs), batch_size):
        rows = jobs[done:done + batch_size]
        used = sorted(set(rows))
        batch_prefixes = [prefixes[i] for i in used]
        local = [used.index(i) for i in rows]
        if cache == "graph":
            from .ar_graph import graph_decoder_for

            codes = graph_decoder_for(model, params).sample(batch_prefixes, local, max_tokens, generator)
        else:
            if cache == "static":
                longest = max(p.shape[1] for p in batch_prefixes)
                decoder: Decoder = StaticCacheDecoder(model, len(rows), longest + max_tokens)
            elif len(used) == 1:
                decoder = DynamicCacheDecoder(model)
            else:
                raise ValueError("the dynamic cache decodes one text per batch; use batch_size <= num_samples")
            codes = _sample_batch(model, decoder, batch_prefixes, local, max_tokens, params, generator)
        out.append(codes)
        if progress is not None:
            progress(min(done + batch_size, len(jobs)))
    codes = torch.cat(out)
    return list(codes.split(num_samples))


def _sample_batch(model, decoder, prefixes, rows, max_tokens, params, generator) -> torch.Tensor:
    cfg = model.config
    device = prefixes[0].device
    stop = cfg.stop_mel_token
    batch = len(rows)
    seen = torch.zeros(batch, cfg.number_mel_codes, dtype=torch.bool, device=device)
    seen[:, PREFIX_PLACEHOLDER_ID] = True  # every prefix is longer than one position
    seen[:, cfg.start_mel_token] = True
    out = torch.full((batch, max_tokens), stop, dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    hidden = decoder.prefill(prefixes, rows)
    for i in range(max_tokens):
        logits = filter_logits(model.logits(hidden), seen, params)
        token = draw(logits, generator).masked_fill(finished, stop)
        out[:, i] = token
        seen.scatter_(1, token[:, None], True)
        finished |= token == stop
        if bool(finished.all()) or i + 1 == max_tokens:
            break
        hidden = decoder.step(model.embed_mel(token[:, None], offset=i + 1))
    return out
