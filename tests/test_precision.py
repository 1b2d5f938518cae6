"""Half-precision inference (tts.precision) through the pipeline, and the GPU fast path end to end (CUDA tests)."""

import numpy as np
import pytest
import torch

from tests.tiny import make_voice
from tts.errors import TTSError
from tts.pipeline import TextToSpeech
from tts.precision import autocast, half_dtype, prepare, vocoder_precision
from tts.sampling.graphs import GraphedCall
from tts.sampling.options import Options
from tts.voices import VoiceLibrary

QUICK = Options(candidates=2, batch_size=2, diffusion_steps=3, max_mel_tokens=16, seed=5)


@pytest.fixture
def voice(tmp_path):
    make_voice(tmp_path / "voices", "alice")
    return VoiceLibrary(tmp_path / "voices").get("alice")


def test_precision_names(monkeypatch):
    assert half_dtype("fp32") is None and half_dtype("bf16") == torch.bfloat16 and half_dtype("fp16") == torch.float16
    with pytest.raises(TTSError, match="precision"):
        half_dtype("int4")
    layer = torch.nn.Linear(2, 2)
    assert prepare(layer, "bf16").weight.dtype == torch.float32  # weights stay float32 on the CPU
    with autocast("cpu", "bf16"):
        assert layer(torch.ones(1, 2)).dtype == torch.bfloat16
    with autocast("cpu", "fp32"):
        assert layer(torch.ones(1, 2)).dtype == torch.float32
    with autocast("cpu", "bf16"), autocast("cpu", "fp32"):  # float32 inside a half-precision block
        assert layer(torch.ones(1, 2)).dtype == torch.float32
    assert vocoder_precision("cuda", "fp16") == "fp16" and vocoder_precision("cuda", "fp32") == "fp32"
    # on the CPU: bf16 where the CPU has it natively, whatever the models run at; else float32
    monkeypatch.delenv("TTS_VOCODER_PRECISION")  # the tests' own setting (conftest.py)
    assert vocoder_precision("cpu", "fp32", native_bf16=True) == "bf16"
    assert vocoder_precision("cpu", "bf16", native_bf16=False) == "fp32"
    assert vocoder_precision("cpu", "fp32", "fp32", native_bf16=True) == "fp32"  # what was asked wins
    with pytest.raises(TTSError, match="precision"):
        vocoder_precision("cpu", "fp32", "int4")
    monkeypatch.setenv("TTS_VOCODER_PRECISION", "bf16")  # the environment sets what "auto" means
    assert vocoder_precision("cpu", "fp32", native_bf16=False) == "bf16"
    assert vocoder_precision("cpu", "fp32", "fp32", native_bf16=False) == "fp32"
    monkeypatch.setenv("TTS_VOCODER_PRECISION", "half")
    with pytest.raises(TTSError, match="TTS_VOCODER_PRECISION='half'"):
        vocoder_precision("cpu", "fp32")


# bf16 against fp32 on the tiny model, relative L2 error, as measured on AVX-512 and AVX2 CPUs (the same
# to two digits): conditioning 3.9e-3 / 3.4e-3, latents 2.3e-3, logits 3.6e-3, a 6-step DDPM mel 1.0e-2.
# The bounds are three times those: bf16 keeps 8 bits of mantissa, so its error is of that order on
# any CPU, while a bug (a wrong cast, an island lost) is far larger.
BF16_BOUNDS = {"conditioning": 1.5e-2, "latents": 1e-2, "logits": 1e-2, "mel": 3e-2}


