"""Our model kind (DVAE + flow decoder) in the pipeline, and `tts reconstruct`, with tiny random models."""

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from cli import main
from tests.tiny import make_tiny_flow_model_dir, make_voice, speech_like
from tts import audio
from tts.errors import TTSError
from tts.pipeline import TextToSpeech
from tts.sampling.options import preset, resolve
from tts.voices import VoiceLibrary

RATE = audio.HIFIGAN_SAMPLE_RATE


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_flow_model_dir(tmp_path_factory.mktemp("flow-model"))


@pytest.fixture(scope="module")
def decoder_only(tmp_path_factory):
    return make_tiny_flow_model_dir(tmp_path_factory.mktemp("decoder-only"), gpt=False)


@pytest.fixture
def recording(tmp_path):
    path = tmp_path / "rec.wav"
    audio.save_audio(path, speech_like(1.5, RATE), RATE)
    return path


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_speaks_through_the_flow_decoder(model_dir, tmp_path):
    make_voice(tmp_path / "voices", "v")
    tts = TextToSpeech(model_dir)
    wav = tts.synthesize("Hello there.", VoiceLibrary(tmp_path / "voices").get("v"),
                         resolve("ultra_fast", tts.models.card, candidates=2, seed=3, max_mel_tokens=20))
    assert wav.dtype == np.float32 and wav.ndim == 1 and len(wav) > 0 and np.all(np.isfinite(wav))


def test_reconstruction_keeps_the_length_and_is_reproducible(decoder_only, recording):
    tts = TextToSpeech(decoder_only)
    wav = audio.load_audio(recording, RATE)
    out = tts.reconstruct(wav, steps=2, seed=1)
    assert abs(len(out) - len(wav)) <= 4 * audio.HIFIGAN_MEL.hop_length  # whole codes: at most one code shorter
    assert np.array_equal(out, tts.reconstruct(wav, steps=2, seed=1))


def test_reconstruction_decodes_both_levels_of_a_residual_dvae(tmp_path, recording):
    import torch

    tts = TextToSpeech(make_tiny_flow_model_dir(tmp_path / "residual", gpt=False, residual_tokens=16))
    wav = audio.load_audio(recording, RATE)
    codes, residual = tts.encode_speech_levels(wav)
    assert residual is not None and residual.shape == (1, 1, codes.shape[1])
    assert torch.equal(tts.encode_speech(wav), codes)  # the first level: what a GPT predicts
    cond = tts.conditioning_from_clips([wav])
    with tts.inference():
        both = tts.decode_codes(codes, cond, 1, torch.Generator().manual_seed(0), residual)
        first = tts.decode_codes(codes, cond, 1, torch.Generator().manual_seed(0))
    assert not torch.equal(both, first)
    out = tts.reconstruct(wav, steps=1, seed=0)
    assert np.array_equal(out, tts.reconstruct(wav, steps=1, seed=0))
    with tts.inference():
        assert np.array_equal(out, tts.vocode(audio.denormalize_mel(both), torch.Generator()))


def test_reconstruct_command_one_file_and_several(decoder_only, recording, tmp_path):
    result = run("reconstruct", recording, "-o", tmp_path / "one.flac", "--model-dir", decoder_only, "--steps", "2")
    assert result.exit_code == 0, result.output
    assert sf.info(tmp_path / "one.flac").samplerate == RATE
    other = tmp_path / "other.wav"
    audio.save_audio(other, speech_like(1.0, RATE, seed=2), RATE)
    result = run("reconstruct", recording, other, "-o", tmp_path / "many", "--model-dir", decoder_only, "--steps", "1")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == ["other.wav", "rec.wav"]


def test_reconstruct_in_another_voice(decoder_only, recording, tmp_path):
    make_voice(tmp_path / "voices", "other")
    result = run("reconstruct", recording, "-o", tmp_path / "out.wav", "--voice", "other", "--voices-dir",
                 tmp_path / "voices", "--model-dir", decoder_only, "--steps", "1")
    assert result.exit_code == 0, result.output and (tmp_path / "out.wav").is_file()


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"not audio"), "cannot read audio file"),
    (lambda p: audio.save_audio(p, np.zeros(RATE, np.float32), RATE), "silent"),
    (lambda p: audio.save_audio(p, np.full(100, 0.1, np.float32), RATE), "too short"),
])
def test_bad_recordings_are_one_line_errors_and_nothing_is_written(decoder_only, recording, tmp_path, make, message):
    bad = tmp_path / "bad.wav"
    make(bad)
    result = run("reconstruct", recording, bad, "-o", tmp_path / "out", "--model-dir", decoder_only)
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output
    assert not any((tmp_path / "out").iterdir())  # the good input was not made either


def test_too_long_recording_is_refused(decoder_only, monkeypatch):
    import tts.pipeline as pipeline

    monkeypatch.setattr(pipeline, "MAX_RECONSTRUCT_SECONDS", 1.0)
    with pytest.raises(TTSError, match="too long"):
        TextToSpeech(decoder_only).encode_speech(speech_like(1.5, RATE))


def test_missing_input_and_clashing_names(decoder_only, recording, tmp_path):
    result = run("reconstruct", tmp_path / "nope.wav", "-o", tmp_path / "x.wav", "--model-dir", decoder_only)
    assert result.exit_code != 0 and "no such audio file" in result.output
    (tmp_path / "b").mkdir()
    twin = tmp_path / "b" / "rec.wav"
    twin.write_bytes(recording.read_bytes())
    result = run("reconstruct", recording, twin, "-o", tmp_path / "out", "--model-dir", decoder_only)
    assert result.exit_code != 0 and "would both be written" in result.output


def test_a_decoder_only_model_cannot_read_text(decoder_only, tmp_path):
    make_voice(tmp_path / "voices", "v")
    tts = TextToSpeech(decoder_only)
    with pytest.raises(TTSError, match="has no GPT"):
        tts.synthesize("Hello.", VoiceLibrary(tmp_path / "voices").get("v"), preset("ultra_fast"))


def test_a_tortoise_style_model_cannot_reconstruct(tmp_path):
    from tests.tiny import make_tiny_model_dir

    tts = TextToSpeech(make_tiny_model_dir(tmp_path / "m"))
    with pytest.raises(TTSError, match="no DVAE and flow decoder"):
        tts.reconstruct(speech_like(1.0, tts.sample_rate))


def test_reconstruct_benchmark_runs(decoder_only, recording):
    from benchmarks.reconstruct import run

    result = run(str(decoder_only), [recording], steps=1, runs=1)
    assert result["real_time_factor"] > 0 and set(result["real_time_factor_by_stage"]) == {
        "encode", "conditioning", "dvae", "flow", "vocoder"}
    assert result["peak_rss_mib"] > 0


def test_one_diffusion_step_is_a_one_line_error_and_one_flow_step_works(model_dir, tmp_path):
    from tests.tiny import make_tiny_model_dir

    make_voice(tmp_path / "voices", "v")
    args = ["speak", "Hello there.", "--voice", "v", "--voices-dir", tmp_path / "voices", "--preset", "ultra_fast",
            "--candidates", "1", "--diffusion-steps", "1"]
    result = run(*args, "--model-dir", make_tiny_model_dir(tmp_path / "diffusion-model"), "-o", tmp_path / "a.wav")
    assert result.exit_code == 1 and "needs at least 2 steps" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "a.wav").exists()
    result = run(*args, "--model-dir", model_dir, "-o", tmp_path / "b.wav")
    assert result.exit_code == 0, result.output
