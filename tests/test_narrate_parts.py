"""The narration pieces on their own: manifest, loudness and limiter, silence trimming, batching,
seeds, the duration check, and the work loop's failure isolation (with a fake pipeline)."""

import math
import sqlite3

import numpy as np
import pytest
import soundfile as sf

from tts.errors import TTSError
from tts.narrate import loudness as lo
from tts.narrate.plan import CHAPTER, SENTENCE, Plan, PlannedChunk, chunk_key
from tts.narrate.render import Pauses, render, timestamp, trim_chunk
from tts.narrate.runner import Runner, batch_seed, make_batches
from tts.narrate.store import DONE, FAILED, PENDING, Manifest
from tts.narrate.writers import FORMATS, ffmetadata, open_sink
from tts.quality import DurationCheck

RATE = 24000


def chunk(text, chapter=0, position=0, pause=SENTENCE):
    return PlannedChunk(chunk_key(text, 0), chapter, position, text, pause)


def tone(seconds, amplitude=0.1, rate=RATE, freq=220.0):
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# -- manifest ------------------------------------------------------------------------------------

def test_manifest_sync_keeps_redoes_and_forgets(tmp_path):
    a, b, c = chunk("A."), chunk("B.", position=1), chunk("C.", position=2)
    with Manifest(tmp_path / "m.sqlite") as m:
        assert m.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        todo, stale = m.sync([a, b, c], "s1", valid=set())
        assert (todo, stale) == ([a.key, b.key, c.key], [])
        m.mark_done(a.key, "chunks/a.flac", 100, 1.0, -20.0, "s1")
        m.mark_done(b.key, "chunks/b.flac", 100, 1.0, -20.0, "s1")
        m.mark_failed(c.key, "too short", "s1")
    with Manifest(tmp_path / "m.sqlite") as m:  # committed: survives closing
        rows = m.rows()
        assert [rows[k].status for k in (a.key, b.key, c.key)] == [DONE, DONE, FAILED]
        assert rows[c.key].error == "too short"
        # b's file is missing (not valid), c failed before, a is fine; d is new; the old c text is gone
        d = chunk("D.", position=2)
        todo, stale = m.sync([a, b, d], "s1", valid={a.key})
        assert todo == [b.key, d.key] and [r.key for r in stale] == [c.key]
        assert m.rows()[b.key].status == PENDING
        # regenerate: a new take; other settings: everything again; the old audio counts until replaced
        m.mark_done(b.key, "chunks/b.flac", 100, 1.0, -20.0, "s1")
        todo, _ = m.sync([a, b, d], "s1", valid={a.key, b.key}, regenerate=[a.key])
        assert todo == [a.key, d.key] and m.rows()[a.key].take == 1 and m.rows()[a.key].status == DONE
        m.mark_done(d.key, "chunks/d.flac", 100, 1.0, -20.0, "s1")
        todo, _ = m.sync([a, b, d], "s2", valid={a.key, b.key, d.key})
        assert todo == [a.key, b.key, d.key]
        assert {r.status for r in m.rows().values()} == {DONE}


def test_damaged_manifest_is_a_one_line_error(tmp_path):
    path = tmp_path / "m.sqlite"
    path.write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(TTSError, match="cannot open the manifest .*move it away"):
        Manifest(path)


def test_failed_write_leaves_the_manifest_as_it_was(tmp_path):
    a = chunk("A.")
    with Manifest(tmp_path / "m.sqlite") as m:
        m.sync([a], "s", valid=set())
        with pytest.raises(TTSError, match="cannot update the manifest"), m.transaction():
            m.db.execute("UPDATE chunks SET status = 'done'")
            raise sqlite3.OperationalError("database or disk is full")
        assert m.rows()[a.key].status == PENDING


# -- loudness, limiter, trimming -----------------------------------------------------------------

def test_loudness_scales_with_level_and_silence_has_none():
    quiet, loud = lo.measure_loudness(tone(2, 0.05), RATE), lo.measure_loudness(tone(2, 0.1), RATE)
    assert loud - quiet == pytest.approx(20 * math.log10(2), abs=0.05)
    assert lo.measure_loudness(np.zeros(RATE, np.float32), RATE) is None
    assert lo.measure_loudness(tone(0.2), RATE) is not None  # shorter than a gating block


