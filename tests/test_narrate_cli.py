"""`tts narrate` end to end on the tiny random model: formats, resume after SIGKILL, --regenerate,
edits, failure isolation, a full disk and bad input.

The tiny model never stops on its own, so every chunk lasts --max-tokens codes (16 codes: 0.74 s);
the duration check's lower bound is switched off except where a test wants failures.
"""

import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from cli import main
from tests.books import TITLES, WRITERS, long_txt
from tests.test_cli import assert_one_line_error
from tests.tiny import make_voice

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--preset", "ultra_fast", "--candidates", "1", "--diffusion-steps", "2", "--max-tokens", "16",
        "--min-seconds-per-char", "0", "--seed", "7"]
CHUNK_SECONDS = 16 * 1024 / 22050


@pytest.fixture
def voices(tmp_path, monkeypatch):
    folder = tmp_path / "user-voices"
    make_voice(folder, "alice")
    monkeypatch.setenv("TTS_VOICES_DIR", str(folder))
    return folder


def narrate(model_dir, *args):
    args = ["narrate", *map(str, args), "--voice", "alice", "--model-dir", str(model_dir)]
    return CliRunner().invoke(main, args)


def manifest_rows(outdir: Path) -> dict[str, dict]:
    with sqlite3.connect(outdir / "manifest.sqlite") as db:
        db.row_factory = sqlite3.Row
        return {r["key"]: dict(r) for r in db.execute("SELECT * FROM chunks")}


def file_stamps(outdir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (outdir / "chunks").iterdir()}


def leftovers(outdir: Path) -> list[Path]:
    return [p for p in outdir.rglob("*") if p.name.startswith(".") and p.name != ".narrate.lock"]


def assert_complete(outdir: Path, chunks: int) -> dict[str, dict]:
    """Every chunk once, done, with an intact audio file; nothing else in chunks/; no temporary files."""
    rows = manifest_rows(outdir)
    assert len(rows) == chunks
    assert {r["status"] for r in rows.values()} == {"done"}
    for row in rows.values():
        info = sf.info(outdir / row["audio"])
        assert info.frames == row["samples"] > 0
    assert sorted(p.name for p in (outdir / "chunks").iterdir()) == sorted(Path(r["audio"]).name for r in rows.values())
    assert leftovers(outdir) == []
    return rows


@pytest.mark.parametrize("kind", ["txt", "md", "epub"])
def test_three_chapter_book_in_each_format(kind, tiny_model_dir, voices, tmp_path):
    book = WRITERS[kind](tmp_path / f"book.{kind}")
    out = tmp_path / "out"
    result = narrate(tiny_model_dir, book, "-o", out, "--format", "flac", *FAST)
    assert result.exit_code == 0, result.output
    listing = json.loads((out / "chapters.json").read_text())
    titles = TITLES[kind]
    assert [c["title"] for c in listing["chapters"]] == titles
    chapter_files = sorted((out / "chapters").iterdir())
    assert len(chapter_files) == len(titles)
    book_audio, rate = sf.read(out / "book.flac")
    assert rate == 24000 and abs(len(book_audio) / rate - listing["seconds"]) < 0.01
    # chapter files back to back make the book; chapter starts add up
    lengths = [sf.info(p).frames for p in chapter_files]
    assert sum(lengths) == len(book_audio)
    assert [c["start"] for c in listing["chapters"]] == pytest.approx(
        [sum(lengths[:i]) / rate for i in range(len(lengths))], abs=1e-3)
    assert (out / "chapters.txt").read_text().splitlines()[1].endswith(titles[1])
    assert abs(book_audio).max() <= 10 ** (-1 / 20) + 1e-4  # the limiter's ceiling
    rows = assert_complete(out, chunks={"txt": 10, "md": 9, "epub": 11}[kind])  # title pages: 1 or 2 chunks
    assert all(r["seconds"] == pytest.approx(CHUNK_SECONDS, abs=0.01) for r in rows.values())
    # a rerun makes nothing
    before = file_stamps(out)
    again = narrate(tiny_model_dir, book, "-o", out, "--format", "flac", *FAST)
    assert again.exit_code == 0, again.output
    assert "were already done" in again.output
    assert file_stamps(out) == before


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_other_formats(fmt, tiny_model_dir, voices, tmp_path):
    out = tmp_path / "out"
    result = narrate(tiny_model_dir, WRITERS["md"](tmp_path / "book.md"), "-o", out, "--format", fmt, *FAST)
    assert result.exit_code == 0, result.output
    info = sf.info(out / f"book.{fmt}")
    assert info.samplerate == 24000 and info.duration > 3 * 3 * CHUNK_SECONDS
    assert len(list((out / "chapters").glob(f"*.{fmt}"))) == 3


