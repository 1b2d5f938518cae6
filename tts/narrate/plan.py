"""Book -> the chunks to synthesise, each with a stable key, a label and the pause that follows it.

Keys identify a chunk's content, not its place: ``sha256(occurrence, text)`` where ``text`` is the
normalised chunk text and ``occurrence`` counts earlier chunks of the book with the same text (so
two "Yes." chunks are two takes). Editing a paragraph therefore changes only the keys of that
paragraph's chunks; chunks before and after keep theirs even when the edit changes the number of
chunks, and moving a paragraph keeps its audio. Labels (``3.12``: chapter 3, chunk 12) are for
people: they follow the current text and may shift after an edit.

Chunks are sentence groups made by the model's splitter (:class:`tts.text.split.TextSplitter`, the
one ``tts speak`` uses too), measured in the model's own text tokens, so that every chunk fits the
model; never across a paragraph.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import TTSError
from ..text.split import TextSplitter
from .book import Book

KEY_LENGTH = 16  # hex digits

# What follows a chunk, in increasing length; render.Pauses gives each its seconds.
SENTENCE, PARAGRAPH, HEADING, CHAPTER = "sentence", "paragraph", "heading", "chapter"


@dataclass(frozen=True)
class PlannedChunk:
    key: str
    chapter: int  # 0-based index in Plan.chapters
    position: int  # 0-based index within the chapter
    text: str  # normalised: exactly what is synthesised
    pause: str  # SENTENCE, PARAGRAPH, HEADING or CHAPTER: the silence after it

    @property
    def label(self) -> str:
        return f"{self.chapter + 1}.{self.position + 1}"


@dataclass(frozen=True)
class Plan:
    title: str
    chapters: tuple[str, ...]  # titles of the chapters that have something to say
    chunks: tuple[PlannedChunk, ...]

    def chapter_chunks(self, chapter: int) -> list[PlannedChunk]:
        return [c for c in self.chunks if c.chapter == chapter]

    def select(self, ids: Iterable[str]) -> list[str]:
        """Keys named by ids: ``3`` (chapter 3), ``3.12`` (a chunk), ``3.2-3.7`` or ``2-4`` (ranges) or a key."""
        index = {c.label: i for i, c in enumerate(self.chunks)}
        keys = {c.key for c in self.chunks}
        chosen: dict[str, None] = {}
        for token in (t for item in ids for t in re.split(r"[,\s]+", item) if t):
            chosen.update(dict.fromkeys(self._resolve(token, index, keys)))
        return list(chosen)

    def _resolve(self, token: str, index: dict[str, int], keys: set[str]) -> list[str]:
        if token.lower() in keys:
            return [token.lower()]
        first, _, last = token.partition("-")
        last = last or first
        if "." not in first and "." not in last and first.isdigit() and last.isdigit():
            numbers = range(int(first), int(last) + 1)
            if numbers and all(1 <= n <= len(self.chapters) for n in (numbers[0], numbers[-1])):
                return [c.key for c in self.chunks if c.chapter + 1 in numbers]
        elif first in index and last in index and index[first] <= index[last]:
            return [c.key for c in self.chunks[index[first]:index[last] + 1]]
        raise TTSError(f"unknown chunk {token!r}: use CHAPTER (e.g. 3), CHAPTER.CHUNK (3.12), a range (3.2-3.7) "
                       f"or a chunk key, as listed in chunks.tsv; the book has {len(self.chapters)} chapters")


def chunk_key(text: str, occurrence: int) -> str:
    return hashlib.sha256(f"{occurrence}\n{text}".encode()).hexdigest()[:KEY_LENGTH]


def make_plan(book: Book, splitter: TextSplitter) -> Plan:
    """Every chapter's chunks in reading order, cut by the model's `splitter`; chapters with nothing to
    say are left out."""
    seen: Counter[str] = Counter()
    titles: list[str] = []
    chunks: list[PlannedChunk] = []
    for chapter in book.chapters:
        texts_and_pauses = []
        for paragraph in chapter.paragraphs:
            texts = [chunk.text for chunk in splitter.split(paragraph.text)]
            end = HEADING if paragraph.heading else PARAGRAPH
            texts_and_pauses += [(t, end if i == len(texts) - 1 else SENTENCE) for i, t in enumerate(texts)]
        if not texts_and_pauses:
            continue
        for position, (text, pause) in enumerate(texts_and_pauses):
            last = position == len(texts_and_pauses) - 1
            chunks.append(PlannedChunk(chunk_key(text, seen[text]), len(titles), position, text,
                                       CHAPTER if last else pause))
            seen[text] += 1
        titles.append(chapter.title)
    if not chunks:
        raise TTSError(f"{book.title!r} has no text to narrate (nothing pronounceable)")
    return Plan(book.title, tuple(titles), tuple(chunks))