def test_book_loudness_is_the_power_mean_of_its_chunks():
    assert lo.combined_loudness([(-20.0, 1.0), (-20.0, 3.0)]) == pytest.approx(-20.0)
    assert lo.combined_loudness([(-20.0, 1.0), (None, 5.0)]) == pytest.approx(-20.0)
    both = lo.combined_loudness([(-20.0, 1.0), (-30.0, 1.0)])
    assert both == pytest.approx(10 * math.log10((10 ** -2 + 10 ** -3) / 2))
    assert lo.combined_loudness([]) is None
    assert lo.gain_for(-24.0, -18.0) == pytest.approx(10 ** (6 / 20))


def test_limiter_keeps_peaks_under_the_ceiling_and_leaves_the_rest():
    wav = tone(1.0, 0.3)
    wav[12000:12010] = 1.7  # a spike
    out = lo.limit_peaks(wav, RATE)
    assert np.abs(out).max() <= lo.PEAK_CEILING + 1e-6
    assert np.array_equal(out[:11000], wav[:11000])  # far from the spike: untouched
    gain = out[11500:12500] / np.where(np.abs(wav[11500:12500]) > 1e-3, wav[11500:12500], 1)
    assert np.abs(np.diff(gain[np.abs(wav[11500:12500]) > 1e-3])).max() < 0.2  # no jump to the ceiling
    quiet = tone(1.0, 0.3)
    assert lo.limit_peaks(quiet, RATE) is not None and np.array_equal(lo.limit_peaks(quiet, RATE), quiet)


