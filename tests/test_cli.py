"""The command line through click's CliRunner: speak end to end, voices, conversion, and bad input."""

from pathlib import Path

import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from cli import main
from tests.tiny import make_voice, speech_like
from tts import audio

FAST = ["--preset", "ultra_fast", "--candidates", "2", "--diffusion-steps", "3", "--seed", "1"]


@pytest.fixture
def voices(tmp_path, monkeypatch):
    folder = tmp_path / "user-voices"
    make_voice(folder, "alice")
    monkeypatch.setenv("TTS_VOICES_DIR", str(folder))
    return folder


def run(*args, input=None):
    result = CliRunner().invoke(main, [str(a) for a in args], input=input)
    return result


def assert_one_line_error(result, *fragments):
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("layout", ["tiny_tortoise_dir", "tiny_model_dir"])
def test_speak_end_to_end_writes_plausible_audio(request, layout, voices, tmp_path):
    model_dir = request.getfixturevalue(layout)
    out = tmp_path / "hello.wav"
    result = run("speak", "Hello world.", "--voice", "alice", "--model-dir", model_dir, "-o", out, *FAST)
    assert result.exit_code == 0, result.output
    data, rate = sf.read(out)
    assert rate == 24000
    # random weights never stop: 500 codes -> 500 * 1024 / 22050 s of audio
    assert abs(len(data) / rate - 500 * 1024 / 22050) < 0.1
    assert abs(data).max() > 0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_speak_reads_text_from_stdin_and_writes_flac(tiny_tortoise_dir, voices, tmp_path):
    out = tmp_path / "x.flac"
    result = run("speak", "-", "--voice", "alice", "--model-dir", tiny_tortoise_dir, "-o", out, *FAST,
                 input="Read this from standard input.")
    assert result.exit_code == 0, result.output
    assert sf.info(out).format == "FLAC"


def test_same_seed_same_audio(tiny_tortoise_dir, voices, tmp_path):
    outs = []
    for name in ("a.wav", "b.wav"):
        assert run("speak", "Same seed.", "--voice", "alice", "--model-dir", tiny_tortoise_dir, "-o",
                   tmp_path / name, *FAST).exit_code == 0
        outs.append(sf.read(tmp_path / name)[0])
    assert (outs[0] == outs[1]).all()


@pytest.mark.parametrize("text, fragment", [("", "empty"), ("   \n\t ", "empty"), ("!!! ... ?", "nothing to say")])
def test_text_without_speech_is_refused(text, fragment, tiny_tortoise_dir, voices, tmp_path):
    out = tmp_path / "x.wav"
    result = run("speak", text, "--voice", "alice", "--model-dir", tiny_tortoise_dir, "-o", out)
    assert_one_line_error(result, fragment)
    assert not out.exists()


def test_unknown_voice_lists_available_voices(tiny_tortoise_dir, voices, tmp_path):
    make_voice(voices, "bob")
    result = run("speak", "Hi.", "--voice", "nobody", "--model-dir", tiny_tortoise_dir, "-o", tmp_path / "x.wav")
    assert_one_line_error(result, "unknown voice 'nobody'", "alice", "bob")


def test_voice_with_no_valid_clips(tiny_tortoise_dir, voices, tmp_path):
    broken = voices / "broken"
    broken.mkdir()
    (broken / "clip.wav").write_bytes(b"RIFF not really a wave file")
    out = tmp_path / "x.wav"
    result = run("speak", "Hi.", "--voice", "broken", "--model-dir", tiny_tortoise_dir, "-o", out)
    assert_one_line_error(result, "voice 'broken' has no usable clips")
    assert not out.exists()


def test_empty_voice_folder(tiny_tortoise_dir, voices, tmp_path):
    (voices / "empty").mkdir()
    result = run("speak", "Hi.", "--voice", "empty", "--model-dir", tiny_tortoise_dir, "-o", tmp_path / "x.wav")
    assert_one_line_error(result, "has no usable clips")


def copy_dir(src: Path, dst: Path) -> Path:
    import shutil

    return Path(shutil.copytree(src, dst))


