"""Reading books (.txt, .md, .epub) into chapters, and planning their chunks with stable keys."""

import zipfile

import pytest

from tests.books import CHAPTERS, TITLE, TITLES, WRITERS, long_txt, with_fragment_items, write_epub
from tests.tiny import TOKENIZER
from tts.errors import TTSError
from tts.narrate.book import parse_heading
from tts.narrate.inputs import read_book
from tts.narrate.plan import CHAPTER, HEADING, PARAGRAPH, SENTENCE
from tts.narrate.plan import make_plan as plan_with
from tts.text.bpe import TortoiseBpeTokenizer
from tts.text.split import TextSplitter

BPE = TortoiseBpeTokenizer.from_file(TOKENIZER)
TORTOISE_SPLITTER = TextSplitter(BPE.encode, 400)  # Tortoise's text limit in its BPE tokens


def make_plan(book, splitter=TORTOISE_SPLITTER):
    return plan_with(book, splitter)


def titles(book):
    return [chapter.title for chapter in book.chapters]


@pytest.mark.parametrize("kind", ["txt", "md", "epub"])
def test_three_chapters_are_found_in_each_format(kind, tmp_path):
    book = read_book([WRITERS[kind](tmp_path / f"book.{kind}")])
    assert book.title == TITLE
    assert titles(book) == TITLES[kind]
    for chapter, (_, paragraphs) in zip(book.chapters[-3:], CHAPTERS):
        heading, *body = chapter.paragraphs
        assert heading.heading and heading.text.startswith("Chapter ")
        assert [p.text for p in body] == paragraphs  # markup gone, code and scripts not read
        assert not any(p.heading for p in body)


@pytest.mark.parametrize("line, display, spoken", [
    ("Chapter 3", "Chapter 3", "Chapter Three."),
    ("CHAPTER III.", "Chapter III", "Chapter Three."),
    ("Chapter Twenty-One: The End", "Chapter Twenty-One: The End", "Chapter Twenty-One. The End."),
    ("CHAPTER IV. THE POOL OF TEARS", "Chapter IV: The Pool Of Tears", "Chapter Four. The Pool Of Tears."),
    ("Part 2 - Winter", "Part 2: Winter", "Part Two. Winter."),
    ("Prologue", "Prologue", "Prologue."),
])
def test_heading_lines(line, display, spoken):
    heading = parse_heading(line)
    assert (heading.display, heading.spoken) == (display, spoken)


@pytest.mark.parametrize("line", [
    "Chapter 3 of the report was dull.", "Part mild, part wild.", "Book dim", "Chapters",
    "Chapter 1 " + "word " * 30, "The chapter 3 heading",
])
def test_prose_is_not_a_heading(line):
    assert parse_heading(line) is None


