"""Static-shape autoregressive decoding: one whole decode step as a function of device buffers.

One step, for every row of the batch at once: embed the last drawn code at its speech position, run
the GPT-2 blocks through the preallocated KV cache (the new key and value are written at a cache slot
held in a device tensor; attention covers a fixed window of the cache, with a mask hiding slots not
yet written and the unused slots before a right-aligned prefix), apply the logit filters, draw the
next code (the stop code held back from rows short of their minimum length), and update the finished
flags. Nothing in it reads a value back to the host, and every
shape is fixed by (batch bucket, attention window), so on CUDA it is captured once per window as a
CUDA graph (:class:`~tts.sampling.graphs.StepGraphs`) and replayed for every token; elsewhere the same
function runs eagerly. "All rows finished?" is asked only every `check_every` tokens.

Prefill (the prefixes, once per batch) and the first draw stay eager, through
:class:`~tts.sampling.ar.StaticCacheDecoder` writing into the same buffers.

Batches are padded up to a bucket size (1, 2, 4, 8, 16, 32 by default, only where graphs are used) so
that a few graphs serve every batch; padding rows repeat the first row's prefix and start finished.
They never touch the real rows' cache, mask or codes, but they do take their share of the random
stream, so a padded batch draws different (equally distributed) codes than an unpadded one.
"""

from __future__ import annotations

import logging
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..models.gpt import SpeechGPT
from .ar import PREFIX_PLACEHOLDER_ID, StaticCacheDecoder, kv_cache_buffers, row_minimums
from .graphs import StepGraphs, graphs_available
from .logits import SamplingParams, draw, filter_logits

log = logging.getLogger(__name__)

DEFAULT_BUCKETS = (1, 2, 4, 8, 16, 32)
DEFAULT_WINDOW = 128  # attention window granularity: one graph per multiple of this many cache slots
GPU_CHECK_EVERY = 8  # tokens between "all finished?" checks (host synchronisations) on a GPU
KEPT_STATES = 2  # (bucket, capacity) buffer sets kept alive per decoder


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


@dataclass
class DecodeBuffers:
    """Everything one decode step reads and writes, preallocated for `batch` rows and `capacity` slots."""

    keys: torch.Tensor  # (layers, B, heads, C, head_dim)
    values: torch.Tensor  # (layers, B, heads, C, head_dim)
    usable: torch.Tensor  # (B, C) bool: False before a row's right-aligned prefix
    slots: torch.Tensor  # (C,) long: 0 .. C-1
    position: torch.Tensor  # () long: cache slot of the code being fed
    step: torch.Tensor  # () long: index of the code being drawn (= speech position of the code fed)
    token: torch.Tensor  # (B,) long: the last code drawn
    seen: torch.Tensor  # (B, V) bool: codes (and prefix placeholders) seen, for the repetition penalty
    finished: torch.Tensor  # (B,) bool
    min_codes: torch.Tensor  # (B,) long: codes each row draws before it may stop (0: no minimum)
    codes: torch.Tensor  # (B, max_mel_tokens) long: the codes drawn so far, stop-padded

    @classmethod
    def allocate(cls, model: SpeechGPT, batch: int, capacity: int) -> DecodeBuffers:
        cfg = model.config
        device = model.mel_head.weight.device
        keys, values = kv_cache_buffers(model, batch, capacity)
        return cls(
            keys=keys, values=values,
            usable=torch.ones(batch, capacity, dtype=torch.bool, device=device),
            slots=torch.arange(capacity, device=device),
            position=torch.zeros((), dtype=torch.long, device=device),
            step=torch.zeros((), dtype=torch.long, device=device),
            token=torch.full((batch,), cfg.start_mel_token, dtype=torch.long, device=device),
            seen=torch.zeros(batch, cfg.number_mel_codes, dtype=torch.bool, device=device),
            finished=torch.zeros(batch, dtype=torch.bool, device=device),
            min_codes=torch.zeros(batch, dtype=torch.long, device=device),
            codes=torch.full((batch, cfg.max_mel_tokens), cfg.stop_mel_token, dtype=torch.long, device=device),
        )

    @property
    def capacity(self) -> int:
        return self.keys.shape[3]


def record_token(buf: DecodeBuffers, token: torch.Tensor, stop: int) -> None:
    """Store the codes drawn at index `buf.step` (B,) and advance the counters; all in place."""
    buf.codes.index_copy_(1, buf.step.view(1), token[:, None])
    buf.seen.scatter_(1, token[:, None], True)
    buf.finished |= token == stop
    buf.token.copy_(token)
    buf.position += 1
    buf.step += 1


