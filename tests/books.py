"""Small books written as .txt, .md and .epub for the narration tests: the same three chapters in each."""

from __future__ import annotations

from pathlib import Path

TITLE = "The Lighthouse Keeper"
CHAPTERS = [
    ("The Storm", [
        "The wind came from the west. It rattled the windows of the old lighthouse.",
        "Martha lit the lamp at dusk, as she had done for thirty years.",
    ]),
    ("The Ship", [
        "A light appeared on the horizon. It was a small ship, fighting the waves.",
        "\"Hold on,\" Martha whispered. \"Hold on.\"",
    ]),
    ("Morning", [
        "Morning came grey and quiet. The ship lay safe in the harbour.",
        "The sailors walked up the hill to thank her.",
    ]),
]
TXT_TITLES = ["Chapter 1: The Storm", "Chapter II: The Ship", "Chapter Three: Morning"]
MD_TITLES = [f"Chapter {n}: {name}" for n, (name, _) in enumerate(CHAPTERS, 1)]
EPUB_TITLES = MD_TITLES


def write_txt(path: Path, chapters=CHAPTERS) -> Path:
    headings = ["Chapter 1\nThe Storm", "CHAPTER II.\n\nThe Ship", "Chapter Three: Morning"]
    parts = [TITLE]
    for heading, (_, paragraphs) in zip(headings, chapters):
        parts += [heading, *paragraphs]
    path.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    return path


def write_md(path: Path, chapters=CHAPTERS) -> Path:
    lines = [f"# {TITLE}", ""]
    for n, (name, paragraphs) in enumerate(chapters, 1):
        lines += [f"## Chapter {n}: {name}", ""]
        for paragraph in paragraphs:
            lines += [paragraph.replace("Martha", "**Martha**"), ""]
    lines += ["```", "print('code is not read')", "```"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_epub(path: Path, chapters=CHAPTERS, toc: bool = True, anchors: bool = False, nav: bool = True) -> Path:
    """An EPUB with a title page before the first TOC entry; `anchors`: chapters 2 and 3 share one file;
    `nav=False`: an EPUB 2 style book whose table of contents is only the NCX."""
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("lighthouse-keeper")
    book.set_title(TITLE)
    book.set_language("en")
    title_page = epub.EpubHtml(title="Title", file_name="title.xhtml", lang="en")
    title_page.content = f"<html><body><h1>{TITLE}</h1><p>A short story.</p></body></html>"
    documents, links = [title_page], []
    shared = None
    for n, (name, paragraphs) in enumerate(chapters, 1):
        heading = f"Chapter {n}: {name}"
        body = f'<h2 id="c{n}">{heading}</h2>' + "".join(f"<p>{p}</p>" for p in paragraphs)
        if anchors and n > 1:
            if shared is None:
                shared = epub.EpubHtml(title="Rest", file_name="rest.xhtml", lang="en")
                shared.content = "<html><body>"
                documents.append(shared)
            shared.content += body
            links.append(epub.Link(f"rest.xhtml#c{n}", heading, f"c{n}"))
            continue
        doc = epub.EpubHtml(title=heading, file_name=f"chapter{n}.xhtml", lang="en")
        doc.content = f"<html><body>{body}<script>var notRead = 1;</script></body></html>"
        documents.append(doc)
        links.append(epub.Link(f"chapter{n}.xhtml", heading, f"c{n}"))
    if shared is not None:
        shared.content += "</body></html>"
    for doc in documents:
        book.add_item(doc)
    book.toc = links if toc else []
    book.add_item(epub.EpubNcx())
    if nav:
        book.add_item(epub.EpubNav())
    book.spine = (["nav"] if nav else []) + documents
    epub.write_epub(str(path), book)
    return path


def with_fragment_items(path: Path) -> Path:
    """Rewrite an EPUB as some real ones are made (Debian's live-manual-epub books, for one): every
    document is listed in the manifest a second time with a `#fragment` in its href, and the spine
    lists that item right after the document. E-book readers open such books; ebooklib raises KeyError."""
    import posixpath
    import zipfile

    import lxml.etree

    opf_ns = "{http://www.idpf.org/2007/opf}"
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    container = lxml.etree.fromstring(members["META-INF/container.xml"])
    opf_name = container.find(".//{urn:oasis:names:tc:opendocument:xmlns:container}rootfile").get("full-path")
    opf = lxml.etree.fromstring(members[opf_name])
    manifest, spine = opf.find(f"{opf_ns}manifest"), opf.find(f"{opf_ns}spine")
    for item in list(manifest):
        if item.get("media-type") != "application/xhtml+xml" or "nav" in item.get("properties", ""):
            continue
        anchored = lxml.etree.SubElement(manifest, f"{opf_ns}item", {
            "id": f"{item.get('id')}#part", "href": f"{item.get('href')}#part", "media-type": item.get("media-type")})
        item.addnext(anchored)
        for ref in spine:
            if ref.get("idref") == item.get("id"):
                ref.addnext(lxml.etree.Element(f"{opf_ns}itemref", {"idref": anchored.get("id")}))
    assert any("#" in i.get("href") for i in manifest) and posixpath.dirname(opf_name)
    members[opf_name] = lxml.etree.tostring(opf, xml_declaration=True, encoding="utf-8")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), members.pop("mimetype"))
        for name, data in members.items():
            archive.writestr(name, data, zipfile.ZIP_DEFLATED)
    return path


WRITERS = {"txt": write_txt, "md": write_md, "epub": write_epub}
# Chapter titles as read; the title page (txt: the first line, epub: title.xhtml) is a chapter of its own.
TITLES = {"txt": [TITLE, *TXT_TITLES], "md": MD_TITLES, "epub": [TITLE, *EPUB_TITLES]}


def long_txt(path: Path, chapters: int = 3, paragraphs: int = 8, edit: tuple[int, int] | None = None) -> Path:
    """A plain-text book of one-sentence paragraphs (each a chunk); `edit`: (chapter, paragraph) reworded."""
    parts = []
    for c in range(1, chapters + 1):
        parts.append(f"Chapter {c}")
        for p in range(1, paragraphs + 1):
            text = f"Paragraph {p} of chapter {c} tells of the sea and the sky."
            if edit == (c, p):
                text = f"Paragraph {p} of chapter {c} was rewritten. It now has two sentences."
            parts.append(text)
    path.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    return path
