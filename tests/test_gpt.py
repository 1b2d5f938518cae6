import pytest
import torch

from tests.tortoise_keys import meta_tensors, reference_shapes, state_shapes
from tts.models.gpt import GPTConfig, SpeechGPT, infer_tortoise_config, tortoise_state_dict
from tts.sampling.fixup import TORTOISE_FIXUP
from tts.sampling.generate import sample_codes
from tts.sampling.logits import SamplingParams


def tiny_config(**overrides) -> GPTConfig:
    base = dict(layers=2, model_dim=64, heads=2, text_positions=40, mel_positions=60, number_text_tokens=30,
                number_mel_codes=34, mel_channels=16, conditioning_blocks=1)
    return GPTConfig(**{**base, **overrides})


def test_tortoise_config_builds_the_reference_key_list():
    with torch.device("meta"):
        model = SpeechGPT(GPTConfig.tortoise())
    assert state_shapes(model) == reference_shapes("autoregressive")


def test_infer_config_from_reference_shapes():
    assert infer_tortoise_config(meta_tensors(reference_shapes("autoregressive"))) == GPTConfig.tortoise()


def test_legacy_gpt2_buffers_are_dropped_by_name_only():
    sd = {"gpt.h.3.attn.bias": 0, "gpt.h.3.attn.masked_bias": 0, "gpt.h.3.attn.c_attn.bias": 1, "final_norm.bias": 2}
    assert tortoise_state_dict(sd) == {"gpt.h.3.attn.c_attn.bias": 1, "final_norm.bias": 2}


@torch.no_grad()
def test_static_and_dynamic_caches_sample_the_same_codes():
    torch.manual_seed(0)
    model = SpeechGPT(tiny_config()).eval()
    cond = torch.randn(64)
    text = torch.randint(1, 30, (9,))
    runs = {
        cache: sample_codes(model, cond, text, num_samples=5, batch_size=3, max_tokens=20,
                            params=SamplingParams(top_k=10, top_p=0.9), generator=torch.Generator().manual_seed(3),
                            cache=cache)
        for cache in ("static", "dynamic")
    }
    assert runs["static"].shape == (5, 20)
    assert torch.equal(runs["static"], runs["dynamic"])


@torch.no_grad()
def test_cached_step_logits_equal_full_forward():
    torch.manual_seed(0)
    model = SpeechGPT(tiny_config()).eval()
    cond, text = torch.randn(1, 64), torch.randint(1, 30, (1, 7))
    codes = torch.randint(0, 32, (1, 6))
    # teacher-forced logits at speech positions 0..5 predict codes 1..6
    _, full = model(cond, text, codes)
    from tts.sampling.ar import StaticCacheDecoder

    dec = StaticCacheDecoder(model, 1, 64)
    hidden = dec.prefill([model.prefix_embeddings(cond, text)], [0])
    stepped = [model.logits(hidden)]
    for i in range(codes.shape[1]):
        stepped.append(model.logits(dec.step(model.embed_mel(codes[:, i:i + 1], offset=i + 1))))
    stepped = torch.stack(stepped, -1)  # (1, V, 7)
    torch.testing.assert_close(stepped, full[:, :, :7], rtol=1e-4, atol=1e-5)


def test_code_fixup_follows_tortoise():
    fix = TORTOISE_FIXUP
    codes = torch.tensor([[5, 6, 7, 8193, 8193, 8193, 8193, 8193, 8193, 8193, 8193, 8193, 8193, 8193, 8193]])
    fixed = fix.fix(codes, stop_code=8193)
    assert fixed[0].tolist() == [5, 6, 7] + [83] * 9 + [45, 45, 248]
    assert fix.speech_length(fixed[0]) == 3 + 8
    no_stop = torch.tensor([[1, 2, 3]])
    assert torch.equal(fix.fix(no_stop, stop_code=8193), no_stop)


def test_a_sampled_start_code_ends_speech_like_a_stop():
    # A weak model can sample the start code (one past the DVAE's codes): it must never reach the decoder.
    codes = torch.tensor([[5, 6, 8192, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]])
    fixed = TORTOISE_FIXUP.fix(codes, stop_code=8193, start_code=8192)
    assert fixed[0].tolist() == [5, 6] + [83] * 10 + [45, 45, 248]


