"""EPUB (2 or 3, DRM-free) -> Book, read with ebooklib.

Reading order is the spine's linear documents. Chapters start where the table of contents (EPUB 3
nav, else the NCX) points: at a document, or at an anchor inside one; every entry counts, nested
ones too, in reading order. Text before the first entry (cover, title page) is a chapter named
after the book. Without a table of contents each document is a chapter, named by its first
heading.

Some real books list a document in the manifest a second time with a ``#fragment`` in its href
(and that item in the spine again): e-book readers take such an item as the document it points
into; ebooklib looks for a file of that name and fails. Those items are merged into their document
before ebooklib reads the book, so each document is read once.

Refused with a one-line TTSError: a file that is not a ZIP archive, lacks META-INF/container.xml
or its package document, or is DRM-protected: ``META-INF/encryption.xml`` encrypts content with
anything but font obfuscation (Adobe ADEPT and similar), or the archive carries a FairPlay
(``sinf.xml``) or Readium LCP (``license.lcpl``) licence.
"""

from __future__ import annotations

import io
import posixpath
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from ..errors import TTSError
from .book import Book, Chapter, Paragraph, read_bytes, spoken_heading, title_from_path
from .xhtml import Anchor, document_events

CONTAINER = "META-INF/container.xml"
_CONTAINER_NS = "{urn:oasis:names:tc:opendocument:xmlns:container}"
_OPF_NS = "{http://www.idpf.org/2007/opf}"
ENCRYPTION = "META-INF/encryption.xml"
DRM_LICENCES = ("META-INF/sinf.xml", "META-INF/license.lcpl")
# Font obfuscation (IDPF and Adobe) scrambles embedded fonts only; the text stays readable.
FONT_OBFUSCATION = frozenset({"http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC"})
_XMLENC = "{http://www.w3.org/2001/04/xmlenc#}"


def encrypted_content(archive: zipfile.ZipFile) -> list[str]:
    """Resources that META-INF/encryption.xml encrypts with something other than font obfuscation."""
    import lxml.etree

    try:
        root = lxml.etree.fromstring(archive.read(ENCRYPTION))
    except KeyError:
        return []
    except lxml.etree.XMLSyntaxError:
        return [ENCRYPTION]  # unreadable: assume the worst
    found = []
    for data in root.iter(f"{_XMLENC}EncryptedData"):
        method = data.find(f"{_XMLENC}EncryptionMethod")
        algorithm = method.get("Algorithm", "") if method is not None else ""
        if algorithm not in FONT_OBFUSCATION:
            reference = data.find(f".//{_XMLENC}CipherReference")
            found.append(reference.get("URI", "?") if reference is not None else "?")
    return found


def check_archive(path: Path) -> None:
    """TTSError unless `path` is a ZIP archive with an EPUB container and no DRM."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if CONTAINER not in names:
                raise TTSError(f"{path} is not a valid EPUB: it has no {CONTAINER}")
            if any(name in names for name in DRM_LICENCES) or encrypted_content(archive):
                raise TTSError(f"{path} is DRM-protected (its content is encrypted); only DRM-free EPUBs can be "
                               "narrated")
    except zipfile.BadZipFile:
        raise TTSError(f"{path} is not a valid EPUB: it is not a ZIP archive") from None
    except OSError as exc:
        raise TTSError(f"cannot read {path}: {exc.strerror or exc}") from None


def _clean_href(href: str) -> tuple[str, str]:
    """TOC href -> (normalised document path, fragment or "")."""
    document, _, fragment = unquote(href or "").partition("#")
    return posixpath.normpath(document) if document else "", fragment


@dataclass(frozen=True)
class TocEntry:
    document: str
    fragment: str
    title: str


def toc_entries(toc) -> list[TocEntry]:
    """ebooklib's nested table of contents (Links, Sections, (Section, children) pairs) -> flat, in order."""
    entries = []
    for node in toc or ():
        if isinstance(node, (tuple, list)):
            section, children = node[0], node[1] if len(node) > 1 else ()
            entries += toc_entries([section]) + toc_entries(children)
            continue
        href = getattr(node, "href", None)
        if href:
            document, fragment = _clean_href(href)
            entries.append(TocEntry(document, fragment, " ".join(str(node.title or "").split())))
    return entries


def _resolve(document: str, names: set[str]) -> str | None:
    if document in names:
        return document
    matches = [name for name in names if posixpath.basename(name) == posixpath.basename(document)]
    return matches[0] if len(matches) == 1 else None