def test_m4b_has_chapter_markers(tiny_model_dir, voices, tmp_path):
    import shutil

    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.skip("ffmpeg is not installed")
    out = tmp_path / "out"
    result = narrate(tiny_model_dir, WRITERS["md"](tmp_path / "book.md"), "-o", out, "--format", "m4b", *FAST)
    assert result.exit_code == 0, result.output
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_chapters", "-of", "json", str(out / "book.m4b")],
                           capture_output=True, text=True, check=True)
    chapters = json.loads(probe.stdout)["chapters"]
    assert [c["tags"]["title"] for c in chapters] == TITLES["md"]
    listing = json.loads((out / "chapters.json").read_text())
    assert [float(c["start_time"]) for c in chapters] == pytest.approx([c["start"] for c in listing["chapters"]],
                                                                        abs=0.05)
    assert len(list((out / "chapters").glob("*.m4a"))) == 3


def test_m4b_without_ffmpeg_is_refused_before_any_work(tiny_model_dir, voices, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    out = tmp_path / "out"
    result = narrate(tiny_model_dir, WRITERS["md"](tmp_path / "book.md"), "-o", out, "--format", "m4b", *FAST)
    assert_one_line_error(result, "needs ffmpeg", "--format flac, mp3 or wav")
    assert not out.exists()


def _run_in_subprocess(model_dir, book, out, voices, extra=()):
    env = {**os.environ, "TTS_VOICES_DIR": str(voices), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "cli", "narrate", str(book), "--voice", "alice", "--model-dir", str(model_dir),
               "-o", str(out), "--format", "flac", "--text-batch", "1", *FAST, *extra]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _done_count(out: Path) -> int:
    try:
        with sqlite3.connect(f"file:{out / 'manifest.sqlite'}?mode=ro", uri=True, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM chunks WHERE status = 'done'").fetchone()[0]
    except sqlite3.Error:
        return 0


def _kill_when_done(process: subprocess.Popen, out: Path, chunks: int, seconds: float = 120) -> int:
    """SIGKILL a narration once `chunks` chunks of `out` are done; the chunks done when it died."""
    deadline = time.monotonic() + seconds
    while _done_count(out) < chunks and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stdout.close()
    return _done_count(out)


@pytest.mark.slow
def test_killed_run_resumes_without_losing_or_repeating_chunks(tiny_model_dir, voices, tmp_path):
    book = long_txt(tmp_path / "book.txt", chapters=3, paragraphs=5)  # 18 chunks
    out = tmp_path / "out"
    slow = ["--diffusion-steps", "10", "--max-tokens", "32"]  # about 0.1 s a chunk: time to kill it mid-way
    process = _run_in_subprocess(tiny_model_dir, book, out, voices, slow)
    done_before = _kill_when_done(process, out, 3)
    assert 3 <= done_before < 18, "the run ended before it could be killed"
    assert not (out / "book.flac").exists()
    kept = {key: row for key, row in manifest_rows(out).items() if row["status"] == "done"}
    stamps = {Path(row["audio"]).name: (out / row["audio"]).stat().st_mtime_ns for row in kept.values()}

    resumed = _run_in_subprocess(tiny_model_dir, book, out, voices, slow)
    output = resumed.communicate(timeout=120)[0].decode()
    assert resumed.returncode == 0, output
    assert f"made {18 - done_before} chunks" in output
    rows = assert_complete(out, chunks=18)
    assert all(rows[key]["take"] == 0 for key in rows)
    assert {name: (out / "chunks" / name).stat().st_mtime_ns for name in stamps} == stamps  # not made again
    assert sf.info(out / "book.flac").frames > 18 * 32 * 1024 / 22050 * 24000


def test_same_book_and_seed_give_the_same_audio(tiny_model_dir, voices, tmp_path):
    book = WRITERS["md"](tmp_path / "book.md")
    for name in ("a", "b"):
        assert narrate(tiny_model_dir, book, "-o", tmp_path / name, "--format", "flac", *FAST).exit_code == 0
    rows = manifest_rows(tmp_path / "a")
    for row in rows.values():
        assert np.array_equal(sf.read(tmp_path / "a" / row["audio"])[0], sf.read(tmp_path / "b" / row["audio"])[0])


def test_settings_that_shape_the_audio_remake_the_book_others_do_not(tiny_model_dir, voices, tmp_path, caplog):
    book = WRITERS["md"](tmp_path / "book.md")
    out = tmp_path / "out"
    assert narrate(tiny_model_dir, book, "-o", out, "--format", "flac", *FAST).exit_code == 0
    result = narrate(tiny_model_dir, book, "-o", out, "--format", "wav", "--text-batch", "2", *FAST)
    assert result.exit_code == 0 and "all 9 chunks were already done" in result.output, result.output
    result = narrate(tiny_model_dir, book, "-o", out, "--format", "flac", *FAST, "--diffusion-steps", "3")
    assert result.exit_code == 0, result.output
    assert "9 chunks were made with other settings (diffusion_steps 2 -> 3)" in caplog.text  # a warning up front
    assert "made 9 chunks" in result.output
    assert_complete(out, chunks=9)


def test_regenerate_remakes_only_the_chosen_chunks(tiny_model_dir, voices, tmp_path):
    book = long_txt(tmp_path / "book.txt", chapters=2, paragraphs=3)
    out = tmp_path / "out"
    assert narrate(tiny_model_dir, book, "-o", out, "--format", "flac", *FAST).exit_code == 0
    rows = manifest_rows(out)
    by_label = {f"{r['chapter'] + 1}.{r['position'] + 1}": r for r in rows.values()}
    chosen = by_label["2.3"]
    before = file_stamps(out)
    old_audio = sf.read(out / chosen["audio"])[0]

    result = narrate(tiny_model_dir, book, "-o", out, "--format", "flac", "--regenerate", "2.3", *FAST)
    assert result.exit_code == 0, result.output
    assert "made 1 chunks" in result.output
    after = file_stamps(out)
    changed = {name for name in before if after[name] != before[name]}
    assert changed == {Path(chosen["audio"]).name}
    assert manifest_rows(out)[chosen["key"]]["take"] == 1
    assert (sf.read(out / chosen["audio"])[0] != old_audio).any()  # a new take, not the same audio
    assert_complete(out, chunks=8)


def test_regenerate_with_an_unknown_id_changes_nothing(tiny_model_dir, voices, tmp_path):
    book = long_txt(tmp_path / "book.txt", chapters=2, paragraphs=2)
    out = tmp_path / "out"
    assert narrate(tiny_model_dir, book, "-o", out, "--format", "flac", *FAST).exit_code == 0
    before = (file_stamps(out), manifest_rows(out))
    result = narrate(tiny_model_dir, book, "-o", out, "--format", "flac", "--regenerate", "7.1", *FAST)
    assert_one_line_error(result, "unknown chunk '7.1'")
    assert (file_stamps(out), manifest_rows(out)) == before


def test_edited_paragraph_resynthesises_only_its_chunks(tiny_model_dir, voices, tmp_path):
    out = tmp_path / "out"
    book = long_txt(tmp_path / "book.txt", chapters=2, paragraphs=4)
    assert narrate(tiny_model_dir, book, "-o", out, "--format", "flac", *FAST).exit_code == 0
    before = manifest_rows(out)
    stamps = file_stamps(out)

    long_txt(book, chapters=2, paragraphs=4, edit=(1, 2))
    result = narrate(tiny_model_dir, book, "-o", out, "--format", "flac", *FAST)
    assert result.exit_code == 0, result.output
    assert "made 1 chunks" in result.output
    after = assert_complete(out, chunks=10)
    (new_key,) = set(after) - set(before)
    (old_key,) = set(before) - set(after)
    assert "rewritten" in after[new_key]["text"] and (after[new_key]["chapter"], after[new_key]["position"]) == (0, 2)
    assert not (out / before[old_key]["audio"]).exists()  # the old take is gone with its text
    assert {n: t for n, t in file_stamps(out).items() if n in stamps} == \
        {n: t for n, t in stamps.items() if n != Path(before[old_key]["audio"]).name}


def test_implausible_chunks_fail_and_the_run_goes_on(tiny_model_dir, voices, tmp_path):
    """16 codes (0.74 s) is far too short for a long sentence: those chunks fail, the short ones pass."""
    path = tmp_path / "book.txt"
    path.write_text("Chapter 1\n\nYes.\n\nThis sentence is much too long to be said in three quarters of a second.\n\n"
                    "Chapter 2\n\nNo.\n")
    out = tmp_path / "out"
    strict = [a for a in FAST if a not in ("--min-seconds-per-char", "0")]
    result = narrate(tiny_model_dir, path, "-o", out, "--format", "flac", "--retries", "1", *strict)
    assert result.exit_code == 3, result.output
    assert "failed 1.3" in result.output and "too short" in result.output
    assert result.output.strip().splitlines()[-1].startswith("error: 1 of 5 chunks failed")
    rows = manifest_rows(out)
    failed = [r for r in rows.values() if r["status"] == "failed"]
    assert len(failed) == 1 and "too short" in failed[0]["error"]
    assert not (out / "book.flac").exists()  # the book waits for every chunk
    assert [p.name for p in (out / "chapters").iterdir()] == ["02-chapter-2.flac"]  # complete chapters are written
    assert "failed" in (out / "chunks.tsv").read_text()

    result = narrate(tiny_model_dir, path, "-o", out, "--format", "flac", *FAST)  # bounds relaxed: it passes
    assert result.exit_code == 0, result.output
    assert "made 1 chunks" in result.output
    assert_complete(out, chunks=5)
    assert (out / "book.flac").exists()


def test_a_chunk_that_cannot_be_synthesised_is_isolated(tiny_model_dir, voices, tmp_path, monkeypatch):
    from tts.pipeline import TextToSpeech

    real = TextToSpeech.synthesize_chunks

    def fragile(self, texts, *args, **kwargs):
        if any("lamp" in t for t in texts):
            raise RuntimeError("the model choked")
        return real(self, texts, *args, **kwargs)

    monkeypatch.setattr(TextToSpeech, "synthesize_chunks", fragile)
    out = tmp_path / "out"
    result = narrate(tiny_model_dir, WRITERS["md"](tmp_path / "book.md"), "-o", out, "--format", "flac", *FAST)
    assert result.exit_code == 3, result.output
    rows = manifest_rows(out)
    failed = [r for r in rows.values() if r["status"] == "failed"]
    assert [r["text"][:20] for r in failed] == ["Martha lit the lamp "]
    assert failed[0]["error"] == "synthesis error: RuntimeError: the model choked"
    assert sum(r["status"] == "done" for r in rows.values()) == 8  # its batch-mates were made one by one


def test_disk_full_keeps_what_was_made(tiny_model_dir, voices, tmp_path, monkeypatch):
    import soundfile

    real_write, calls = soundfile.write, []

    def filling_up(file, *args, **kwargs):
        calls.append(file)
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(file, *args, **kwargs)

    monkeypatch.setattr(soundfile, "write", filling_up)
    book = long_txt(tmp_path / "book.txt", chapters=2, paragraphs=3)
    out = tmp_path / "out"
    result = narrate(tiny_model_dir, book, "-o", out, "--format", "flac", *FAST)
    assert_one_line_error(result, "cannot write", "No space left on device")
    rows = manifest_rows(out)
    done = {k: r for k, r in rows.items() if r["status"] == "done"}
    assert len(done) == 3 and all(sf.info(out / r["audio"]).frames == r["samples"] for r in done.values())
    assert leftovers(out) == []
    stamps = file_stamps(out)

    monkeypatch.setattr(soundfile, "write", real_write)  # space was freed
    result = narrate(tiny_model_dir, book, "-o", out, "--format", "flac", *FAST)
    assert result.exit_code == 0, result.output
    assert "made 5 chunks" in result.output
    assert {n: t for n, t in file_stamps(out).items() if n in stamps} == stamps
    assert_complete(out, chunks=8)


def test_another_book_in_the_same_directory_is_refused(tiny_model_dir, voices, tmp_path):
    out = tmp_path / "out"
    assert narrate(tiny_model_dir, WRITERS["md"](tmp_path / "book.md"), "-o", out, "--format", "flac",
                   *FAST).exit_code == 0
    before = (file_stamps(out), manifest_rows(out))
    other = long_txt(tmp_path / "other.txt")
    result = narrate(tiny_model_dir, other, "-o", out, "--format", "flac", *FAST)
    assert_one_line_error(result, "holds the narration of 'The Lighthouse Keeper'")
    assert (file_stamps(out), manifest_rows(out)) == before


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "pdf", "drm", "bad_epub"])
def test_bad_input_is_one_line_and_writes_nothing(case, tiny_model_dir, voices, tmp_path):
    path = {"missing": tmp_path / "nope.txt", "directory": tmp_path, "empty": tmp_path / "empty.md",
            "pdf": tmp_path / "book.pdf", "drm": tmp_path / "drm.epub", "bad_epub": tmp_path / "bad.epub"}[case]
    fragment = {"missing": "no such file", "directory": "is a directory", "empty": "is empty",
                "pdf": "unsupported input format '.pdf'", "drm": "DRM-protected", "bad_epub": "not a valid EPUB"}[case]
    if case == "empty":
        path.write_text("")
    elif case == "pdf":
        path.write_bytes(b"%PDF-1.4 ...")
    elif case == "bad_epub":
        path.write_bytes(b"\x00" * 100)
    elif case == "drm":
        from tests.test_narrate_book import _with_encryption

        (tmp_path / "drm").mkdir()
        _with_encryption(tmp_path / "drm", "http://www.w3.org/2001/04/xmlenc#aes128-cbc", "EPUB/chapter1.xhtml") \
            .rename(path)
    out = tmp_path / "out"
    result = narrate(tiny_model_dir, path, "-o", out, *FAST)
    assert_one_line_error(result, fragment)
    assert not out.exists()


