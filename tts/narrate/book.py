"""A book as narration sees it (Book, Chapter, Paragraph), chapter headings, and plain-text books.

    book = read_text(Path("novel.txt"))     # Book(title, chapters=[Chapter(title, paragraphs), ...])

In plain text, chapters start at heading lines that stand alone ("Chapter 3", "CHAPTER III.",
"Chapter Three: The Storm", "Part 2", "Prologue"); see :func:`parse_heading`. A chapter's heading
is also its first paragraph, marked ``heading=True``, so that it is read aloud ("Chapter three.").
The other readers (:mod:`.markdown`, :mod:`.epub` with :mod:`.xhtml`) build on this module, and
:mod:`.inputs` picks the reader for each input file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import TTSError
from ..text.normalize import cardinal_words

MAX_HEADING_CHARS = 80  # a longer line is prose, not a heading
MAX_SUBTITLE_WORDS = 10


@dataclass(frozen=True)
class Paragraph:
    text: str  # as written (whitespace collapsed); normalisation for speech comes later
    heading: bool = False


@dataclass(frozen=True)
class Chapter:
    title: str
    paragraphs: tuple[Paragraph, ...]


@dataclass(frozen=True)
class Book:
    title: str
    chapters: tuple[Chapter, ...]


# -- headings in plain text -----------------------------------------------------------------------

_WORD_NUMBERS = (
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred"
).split()
_NUMBER_WORD = "|".join(_WORD_NUMBERS)
_NUMBERED = re.compile(
    rf"^(?P<kind>chapter|book|part)\s+(?P<number>\d+|[ivxlcdm]+|(?:{_NUMBER_WORD})(?:[- ](?:{_NUMBER_WORD}))*)"
    r"(?P<rest>.*)$",
    re.IGNORECASE,
)
_UNNUMBERED = re.compile(
    r"^(?P<kind>prologue|epilogue|preface|foreword|introduction|afterword|interlude)(?P<rest>.*)$", re.IGNORECASE
)
_SEPARATOR = re.compile(r"^\s*[.:\u2013\u2014-]+\s*")  # "Chapter 3. Title", "Chapter 3: Title", "Chapter 3 - Title"
_ROMAN = re.compile(r"^M{0,3}(CM|CD|D?C{0,3})(XC|XL|L?X{0,3})(IX|IV|V?I{0,3})$", re.IGNORECASE)
_ROMAN_VALUES = {"i": 1, "v": 5, "x": 10, "l": 50, "c": 100, "d": 500, "m": 1000}
_SENTENCE_PUNCTUATION = tuple(".!?,;:\"'\u201d\u2019")


@dataclass(frozen=True)
class Heading:
    display: str  # for chapter lists: "Chapter III: The Storm"
    spoken: str  # what is read aloud: "Chapter Three. The Storm."


def roman_value(numeral: str) -> int:
    values = [_ROMAN_VALUES[c] for c in numeral.lower()]
    return sum(-v if i + 1 < len(values) and v < values[i + 1] else v for i, v in enumerate(values))


def _number_in_words(number: str) -> str:
    if number.isdigit():
        return cardinal_words(int(number))
    if _ROMAN.match(number):
        return cardinal_words(roman_value(number))
    return number.lower()


def _title_case(text: str) -> str:
    return text.title() if text.isupper() else text


def _with_stop(text: str) -> str:
    return text if text.endswith(tuple(".!?")) else text + "."


def parse_heading(line: str, subtitle: str = "") -> Heading | None:
    """The heading a line of plain text is, or None. ``subtitle``: a title on the following line."""
    line = line.strip()
    if not line or len(line) > MAX_HEADING_CHARS:
        return None
    match = _NUMBERED.match(line)
    if match:
        number = match["number"]
        if number.isalpha() and number.lower()[0] in "ivxlcdm" and not _ROMAN.match(number) \
                and number.lower() not in _WORD_NUMBERS:
            return None  # "Part mild ..." is not a numeral
        written = number.upper() if _ROMAN.match(number) else number if number.isdigit() else number.title()
        label = f"{match['kind'].capitalize()} {written}"
        spoken_label = f"{match['kind'].capitalize()} {_number_in_words(number).title()}"
    else:
        match = _UNNUMBERED.match(line)
        if not match:
            return None
        label = spoken_label = match["kind"].capitalize()
    rest = match["rest"]
    if rest and not (_SEPARATOR.match(rest) or (rest[0].isspace() and rest.lstrip()[:1].isupper())):
        return None  # "Chapter 3 of the report was dull." is prose
    title = _SEPARATOR.sub("", rest).strip().rstrip(".").strip()
    if len(title.split()) > MAX_SUBTITLE_WORDS:
        return None
    title = _title_case(" ".join(part for part in (title, subtitle.strip()) if part))
    display = f"{label}: {title}" if title else label
    spoken = f"{spoken_label}. {_with_stop(title)}" if title else f"{spoken_label}."
    return Heading(display, spoken)


def spoken_heading(text: str) -> str:
    """How a heading is read: numbered chapter headings in words ("Chapter III" -> "Chapter Three.")."""
    heading = parse_heading(text)
    return heading.spoken if heading else _with_stop(text)


def is_subtitle(line: str) -> bool:
    """A short line without sentence punctuation that can name the chapter whose heading precedes it."""
    line = line.strip()
    words = line.split()
    return (0 < len(words) <= MAX_SUBTITLE_WORDS and len(line) <= MAX_HEADING_CHARS
            and not line.endswith(_SENTENCE_PUNCTUATION) and parse_heading(line) is None)


def collapse(text: str) -> str:
    return " ".join(text.split())


def chapters_from_blocks(blocks: Sequence[str], book_title: str) -> list[Chapter]:
    """Plain-text blocks (paragraphs, lines kept) -> chapters split at heading lines.

    Text before the first heading becomes a chapter named after the book; without any heading the
    whole text is one chapter.
    """
    chapters: list[Chapter] = []
    title, paragraphs = book_title, []

    def close() -> None:
        if paragraphs:
            chapters.append(Chapter(title, tuple(paragraphs)))

    i = 0
    while i < len(blocks):
        lines = [line for line in blocks[i].split("\n") if line.strip()]
        i += 1
        if not lines:
            continue
        heading = parse_heading(lines[0])
        if heading is None:
            paragraphs.append(Paragraph(collapse(" ".join(lines))))
            continue
        body = lines[1:]
        subtitle = ""
        if len(body) == 1 and is_subtitle(body[0]):
            subtitle, body = body[0], []
        elif not body and ":" not in heading.display and i < len(blocks):
            following = [line for line in blocks[i].split("\n") if line.strip()]
            if len(following) == 1 and is_subtitle(following[0]):
                subtitle = following[0]
                i += 1
        if subtitle:
            heading = parse_heading(lines[0], subtitle) or heading
        close()
        title, paragraphs = heading.display, [Paragraph(heading.spoken, heading=True)]
        if body:
            paragraphs.append(Paragraph(collapse(" ".join(body))))
    close()
    return chapters


# -- files ----------------------------------------------------------------------------------------

_BLANK_LINE = re.compile(r"\n[ \t\f\v]*\n")


def read_bytes(path: Path) -> bytes:
    """The file's bytes, or TTSError saying why it cannot be read."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TTSError(f"cannot read {path}: no such file") from None
    except IsADirectoryError:
        raise TTSError(f"cannot read {path}: it is a directory") from None
    except OSError as exc:
        raise TTSError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not data.strip():
        raise TTSError(f"{path} is empty")
    return data


def decode_text(data: bytes, path: Path) -> str:
    """UTF-8 (with or without BOM), UTF-16 with a BOM, or Windows-1252 text -> str with \\n newlines."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encodings = ("utf-16",)
    elif b"\0" in data[:4096]:
        raise TTSError(f"{path} is not a text file")
    else:
        encodings = ("utf-8-sig", "cp1252")
    for encoding in encodings:
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise TTSError(f"{path} is not UTF-8 text")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise TTSError(f"{path} is empty")
    return text


def title_from_path(path: Path) -> str:
    return path.stem.replace("_", " ").strip() or path.name


def text_blocks(text: str) -> list[str]:
    """Paragraphs of plain text: separated by blank lines or, in a file without any, one per line."""
    blocks = _BLANK_LINE.split(text.strip())
    if len(blocks) == 1:
        return blocks[0].split("\n")
    return blocks


def read_text(path: Path) -> Book:
    """Plain text; a short first line standing alone (no sentence punctuation) is taken as the title."""
    blocks = text_blocks(decode_text(read_bytes(path), path))
    first = blocks[0].strip()
    title = collapse(first) if "\n" not in first and is_subtitle(first) else title_from_path(path)
    return Book(title, tuple(chapters_from_blocks(blocks, title)))