def test_model_dir_missing_a_file(tiny_tortoise_dir, voices, tmp_path):
    model = copy_dir(tiny_tortoise_dir, tmp_path / "model")
    (model / "diffusion_decoder.pth").unlink()
    out = tmp_path / "x.wav"
    result = run("speak", "Hi.", "--voice", "alice", "--model-dir", model, "-o", out)
    assert_one_line_error(result, "missing diffusion_decoder.pth")
    assert not out.exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_checkpoint(damage, tiny_tortoise_dir, voices, tmp_path):
    model = copy_dir(tiny_tortoise_dir, tmp_path / "model")
    target = model / "autoregressive.pth"
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:5000])
    else:
        target.write_bytes(b"\x00garbage" * 100)
    result = run("speak", "Hi.", "--voice", "alice", "--model-dir", model, "-o", tmp_path / "x.wav")
    assert_one_line_error(result, "cannot read", "autoregressive.pth")


def test_checkpoint_with_wrong_keys_names_them(tiny_tortoise_dir, voices, tmp_path):
    model = copy_dir(tiny_tortoise_dir, tmp_path / "model")
    sd = torch.load(model / "vocoder.pth", weights_only=True)
    sd["model_g"]["surprise.weight"] = torch.zeros(1)
    del sd["model_g"]["conv_post.1.bias"]
    torch.save(sd, model / "vocoder.pth")
    result = run("speak", "Hi.", "--voice", "alice", "--model-dir", model, "-o", tmp_path / "x.wav")
    assert_one_line_error(result, "missing keys conv_post.1.bias", "unexpected keys surprise.weight")


