"""Splitting long text into chunks that fit a model's text limit.

Breaks are chosen from the best kind available: paragraphs (blank lines), then sentence ends, then
clause punctuation (``, ; :``, dashes), then spaces; a word is never cut. Short sentences are merged
while the chunk stays within ``desired_len``; no chunk is longer than ``max_len`` unless it is a
single word that is longer by itself. Lengths are characters by default; pass ``measure`` (e.g. a
token count) to measure in other units.

:class:`TextSplitter` is the one splitter that speech (``tts speak``) and narration (``tts narrate``)
use: it measures in a model's own text tokens, so that every chunk fits that model.

Sentence ends are ``.``, ``!``, ``?`` (and runs of them, "..."), followed by whitespace and a word that
does not start in lower case. A closing quote or bracket right after the mark belongs to the
sentence. Not ends: titles and similar abbreviations ("Dr.", "Mr.", "e.g.", "vs."), initials
("J. R. R. Tolkien"), dotted letters ("U.S.", "p.m."), "No." before a number, decimals ("3.5"),
and marks inside double quotes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .normalize import has_speech, normalize_text

__all__ = ["Chunk", "TextSplitter", "split_chunks", "split_text", "split_sentences"]

Measure = Callable[[str], int]
DESIRED_FRACTION = 0.6  # chunks merge sentences up to about this share of the token limit

_CLOSERS = "\"'\u201d\u2019)]"  # closing quotes and brackets that stay with the sentence
_CLOSER = f"[{re.escape(_CLOSERS)}]"
_WHITESPACE = re.compile(r"\s+")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_END_MARKS = re.compile(rf"[.!?\u2026]+{_CLOSER}*(?=\s|$)")
_CLAUSE_BREAK = re.compile(
    rf"[,;:.!?\u2026]+{_CLOSER}*(?=\s)"  # after clause or sentence punctuation
    r"|(?<=\s)(?:--?|\u2013|\u2014)(?=\s)"  # a spaced dash
    r"|\u2014(?=\w)"  # an unspaced em dash before a word
)
_DOTTED_LETTERS = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")

# A word before a lone "." that keeps the sentence going.
_NEVER_ENDS = frozenset(
    "mr mrs ms mx dr prof st mt ft gen capt lt sgt col maj rev hon gov sen rep pres fr messrs "
    "e.g i.e vs cf approx fig figs vol ch pp ed eds dept "
    "jan feb mar apr jun jul aug sep sept oct nov dec".split()
)


@dataclass(frozen=True)
class Chunk:
    """A piece of text to synthesise in one go; ``paragraph_end`` marks the last of a paragraph."""

    text: str
    paragraph_end: bool


def _is_sentence_end(text: str, m: re.Match) -> bool:
    """Whether the marks matched in ``text`` (whitespace collapsed) end a sentence."""
    following = text[m.end() + 1:m.end() + 2]  # first character of the next word
    if not following:
        return True
    if following.islower():
        return False
    if m.group(0).rstrip(_CLOSERS) != ".":
        return True
    word = text[text.rfind(" ", 0, m.start()) + 1:m.start()].lstrip(_CLOSERS + "(\u201c\u2018[")
    if not word:
        return True
    if word.lower() in _NEVER_ENDS:
        return False
    if len(word) == 1 and word.isupper():  # an initial
        return False
    if _DOTTED_LETTERS.fullmatch(word):  # "U.S", "p.m": merging two sentences costs less than a wrong cut
        return False
    return not (word.lower() == "no" and following.isdigit())


def _inside_quotes(text: str, end: int) -> bool:
    if text.count('"', 0, end) % 2:
        return True
    return text.count("\u201c", 0, end) > text.count("\u201d", 0, end)


def split_sentences(text: str) -> list[str]:
    """Split text (whitespace is collapsed) into sentences."""
    text = _WHITESPACE.sub(" ", text).strip()
    sentences, start = [], 0
    for m in _END_MARKS.finditer(text):
        if _is_sentence_end(text, m) and not _inside_quotes(text, m.end()):
            sentences.append(text[start:m.end()].strip())
            start = m.end()
    sentences.append(text[start:].strip())
    return [s for s in sentences if s]


def _cut_after(text: str, pattern: re.Pattern) -> list[str]:
    pieces, start = [], 0
    for m in pattern.finditer(text):
        pieces.append(text[start:m.end()].strip())
        start = m.end()
    pieces.append(text[start:].strip())
    return [p for p in pieces if p]


def _pack(pieces: list[str], desired: int, measure: Measure) -> list[str]:
    """Join consecutive pieces with spaces while the result stays within ``desired``."""
    chunks, current = [], ""
    for piece in pieces:
        candidate = f"{current} {piece}" if current else piece
        if current and measure(candidate) > desired:
            chunks.append(current)
            current = piece
        else:
            current = candidate
    if current:
        chunks.append(current)
    return chunks


def _fit(text: str, max_len: int, desired: int, measure: Measure, level: int = 0) -> list[str]:
    """Pieces of ``text`` within ``max_len``: split at clauses (level 0), then words (level 1)."""
    if measure(text) <= max_len or level > 1:
        return [text]
    parts = _cut_after(text, _CLAUSE_BREAK) if level == 0 else text.split(" ")
    if len(parts) == 1:
        return _fit(text, max_len, desired, measure, level + 1)
    pieces = [p for part in parts for p in _fit(part, max_len, desired, measure, level + 1)]
    return _pack(pieces, desired, measure)


def split_chunks(
    text: str,
    max_len: int,
    desired_len: int | None = None,
    measure: Measure = len,
) -> list[Chunk]:
    """Split ``text`` into chunks of at most ``max_len`` (in units of ``measure``), merging
    sentences up to ``desired_len`` (default ``max_len``). Chunks never cross a paragraph and
    are never empty; whitespace inside a chunk is collapsed to single spaces."""
    desired = max_len if desired_len is None else desired_len
    if max_len < 1 or not 1 <= desired <= max_len:
        raise ValueError(f"need 1 <= desired_len ({desired}) <= max_len ({max_len})")
    chunks = []
    for paragraph in _PARAGRAPH_BREAK.split(text):
        pieces = [
            piece
            for sentence in split_sentences(paragraph)
            for piece in _fit(sentence, max_len, desired, measure)
        ]
        packed = _pack(pieces, desired, measure)
        chunks += [Chunk(t, paragraph_end=i == len(packed) - 1) for i, t in enumerate(packed)]
    return chunks


def split_text(
    text: str,
    max_len: int,
    desired_len: int | None = None,
    measure: Measure = len,
) -> list[str]:
    """:func:`split_chunks` without the paragraph flags."""
    return [chunk.text for chunk in split_chunks(text, max_len, desired_len, measure)]


@dataclass(frozen=True)
class TextSplitter:
    """Text -> normalised chunks that each fit one model's text input, measured in its own tokens.

    ``encode`` is the model's tokenizer (normalised text -> ids) and ``max_tokens`` the most ids one
    chunk may have; sentences are merged up to ``desired_fraction`` of that. Pieces with nothing to
    pronounce (stray punctuation) are dropped.
    """

    encode: Callable[[str], list[int]]
    max_tokens: int
    desired_fraction: float = DESIRED_FRACTION

    def measure(self, text: str) -> int:
        """Tokens of `text` once normalised."""
        return len(self.encode(normalize_text(text)))

    def split(self, text: str) -> list[Chunk]:
        """Normalised chunks of `text` with something to say, in order (none for text without any)."""
        limit = self.max_tokens
        chunks = split_chunks(text, max_len=limit, desired_len=max(1, int(limit * self.desired_fraction)),
                              measure=self.measure)
        return [Chunk(normalize_text(c.text), c.paragraph_end) for c in chunks if has_speech(c.text)]
