"""Scoring sampled code sequences when the model has no CLVP: the GPT's own likelihood.

Each candidate is scored by the mean log-probability the GPT (at temperature 1, unfiltered) gives to
its codes up to and including the first stop code, from one teacher-forced pass over all candidates.
Babbling, looping or cut-off samples score low.
"""

from __future__ import annotations

import torch

from ..models.gpt import SpeechGPT


def codes_before_stop(codes: torch.Tensor, stop: int) -> torch.Tensor:
    """codes (N, L) padded with the stop code -> speech codes before each row's first stop (N,)
    (all L for a row without one)."""
    is_stop = codes == stop
    return torch.where(is_stop.any(1), is_stop.float().argmax(1).long(), torch.full_like(codes[:, 0], codes.shape[1]))


@torch.no_grad()
def likelihood_scores(gpt: SpeechGPT, cond_latent: torch.Tensor, text: torch.Tensor, codes: torch.Tensor,
                      batch_size: int = 16) -> torch.Tensor:
    """cond_latent (1, D), text (n,), codes (N, L) padded with the stop code -> mean log-likelihood (N,)."""
    stop = gpt.config.stop_mel_token
    scores = []
    for batch in codes.split(batch_size):
        n = batch.shape[0]
        # length up to and including the first stop (rows without one: all of them)
        lengths = torch.clamp(codes_before_stop(batch, stop) + 1, max=batch.shape[1])
        _, logits = gpt(cond_latent.expand(n, -1), text[None].expand(n, -1), batch)  # (n, V, L + 2)
        logp = logits[:, :, : batch.shape[1]].float().log_softmax(1).gather(1, batch[:, None]).squeeze(1)  # (n, L)
        valid = torch.arange(batch.shape[1], device=batch.device)[None, :] < lengths[:, None]
        scores.append((logp * valid).sum(1) / lengths)
    return torch.cat(scores)
