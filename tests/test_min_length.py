"""The minimum-length stop rule: no stop code before a row's share of its text's expected codes.

An undertrained GPT draws the stop code far too early; the rule holds it back (its logit -inf) until a
row has min_codes = floor(min_length_ratio x text tokens x codes_per_text_token) codes. Tested with
GPTs whose stop code is near-certain, so that every held row ends exactly at its minimum.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.test_gpt import tiny_config
from tts.checkpoints import read_model_card
from tts.errors import TTSError
from tts.models.gpt import SpeechGPT
from tts.pipeline import Conditioning, TextToSpeech, model_text_splitter
from tts.sampling.generate import sample_codes_many, stream_codes
from tts.sampling.logits import SamplingParams, filter_logits, minimum_codes
from tts.sampling.options import Options, resolve

PARAMS = SamplingParams(top_k=10, top_p=0.9)


def eager_stopper(model: SpeechGPT) -> SpeechGPT:
    """`model` with its stop code's logit raised so far that it is drawn at every step it is allowed."""
    with torch.no_grad():
        model.mel_head.bias[model.config.stop_mel_token] += 60.0
    return model


@pytest.fixture(scope="module")
def stopper():
    torch.manual_seed(0)
    return eager_stopper(SpeechGPT(tiny_config()).eval())


@pytest.fixture(scope="module")
def voice_and_texts():
    g = torch.Generator().manual_seed(1)
    return torch.randn(64, generator=g), [torch.randint(1, 30, (n,), generator=g) for n in (9, 4, 13)]


def first_stops(codes: torch.Tensor, stop: int) -> list[int]:
    """Index of each row's first stop code (codes (N, L)); L where a row never stops."""
    return [int(row.tolist().index(stop)) if stop in row.tolist() else len(row) for row in codes]


def sample(model, cond, texts, cache, min_codes, seed=3, max_tokens=30):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        codes = sample_codes_many(model, cond, texts, num_samples=3, batch_size=5, max_tokens=max_tokens,
                                  params=PARAMS, generator=generator, cache=cache, min_codes=min_codes)
    return codes, generator.get_state()


def test_minimum_codes_is_the_floor_of_ratio_times_expected_codes():
    assert minimum_codes(10, 0.5, 2.2) == 11  # 0.5 x 10 x 2.2 = 11.000000000000002
    assert minimum_codes(7, 0.8, 2.5) == 14  # floor(14.0)
    assert minimum_codes(3, 0.9, 1.0) == 2  # floor(2.7)
    assert minimum_codes(10, 0.0, 2.0) == 0  # ratio 0: off
    assert minimum_codes(10, 0.9, None) == 0  # the model does not say what it makes per token: off


def test_held_rows_lose_the_stop_code_and_the_others_keep_every_bit():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 34, generator=g)
    logits[:, 33] = 20.0  # the stop code is every row's favourite
    seen = torch.zeros(3, 34, dtype=torch.bool)
    held = torch.tensor([True, False, True])
    out = filter_logits(logits, seen, PARAMS, 33, held)
    assert torch.isinf(out[[0, 2], 33]).all() and torch.isfinite(out[1, 33])
    assert torch.isfinite(out[[0, 2]]).sum(dim=1).min() >= 1  # the held rows still have codes to draw
    assert torch.equal(out[1], filter_logits(logits, seen, PARAMS)[1])
    unheld = filter_logits(logits, seen, PARAMS, 33, torch.zeros(3, dtype=torch.bool))
    assert torch.equal(unheld, filter_logits(logits, seen, PARAMS))  # no row held: bit for bit the chain