def test_bf16_pipeline_stays_close_to_fp32(tiny_tortoise_dir, voice, tmp_path):
    from tools.parity.fixture import relative_error
    from tts import audio
    from tts.sampling.generate import generate_mel

    full = TextToSpeech(tiny_tortoise_dir, cache=tmp_path / "cache")
    half = TextToSpeech(tiny_tortoise_dir, cache=tmp_path / "cache", precision="bf16")
    clips = voice.load_clips(full.cond_mel.sample_rate)
    cond, cond_half = full.conditioning_from_clips(clips), half.conditioning_from_clips(clips)
    errors = {"conditioning": max(relative_error(cond_half.gpt, cond.gpt),
                                  relative_error(cond_half.diffusion, cond.diffusion))}
    text = torch.tensor(full.encode("Hello there, how are you?") + [0])[None]  # (1, n)
    codes = torch.randint(0, 8000, (2, 24), generator=torch.Generator().manual_seed(0))  # (2, 24)
    def run(tts, mel_from=None):
        """The GPT on fixed codes, the diffusion decoder on fp32 latents, the vocoder on an fp32 mel."""
        gpt = tts.models.gpt
        with tts.inference():
            latents = gpt(cond.gpt.expand(2, -1), text.expand(2, -1), codes, return_latent=True)  # (2, 24, D)
            _, logits = gpt(cond.gpt.expand(2, -1), text.expand(2, -1), codes)
            source = latents if mel_from is None else mel_from["latents"]
            mel = generate_mel(tts.models.diffusion, source[:1].float(), cond.diffusion, steps=6,
                               generator=torch.Generator().manual_seed(3), frame_ratio=tts.frame_ratio)
            log_mel = audio.denormalize_mel(mel if mel_from is None else mel_from["mel"])
            wav = tts.vocode(log_mel, torch.Generator().manual_seed(4))
        return {"latents": latents, "logits": logits, "mel": mel, "wav": wav}

    outputs = {"fp32": run(full)}
    outputs["bf16"] = run(half, mel_from=outputs["fp32"])
    for part in ("latents", "logits", "mel"):
        errors[part] = relative_error(outputs["bf16"][part], outputs["fp32"][part])
    assert all(errors[part] <= bound for part, bound in BF16_BOUNDS.items()), errors
    assert all(errors[part] > 0 for part in BF16_BOUNDS), errors  # bf16 really ran
    assert np.array_equal(outputs["bf16"]["wav"], outputs["fp32"]["wav"])  # vocoders stay float32 on the CPU

    a = full.synthesize("Hello there.", voice, QUICK)
    b = half.synthesize("Hello there.", voice, QUICK)
    assert a.shape == b.shape and b.dtype == np.float32 and np.isfinite(b).all() and np.abs(b).max() <= 1
    # latents computed in half precision are cached apart from the float32 ones
    assert len(list(full.cache_dir.glob("alice-*.safetensors"))) == 2
    assert half.conditioning(voice).gpt.dtype == torch.float32


def test_unknown_precision_is_a_user_error(tiny_tortoise_dir):
    with pytest.raises(TTSError, match="precision"):
        TextToSpeech(tiny_tortoise_dir, precision="fp8")


def test_graphed_call_is_a_plain_call_without_cuda():
    calls = []
    call = GraphedCall(lambda x: calls.append(1) or x * 2, "cpu")
    assert torch.equal(call(torch.ones(3)), torch.full((3,), 2.0)) and len(calls) == 1


# ---- on a GPU ----


@pytest.mark.cuda
def test_graphed_call_replays_per_shape():
    conv = torch.nn.Conv1d(4, 4, 3, padding=1).cuda().eval()
    call = GraphedCall(lambda x: conv(x), "cuda", max_shapes=2)
    with torch.no_grad():
        for length in (10, 10, 12, 10, 16, 12, 12):
            x = torch.randn(1, 4, length, device="cuda")
            torch.testing.assert_close(call(x), conv(x))
    assert len(call.inputs) == 2 and len(call.graphs.graphs) == 2  # 10 and 12 captured; 16 came once


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_pipeline_with_graphs_is_reproducible(tiny_tortoise_dir, voice, tmp_path, precision):
    tts = TextToSpeech(tiny_tortoise_dir, device="cuda", cache=tmp_path / "cache", precision=precision)
    a = tts.synthesize("Hello there.", voice, QUICK)
    b = tts.synthesize("Hello there.", voice, QUICK)  # second run: replays the captured graphs
    assert np.array_equal(a, b) and np.isfinite(a).all()
    chunks = list(tts.stream("Hello there.", voice, QUICK))
    assert sum(len(c) for c in chunks) > 0


def test_a_bf16_vocoder_gives_the_float32_audio_within_rounding(tiny_model_dir, tmp_path):
    """What "auto" picks on CPUs with native bf16: the same codes, vocoded in bf16, give audio of the same
    length close to float32's (a trained HiFi-GAN amplifies rounding more; see tts.precision)."""
    import numpy as np

    from tests.tiny import make_voice
    from tts.pipeline import TextToSpeech
    from tts.sampling.options import Options
    from tts.voices import VoiceLibrary

    make_voice(tmp_path / "voices", "alice")
    voice = VoiceLibrary(tmp_path / "voices").get("alice")

    options = Options(candidates=1, batch_size=1, diffusion_steps=2, max_mel_tokens=12, seed=3)
    wavs = {}
    for choice in ("fp32", "bf16"):
        tts = TextToSpeech(tiny_model_dir, vocoder_precision=choice)
        assert tts.vocoder_precision == choice
        wavs[choice] = tts.synthesize("Hello there.", voice, options)
    assert wavs["bf16"].shape == wavs["fp32"].shape and np.all(np.isfinite(wavs["bf16"]))
    assert np.linalg.norm(wavs["bf16"] - wavs["fp32"]) <= 0.1 * np.linalg.norm(wavs["fp32"])
