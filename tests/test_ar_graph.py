"""The static-shape decode step (tts.sampling.ar_graph) against the eager KV-cache decoders, on tiny models.

On the CPU the step runs eagerly; the CUDA tests compare graph replays with the same step run eagerly.
"""

import pytest
import torch

from tests.test_gpt import tiny_config
from tts.models.gpt import SpeechGPT
from tts.sampling.ar import StaticCacheDecoder
from tts.sampling.ar_graph import DecodeBuffers, GraphDecoder, decode_step, record_token
from tts.sampling.generate import sample_codes, sample_codes_many
from tts.sampling.graphs import StepGraphs
from tts.sampling.logits import SamplingParams

PARAMS = SamplingParams(top_k=10, top_p=0.9)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return SpeechGPT(tiny_config()).eval()


@pytest.fixture(scope="module")
def voice_and_texts():
    g = torch.Generator().manual_seed(1)
    return torch.randn(64, generator=g), [torch.randint(1, 30, (n,), generator=g) for n in (9, 4, 13)]


def sample(model, cond, texts, cache, seed=3, **kwargs):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        codes = sample_codes_many(model, cond, texts, num_samples=kwargs.pop("num_samples", 4),
                                  batch_size=kwargs.pop("batch_size", 5), max_tokens=kwargs.pop("max_tokens", 30),
                                  params=kwargs.pop("params", PARAMS), generator=generator, cache=cache)
    return codes, generator.get_state()


def prefixes_of(model, cond, texts):
    with torch.no_grad():
        return [model.prefix_embeddings(cond.reshape(1, -1), t.reshape(1, -1)) for t in texts]


def test_graph_path_samples_the_static_paths_codes_and_random_stream(model, voice_and_texts):
    cond, texts = voice_and_texts
    static, static_rng = sample(model, cond, texts, "static")
    graph, graph_rng = sample(model, cond, texts, "graph")
    assert all(torch.equal(a, b) for a, b in zip(static, graph))
    assert torch.equal(static_rng, graph_rng)  # the same draws, one per token, stopping at the same step
    stop = model.config.stop_mel_token
    assert any((c == stop).any() for c in static)  # some rows ended early: finished handling is exercised


def test_graph_path_matches_the_dynamic_cache(model, voice_and_texts):
    cond, texts = voice_and_texts
    dynamic, _ = sample(model, cond, texts[:1], "dynamic", batch_size=2)
    graph, _ = sample(model, cond, texts[:1], "graph", batch_size=2)
    assert torch.equal(dynamic[0], graph[0])


def test_step_logits_follow_the_static_cache_decoder(model, voice_and_texts):
    """One decode step's hidden state equals StaticCacheDecoder.step's, window and mask included."""
    cond, texts = voice_and_texts
    prefixes = prefixes_of(model, cond, texts[:2])
    rows = [1, 0, 1]
    longest = max(p.shape[1] for p in prefixes)
    reference = StaticCacheDecoder(model, 3, longest + 8)
    buf = DecodeBuffers.allocate(model, 3, 32)
    ours = StaticCacheDecoder(model, 3, 32, cache=(buf.keys, buf.values))
    with torch.no_grad():
        reference.prefill(prefixes, rows)
        ours.prefill(prefixes, rows)
        buf.usable.copy_(ours.key_mask[:, 0, 0])
        buf.position.fill_(longest - 1)
        record_token(buf, torch.tensor([3, 7, 5]), model.config.stop_mel_token)
        captured = {}
        hook = model.mel_head.register_forward_hook(lambda m, args, out: captured.setdefault("logits", out))
        try:
            decode_step(model, buf, PARAMS, 32, torch.Generator().manual_seed(0))
        finally:
            hook.remove()
        expected = model.logits(reference.step(model.embed_mel(torch.tensor([[3], [7], [5]]), offset=1)))
    torch.testing.assert_close(captured["logits"], expected, rtol=1e-5, atol=1e-6)
    assert int(buf.position) == longest + 1 and int(buf.step) == 2


def test_small_windows_give_the_same_codes(model, voice_and_texts):
    """Attention windows of 8 slots: decoding crosses several windows (one graph each on a GPU)."""
    cond, texts = voice_and_texts
    prefixes = prefixes_of(model, cond, texts)
    rows = [0, 1, 2, 0]
    runs = []
    for window in (8, 128):
        decoder = GraphDecoder(model, PARAMS, graphs=False, window=window)
        with torch.no_grad():
            runs.append(decoder.sample(prefixes, rows, 30, torch.Generator().manual_seed(5)))
    assert torch.equal(runs[0], runs[1])