@torch.no_grad()
def test_texts_of_different_lengths_share_a_batch():
    from tts.sampling.ar import StaticCacheDecoder
    from tts.sampling.generate import sample_codes_many

    torch.manual_seed(0)
    model = SpeechGPT(tiny_config()).eval()
    cond = torch.randn(1, 64)
    texts = [torch.randint(1, 30, (1, 4)), torch.randint(1, 30, (1, 11))]
    prefixes = [model.prefix_embeddings(cond, t) for t in texts]
    mixed = StaticCacheDecoder(model, 3, 40)
    hidden = mixed.prefill(prefixes, [1, 0, 1])
    alone = []
    for i in (1, 0, 1):
        dec = StaticCacheDecoder(model, 1, 40)
        alone.append((dec, dec.prefill([prefixes[i]], [0])))
    torch.testing.assert_close(hidden, torch.cat([h for _, h in alone]), rtol=1e-5, atol=1e-5)
    tokens = torch.tensor([[3], [7], [5]])
    for step in range(1, 4):
        emb = model.embed_mel(tokens, offset=step)
        hidden = mixed.step(emb)
        expected = torch.cat([dec.step(emb[r:r + 1]) for r, (dec, _) in enumerate(alone)])
        torch.testing.assert_close(hidden, expected, rtol=1e-5, atol=1e-5)
    codes = sample_codes_many(model, cond, [t[0] for t in texts], num_samples=3, batch_size=4, max_tokens=8,
                              params=SamplingParams(), generator=torch.Generator().manual_seed(0))
    assert [c.shape for c in codes] == [(3, 8), (3, 8)]


@torch.no_grad()
def test_one_candidate_per_text():
    from tts.sampling.generate import sample_codes_many

    torch.manual_seed(0)
    model = SpeechGPT(tiny_config()).eval()
    texts = [torch.randint(1, 30, (5,)), torch.randint(1, 30, (9,))]
    codes = sample_codes_many(model, torch.randn(64), texts, num_samples=1, batch_size=1, max_tokens=6,
                              params=SamplingParams(), generator=torch.Generator().manual_seed(0))
    assert [c.shape for c in codes] == [(1, 6), (1, 6)]


@torch.no_grad()
def test_texts_in_different_voices_share_a_batch_and_sample_as_alone():
    """Each text with its own voice in one batch: greedy decoding gives the codes each gets alone."""
    from tts.sampling.generate import sample_codes_many

    torch.manual_seed(0)
    model = SpeechGPT(tiny_config()).eval()
    voices = [torch.randn(64), torch.randn(64), torch.randn(64)]
    texts = [torch.randint(1, 30, (4,)), torch.randint(1, 30, (11,)), torch.randint(1, 30, (7,))]
    greedy = SamplingParams(top_k=1)
    together = sample_codes_many(model, voices, texts, num_samples=2, batch_size=6, max_tokens=10, params=greedy,
                                 generator=torch.Generator().manual_seed(0))
    for voice, text, codes in zip(voices, texts, together):
        alone = sample_codes_many(model, voice, [text], num_samples=2, batch_size=2, max_tokens=10, params=greedy,
                                  generator=torch.Generator().manual_seed(1))[0]
        assert torch.equal(codes, alone)
    with pytest.raises(ValueError, match="2 conditioning latents for 3 texts"):
        sample_codes_many(model, voices[:2], texts, num_samples=1, batch_size=3, max_tokens=4, params=greedy)


@pytest.mark.parametrize("train", [False, True])
def test_native_gpt2_stack_equals_transformers(train):
    """Our written-out GPT-2 blocks give transformers' GPT2Model outputs and gradients to the bit
    (the same weights, inputs embedded; in training, bf16 autocast as the trainer runs it)."""
    from tts.models.gpt2 import GPT2Stack, to_transformers

    torch.manual_seed(0)
    stack = GPT2Stack(layers=2, dim=64, heads=2, dropout=0.0).train(train)
    twin = to_transformers(stack, max_positions=64)
    x = torch.randn(3, 11, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=train):
        ours = stack(x)
        theirs = twin(inputs_embeds=x, use_cache=False).last_hidden_state
    assert torch.equal(ours, theirs)
    if train:
        ours.float().square().sum().backward()
        theirs.float().square().sum().backward()
        grads = dict(twin.named_parameters())
        for name, param in stack.named_parameters():
            assert torch.equal(param.grad, grads[name].grad), name


def test_native_gpt2_stack_has_the_transformers_parameter_names():
    from tts.models.gpt2 import GPT2Stack, to_transformers

    stack = GPT2Stack(layers=3, dim=64, heads=4)
    twin = to_transformers(stack, max_positions=16)
    assert {k: v.shape for k, v in stack.state_dict().items()} == {k: v.shape for k, v in twin.state_dict().items()}


def test_speech_gpt_does_not_import_transformers():
    import subprocess
    import sys

    code = ("import sys; from tts.models.gpt import SpeechGPT, GPTConfig; SpeechGPT(GPTConfig(layers=1, model_dim=64, "
            "heads=1, conditioning_blocks=1)); assert 'transformers' not in sys.modules, 'transformers imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
