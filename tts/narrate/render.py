"""Chunk audio -> chapter files, the book file and the chapter list, in the chosen format.

Each chunk's leading and trailing silence is trimmed, then chunks are joined with fixed pauses (a
sentence, a paragraph, after a heading, around chapters), so that silences are the same throughout
the book whatever the model left at a chunk's ends. One gain brings the whole book to the target
loudness (see :mod:`.loudness`); a peak limiter keeps it from clipping. Everything is streamed
chunk by chunk: memory does not grow with the length of the book.

Layout of the output directory::

    book.<ext>                    the whole book (m4b: with chapter markers)
    chapters/NN-title.<ext>       one file per chapter (m4a when the book is m4b)
    chapters.txt, chapters.json   chapter titles with their start times in the book file

A chapter file is written when all its chunks are done; the book file and the chapter lists only
when every chunk of the book is.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import audio, silence
from ..errors import TTSError
from ..fileio import write_text_atomic
from . import loudness as lo
from .plan import CHAPTER, HEADING, PARAGRAPH, SENTENCE, Plan
from .store import DONE, Row
from .writers import FORMATS, LOSSLESS, Format, encode_aac, open_sink

BOOK_STEM = "book"
CHAPTERS_DIR = "chapters"
TRIM_MARGIN_SECONDS = 0.04  # kept around the speech so that onsets and decays are not cut
_OUR_CHAPTER_FILE = re.compile(r"\d+-.*\.(wav|flac|mp3|m4a)")  # fullmatch


@dataclass(frozen=True)
class Pauses:
    """Seconds of silence after each kind of break."""

    sentence: float = 0.25
    paragraph: float = 0.6
    heading: float = 1.0
    chapter_start: float = 0.5  # at the start of every chapter file
    chapter_end: float = 1.5  # at its end; between chapters of the book: chapter_end + chapter_start

    @classmethod
    def from_options(cls, options) -> Pauses:
        return cls(sentence=options.sentence_pause, paragraph=options.paragraph_pause)

    def after(self, kind: str) -> float:
        return {SENTENCE: self.sentence, PARAGRAPH: self.paragraph, HEADING: self.heading,
                CHAPTER: self.chapter_end}[kind]


@dataclass(frozen=True)
class ChapterFile:
    index: int  # 1-based
    title: str
    path: Path
    seconds: float
    start: float | None = None  # in the book file, when one was written


@dataclass
class Rendered:
    chapters: list[ChapterFile] = field(default_factory=list)
    book: Path | None = None
    book_seconds: float = 0.0
    loudness: float | None = None  # of the unprocessed chunks
    gain_db: float = 0.0


def trim_chunk(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """A chunk's audio with the silence at its ends cut to TRIM_MARGIN_SECONDS (:func:`tts.silence.trim_silence`);
    a chunk without any speech stays as it is."""
    trimmed = silence.trim_silence(wav, sample_rate, TRIM_MARGIN_SECONDS)
    return trimmed if trimmed.size else wav


def slug(title: str, limit: int = 60) -> str:
    from unidecode import unidecode

    words = re.findall(r"[a-z0-9]+", unidecode(title).lower())
    return "-".join(words)[:limit].rstrip("-") or "chapter"


def timestamp(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}.{rest % 1000:03d}"


def book_loudness(plan: Plan, rows: dict[str, Row]) -> float | None:
    return lo.combined_loudness((rows[c.key].loudness, rows[c.key].seconds or 0.0)
                                for c in plan.chunks if c.key in rows and rows[c.key].status == DONE)


class _Joiner:
    """Reads, trims, levels and joins chunk audio at one sample rate."""

    def __init__(self, outdir: Path, sample_rate: int, gain: float, pauses: Pauses):
        self.outdir, self.sample_rate, self.gain, self.pauses = outdir, sample_rate, gain, pauses

    def silence(self, seconds: float) -> np.ndarray:
        return np.zeros(round(seconds * self.sample_rate), dtype=np.float32)

    def speech(self, row: Row) -> np.ndarray:
        import soundfile as sf

        path = self.outdir / row.audio
        try:
            wav, rate = sf.read(str(path), dtype="float32", always_2d=True)
        except Exception as exc:
            raise TTSError(f"cannot read chunk audio {path}: {str(exc).splitlines()[0] if str(exc) else exc}") \
                from None
        wav = audio.resample(np.ascontiguousarray(wav[:, 0]), rate, self.sample_rate)
        return lo.limit_peaks(trim_chunk(wav, self.sample_rate) * self.gain, self.sample_rate)


def render(plan: Plan, rows: dict[str, Row], outdir: Path, fmt: Format, sample_rate: int,
           target_lufs: float = lo.DEFAULT_TARGET_LUFS, pauses: Pauses = Pauses()) -> Rendered:
    """Write the complete chapters, and the book when every chapter is complete."""
    outdir = Path(outdir)
    chapters_dir = outdir / CHAPTERS_DIR
    try:
        chapters_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TTSError(f"cannot create {chapters_dir}: {exc.strerror or exc}") from None
    loudness = book_loudness(plan, rows)
    gain = lo.gain_for(loudness, target_lufs)
    result = Rendered(loudness=loudness, gain_db=20 * math.log10(gain))
    joiner = _Joiner(outdir, sample_rate, gain, pauses)
    digits = max(2, len(str(len(plan.chapters))))
    complete = [all(rows.get(c.key) and rows[c.key].status == DONE for c in plan.chapter_chunks(i))
                for i in range(len(plan.chapters))]
    whole_book = all(complete)
    keep = {f"{i + 1:0{digits}d}-{slug(t)}{fmt.chapter_suffix}" for i, t in enumerate(plan.chapters)}

    with tempfile.TemporaryDirectory(prefix=".render-", dir=outdir) as scratch:
        scratch = Path(scratch)
        stream_format = fmt if fmt.soundfile else LOSSLESS  # m4b: ffmpeg encodes a lossless stream
        book_path = outdir / f"{BOOK_STEM}{fmt.book_suffix}"
        book_stream = book_path if fmt.soundfile else scratch / f"book{LOSSLESS.book_suffix}"
        with contextlib.ExitStack() as stack:
            book = stack.enter_context(open_sink(book_stream, sample_rate, stream_format)) if whole_book else None
            for index, title in enumerate(plan.chapters):
                if not complete[index]:
                    continue
                target = chapters_dir / f"{index + 1:0{digits}d}-{slug(title)}{fmt.chapter_suffix}"
                stream = target if fmt.soundfile else scratch / f"chapter{LOSSLESS.chapter_suffix}"
                start = book.seconds if book else None
                with open_sink(stream, sample_rate, stream_format) as chapter:
                    sinks = [chapter, book] if book else [chapter]
                    _emit(sinks, joiner.silence(pauses.chapter_start))
                    for chunk in plan.chapter_chunks(index):
                        _emit(sinks, joiner.speech(rows[chunk.key]))
                        _emit(sinks, joiner.silence(pauses.after(chunk.pause)))
                if fmt.soundfile is None:
                    encode_aac(stream, target, title)
                result.chapters.append(ChapterFile(index + 1, title, target, chapter.seconds, start))
        if book:
            result.book, result.book_seconds = book_path, book.seconds
            if fmt.soundfile is None:
                marks = [(c.title, c.start, c.start + c.seconds) for c in result.chapters]
                encode_aac(book_stream, book_path, plan.title, marks)
    _remove_other_chapter_files(chapters_dir, keep)
    if result.book:
        write_chapter_lists(outdir, plan.title, result, fmt, target_lufs)
    return result


def _emit(sinks, piece: np.ndarray) -> None:
    for sink in sinks:
        sink.write(piece)


def _remove_other_chapter_files(chapters_dir: Path, keep: set[str]) -> None:
    """Chapter files of earlier runs whose chapter is gone or renamed, or of another format."""
    for path in chapters_dir.iterdir():
        if path.is_file() and _OUR_CHAPTER_FILE.fullmatch(path.name) and path.name not in keep:
            path.unlink(missing_ok=True)


def write_chapter_lists(outdir: Path, title: str, result: Rendered, fmt: Format, target_lufs: float) -> None:
    lines = [f"{timestamp(c.start)} {c.title}" for c in result.chapters]
    write_text_atomic(outdir / "chapters.txt", "\n".join(lines) + "\n")
    listing = {
        "title": title,
        "book": result.book.name,
        "format": fmt.name,
        "seconds": round(result.book_seconds, 3),
        "loudness_target_lufs": target_lufs,
        "gain_db": round(result.gain_db, 2),
        "chapters": [{"index": c.index, "title": c.title, "start": round(c.start, 3),
                      "end": round(c.start + c.seconds, 3), "file": str(c.path.relative_to(outdir))}
                     for c in result.chapters],
    }
    write_text_atomic(outdir / "chapters.json", json.dumps(listing, indent=2, ensure_ascii=False) + "\n")


def output_format(name: str) -> Format:
    if name not in FORMATS:
        raise TTSError(f"unknown format {name!r} (use {', '.join(FORMATS)})")
    return FORMATS[name]


def remove_scratch(outdir: Path) -> None:
    """Scratch folders left by a render that was killed."""
    for path in Path(outdir).glob(".render-*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