def test_bucket_padding_leaves_real_rows_alone(model, voice_and_texts):
    """Greedy decoding (top-k 1) makes the codes independent of the random stream, which padding shifts."""
    cond, texts = voice_and_texts
    prefixes = prefixes_of(model, cond, texts)
    greedy = SamplingParams(top_k=1)
    rows = [2, 0, 1]
    out = {}
    for buckets in ((), (4, 8), (8,)):
        decoder = GraphDecoder(model, greedy, graphs=False, buckets=buckets)
        assert decoder.bucket(3) == (buckets[0] if buckets else 3)
        with torch.no_grad():
            out[buckets] = decoder.sample(prefixes, rows, 25, torch.Generator().manual_seed(0))
    assert out[()].shape == (3, 25)
    assert torch.equal(out[()], out[(4, 8)]) and torch.equal(out[()], out[(8,)])


def test_checking_less_often_keeps_the_codes(model, voice_and_texts):
    cond, texts = voice_and_texts
    prefixes = prefixes_of(model, cond, texts)
    runs = []
    for every in (1, 4, 7):
        decoder = GraphDecoder(model, PARAMS, graphs=False, check_every=every)
        with torch.no_grad():
            runs.append(decoder.sample(prefixes, [0, 1, 2], 30, torch.Generator().manual_seed(9)))
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])


def test_decode_reports_progress_at_every_check(model, voice_and_texts):
    cond, texts = voice_and_texts
    decoder = GraphDecoder(model, SamplingParams(top_k=10, top_p=0.9, repetition_penalty=1.0), graphs=False,
                           check_every=5)
    with torch.no_grad():
        reports = [(n, codes.clone(), final) for n, codes, final in
                   decoder.decode(prefixes_of(model, cond, texts[:1]), [0, 0], 23, torch.Generator().manual_seed(2))]
    seen = [(n, codes) for n, codes, _ in reports]
    assert [final for *_, final in reports] == [False] * (len(reports) - 1) + [True]
    counts = [n for n, _ in seen]
    assert counts == sorted(counts) and counts[-1] <= 23 and all(n % 5 == 0 for n in counts[:-1])
    final = seen[-1][1]
    for n, codes in seen[:-1]:
        assert torch.equal(codes[:, :n], final[:, :n])  # earlier reports are prefixes of the result


def test_decoders_are_reused_with_their_buffers(model, voice_and_texts):
    cond, texts = voice_and_texts
    first, _ = sample(model, cond, texts, "graph")
    again, _ = sample(model, cond, texts, "graph")  # same kept decoder, buffers hold the last run's state
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_draw_is_torch_multinomial_without_the_host_checks():
    from tts.sampling.logits import draw

    g = torch.Generator().manual_seed(0)
    for seed in range(20):
        logits = torch.randn(5, 300, generator=g) * 3
        logits[:, torch.randperm(300, generator=g)[:250]] = float("-inf")
        ours, theirs = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        for _ in range(3):
            assert torch.equal(draw(logits, ours), torch.multinomial(logits.softmax(-1), 1, generator=theirs)[:, 0])
        assert torch.equal(ours.get_state(), theirs.get_state())


def test_step_graphs_fall_back_to_calling_the_function():
    graphs = StepGraphs("cpu")
    assert not graphs.enabled
    calls = []
    assert graphs.run("key", lambda: calls.append(1) or 7) == 7 and graphs.run("key", lambda: 8) == 8
    generator = torch.Generator()
    with graphs.randomness(generator) as rng:
        assert rng is generator
    with pytest.raises(ValueError):
        StepGraphs("cpu", enabled=True)


# ---- on a GPU: graph replays against the same step run eagerly ----


@pytest.mark.cuda
@pytest.mark.parametrize("batch", [1, 3, 16])
def test_cuda_graph_replays_draw_the_eager_codes(batch, voice_and_texts):
    torch.manual_seed(0)
    model = SpeechGPT(tiny_config()).eval().cuda()
    cond, texts = voice_and_texts
    prefixes = prefixes_of(model, cond.cuda(), [t.cuda() for t in texts])
    rows = [i % len(texts) for i in range(batch)]
    out, states = [], []
    for graphs in (False, True):
        decoder = GraphDecoder(model, PARAMS, graphs=graphs, buckets=(1, 2, 4, 8, 16), window=16, check_every=4)
        generator = torch.Generator("cuda").manual_seed(11)
        with torch.no_grad():
            out.append(decoder.sample(prefixes, rows, 40, generator))
        states.append(generator.get_state())
    assert torch.equal(out[0], out[1])
    assert torch.equal(states[0], states[1])  # graph replays advanced the caller's generator like eager calls


@pytest.mark.cuda
def test_cuda_graph_path_through_sample_codes_with_half_weights(voice_and_texts):
    torch.manual_seed(0)
    model = SpeechGPT(tiny_config()).eval().cuda().half()
    cond, texts = voice_and_texts
    runs = []
    for cache in ("graph", "graph"):
        with torch.no_grad():
            runs.append(sample_codes(model, cond.cuda().half(), texts[0].cuda(), num_samples=5, batch_size=5,
                                     max_tokens=30, params=PARAMS, generator=torch.Generator("cuda").manual_seed(1),
                                     cache=cache))
    assert runs[0].shape == (5, 30) and torch.equal(runs[0], runs[1])