def test_text_without_blank_lines_has_one_paragraph_per_line(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("Chapter 1\nThe first line.\nThe second line.\nChapter 2\nThe third line.\n")
    book = read_book([path])
    assert titles(book) == ["Chapter 1", "Chapter 2"]
    assert [p.text for p in book.chapters[0].paragraphs] == ["Chapter One.", "The first line.", "The second line."]


def test_text_without_headings_is_one_chapter(tmp_path):
    path = tmp_path / "essay.txt"
    path.write_text("An essay. It has no chapters.\n\nA second paragraph.\n")
    book = read_book([path])
    assert titles(book) == ["essay"]
    assert len(book.chapters[0].paragraphs) == 2


def test_markdown_chapters_by_top_level_and_front_matter(tmp_path):
    path = tmp_path / "notes.md"
    path.write_text("---\ntitle: \"Field Notes\"\n---\n# One\n\nText [with a link](http://x).\n\n### Sub\n\n- item a\n"
                    "- item b\n\n# Two\n\n![img](a.png)\n\nMore *text*.\n")
    book = read_book([path])
    assert book.title == "Field Notes"
    assert titles(book) == ["One", "Two"]
    assert [(p.text, p.heading) for p in book.chapters[0].paragraphs] == [
        ("One.", True), ("Text with a link.", False), ("Sub.", True), ("item a", False), ("item b", False)]


def test_markdown_without_headings_finds_chapter_lines(tmp_path):
    path = tmp_path / "plain.md"
    path.write_text("CHAPTER I\n\nFirst.\n\nCHAPTER II\n\nSecond.\n")
    assert titles(read_book([path])) == ["Chapter I", "Chapter II"]


@pytest.mark.parametrize("variant", [{"anchors": True}, {"toc": False}, {"nav": False}])
def test_epub_variants(variant, tmp_path):
    """Chapters at anchors inside one file; no table of contents (one chapter per file); NCX only."""
    book = read_book([write_epub(tmp_path / "book.epub", **variant)])
    assert titles(book) == TITLES["epub"]


@pytest.mark.parametrize("variant", [{}, {"anchors": True}, {"nav": False}])
def test_epub_whose_manifest_lists_documents_with_fragments(variant, tmp_path):
    """Manifest items such as href="chapter1.xhtml#part" (listed again in the spine) are read, once each."""
    plain = read_book([write_epub(tmp_path / "plain.epub", **variant)])
    book = read_book([with_fragment_items(write_epub(tmp_path / "book.epub", **variant))])
    assert book == plain


def test_epub_whose_manifest_names_a_missing_file_is_still_refused(tmp_path):
    source = write_epub(tmp_path / "plain.epub")
    target = tmp_path / "broken.epub"
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for item in src.infolist():
            if not item.filename.endswith("chapter2.xhtml"):
                dst.writestr(item, src.read(item.filename))
    with pytest.raises(TTSError, match="not a valid EPUB.*chapter2.xhtml"):
        read_book([target])


def test_several_inputs_make_one_book(tmp_path):
    first = WRITERS["md"](tmp_path / "a.md")
    second = tmp_path / "b.txt"
    second.write_text("Epilogue\n\nThe end.\n")
    book = read_book([first, second])
    assert book.title == TITLE
    assert titles(book) == [*TITLES["md"], "Epilogue"]


def _zip(path, files):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


ENCRYPTION = """<?xml version="1.0"?>
<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container"
            xmlns:enc="http://www.w3.org/2001/04/xmlenc#">
  <enc:EncryptedData>
    <enc:EncryptionMethod Algorithm="{algorithm}"/>
    <enc:CipherData><enc:CipherReference URI="{uri}"/></enc:CipherData>
  </enc:EncryptedData>
</encryption>"""


def _with_encryption(tmp_path, algorithm, uri):
    source = write_epub(tmp_path / "plain.epub")
    target = tmp_path / "book.epub"
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item.filename))
        dst.writestr("META-INF/encryption.xml", ENCRYPTION.format(algorithm=algorithm, uri=uri))
    return target


def test_drm_epub_is_refused(tmp_path):
    path = _with_encryption(tmp_path, "http://www.w3.org/2001/04/xmlenc#aes128-cbc", "EPUB/chapter1.xhtml")
    with pytest.raises(TTSError, match="DRM-protected"):
        read_book([path])


def test_font_obfuscation_is_not_drm(tmp_path):
    path = _with_encryption(tmp_path, "http://www.idpf.org/2008/embedding", "EPUB/fonts/a.otf")
    assert titles(read_book([path])) == TITLES["epub"]


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"PK\x03\x04 this is not really a zip" * 10), "not a ZIP archive"),
    (lambda p: _zip(p, {"mimetype": "application/epub+zip", "a.xhtml": "<p>x</p>"}), "no META-INF/container.xml"),
    (lambda p: _zip(p, {"mimetype": "application/epub+zip", "META-INF/container.xml":
                        '<?xml version="1.0"?><container xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
                        '<rootfiles><rootfile full-path="OEBPS/missing.opf"/></rootfiles></container>'}),
     "not a valid EPUB"),
])
def test_malformed_epub(make, message, tmp_path):
    path = tmp_path / "broken.epub"
    make(path)
    with pytest.raises(TTSError, match=message):
        read_book([path])