def test_unknown_voice(tiny_model_dir, voices, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["narrate", str(WRITERS["txt"](tmp_path / "b.txt")), "--voice", "nobody",
                                       "-o", str(out), "--model-dir", str(tiny_model_dir)])
    assert_one_line_error(result, "unknown voice 'nobody'", "alice")
    assert not out.exists()


@pytest.mark.parametrize("where", ["file", "read_only", "proc"])
def test_unwritable_output_directory(where, tiny_model_dir, voices, tmp_path):
    if where == "file":
        out = tmp_path / "taken"
        out.write_text("x")
    elif where == "read_only":
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        out = ro / "out"
    else:
        out = Path("/proc/narration")
    result = narrate(tiny_model_dir, WRITERS["txt"](tmp_path / "b.txt"), "-o", out, *FAST)
    assert_one_line_error(result, "output directory")


def test_chunks_fit_the_models_text_limit(voices, tmp_path):
    """Chunks are measured in the model's own tokens: a model that takes 36 text tokens gets chunks of
    at most 36 tokens, even from a paragraph far shorter than a character budget would cut."""
    from tests.tiny import TOKENIZER, make_tiny_model_dir
    from tts.text.bpe import TortoiseBpeTokenizer

    model = make_tiny_model_dir(tmp_path / "model", text_positions=40)  # 40 - start, stop, cond, stop: 36
    book = tmp_path / "book.txt"
    book.write_text("The keeper climbed the stairs, trimmed the wick, wound the clockwork and watched the sea "
                    "until the grey morning came over the hills.\n")
    out = tmp_path / "out"
    result = narrate(model, book, "-o", out, "--format", "wav", *FAST)
    assert result.exit_code == 0, result.output
    rows = manifest_rows(out)
    tokenizer = TortoiseBpeTokenizer.from_file(TOKENIZER)
    assert len(rows) > 1 and all(len(tokenizer.encode(r["text"])) <= 36 for r in rows.values())
    assert {r["status"] for r in rows.values()} == {"done"}