def merge_fragment_items(opf: bytes) -> bytes | None:
    """A package document whose manifest items with a `#fragment` in their href are merged into the
    document they point into (their spine entries then name that document, once); None if it has none.

    An item "a.xhtml#p2" beside an item "a.xhtml" is dropped and its spine entries go to "a.xhtml"; an
    item "a.xhtml#p2" alone becomes "a.xhtml".
    """
    import lxml.etree

    try:
        root = lxml.etree.fromstring(opf)
    except lxml.etree.XMLSyntaxError:
        return None  # ebooklib will say what is wrong with it
    manifest, spine = root.find(f"{_OPF_NS}manifest"), root.find(f"{_OPF_NS}spine")
    if manifest is None or not any("#" in (item.get("href") or "") for item in manifest):
        return None
    owner: dict[str, str] = {}  # document href -> id of the item that keeps it
    for item in manifest:
        if item.get("href") and "#" not in item.get("href"):
            owner.setdefault(item.get("href"), item.get("id"))
    renamed: dict[str, str] = {}  # id of a merged item -> id of the item for its document
    for item in list(manifest):
        href = item.get("href") or ""
        if "#" not in href:
            continue
        document = href.partition("#")[0]
        if document in owner:
            renamed[item.get("id")] = owner[document]
            manifest.remove(item)
        else:
            item.set("href", document)
            owner[document] = item.get("id")
    if spine is not None:
        listed: set[str] = set()
        for ref in list(spine):
            idref = renamed.get(ref.get("idref"), ref.get("idref"))
            if idref in listed:
                spine.remove(ref)
            else:
                ref.set("idref", idref)
                listed.add(idref)
    return lxml.etree.tostring(root, xml_declaration=True, encoding="utf-8")


def _with_fragment_items_merged(path: Path) -> io.BytesIO | None:
    """An in-memory copy of the EPUB with its package document fixed by merge_fragment_items, or None
    when it needs no fixing (or cannot be read here: ebooklib then reports what is wrong)."""
    import lxml.etree

    try:
        with zipfile.ZipFile(path) as archive:
            container = lxml.etree.fromstring(archive.read(CONTAINER))
            rootfile = container.find(f".//{_CONTAINER_NS}rootfile")
            opf_name = posixpath.normpath(rootfile.get("full-path")) if rootfile is not None else None
            fixed = merge_fragment_items(archive.read(opf_name)) if opf_name else None
            if fixed is None:
                return None
            copy = io.BytesIO()
            with zipfile.ZipFile(copy, "w", zipfile.ZIP_DEFLATED) as out:
                for info in archive.infolist():
                    out.writestr(info, fixed if posixpath.normpath(info.filename) == opf_name
                                 else archive.read(info))
    except (KeyError, OSError, zipfile.BadZipFile, lxml.etree.XMLSyntaxError):
        return None
    copy.seek(0)
    return copy


def _load(path: Path):
    import ebooklib.epub

    try:
        return ebooklib.epub.read_epub(_with_fragment_items_merged(path) or str(path), {"ignore_ncx": True})
    except ebooklib.epub.EpubException as exc:
        raise TTSError(f"{path} is not a valid EPUB: {exc.msg}") from None
    except (KeyError, IndexError, AttributeError, ValueError, zipfile.BadZipFile) as exc:
        raise TTSError(f"{path} is not a valid EPUB: {type(exc).__name__} {exc}".strip()) from None
    except Exception as exc:  # lxml parse errors and the like: the package document is broken
        raise TTSError(f"{path} is not a valid EPUB: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") \
            from None


def _spine_documents(epub) -> list:
    import ebooklib

    documents = []
    for idref, linear in epub.spine:
        item = epub.get_item_with_id(idref)
        if item is None or str(linear).lower() == "no" or item.get_type() != ebooklib.ITEM_DOCUMENT:
            continue
        if type(item).__name__ == "EpubNav":  # the table of contents itself
            continue
        documents.append(item)
    return documents


def _book_title(epub, path: Path) -> str:
    titles = epub.get_metadata("DC", "title")
    title = " ".join(str(titles[0][0]).split()) if titles and titles[0] and titles[0][0] else ""
    return title or title_from_path(path)


def read_epub(path: Path) -> Book:
    read_bytes(path)  # missing, unreadable or empty: the same messages as for text
    check_archive(path)
    epub = _load(path)
    title = _book_title(epub, path)
    documents = _spine_documents(epub)
    names = {posixpath.normpath(item.file_name) for item in documents}
    starts: dict[tuple[str, str], str] = {}  # (document, fragment or "") -> chapter title
    for entry in toc_entries(epub.toc):
        document = _resolve(entry.document, names)
        if document is not None:
            starts.setdefault((document, entry.fragment), entry.title)
    by_document = not starts

    chapters: list[Chapter] = []
    chapter_title, paragraphs = title, []

    def start(new_title: str) -> None:
        nonlocal chapter_title, paragraphs
        if paragraphs:
            chapters.append(Chapter(chapter_title, tuple(paragraphs)))
        chapter_title, paragraphs = new_title, []

    for number, item in enumerate(documents, 1):
        name = posixpath.normpath(item.file_name)
        anchors = frozenset(fragment for document, fragment in starts if document == name and fragment)
        events = document_events(item.get_content(), anchors)
        if by_document:
            first_heading = next((e.text for e in events if isinstance(e, Paragraph) and e.heading), "")
            start(first_heading or f"Section {number}")
        elif (name, "") in starts:
            start(starts[(name, "")])
        for event in events:
            if isinstance(event, Anchor):
                start(starts[(name, event.id)])
            elif event.heading:
                paragraphs.append(Paragraph(spoken_heading(event.text), heading=True))
            else:
                paragraphs.append(event)
    start("")
    return Book(title, tuple(chapters))