def test_trim_chunk_keeps_a_margin():
    speech = tone(1.0, 0.2)
    wav = np.concatenate([np.zeros(RATE // 2, np.float32), speech, np.zeros(RATE, np.float32)])
    trimmed = trim_chunk(wav, RATE)
    margin = int(0.04 * RATE)
    assert len(speech) <= len(trimmed) <= len(speech) + 2 * margin + 2 * 240
    silent = np.zeros(RATE, np.float32)
    assert np.array_equal(trim_chunk(silent, RATE), silent)  # nothing to trim to: kept whole


def test_timestamps():
    assert timestamp(0) == "00:00:00.000"
    assert timestamp(3723.4567) == "01:02:03.457"


def test_ffmetadata_escapes_titles():
    text = ffmetadata("A = B; #1", [("One\\Two", 0.0, 1.5)])
    assert "title=A \\= B\\; \\#1" in text
    assert "START=0" in text and "END=1500" in text and "title=One\\\\Two" in text


def test_sink_is_atomic(tmp_path):
    target = tmp_path / "x.flac"
    with pytest.raises(RuntimeError), open_sink(target, RATE, FORMATS["flac"]) as sink:
        sink.write(tone(0.5))
        raise RuntimeError("stopped half way")
    assert list(tmp_path.iterdir()) == []
    with open_sink(target, RATE, FORMATS["flac"]) as sink:
        sink.write(tone(0.5))
        sink.write(tone(0.25))
    assert sf.info(target).frames == int(0.75 * RATE) and sink.seconds == pytest.approx(0.75)


def test_render_pauses_and_gain(tmp_path):
    """Two chapters of two chunks: silences between them exactly as the pauses say, level at target."""
    chunks = [chunk("One.", 0, 0, SENTENCE), chunk("Two.", 0, 1, CHAPTER), chunk("Three.", 1, 0, SENTENCE),
              chunk("Four.", 1, 1, CHAPTER)]
    plan = Plan("Book", ("First", "Second"), tuple(chunks))
    (tmp_path / "chunks").mkdir()
    with Manifest(tmp_path / "m.sqlite") as m:
        m.sync(chunks, "s", valid=set())
        for c in chunks:
            wav = np.concatenate([np.zeros(2400, np.float32), tone(3.0, 0.05), np.zeros(4800, np.float32)])
            sf.write(tmp_path / f"chunks/{c.key}.flac", wav, RATE)
            m.mark_done(c.key, f"chunks/{c.key}.flac", len(wav), len(wav) / RATE, lo.measure_loudness(wav, RATE), "s")
        rows = m.rows()
    pauses = Pauses(sentence=0.3, paragraph=0.6, heading=1.0, chapter_start=0.5, chapter_end=1.5)
    result = render(plan, rows, tmp_path, FORMATS["wav"], RATE, target_lufs=-20.0, pauses=pauses)
    book, _ = sf.read(tmp_path / "book.wav")
    speech = len(trim_chunk(np.concatenate([np.zeros(2400), tone(3.0, 0.05), np.zeros(4800)]), RATE))
    expected = 2 * (0.5 + 0.3 + 1.5) * RATE + 4 * speech
    assert len(book) == pytest.approx(expected, abs=4)
    assert [c.start for c in result.chapters] == pytest.approx([0.0, len(book) / 2 / RATE], abs=1e-3)
    assert lo.measure_loudness(book, RATE) == pytest.approx(-20.0, abs=0.5)  # pauses gated out
    assert (tmp_path / "chapters.txt").read_text().splitlines()[1].endswith(" Second")


# -- the work loop -------------------------------------------------------------------------------

def test_duration_check():
    check = DurationCheck()
    text = "This sentence has about sixty characters in it, give or take."
    assert check.problem(text, 3.5) is None
    assert check.problem(text, 0.5).startswith("too short")
    assert check.problem(text, 60).startswith("too long")
    assert DurationCheck(0, 0).problem(text, 1000) is None


def test_batches_group_similar_lengths_in_reading_order():
    chunks = [chunk("x" * n, 0, i) for i, n in enumerate([50, 10, 40, 20, 30, 60, 5])]
    batches = make_batches(chunks, 2)
    assert sorted(c.position for b in batches for c in b) == list(range(7))
    assert [[len(c.text) for c in b] for b in batches] == [[5, 10], [20, 30], [40, 50], [60]]


def test_batch_seeds_follow_keys_takes_and_attempts():
    batch = [chunk("A."), chunk("B.")]
    seed = batch_seed(1, batch, {})
    assert seed == batch_seed(1, batch, {}) and 0 <= seed < 2 ** 63
    assert len({seed, batch_seed(2, batch, {}), batch_seed(1, batch, {batch[0].key: 1}),
                batch_seed(1, batch, {}, attempt=1), batch_seed(1, batch[::-1], {})}) == 5


class FakeTTS:
    """Says every text as one second of tone, except the scripted ones."""

    sample_rate = RATE

    def __init__(self, script):
        self.script, self.calls, self.said = script, [], set()

    def make_generator(self, options):
        return options.seed

    def synthesize_chunks(self, texts, cond, options, generator=None, progress=None):
        self.calls.append((list(texts), generator))
        for text in texts:
            action = self.script.get(text)
            if action == "raise" or (action == "raise-in-batch" and len(texts) > 1):
                raise RuntimeError(f"cannot say {text}")
        out = []
        for text in texts:
            first_time = text not in self.said
            self.said.add(text)
            out.append(tone(0.05) if self.script.get(text) == "short-once" and first_time else tone(1.0))
        return out


def test_runner_isolates_failures_and_retries_implausible_chunks(tmp_path):
    from tts.sampling.options import Options

    texts = ["Fine one.", "Broken.", "Short once then fine.", "Fine two.", "Only alone."]
    chunks = [chunk(t, 0, i) for i, t in enumerate(texts)]
    fake = FakeTTS({"Broken.": "raise", "Short once then fine.": "short-once", "Only alone.": "raise-in-batch"})
    with Manifest(tmp_path / "m.sqlite") as m:
        m.sync(chunks, "s", valid=set())
        runner = Runner(fake, None, Options(text_batch=8), m, tmp_path, "s", book_seed=3,
                        check=DurationCheck(min_seconds_per_char=0.01), retries=1)
        state = runner.run(chunks)
        rows = m.rows()
    assert [f.chunk.text for f in runner.failures] == ["Broken."]
    assert runner.failures[0].reason == "synthesis error: RuntimeError: cannot say Broken."
    assert {rows[c.key].status for c in chunks if c.text != "Broken."} == {DONE}
    assert state.chunks_done == 4 and state.chunks_failed == 1 and state.audio_seconds == pytest.approx(4.0)
    assert state.chars_done == state.chars_total
    seeds = [g for call, g in fake.calls if call == ["Short once then fine."]]
    assert len(seeds) == 2 and seeds[0] != seeds[1]  # the retry is a new take