@pytest.mark.parametrize("name, content, message", [
    ("missing.txt", None, "no such file"),
    ("empty.txt", b"", "is empty"),
    ("blank.md", b"  \n\n \n", "is empty"),
    ("binary.txt", b"\x00\x01\x02binary\x00" * 20, "not a text file"),
    ("book.pdf", b"%PDF-1.4", "unsupported input format '.pdf'"),
    ("empty.epub", b"", "is empty"),
])
def test_bad_input_files(name, content, message, tmp_path):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(TTSError, match=message):
        read_book([path])


def test_text_with_nothing_to_say(tmp_path):
    path = tmp_path / "stars.txt"
    path.write_text("* * *\n\n...\n")
    with pytest.raises(TTSError, match="nothing pronounceable"):
        make_plan(read_book([path]))


# -- plan ----------------------------------------------------------------------------------------

def test_plan_pauses_labels_and_keys(tmp_path):
    plan = make_plan(read_book([WRITERS["md"](tmp_path / "book.md")]))
    assert plan.chapters == tuple(TITLES["md"])
    first = plan.chapter_chunks(0)
    assert [c.label for c in first] == ["1.1", "1.2", "1.3"]
    assert [c.pause for c in first] == [HEADING, PARAGRAPH, CHAPTER]
    assert len({c.key for c in plan.chunks}) == len(plan.chunks)
    assert all(len(c.key) == 16 for c in plan.chunks)


def test_long_paragraph_splits_into_sentence_chunks(tmp_path):
    path = tmp_path / "long.txt"
    path.write_text(" ".join(f"This is sentence number {n} of a long paragraph." for n in range(1, 21)))
    chunks = make_plan(read_book([path]), TextSplitter(BPE.encode, 100)).chunks
    assert len(chunks) > 3
    assert all(len(BPE.encode(c.text)) <= 100 for c in chunks)  # measured in the model's tokens
    assert [c.pause for c in chunks[:-1]] == [SENTENCE] * (len(chunks) - 1) and chunks[-1].pause == CHAPTER
    assert all(c.text.endswith(".") for c in chunks)  # cut at sentence ends
    assert "twenty" in chunks[-1].text  # numbers are normalised


def test_editing_a_paragraph_changes_only_its_keys(tmp_path):
    before = make_plan(read_book([long_txt(tmp_path / "a.txt")]))
    after = make_plan(read_book([long_txt(tmp_path / "b.txt", edit=(2, 3))]))
    old, new = {c.key for c in before.chunks}, {c.key for c in after.chunks}
    assert len(old - new) == 1  # the edited paragraph's chunk
    assert len(new - old) == 1  # its new text (two sentences, one chunk)
    assert [c.label for c in after.chunks if c.key in new - old] == ["2.4"]


def test_repeated_text_gets_distinct_keys(tmp_path):
    path = tmp_path / "yes.txt"
    path.write_text("Yes.\n\nNo.\n\nYes.\n")
    keys = [c.key for c in make_plan(read_book([path])).chunks]
    assert len(set(keys)) == 3


def test_select_ids(tmp_path):
    plan = make_plan(read_book([long_txt(tmp_path / "a.txt", chapters=3, paragraphs=3)]))
    by_label = {c.label: c.key for c in plan.chunks}
    assert plan.select(["2.2"]) == [by_label["2.2"]]
    assert plan.select(["1.4-2.1, 3.1"]) == [by_label["1.4"], by_label["2.1"], by_label["3.1"]]
    assert plan.select(["2"]) == [by_label[f"2.{i}"] for i in range(1, 5)]
    assert len(plan.select(["1-3"])) == len(plan.chunks)
    assert plan.select([by_label["3.3"].upper()]) == [by_label["3.3"]]
    for bad in ["9", "2.99", "2.3-1.1", "x"]:
        with pytest.raises(TTSError, match="unknown chunk"):
            plan.select([bad])