def test_pickled_code_is_never_executed(tiny_tortoise_dir, voices, tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    model = copy_dir(tiny_tortoise_dir, tmp_path / "model")
    with open(model / "clvp2.pth", "wb") as f:
        pickle.dump(Evil(), f)
    result = run("speak", "Hi.", "--voice", "alice", "--model-dir", model, "-o", tmp_path / "x.wav")
    assert_one_line_error(result, "clvp2.pth", "refused", "contains code")
    assert "weights_only" not in result.output  # torch's advice to unpickle it anyway is not passed on
    assert not (tmp_path / "pwned").exists()


def test_card_preset_and_a_flag_may_set_the_same_field(tiny_model_dir, voices, tmp_path):
    """A model card's preset adjustment and the user's flag for the same field: the flag wins."""
    import json
    import shutil

    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    card = json.loads((model / "model.json").read_text())
    card["presets"] = {"ultra_fast": {"candidates": 3, "diffusion_steps": 5}}
    (model / "model.json").write_text(json.dumps(card))
    out = tmp_path / "x.wav"
    result = run("speak", "Hi.", "--voice", "alice", "--model-dir", model, "-o", out, *FAST)
    assert result.exit_code == 0, result.output
    assert out.is_file()


@pytest.mark.parametrize("command", ["speak", "narrate", "eval"])
def test_every_command_offers_every_preset_and_sampler(command):
    from tts.sampling.diffusion import SAMPLERS
    from tts.sampling.options import PRESETS

    params = {p.name: p for p in main.commands[command].params}
    assert list(params["preset"].type.choices) == list(PRESETS)
    assert list(params["sampler"].type.choices) == list(SAMPLERS)


@pytest.mark.parametrize("command, args", [
    ("speak", ["Hi.", "--voice", "alice"]),
    ("narrate", ["book.txt", "--voice", "alice", "-o", "out"]),
    ("eval", []),
    ("serve", []),
])
@pytest.mark.parametrize("ratio", ["1.5", "-0.1", "nan"])
def test_min_length_ratio_is_offered_everywhere_and_a_bad_one_is_one_line(command, args, ratio, voices):
    assert "min_length_ratio" in {p.name for p in main.commands[command].params}
    result = run(command, *args, "--min-length-ratio", ratio)
    assert_one_line_error(result, "Invalid value for '--min-length-ratio'")


def test_serve_passes_the_min_length_ratio_to_its_options():
    from tts.serve.config import ServerConfig

    card_presets = {"ultra_fast": {"min_length_ratio": 0.5}}
    assert ServerConfig().options(card_presets).min_length_ratio == 0.5  # the card's preset adjustment
    assert ServerConfig(min_length_ratio=0.9).options(card_presets).min_length_ratio == 0.9  # the flag wins


def test_not_a_model_dir(voices, tmp_path):
    result = run("speak", "Hi.", "--voice", "alice", "--model-dir", tmp_path, "-o", tmp_path / "x.wav")
    assert_one_line_error(result, "is not a model directory")


def test_no_model_installed(voices, tmp_path, monkeypatch):
    import tts.pipeline

    monkeypatch.setattr(tts.pipeline, "DEFAULT_MODEL_DIR", tmp_path / "nothing")
    out = tmp_path / "x.wav"
    result = run("speak", "Hi.", "--voice", "alice", "-o", out)
    assert_one_line_error(result, "no model is installed", "--model-dir")
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_cuda_without_gpu(tiny_tortoise_dir, voices, tmp_path):
    result = run("speak", "Hi.", "--voice", "alice", "--model-dir", tiny_tortoise_dir, "--device", "cuda",
                 "-o", tmp_path / "x.wav")
    assert_one_line_error(result, "no CUDA GPU")


@pytest.mark.parametrize("where", ["missing_dir", "read_only_dir", "proc", "bad_extension", "is_directory"])
def test_unwritable_output(where, tiny_tortoise_dir, voices, tmp_path):
    if where == "missing_dir":
        out = tmp_path / "no" / "such" / "x.wav"
    elif where == "read_only_dir":
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        out = ro / "x.wav"
    elif where == "proc":  # not writable even by root
        out = Path("/proc/x.wav")
    elif where == "bad_extension":
        out = tmp_path / "x.xyz"
    else:
        out = tmp_path / "adir.wav"
        out.mkdir()
    import os

    if where == "read_only_dir" and os.access(out.parent, os.W_OK):
        pytest.skip("running as a user who can write anywhere")
    result = run("speak", "Hi.", "--voice", "alice", "--model-dir", tiny_tortoise_dir, "-o", out)
    assert_one_line_error(result, "cannot write")
    assert not out.is_file()


def test_voices_add_list_remove(tmp_path, monkeypatch):
    monkeypatch.setenv("TTS_VOICES_DIR", str(tmp_path / "v"))
    clips = []
    for i in range(2):
        clip = tmp_path / f"in{i}.flac"
        audio.save_audio(clip, speech_like(3.0, 44100, seed=i), 44100)
        clips.append(clip)
    result = run("voices", "add", "carol", *clips)
    assert result.exit_code == 0, result.output
    stored = sorted((tmp_path / "v" / "carol").iterdir())
    assert len(stored) == 2 and all(sf.info(p).samplerate == 22050 and sf.info(p).channels == 1 for p in stored)
    assert "carol\tuser\t2 clips" in run("voices", "list").output
    assert_one_line_error(run("voices", "add", "carol", *clips), "already exists")
    assert run("voices", "remove", "carol").exit_code == 0
    assert "carol" not in run("voices", "list").output


@pytest.mark.parametrize("name", ["../evil", "a/b", "Upper", "", ".hidden", "x" * 65, "x\n", "joe\n"])
def test_voice_names_are_simple_identifiers(name, tmp_path, monkeypatch):
    monkeypatch.setenv("TTS_VOICES_DIR", str(tmp_path / "v"))
    clip = tmp_path / "c.wav"
    audio.save_audio(clip, speech_like(3.0), 22050)
    assert_one_line_error(run("voices", "add", name, clip), "invalid voice name")
    assert not (tmp_path / "evil").exists()
    assert not (tmp_path / "v").exists() or list((tmp_path / "v").iterdir()) == []


def test_voice_lookup_refuses_a_name_with_a_trailing_newline(voices):
    assert_one_line_error(run("voices", "remove", "alice\n"), "invalid voice name")
    assert (voices / "alice").is_dir()


def _linked_voice(tmp_path, monkeypatch):
    """A user voice `frank` whose folder is a symbolic link to a folder of clips elsewhere."""
    monkeypatch.setenv("TTS_VOICES_DIR", str(tmp_path / "v"))
    real = make_voice(tmp_path / "elsewhere", "frank")
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "frank").symlink_to(real, target_is_directory=True)
    return real


def test_voices_remove_of_a_symlinked_voice_removes_the_link_only(tmp_path, monkeypatch):
    real = _linked_voice(tmp_path, monkeypatch)
    assert "frank\tuser\t2 clips" in run("voices", "list").output
    result = run("voices", "remove", "frank")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "v" / "frank").exists() and not (tmp_path / "v" / "frank").is_symlink()
    assert len(list(real.iterdir())) == 2  # the folder the link pointed to is left alone


