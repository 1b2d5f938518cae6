"""Sampling entry points, and the one place that picks graph-captured or eager runs.

The eager code (:mod:`.ar`, :mod:`.diffusion`) knows nothing of graphs; the graph runners
(:mod:`.ar_graph`, :mod:`.diffusion_graph`) are built on it and give the same results. This module
imports both and chooses, by one rule: the graph runner where the work is on a CUDA device (its
graphs are captured there, :func:`~tts.sampling.graphs.graphs_available`), the eager code anywhere
else. Callers may force a choice (`cache=`, `graphs=`), as the equivalence tests do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction

import torch

from ..models.gpt import SpeechGPT
from .ar import eager_decoder, sample_batch
from .ar_graph import graph_decoder_for
from .diffusion import SAMPLERS, TORTOISE_FRAME_RATIO, ProgressFn, initial_noise, sample_eager
from .diffusion_graph import diffusion_runner_for
from .logits import SamplingParams

AR_CACHES = ("static", "dynamic", "graph")


def on_cuda(*tensors: torch.Tensor | torch.Generator | torch.device) -> bool:
    """The rule: graph runners for work on a CUDA device (every tensor and generator given), eager elsewhere."""
    return all(torch.device(t if isinstance(t, torch.device) else t.device).type == "cuda" for t in tensors)


# ---- autoregressive codes ----


def sample_codes(model: SpeechGPT, cond_latent: torch.Tensor, text: torch.Tensor, *, num_samples: int,
                 batch_size: int, max_tokens: int, params: SamplingParams, generator: torch.Generator | None = None,
                 cache: str = "auto", progress: Callable[[int], None] | None = None,
                 min_codes: int = 0) -> torch.Tensor:
    """Sample `num_samples` code sequences for one text (n,) and one voice (D,) -> (num_samples, max_tokens).

    Rows are padded with the stop code after they end, and none ends before `min_codes` codes.
    Batches of `batch_size` rows are decoded together; `progress(rows_done)` is called after each batch.
    """
    return sample_codes_many(model, cond_latent, [text], num_samples=num_samples, batch_size=batch_size,
                             max_tokens=max_tokens, params=params, generator=generator, cache=cache,
                             progress=progress, min_codes=[min_codes] if min_codes else None)[0]


def sample_codes_many(model: SpeechGPT, cond_latent: torch.Tensor | Sequence[torch.Tensor], texts: list[torch.Tensor],
                      *, num_samples: int,
                      batch_size: int, max_tokens: int, params: SamplingParams,
                      generator: torch.Generator | None = None, cache: str = "auto",
                      progress: Callable[[int], None] | None = None,
                      min_codes: Sequence[int] | None = None) -> list[torch.Tensor]:
    """`num_samples` code sequences for each of several texts -> one (num_samples, max_tokens) tensor per
    text. `cond_latent` is one voice (D,) for every text, or a sequence with one voice per text. Rows of
    different texts share batches (the static cache right-aligns their prefixes). `min_codes`: one per
    text, the codes its rows draw before the stop code may be drawn
    (:func:`~tts.sampling.logits.minimum_codes`); None: no minimum.

    `cache`: "static" (the eager loop over :class:`~tts.sampling.ar.StaticCacheDecoder`), "dynamic"
    (transformers' DynamicCache), "graph" (:class:`~tts.sampling.ar_graph.GraphDecoder`: the whole
    decode step CUDA-graph captured on a GPU, run eagerly elsewhere), or "auto": "graph" on CUDA,
    else "static".
    """
    cfg = model.config
    if max_tokens > cfg.max_mel_tokens:
        raise ValueError(f"max_tokens {max_tokens} exceeds the model's {cfg.max_mel_tokens}")
    if cache == "auto":
        cache = "graph" if on_cuda(model.mel_head.weight) else "static"
    if cache not in AR_CACHES:
        raise ValueError(f"unknown cache {cache!r}")
    conds = [cond_latent] * len(texts) if isinstance(cond_latent, torch.Tensor) else list(cond_latent)
    if len(conds) != len(texts):
        raise ValueError(f"{len(conds)} conditioning latents for {len(texts)} texts")
    if min_codes is not None and len(min_codes) != len(texts):
        raise ValueError(f"{len(min_codes)} minimum lengths for {len(texts)} texts")
    prefixes = [model.prefix_embeddings(c.reshape(1, -1), t.reshape(1, -1)) for c, t in zip(conds, texts)]  # (1, P_i, D)
    jobs = [i for i in range(len(texts)) for _ in range(num_samples)]  # prefix index of each row
    out = []
    for done in range(0, len(jobs), batch_size):
        rows = jobs[done:done + batch_size]
        used = sorted(set(rows))
        batch_prefixes = [prefixes[i] for i in used]
        local = [used.index(i) for i in rows]
        minimums = None if min_codes is None else [min_codes[i] for i in used]  # one per prefix of the batch
        if cache == "graph":
            codes = graph_decoder_for(model, params).sample(batch_prefixes, local, max_tokens, generator, minimums)
        else:
            decoder = eager_decoder(model, cache, len(rows), batch_prefixes, max_tokens)
            codes = sample_batch(model, decoder, batch_prefixes, local, max_tokens, params, generator, minimums)
        out.append(codes)
        if progress is not None:
            progress(min(done + batch_size, len(jobs)))
    return list(torch.cat(out).split(num_samples))


def stream_codes(model: SpeechGPT, prefix: torch.Tensor, max_tokens: int, params: SamplingParams,
                 generator: torch.Generator | None, min_codes: int = 0) -> Iterator[tuple[int, torch.Tensor, bool]]:
    """Codes of one row continuing `prefix` (1, P, D) while they are drawn: (codes so far n, codes (1, max_tokens),
    final), as :meth:`~tts.sampling.ar_graph.GraphDecoder.decode` yields them; no stop code before `min_codes`
    codes. The static-shape decoder serves both cases (its steps replay as graphs on CUDA and run eagerly
    elsewhere)."""
    return graph_decoder_for(model, params).decode([prefix], [0], max_tokens, generator, [min_codes])


# ---- diffusion ----


@torch.no_grad()
def generate_mel(
    model: torch.nn.Module,
    latents: torch.Tensor,
    conditioning_latent: torch.Tensor,
    *,
    steps: int,
    cond_free: bool = True,
    cond_free_k: float = 2.0,
    temperature: float = 1.0,
    sampler: str = "ddpm",
    generator: torch.Generator | None = None,
    frame_ratio: Fraction | int = TORTOISE_FRAME_RATIO,
    progress: ProgressFn | None = None,
    batched: bool = True,
    graphs: bool | None = None,
) -> torch.Tensor:
    """Normalised mel (B, in_channels, T) in [-1, 1] from GPT latents (B, T_lat, latent_dim) or codes.

    `model` is a DiffusionDecoder in eval mode; `conditioning_latent` (B or 1, 2*D) comes from its
    `get_conditioning`. T = output_frames(T_lat, frame_ratio). The caller denormalises
    (`denormalize_mel`). Without a generator, a freshly seeded one is used (global RNG untouched).

    `batched`: both guidance passes in one model call, else two (eager runs only).
    `graphs`: run the steps through the graph-captured :class:`~tts.sampling.diffusion_graph.DiffusionRunner`
    (always batched); None means exactly when the latents and the generator are on a CUDA device.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown diffusion sampler {sampler!r}; choose from {sorted(SAMPLERS)}")
    if generator is None:
        generator = torch.Generator(device="cpu")
        generator.seed()
    precomputed, x = initial_noise(model, latents, conditioning_latent, temperature=temperature, generator=generator,
                                   frame_ratio=frame_ratio)
    if graphs is None:
        graphs = on_cuda(latents, generator)
    settings = {"steps": steps, "sampler": sampler, "cond_free": cond_free, "cond_free_k": cond_free_k,
                "generator": generator, "progress": progress}
    if graphs:
        return diffusion_runner_for(model).sample(precomputed, x, **settings)
    return sample_eager(model, precomputed, x, batched=batched, **settings)