@pytest.mark.parametrize("cache", ["static", "graph"])
def test_no_row_ends_before_its_minimum_and_texts_get_their_own(cache, stopper, voice_and_texts):
    cond, texts = voice_and_texts
    stop = stopper.config.stop_mel_token
    minimums = [minimum_codes(len(t), 1.0, 2.0) for t in texts]  # 9, 4, 13 tokens -> 18, 8, 26 codes
    assert minimums == [18, 8, 26]
    unheld, _ = sample(stopper, cond, texts, cache, None)
    assert all(first_stops(c, stop) == [0, 0, 0] for c in unheld)  # without the rule: cut off at once
    held, _ = sample(stopper, cond, texts, cache, minimums)  # rows of all three texts share batches
    for codes, minimum in zip(held, minimums):
        assert first_stops(codes, stop) == [minimum] * 3
        assert (codes[:, minimum:] == stop).all()


@pytest.mark.parametrize("stop_bias", [False, True])
def test_graph_and_eager_paths_hold_the_same_rows(stop_bias, voice_and_texts):
    torch.manual_seed(0)
    model = SpeechGPT(tiny_config()).eval()
    if stop_bias:
        eager_stopper(model)
    cond, texts = voice_and_texts
    minimums = [5, 0, 12]
    static, static_rng = sample(model, cond, texts, "static", minimums)
    graph, graph_rng = sample(model, cond, texts, "graph", minimums)
    assert all(torch.equal(a, b) for a, b in zip(static, graph))
    assert torch.equal(static_rng, graph_rng)
    stop = model.config.stop_mel_token
    for codes, minimum in zip(static, minimums):
        assert min(first_stops(codes, stop)) >= minimum


def test_a_streamed_row_waits_for_its_minimum(stopper, voice_and_texts):
    cond, texts = voice_and_texts
    with torch.no_grad():
        prefix = stopper.prefix_embeddings(cond.reshape(1, -1), texts[0].reshape(1, -1))
        reports = list(stream_codes(stopper, prefix, 30, PARAMS, torch.Generator().manual_seed(2), min_codes=11))
    n, codes, final = reports[-1]
    assert final and first_stops(codes, stopper.config.stop_mel_token) == [11]


def test_the_ratio_is_an_option_checked_in_one_line():
    assert Options().min_length_ratio == 0.0  # Tortoise's presets: off
    assert resolve("fast", min_length_ratio=1.2).min_length_ratio == 1.2
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(TTSError, match="min length ratio") as raised:
            resolve("fast", min_length_ratio=bad)
        assert "\n" not in str(raised.value)


# ---- through the pipeline and the model card ----


@pytest.fixture
def card_model(tiny_model_dir, tmp_path) -> Path:
    """The tiny model with a card that gives codes per text token and sets the ratio for ultra_fast."""
    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    card = json.loads((model / "model.json").read_text())
    card["codes_per_text_token"] = 1.5
    card["presets"] = {"ultra_fast": {"min_length_ratio": 0.8}}
    (model / "model.json").write_text(json.dumps(card))
    return model


def candidates(tts, texts, options):
    """Each candidate's first stop index, per text."""
    cond = Conditioning(gpt=torch.randn(1, tts.gpt.config.model_dim, generator=torch.Generator().manual_seed(4)))
    sampled = tts.sample_candidates(texts, cond, options, torch.Generator().manual_seed(0))
    return [first_stops(s.codes, tts.gpt.config.stop_mel_token) for s in sampled]


def test_a_model_card_sets_codes_per_token_and_the_preset_ratio(card_model):
    tts = TextToSpeech(card_model)
    eager_stopper(tts.gpt)
    options = resolve("ultra_fast", tts.models.card, candidates=2, batch_size=4, max_mel_tokens=40)
    assert options.min_length_ratio == 0.8  # the card's preset adjustment
    texts = ["Hi.", "A somewhat longer line."]
    expected = [minimum_codes(len(tts.encode(t)), 0.8, 1.5) for t in texts]  # the stop token not counted
    assert 0 < expected[0] < expected[1] < 40
    assert candidates(tts, texts, options) == [[m] * 2 for m in expected]
    off = resolve("ultra_fast", tts.models.card, candidates=2, max_mel_tokens=40, min_length_ratio=0)
    assert candidates(tts, texts, off) == [[0, 0], [0, 0]]  # the flag's 0 beats the card's ratio