@pytest.mark.parametrize("dangling", [False, True])
def test_voices_add_replace_over_a_symlinked_voice(dangling, tmp_path, monkeypatch):
    real = _linked_voice(tmp_path, monkeypatch)
    if dangling:
        import shutil

        shutil.rmtree(real)
    clip = tmp_path / "c.wav"
    audio.save_audio(clip, speech_like(3.0), 22050)
    result = run("voices", "add", "frank", clip, "--replace")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "v" / "frank"
    assert folder.is_dir() and not folder.is_symlink() and [p.name for p in folder.iterdir()] == ["c.flac"]
    if not dangling:
        assert len(list(real.iterdir())) == 2


@pytest.mark.parametrize("problem, make, fragment", [
    ("short", lambda: speech_like(1.0), "clips must be 2-30 s"),
    ("long", lambda: speech_like(31.0), "clips must be 2-30 s"),
    ("silent", lambda: speech_like(3.0) * 0, "silent"),
    ("clipped", lambda: (speech_like(3.0) * 50).clip(-1, 1), "clipped"),
])
def test_voices_add_checks_each_clip(problem, make, fragment, tmp_path, monkeypatch):
    monkeypatch.setenv("TTS_VOICES_DIR", str(tmp_path / "v"))
    good, bad = tmp_path / "good.wav", tmp_path / f"{problem}.wav"
    audio.save_audio(good, speech_like(3.0), 22050)
    audio.save_audio(bad, make(), 22050)
    assert_one_line_error(run("voices", "add", "dave", good, bad), fragment)
    assert not (tmp_path / "v" / "dave").exists()  # all or nothing


def test_voices_add_unreadable_clip(tmp_path, monkeypatch):
    monkeypatch.setenv("TTS_VOICES_DIR", str(tmp_path / "v"))
    bad = tmp_path / "notes.mp3"
    bad.write_text("not audio")
    assert_one_line_error(run("voices", "add", "erin", bad), "cannot read audio file")


def test_shipped_voice_is_shadowed_only_with_flag(tmp_path, monkeypatch):
    import tts.voices

    shipped = tmp_path / "shipped"
    make_voice(shipped, "joe")
    monkeypatch.setattr(tts.voices, "SHIPPED_VOICES_DIR", shipped)
    monkeypatch.setattr(tts.voices.VoiceLibrary.__init__, "__defaults__", (None, shipped))
    monkeypatch.setenv("TTS_VOICES_DIR", str(tmp_path / "v"))
    clip = tmp_path / "c.wav"
    audio.save_audio(clip, speech_like(3.0), 22050)
    assert_one_line_error(run("voices", "add", "joe", clip), "shipped voice", "--shadow")
    assert run("voices", "add", "joe", clip, "--shadow").exit_code == 0
    assert "replaces the shipped voice" in run("voices", "list").output
    assert_one_line_error(run("voices", "remove", "nobody"), "no user voice")
    assert run("voices", "remove", "joe").exit_code == 0
    assert_one_line_error(run("voices", "remove", "joe"), "shipped voice and cannot be removed")


def test_convert_tortoise_then_speak(tiny_tortoise_dir, voices, tmp_path):
    dst = tmp_path / "converted"
    result = run("convert-tortoise", tiny_tortoise_dir, dst)
    assert result.exit_code == 0, result.output
    assert (dst / "model.json").is_file() and (dst / "gpt.safetensors").is_file()
    outs = []
    for model in (tiny_tortoise_dir, dst):
        out = tmp_path / f"{len(outs)}.wav"
        assert run("speak", "Converted.", "--voice", "alice", "--model-dir", model, "-o", out, *FAST).exit_code == 0
        outs.append(sf.read(out)[0])
    assert abs(outs[0] - outs[1]).max() < 1e-3  # same weights, same seed (16-bit files)


@pytest.mark.parametrize("args, fragment", [
    (["speak", "Hi.", "--voice", "alice", "--preset", "bogus"], "Invalid value for '--preset'"),
    (["speak", "Hi.", "--voice", "alice", "--candidates", "0"], "Invalid value for '--candidates'"),
    (["speak", "Hi."], "Missing option '--voice'"),
    (["speak", "Hi.", "--voice", "alice", "--device", "tpu"], "unknown device"),
    (["nonsense"], "No such command"),
])
def test_bad_flags_give_one_line(args, fragment, voices):
    assert_one_line_error(run(*args), fragment)


def test_convert_refuses_bad_source(tmp_path):
    assert_one_line_error(run("convert-tortoise", tmp_path / "nope", tmp_path / "dst"), "does not exist")
