"""Fine-tuning a voice (`tts voices finetune`) on tiny models: the adapter, its use by speech, resuming,
the held-out decision, and bad input. The judge and the recogniser are fakes (the real ones are
measured by benchmarks/finetune.py)."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli import main
from tests.tiny import make_tiny_flow_model_dir, make_voice
from tts.adapters import DECODER_UPDATE, AdapterStore
from tts.errors import TTSError
from tts.finetune.config import FinetuneConfig
from tts.finetune.run import finetune
from tts.models import lowrank
from tts.pipeline import TextToSpeech
from tts.voices import VoiceLibrary

TEXTS = {"clip0.wav": "Hello there, this is a test.", "clip1.wav": "A second clip of speech.",
         "clip2.wav": "And a third one here."}
FAST = FinetuneConfig(steps=4, judge_steps=1, gpt=True)


class FakeJudge:
    """Hears the held-out clip first, then each re-decoded version: `similarities` are the cosines it
    gives them, in order (before tuning, after)."""

    name = "fake"

    def __init__(self, *similarities: float):
        self.similarities = list(similarities)
        self.calls = 0

    def embed(self, wav: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls == 1:
            return np.array([1.0, 0.0])
        s = self.similarities[min(self.calls - 2, len(self.similarities) - 1)]
        return np.array([s, np.sqrt(1 - s * s)])


class FakeRecogniser:
    name = "fake recogniser"

    def transcribe(self, wav: np.ndarray) -> str:
        return "words heard in the clip"


@pytest.fixture(scope="module")
def flow_dir(tmp_path_factory):
    return make_tiny_flow_model_dir(tmp_path_factory.mktemp("models") / "flow", live_flow=True)


@pytest.fixture
def tts(flow_dir):  # per test: it reads the test's own data and cache directories
    return TextToSpeech(flow_dir)


@pytest.fixture
def library(tmp_path):
    make_voice(tmp_path / "voices", "v", clips=3, seconds=3.0)
    return VoiceLibrary(tmp_path / "voices")


def adapters_root() -> Path:
    return AdapterStore().root


def test_an_adapter_that_helps_is_kept_and_speech_uses_it(tts, library):
    voice = library.get("v")
    result = finetune(tts, voice, FAST, texts=TEXTS, judge=FakeJudge(0.5, 0.9))
    assert result.kept and result.heldout == "clip2.wav" and result.steps == 4
    assert result.before["similarity"] == pytest.approx(0.5) and result.after["similarity"] == pytest.approx(0.9)
    assert {"dvae_speaker", "flow_speaker"} <= set(result.parts)
    # keyed by model id and clip fingerprint, in the user data directory, not in the voice folder
    assert result.path.parent == adapters_root() / tts.models.model_id / "v"
    assert result.path.name.startswith(voice.fingerprint()[:20])
    assert sorted(p.name for p in voice.folder.iterdir()) == ["clip0.wav", "clip1.wav", "clip2.wav"]
    assert not list(result.path.parent.glob(".*.partial.*"))  # the resumable state is gone
    base, tuned = tts.base_conditioning(voice), tts.conditioning(voice)
    assert DECODER_UPDATE in result.parts  # low-rank updates of the DVAE decoder, by default
    for part in result.parts:
        if part != DECODER_UPDATE:
            assert not torch.equal(getattr(base, part), getattr(tuned, part))
    assert base.dvae_weights is None and set(tuned.dvae_weights) == set(lowrank.targets(tts.models.dvae))
    codes = torch.randint(0, tts.models.dvae.config.num_tokens, (1, 12))
    with tts.inference():  # the voice's chunks decode through its own decoder weights
        own = tts.decode_codes(codes, tuned, 1, torch.Generator().manual_seed(0))
        shared = tts.decode_codes(codes, dataclasses.replace(tuned, dvae_weights=None), 1,
                                  torch.Generator().manual_seed(0))
    assert not torch.allclose(own, shared)
    zero_shot = TextToSpeech(tts.models.path, use_adapters=False).conditioning(voice)
    assert torch.equal(zero_shot.flow_speaker, base.flow_speaker)
    assert tts.adapter(voice).info.similarity_after == pytest.approx(0.9)


def test_an_adapter_that_does_not_help_is_not_kept(tts, library):
    result = finetune(tts, library.get("v"), FinetuneConfig(steps=2, judge_steps=1, gpt=False),
                      judge=FakeJudge(0.6, 0.4))
    assert not result.kept and result.path is None
    assert "did not help" in result.reason
    assert tts.adapter(library.get("v")) is None
    assert not any(p.suffix == ".safetensors" and not p.name.startswith(".")
                   for p in adapters_root().rglob("*"))


def test_the_server_picks_up_a_voice_fine_tuned_while_it_runs(tts, library):
    from tts.sampling.options import Options
    from tts.serve.engine import Engine

    engine, voice = Engine(tts, Options()), library.get("v")
    zero_shot = engine.conditioning(voice)
    assert engine.conditioning(voice) is zero_shot  # kept in memory
    finetune(tts, voice, FAST, texts=TEXTS, judge=FakeJudge(0.1, 0.9))
    assert not torch.equal(engine.conditioning(voice).flow_speaker, zero_shot.flow_speaker)


def test_a_damaged_adapter_is_ignored(tts, library):
    voice = library.get("v")
    finetune(tts, voice, FAST, texts=TEXTS, judge=FakeJudge(0.1, 0.9))
    AdapterStore().path(tts.models.model_id, voice).write_bytes(b"not safetensors")
    assert tts.adapter(voice) is None
    assert torch.equal(tts.conditioning(voice).gpt, tts.base_conditioning(voice).gpt)


def test_changing_the_clips_invalidates_the_adapter(tts, library, tmp_path):
    voice = library.get("v")
    finetune(tts, voice, FAST, texts=TEXTS, judge=FakeJudge(0.1, 0.9))
    assert tts.adapter(voice) is not None
    make_voice(tmp_path / "voices", "v", clips=4, seconds=3.0)  # one clip more
    assert tts.adapter(voice) is None
    assert torch.equal(tts.conditioning(voice).flow_speaker, tts.base_conditioning(voice).flow_speaker)


def test_an_interrupted_run_goes_on_where_it_stopped_and_ends_the_same(tts, library, tmp_path, monkeypatch):
    voice = library.get("v")
    config = FinetuneConfig(steps=6, judge_steps=1, save_every_s=0)
    whole = finetune(tts, voice, config, texts=TEXTS, store=AdapterStore(tmp_path / "a"), judge=FakeJudge(0, 1))

    store = AdapterStore(tmp_path / "b")

    def stop_at(step):
        def progress(done, total, note):
            assert "loss" in note and "left" in note
            if done == step:
                raise KeyboardInterrupt
        return progress

    with pytest.raises(KeyboardInterrupt):  # Ctrl-C: the state is saved on the way out
        finetune(tts, voice, config, texts=TEXTS, store=store, judge=FakeJudge(0, 1), progress=stop_at(2))
    assert store.state_path(tts.models.model_id, voice).is_file()
    assert tts.adapter(voice) is None and store.load(tts.models.model_id, voice) is None

    def crash(done, total, note):  # a kill: only the periodic saves are left (the last one at step 3)
        if done == 4:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        finetune(tts, voice, config, texts=TEXTS, store=store, judge=FakeJudge(0, 1), progress=crash)
    seen = []
    resumed = finetune(tts, voice, config, texts=TEXTS, store=store, judge=FakeJudge(1),  # "before" was kept
                       progress=lambda done, total, note: seen.append(done))
    assert resumed.resumed_from == 3 and seen == [4, 5, 6] and resumed.kept
    a, b = AdapterStore(tmp_path / "a").load(tts.models.model_id, voice), store.load(tts.models.model_id, voice)
    assert a.parts == b.parts == whole.parts and set(a.tensors) == set(b.tensors)
    for name in a.tensors:
        assert torch.allclose(a.tensors[name], b.tensors[name], atol=1e-6)
    assert not store.state_path(tts.models.model_id, voice).exists()


def test_two_clips_are_all_trained_on_and_the_decoder_only_model_needs_no_text(tmp_path):
    model = TextToSpeech(make_tiny_flow_model_dir(tmp_path / "decoder-only", gpt=False, live_flow=True))
    make_voice(tmp_path / "voices", "w", clips=2, seconds=3.5)
    result = finetune(model, VoiceLibrary(tmp_path / "voices").get("w"), FAST)
    assert result.kept and result.heldout is None and "no clip held out" in result.reason
    assert result.parts == ["dvae_speaker", "flow_speaker", DECODER_UPDATE]


class ScriptedRecogniser:
    """Hears `lines` in turn: the re-decoded held-out clip zero-shot, tuned, then with the vectors alone."""

    name = "scripted"

    def __init__(self, *lines: str):
        self.lines = list(lines)

    def transcribe(self, wav: np.ndarray) -> str:
        return self.lines.pop(0)


def test_decoder_updates_that_lose_words_are_dropped_and_the_vectors_judged_alone(tts, library):
    recogniser = ScriptedRecogniser("and a third one here", "and a bird won fear", "and a third one here")
    result = finetune(tts, library.get("v"), FinetuneConfig(steps=2, judge_steps=1, gpt=False),
                      judge=FakeJudge(0.5, 0.9, 0.7), recogniser=recogniser, texts=TEXTS)
    assert result.before["wer"] == 0.0 and "WER 0.0 -> 60.0%" in result.reason
    assert result.kept and result.parts == ["dvae_speaker", "flow_speaker"]
    assert "updates did not help" in result.reason and "0.500 -> 0.700" in result.reason
    assert result.after["similarity"] == pytest.approx(0.7) and result.after["wer"] == 0.0  # what is kept
    assert tts.adapter(library.get("v")).info.similarity_after == pytest.approx(0.7)
    assert tts.conditioning(library.get("v")).dvae_weights is None
    assert not recogniser.lines


def test_decoder_updates_within_the_word_slack_are_kept(tts, library):
    recogniser = ScriptedRecogniser("and a third one here and a third one here and more words",
                                    "and a third one here and a bird won here and more words")
    result = finetune(tts, library.get("v"), FinetuneConfig(steps=2, judge_steps=1, gpt=False),
                      judge=FakeJudge(0.5, 0.9), recogniser=recogniser, texts={**TEXTS, "clip2.wav": (
                          "and a third one here and a third one here and more words")})
    assert result.before["word_errors"] == 0 and result.after["word_errors"] == 2  # within HELDOUT_WORD_SLACK
    assert result.kept and DECODER_UPDATE in result.parts


def test_rank_zero_tunes_the_vectors_alone(tts, library):
    result = finetune(tts, library.get("v"), FinetuneConfig(steps=2, judge_steps=1, gpt=False, rank=0),
                      judge=FakeJudge(0.5, 0.9))
    assert result.kept and result.parts == ["dvae_speaker", "flow_speaker"]
    with pytest.raises(TTSError, match="--rank"):
        FinetuneConfig(rank=-1).validate()


def test_decoder_updates_that_do_not_fit_the_model_are_refused_in_words(tts, library):
    voice = library.get("v")
    finetune(tts, voice, FAST, texts=TEXTS, judge=FakeJudge(0.1, 0.9))
    store = AdapterStore()
    adapter = store.load(tts.models.model_id, voice)
    name = next(k for k in adapter.tensors if lowrank.is_factor(k) and k.endswith(".a"))
    adapter.tensors[name] = adapter.tensors[name][:, :-1]
    store.save(adapter)
    with pytest.raises(TTSError, match="does not fit this model"):
        tts.conditioning(voice)


def test_the_minutes_limit_stops_training(tts, library):
    result = finetune(tts, library.get("v"), FinetuneConfig(steps=1000, minutes=1e-9, judge_steps=1),
                      judge=FakeJudge(0, 1))
    assert result.steps == 1


def test_a_tortoise_model_cannot_be_fine_tuned(tiny_tortoise_dir, library):
    with pytest.raises(TTSError, match="cannot be fine-tuned"):
        finetune(TextToSpeech(tiny_tortoise_dir), library.get("v"), FAST)


# -- the command line ------------------------------------------------------------------------------


def run(*args, **obj):
    return CliRunner().invoke(main, [str(a) for a in args], obj=obj)


def one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def user_voices(tmp_path, monkeypatch):
    folder = tmp_path / "user-voices"
    monkeypatch.setenv("TTS_VOICES_DIR", str(folder))
    make_voice(folder, "v", clips=3, seconds=3.0)
    return folder


def test_cli_finetune_list_and_remove(flow_dir, user_voices, tmp_path):
    transcripts = tmp_path / "words.txt"
    transcripts.write_text("# clip, words\nclip0\tHello there.\nclip1.wav|A second clip.\nclip2\tAnd a third.\n")
    result = run("voices", "finetune", "v", "--model-dir", flow_dir, "--steps", 3, "--transcripts", transcripts,
                 "--gpt", judge=FakeJudge(0.2, 0.8))
    assert result.exit_code == 0, result.output
    assert "held-out similarity 0.200 -> 0.800" in result.output
    assert "fine-tuned voice v (gpt, dvae_speaker, flow_speaker, dvae_lowrank;" in result.output
    listed = run("voices", "list", "--model-dir", flow_dir)
    assert "v\tuser\t3 clips\tfine-tuned" in listed.output.splitlines()
    assert "fine-tuned" not in run("voices", "list").output  # no model installed: nothing is marked
    removed = run("voices", "finetune", "v", "--model-dir", flow_dir, "--remove")
    assert removed.exit_code == 0 and "removed" in removed.output
    assert "fine-tuned" not in run("voices", "list", "--model-dir", flow_dir).output
    one_line_error(run("voices", "finetune", "v", "--model-dir", flow_dir, "--remove"), "not fine-tuned")


def test_cli_shows_what_the_recogniser_heard(flow_dir, user_voices):
    result = run("voices", "finetune", "v", "--model-dir", flow_dir, "--steps", 2,
                 recogniser=FakeRecogniser(), judge=FakeJudge(0.2, 0.8))
    assert result.exit_code == 0, result.output
    assert "clip0.wav\twords heard in the clip" in result.output
    assert "fine-tuned voice v (dvae_speaker, flow_speaker, dvae_lowrank;" in result.output  # no GPT by default
    voice = VoiceLibrary().get("v")
    assert TextToSpeech(flow_dir).adapter(voice).info.transcribed


@pytest.mark.parametrize("case, fragments", [
    ("unknown", ["unknown voice 'nobody'"]),
    ("no-clips", ["has no clips"]),
    ("too-short", ["2.0 s of clips", "at least 6 s"]),
    ("missing-line", ["does not match the clips of voice 'v'", "no text for clip2.wav"]),
    ("unknown-clip", ["lines for clips it does not have: clip9"]),
    ("tortoise", ["cannot be fine-tuned"]),
    ("gpt-without-gpt", ["has no GPT", "--gpt"]),
])
def test_cli_bad_input_is_one_line_and_writes_nothing(case, fragments, flow_dir, tiny_tortoise_dir, user_voices,
                                                      tmp_path):
    name, model = "v", flow_dir
    transcripts = tmp_path / "words.txt"
    transcripts.write_text("clip0\tOne.\nclip1\tTwo.\nclip2\tThree.\n")
    if case == "unknown":
        name = "nobody"
    elif case == "no-clips":
        (user_voices / "empty").mkdir()
        name = "empty"
    elif case == "too-short":
        make_voice(user_voices, "short", clips=1, seconds=2.0)
        name = "short"
    elif case == "missing-line":
        transcripts.write_text("clip0\tOne.\nclip1\tTwo.\n")
    elif case == "unknown-clip":
        transcripts.write_text("clip0\tOne.\nclip1\tTwo.\nclip2\tThree.\nclip9\tNine.\n")
    elif case == "tortoise":
        model = tiny_tortoise_dir
    extra = []
    if case == "gpt-without-gpt":
        model, extra = make_tiny_flow_model_dir(tmp_path / "decoder-only", gpt=False), ["--gpt"]
    result = run("voices", "finetune", name, "--model-dir", model, "--transcripts", transcripts, *extra,
                 judge=FakeJudge(0, 1), recogniser=FakeRecogniser())
    one_line_error(result, *fragments)
    assert not adapters_root().exists()