class _WindowCache:
    """The decode buffers as :meth:`SpeechGPT.cached_forward` sees them in one step: the new key and value
    go to the slot held in `buf.position` (a device tensor), and the query attends to slots [0, window)
    where `visible`."""

    is_causal = False

    def __init__(self, buf: DecodeBuffers, window: int):
        self.buf, self.window = buf, window
        self.slot = buf.position.view(1)
        # (B, 1, 1, W): slots already written, and after the row's prefix start
        self.attn_mask = (buf.usable[:, :window] & (buf.slots[:window] <= buf.position))[:, None, None, :]

    def update(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        buf = self.buf
        buf.keys[layer].index_copy_(2, self.slot, keys.to(buf.keys.dtype))
        buf.values[layer].index_copy_(2, self.slot, values.to(buf.values.dtype))
        return buf.keys[layer, :, :, :self.window], buf.values[layer, :, :, :self.window]


def step_logits(model: SpeechGPT, buf: DecodeBuffers, hidden: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Filtered logits (B, V) of the code at index `buf.step` from hidden states (B, D): the stop code is
    held back from rows with fewer than `buf.min_codes` codes (a no-op where every minimum is 0)."""
    held = buf.step < buf.min_codes  # (B,)
    return filter_logits(model.logits(hidden), buf.seen, params, model.config.stop_mel_token, held)


def decode_step(model: SpeechGPT, buf: DecodeBuffers, params: SamplingParams, window: int,
                generator: torch.Generator | None) -> None:
    """Feed `buf.token` at cache slot `buf.position` and draw the next code of every row, in place.

    Attention covers cache slots [0, window); `window` must exceed `buf.position`.
    """
    cfg = model.config
    x = model.mel_embedding(buf.token)[:, None] + model.mel_pos_embedding.emb.weight.index_select(0, buf.step.view(1))
    hidden = model.cached_forward(x, _WindowCache(buf, window))[:, -1]  # (B, D)
    token = draw(step_logits(model, buf, hidden, params), generator).masked_fill(buf.finished, cfg.stop_mel_token)
    record_token(buf, token, cfg.stop_mel_token)


class _BucketState:
    """Buffers for one (bucket, capacity) and, with graphs, one captured step per attention window."""

    def __init__(self, model: SpeechGPT, params: SamplingParams, batch: int, capacity: int, window: int,
                 graphs: bool):
        self.model, self.params, self.window = model, params, window
        self.buffers = DecodeBuffers.allocate(model, batch, capacity)
        self.graphs = StepGraphs(self.buffers.keys.device, enabled=graphs)
        self.captured = False

    def windows(self) -> list[int]:
        return list(range(self.window, self.buffers.capacity + 1, self.window))

    def window_for(self, position: int) -> int:
        return min(self.buffers.capacity, round_up(position + 1, self.window))

    def capture_all(self) -> None:
        """Record the step for every window, on whatever the buffers hold (they are reset before use)."""
        if not self.graphs.enabled or self.captured:
            return
        for window in self.windows():
            self.buffers.position.fill_(0)  # warm-up runs write slots 0, 1, ...: always in range
            self.buffers.step.fill_(0)
            self.graphs.capture(window, lambda w=window: decode_step(
                self.model, self.buffers, self.params, w, self.graphs.generator))
        self.captured = True

    def step(self, position: int, generator: torch.Generator | None) -> None:
        window = self.window_for(position)
        if self.graphs.enabled:
            self.graphs.replay(window)
        else:
            decode_step(self.model, self.buffers, self.params, window, generator)


class GraphDecoder:
    """Samples codes with :func:`decode_step`: graph-captured on CUDA, eager elsewhere (same tokens).

    `graphs=None` uses graphs exactly on CUDA. `buckets` (row counts to pad batches to) default to
    DEFAULT_BUCKETS with graphs and to none (exact batch) without. `check_every` (tokens between
    "all finished?" checks) defaults to GPU_CHECK_EVERY on CUDA and 1 elsewhere; with 1 the random
    stream is consumed exactly as by the eager loop of :mod:`tts.sampling.ar`.
    """

    def __init__(self, model: SpeechGPT, params: SamplingParams, *, graphs: bool | None = None,
                 buckets: tuple[int, ...] | None = None, window: int = DEFAULT_WINDOW,
                 check_every: int | None = None):
        self.model = model
        self.params = params
        self.device = model.mel_head.weight.device
        self.use_graphs = graphs_available(self.device) if graphs is None else graphs
        self.buckets = tuple(sorted(buckets)) if buckets is not None else (DEFAULT_BUCKETS if self.use_graphs else ())
        self.window = window
        on_gpu = self.device.type == "cuda"
        self.check_every = check_every or (GPU_CHECK_EVERY if on_gpu else 1)
        self.states: OrderedDict[int, _BucketState] = OrderedDict()

    def bucket(self, batch: int) -> int:
        """Rows a batch of `batch` is padded to: the smallest bucket that holds it, else `batch` itself."""
        return next((b for b in self.buckets if b >= batch), batch)

    def _state(self, batch: int, need: int) -> _BucketState:
        state = self.states.get(batch)
        if state is None or state.buffers.capacity < need:
            capacity = round_up(need, self.window)
            log.debug("decode buffers for %d rows x %d slots", batch, capacity)
            self.states.pop(batch, None)
            state = _BucketState(self.model, self.params, batch, capacity, self.window, self.use_graphs)
            self.states[batch] = state
        self.states.move_to_end(batch)
        while len(self.states) > KEPT_STATES:
            self.states.popitem(last=False)
        return state

    def decode(self, prefixes: list[torch.Tensor], rows: list[int], max_tokens: int,
               generator: torch.Generator | None,
               min_codes: list[int] | None = None) -> Iterator[tuple[int, torch.Tensor, bool]]:
        """Yield (codes drawn so far n, codes (B, max_tokens), final) at every check, then once with final True.

        `prefixes` (1, P_i, D) and `rows` as for :meth:`~tts.sampling.ar.Decoder.prefill`; `min_codes[i]`:
        codes a row continuing prefix i draws before it may stop (None: no minimum). Before the
        final yield, only columns < n of the (reused) codes tensor are meaningful; later columns hold
        the stop code. While the iterator is suspended between yields under graphs, the caller's
        generator has not been advanced yet: use it only after the final yield.
        """
        model, cfg = self.model, self.model.config
        batch = len(rows)
        size = self.bucket(batch)
        rows = list(rows) + [rows[0]] * (size - batch)
        used = sorted(set(rows))
        longest = max(prefixes[i].shape[1] for i in used)
        state = self._state(size, longest + max_tokens)
        state.capture_all()
        buf = state.buffers
        stop = cfg.stop_mel_token

        prefill = StaticCacheDecoder(model, size, buf.capacity, cache=(buf.keys, buf.values))
        hidden = prefill.prefill(prefixes, rows)  # (size, D)
        if prefill.key_mask is None:
            buf.usable.fill_(True)
        else:
            buf.usable.copy_(prefill.key_mask[:, 0, 0])
        buf.seen.zero_()
        buf.seen[:, PREFIX_PLACEHOLDER_ID] = True  # every prefix is longer than one position
        buf.seen[:, cfg.start_mel_token] = True
        buf.finished.copy_(torch.arange(size, device=self.device) >= batch)  # padding rows start finished
        buf.min_codes.copy_(row_minimums(min_codes, rows, self.device))
        buf.codes.fill_(stop)
        buf.position.fill_(longest - 1)
        buf.step.fill_(0)
        token = draw(step_logits(model, buf, hidden, self.params), generator).masked_fill(buf.finished, stop)
        record_token(buf, token, stop)  # -> position = longest, step = 1

        done = 1
        with state.graphs.randomness(generator) as rng:
            while done < max_tokens:
                if done % self.check_every == 0:
                    yield done, buf.codes[:batch, :max_tokens], False
                    if bool(buf.finished.all()):
                        break
                state.step(longest + done - 1, rng)
                done += 1
        yield done, buf.codes[:batch, :max_tokens].clone(), True

    def sample(self, prefixes: list[torch.Tensor], rows: list[int], max_tokens: int,
               generator: torch.Generator | None, min_codes: list[int] | None = None) -> torch.Tensor:
        """Codes (B, max_tokens), stop-padded after each row ends."""
        *_, (_, codes, _) = self.decode(prefixes, rows, max_tokens, generator, min_codes)
        return codes


_DECODERS: weakref.WeakKeyDictionary[SpeechGPT, dict] = weakref.WeakKeyDictionary()


def graph_decoder_for(model: SpeechGPT, params: SamplingParams, **kwargs) -> GraphDecoder:
    """A GraphDecoder kept with `model` (its captured graphs are reused by later calls)."""
    weight = model.mel_head.weight
    key = (params, weight.dtype, weight.device, tuple(sorted(kwargs.items())))
    per_model = _DECODERS.setdefault(model, {})
    if key not in per_model:
        per_model[key] = GraphDecoder(model, params, **kwargs)
    return per_model[key]