def test_a_card_without_codes_per_token_ignores_the_ratio(tiny_tortoise_dir):
    tts = TextToSpeech(tiny_tortoise_dir)
    eager_stopper(tts.gpt)
    assert tts.models.card.codes_per_text_token is None
    options = resolve("ultra_fast", tts.models.card, candidates=2, max_mel_tokens=20, min_length_ratio=1.2)
    assert candidates(tts, ["Hi there."], options) == [[0, 0]]


@pytest.mark.parametrize("value", [0, -1.0, "2", True])
def test_a_card_with_a_bad_codes_per_token_is_refused(value, card_model):
    card = json.loads((card_model / "model.json").read_text())
    card["codes_per_text_token"] = value
    (card_model / "model.json").write_text(json.dumps(card))
    with pytest.raises(TTSError, match="codes_per_text_token must be a positive number"):
        read_model_card(card_model)


def test_narration_settings_leave_the_rule_out_while_it_is_off():
    """Books begun before the option existed keep their chunks; turning it on makes them again."""
    from types import SimpleNamespace

    from tts.narrate.job import settings_of

    voice = SimpleNamespace(name="alice", fingerprint=lambda: "clips")
    assert "min_length_ratio" not in settings_of(Options(), voice, "model", 24000)["options"]
    assert settings_of(Options(min_length_ratio=0.8), voice, "model", 24000)["options"]["min_length_ratio"] == 0.8


@pytest.mark.cuda
def test_cuda_graph_replays_hold_the_stop_code_like_the_eager_step(voice_and_texts):
    from tts.sampling.ar_graph import GraphDecoder

    torch.manual_seed(0)
    model = eager_stopper(SpeechGPT(tiny_config()).eval().cuda())
    cond, texts = voice_and_texts
    with torch.no_grad():
        prefixes = [model.prefix_embeddings(cond.cuda().reshape(1, -1), t.cuda().reshape(1, -1)) for t in texts]
    out = []
    for graphs in (False, True):
        decoder = GraphDecoder(model, PARAMS, graphs=graphs, buckets=(1, 2, 4, 8), window=16, check_every=4)
        with torch.no_grad():
            out.append(decoder.sample(prefixes, [0, 1, 2, 0, 1], 40, torch.Generator("cuda").manual_seed(5),
                                      min_codes=[18, 8, 26]))
    assert torch.equal(out[0], out[1])
    assert first_stops(out[1].cpu(), model.config.stop_mel_token) == [18, 8, 26, 18, 8]


# ---- the card's chunk limit (chunk_tokens) ----


def test_a_card_chunk_limit_splits_text_at_clauses_within_it(card_model):
    card = json.loads((card_model / "model.json").read_text())
    card["chunk_tokens"] = 40
    (card_model / "model.json").write_text(json.dumps(card))
    splitter = model_text_splitter(card_model)  # what narration plans with, read without the weights
    assert splitter.max_tokens == 40 == TextToSpeech(card_model).splitter.max_tokens
    text = "Although the forecast promised clear skies, a storm rolled in from the west on Saturday."
    chunks = splitter.split(text)
    assert [c.text for c in chunks] == ["Although the forecast promised clear skies",
                                        "a storm rolled in from the west on Saturday."]
    assert all(splitter.measure(c.text) <= 40 for c in chunks)


def test_a_card_without_a_chunk_limit_splits_at_the_gpt_limit(card_model):
    tts = TextToSpeech(card_model)
    assert tts.models.card.chunk_tokens is None
    assert tts.splitter.max_tokens == tts.gpt.config.max_text_tokens - 1


@pytest.mark.parametrize("value", [0, -3, 12.5, "80", True])
def test_a_card_with_a_bad_chunk_limit_is_refused(value, card_model):
    card = json.loads((card_model / "model.json").read_text())
    card["chunk_tokens"] = value
    (card_model / "model.json").write_text(json.dumps(card))
    with pytest.raises(TTSError, match="chunk_tokens must be a positive integer"):
        read_model_card(card_model)
