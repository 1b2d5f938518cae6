"""Our SpeechGPT and AR sampler against Tortoise's UnifiedVoice (fixture from tools/parity/gen_gpt.py)."""

import pytest
import torch

from tools.parity.fixture import load_fixture, relative_error
from tools.parity.seeded import parameter_shapes, seeded_state_dict
from tts.models.gpt import GPTConfig, SpeechGPT
from tts.sampling.generate import sample_codes
from tts.sampling.logits import SamplingParams

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def setup():
    ref, meta = load_fixture("gpt")
    config = GPTConfig(layers=meta["layers"], conditioning_blocks=meta["conditioning_blocks"])
    model = SpeechGPT(config)
    model.load_state_dict(seeded_state_dict(parameter_shapes(model)), strict=True)
    return model.eval(), ref, meta


@torch.no_grad()
def test_conditioning_latent(setup):
    model, ref, _ = setup
    assert relative_error(model.get_conditioning(ref["cond_mels"]), ref["cond_latent"]) <= TOLERANCE


@torch.no_grad()
def test_teacher_forced_logits(setup):
    model, ref, _ = setup
    _, mel_logits = model(ref["cond_latent"].repeat(2, 1), ref["text"].repeat(2, 1), ref["codes"], ref["code_lengths"])
    assert relative_error(mel_logits[:, :, ref["logit_positions"]], ref["mel_logits"]) <= TOLERANCE


@torch.no_grad()
def test_latents(setup):
    model, ref, _ = setup
    latents = model(ref["cond_latent"].repeat(2, 1), ref["text"].repeat(2, 1), ref["codes"], return_latent=True)
    assert relative_error(latents, ref["latents"]) <= TOLERANCE


@pytest.mark.parametrize("cache", ["static", "dynamic"])
@torch.no_grad()
def test_sampled_codes_match_reference_for_the_same_seed(setup, cache):
    model, ref, meta = setup
    params = SamplingParams(temperature=meta["temperature"], top_k=meta["top_k"], top_p=meta["top_p"],
                            repetition_penalty=meta["repetition_penalty"])
    codes = sample_codes(model, ref["cond_latent"], ref["text"], num_samples=meta["num_samples"],
                         batch_size=meta["num_samples"], max_tokens=meta["max_tokens"], params=params,
                         generator=torch.Generator().manual_seed(meta["seed"]), cache=cache)
    assert torch.equal(codes, ref["sampled"])