def test_dry_run_lists_chapters_without_model_or_output(tmp_path, monkeypatch):
    import tts.pipeline

    monkeypatch.setattr(tts.pipeline, "DEFAULT_MODEL_DIR", tmp_path / "no-model")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["narrate", str(WRITERS["epub"](tmp_path / "b.epub")), "--voice", "x",
                                       "-o", str(out), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "4 chapters," in result.output and "--model-dir" in result.output
    assert "Chapter 3: Morning" in result.output
    assert not out.exists()


def test_dry_run_counts_the_chunks_of_a_model_without_loading_it(tiny_model_dir, tiny_tortoise_dir, tmp_path,
                                                                  monkeypatch):
    import tts.checkpoints

    def no_weights(*args, **kwargs):
        raise AssertionError("the dry run loaded model weights")

    monkeypatch.setattr(tts.checkpoints, "load_component", no_weights)
    book = WRITERS["epub"](tmp_path / "b.epub")
    for model in (tiny_model_dir, tiny_tortoise_dir):
        out = tmp_path / "out"
        result = CliRunner().invoke(main, ["narrate", str(book), "--voice", "x", "-o", str(out), "--dry-run",
                                           "--model-dir", str(model)])
        assert result.exit_code == 0, result.output
        assert "4 chapters, 11 chunks" in result.output
        assert "Chapter 3: Morning" in result.output
        assert not out.exists()


def test_narrate_without_ray_does_not_import_ray(tiny_model_dir, voices, tmp_path):
    """Issue 14's rule for the single-process path: a plain narrate never imports Ray."""
    book = long_txt(tmp_path / "book.txt", chapters=1, paragraphs=1)
    probe = ("import sys; from click.testing import CliRunner; from cli import main; "
             f"r = CliRunner().invoke(main, {['narrate', str(book), '--voice', 'alice', '--model-dir', str(tiny_model_dir), '-o', str(tmp_path / 'out'), '--format', 'flac', *FAST]!r}); "
             "print('exit', r.exit_code); print('ray' in sys.modules)")
    env = {**os.environ, "TTS_VOICES_DIR": str(voices), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.stdout.split()[-3:] == ["exit", "0", "False"], done.stdout + done.stderr
