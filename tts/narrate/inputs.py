"""Input files -> one Book: the reader for each file by its suffix, then the files in order.

    book = read_book(["novel.epub"])        # Book(title, chapters=[Chapter(title, paragraphs), ...])

Chapters come from the EPUB's table of contents (:mod:`.epub`), from markdown headings
(:mod:`.markdown`) or from heading lines in plain text (:mod:`.book`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import TTSError
from .book import Book, read_text
from .epub import read_epub
from .markdown import read_markdown

TEXT_SUFFIXES = (".txt", ".text")
MARKDOWN_SUFFIXES = (".md", ".markdown")
EPUB_SUFFIXES = (".epub",)


def read_input(path: str | os.PathLike) -> Book:
    """One input file -> Book. TTSError for a missing, unreadable, empty or unsupported file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        raise TTSError(f"cannot read {path}: it is a directory")
    if suffix in TEXT_SUFFIXES:
        book = read_text(path)
    elif suffix in MARKDOWN_SUFFIXES:
        book = read_markdown(path)
    elif suffix in EPUB_SUFFIXES:
        book = read_epub(path)
    else:
        if not path.exists():
            raise TTSError(f"cannot read {path}: no such file")
        raise TTSError(f"unsupported input format {suffix or path.name!r} for {path} (use .txt, .md or .epub)")
    if not book.chapters:
        raise TTSError(f"{path} has no text to narrate")
    return book


def read_book(paths: Sequence[str | os.PathLike]) -> Book:
    """Several input files, read in order, make one book titled after the first."""
    if not paths:
        raise TTSError("give at least one input file")
    books = [read_input(p) for p in paths]
    return Book(books[0].title, tuple(chapter for book in books for chapter in book.chapters))
