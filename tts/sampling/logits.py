"""Logit filters and the sampling draw for autoregressive decoding.

The chain is Tortoise's (HF generate with do_sample): repetition penalty -> temperature ->
top-k -> top-p -> softmax -> one multinomial draw, preceded by our one addition, the minimum-length
hold on the stop code (off for Tortoise). Every piece works on a whole batch of logits `(B, V)` with
static shapes and no host synchronisation, so the decode step can be captured in a CUDA graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.8
    top_k: int = 50  # 0 disables
    top_p: float = 0.8  # 1.0 disables
    repetition_penalty: float = 2.0  # 1.0 disables


def minimum_codes(text_tokens: int, ratio: float, codes_per_text_token: float | None) -> int:
    """Codes a row must produce before it may draw the stop code: floor(ratio x expected codes), the
    expected codes being `text_tokens` x the model's `codes_per_text_token`. An undertrained GPT often
    draws the stop code far too early and cuts words off; this refuses it. 0 (no hold) when `ratio` is 0
    or the model states no codes per text token."""
    if not ratio or not codes_per_text_token:
        return 0
    return math.floor(ratio * text_tokens * codes_per_text_token)


def hold_stop(logits: torch.Tensor, stop: int, held: torch.Tensor) -> torch.Tensor:
    """The stop code's logit becomes -inf in the rows that may not end yet.

    logits (B, V); held (B,) bool. A tensor op (no host synchronisation, static shapes): it runs in
    the captured decode step, and with no row held it leaves the logits bit for bit as they were.
    """
    is_stop = torch.arange(logits.shape[-1], device=logits.device) == stop  # (V,)
    return logits.masked_fill(held[:, None] & is_stop, float("-inf"))


def repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """Make every token already in the sequence less likely: positive logits / penalty, negative x penalty.

    logits (B, V); seen (B, V) bool, True where the token occurred (prefix ids included).
    """
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalised, logits)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep logits >= the k-th largest (ties kept); the rest become -inf."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: drop the least likely tokens whose total probability is <= 1 - p (the top one always stays)."""
    if p >= 1.0:
        return logits
    ascending, order = torch.sort(logits, dim=-1)
    cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)
    drop_sorted = cumulative <= 1 - p
    drop_sorted[..., -1] = False
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def filter_logits(logits: torch.Tensor, seen: torch.Tensor, params: SamplingParams, stop: int | None = None,
                  held: torch.Tensor | None = None) -> torch.Tensor:
    """The whole chain on float32 logits (B, V) -> filtered logits (B, V).

    `held` (B,) bool: rows whose `stop` code is ruled out first (:func:`hold_stop`, the minimum
    length), so the filters after it choose among the other codes; None holds no row.
    """
    logits = logits.float()
    if held is not None:
        logits = hold_stop(logits, stop, held)
    logits = repetition_penalty(logits, seen, params.repetition_penalty)
    if params.temperature != 1.0:
        logits = logits / params.temperature
    return top_p_filter(top_k_filter(logits, params.top_k), params.top_p)


def draw(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One token per row from filtered logits (B, V) -> (B,) long.

    The exponential race: argmax(p / q) with q ~ Exp(1) picks token v with probability p_v. It is
    what `torch.multinomial(p, 1)` computes internally (same draws from the generator, same result,
    tested), written out so that nothing checks the probabilities on the host: no synchronisation,
    and the draw can be captured in a CUDA graph.
    """
    probs = logits.softmax(dim=-1)
    race = torch.empty_like(probs).exponential_(1, generator=generator)
    return (probs / race).argmax(dim=-1)
