"""Loaders: files in, `Document` records out, and one clear reason per file that cannot be read.

Every loader gets the raw bytes (after a size check) and either returns text or raises
`InputError` naming the problem; `load_path` turns that into a `LoadFailure` so one bad file never
stops a batch. HTML and DOCX headings come out as Markdown headings so the chunker can follow them.

    >>> result = load_path(Path("notes.md"), IngestSettings())
    >>> [d.title for d in result.documents], result.failures
"""

from __future__ import annotations

import fnmatch
import io
import json
import logging
import os
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ragtune.config import IngestSettings
from ragtune.documents.records import Document, Page
from ragtune.errors import InputError

log = logging.getLogger("ragtune.ingest")

SUPPORTED_SUFFIXES = (
    ".md", ".markdown", ".txt", ".text", ".html", ".htm", ".pdf", ".docx", ".jsonl",
)


@dataclass(frozen=True)
class LoadFailure:
    """A file (or a line of a JSONL file) that could not be read, and why."""

    path: str
    error: str


@dataclass
class LoadResult:
    """What one path gave: documents, and failures that did not stop the others."""

    source: str
    documents: list[Document] = field(default_factory=list)
    failures: list[LoadFailure] = field(default_factory=list)


def normalized_source(path: Path) -> str:
    """The stable identity of a file: its absolute, resolved POSIX path."""
    return path.expanduser().resolve().as_posix()


def relabel(result: LoadResult, source: str) -> LoadResult:
    """The same documents and failures under another source name (uploads and records sent
    over HTTP: their temporary path is nobody's business, and must not change the content
    hash from one upload to the next). A file's id is its source, so it changes too."""
    old = result.source

    def name(value: str) -> str:
        return source + value[len(old):] if value.startswith(old) else value

    docs = []
    for doc in result.documents:
        metadata = dict(doc.metadata)
        if metadata.get("path") == old:
            metadata["path"] = source
        docs.append(replace(doc, id=name(doc.id) if doc.id == old else doc.id,
                            source=source, metadata=metadata))
    return LoadResult(source, docs, [replace(f, path=name(f.path)) for f in result.failures])


def iter_source_files(
    root: Path, include: Iterable[str] = (), exclude: Iterable[str] = ()
) -> Iterator[Path]:
    """Regular files under `root` (or `root` itself) with a supported suffix, in sorted order.

    `include`/`exclude` are glob patterns matched against the path relative to `root`. Links to
    folders are not followed (no loops, no trees outside the root); a link to a file is
    yielded, and `escapes_root` tells whether it leads out of the root. Pipes, sockets and
    devices are never yielded: reading one could block forever.
    """
    include, exclude = tuple(include), tuple(exclude)
    if root.is_file():
        yield root
        return
    found: list[Path] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in files:
            path = Path(folder) / name
            if not path.is_file():  # a pipe, a dangling link, a link to a folder
                continue
            rel = path.relative_to(root).as_posix()
            if any(_glob(rel, pat) for pat in exclude):
                continue
            if include:
                if not any(_glob(rel, pat) for pat in include):
                    continue
            elif path.suffix.lower() not in SUPPORTED_SUFFIXES:
                continue
            found.append(path)
    yield from sorted(found)


def escapes_root(root: Path, file: Path) -> bool:
    """Whether `file`, links resolved, lies outside `root` (a link out of the ingest root)."""
    real_root = root.expanduser().resolve()
    if root.is_file():
        return False
    return not file.resolve().is_relative_to(real_root)


def _glob(rel: str, pattern: str) -> bool:
    if fnmatch.fnmatch(rel, pattern):
        return True
    # "*.md" should match at any depth, as users of .gitignore-style globs expect.
    return "/" not in pattern and fnmatch.fnmatch(rel.rsplit("/", 1)[-1], pattern)


def load_path(
    path: Path, settings: IngestSettings, groups: tuple[str, ...] = ()
) -> LoadResult:
    """Read one file into documents. Never raises for bad content: failures are returned."""
    source = normalized_source(path)
    result = LoadResult(source=source)
    try:
        suffix = path.suffix.lower()
        if suffix not in SUPPORTED_SUFFIXES:
            raise InputError(f"unsupported file type {suffix or '(none)'!r}")
        size = path.stat().st_size
        if size > settings.max_file_bytes:
            raise InputError(
                f"file is {size:,} bytes, over the limit of {settings.max_file_bytes:,} "
                "(ingest.max_file_bytes)"
            )
        data = path.read_bytes()
        if not data.strip():
            raise InputError("empty file")
        if suffix == ".jsonl":
            _load_jsonl(data, source, groups, result)
            return result
        fmt, title, text, pages = _LOADERS[suffix](data, settings)
        if not text.strip():
            raise InputError("no text found")
        result.documents.append(
            Document(
                id=source,
                text=text,
                source=source,
                format=fmt,
                title=title or path.stem,
                metadata={"path": source, "format": fmt, "bytes": size},
                pages=pages,
                groups=groups,
            )
        )
    except InputError as exc:
        result.failures.append(LoadFailure(source, str(exc)))
    except OSError as exc:
        result.failures.append(LoadFailure(source, f"cannot read: {exc.strerror or exc}"))
    except (Exception, RecursionError) as exc:  # a parser's own failure: one file, not the batch
        log.warning("loading %s failed", source, exc_info=True)
        result.failures.append(LoadFailure(source, f"cannot read ({type(exc).__name__}: "
                                                   f"{str(exc)[:200]})"))
    return result


# --- plain text and Markdown -------------------------------------------------------------------

_CONTROL = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f]")


def decode_text(data: bytes) -> str:
    """Decode bytes as UTF-8 (with or without BOM), else the detected encoding; refuse binary."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise InputError(f"bad UTF-16 text ({exc.reason})") from exc
    sample = data[:8192]
    if b"\x00" in sample or len(_CONTROL.findall(sample)) > max(4, len(sample) // 100):
        raise InputError(f"binary content, not text (starts with {data[:8]!r})")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    matches = from_bytes(data)
    best = matches.best()
    if best is None:
        raise InputError("cannot decode text: not UTF-8 and no other encoding fits")
    # Single-byte code pages often tie; among equally good guesses prefer Windows-1252, by far
    # the most common non-UTF-8 encoding of Western text.
    for match in matches:
        if (match.encoding == "cp1252" and match.chaos == best.chaos
                and match.coherence == best.coherence):
            return str(match)
    return str(best)


def _load_text(data: bytes, settings: IngestSettings) -> tuple[str, str, str, tuple[Page, ...]]:
    text = _normalize_newlines(decode_text(data))
    return "txt", "", text, ()


def _load_markdown(
    data: bytes, settings: IngestSettings
) -> tuple[str, str, str, tuple[Page, ...]]:
    text = _normalize_newlines(decode_text(data))
    match = re.search(r"^#\s+(.+?)\s*#*\s*$", text, flags=re.MULTILINE)
    return "md", match.group(1) if match else "", text, ()


# Characters that are never content: C0 controls but tab and newline (NUL among them), DEL, and
# the bidirectional embeddings, overrides and isolates that make text display in another order
# than it reads ("Trojan Source"): a model and a reader must see the same text.
_NOT_CONTENT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


def clean_text(text: str) -> str:
    """Newlines as `\\n`, and no control or bidi-override characters (`_NOT_CONTENT`)."""
    return _NOT_CONTENT.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def _normalize_newlines(text: str) -> str:
    return clean_text(text)


# --- HTML ----------------------------------------------------------------------------------------

_HTML_DROP = ("script", "style", "noscript", "template", "svg", "nav", "header", "footer",
              "aside", "form", "iframe", "button")
_HTML_BLOCKS = ("p", "li", "pre", "blockquote", "td", "th", "dt", "dd", "figcaption", "caption")
# Inline markup is unwrapped (its text kept) before extraction, so that the Markdown we emit has
# headings, lists and tables but no `**bold**` or raw `<sup>` noise in the text that is embedded
# and searched.
_HTML_INLINE = ("b", "strong", "i", "em", "u", "mark", "small", "big", "font", "span", "sup",
                "sub", "s", "del", "ins")
# trafilatura backslash-escapes Markdown's inline characters anywhere in a line; our Markdown is
# read for its headings only, so they go back to plain text (a line-start `\#` stays escaped:
# it is not a heading).
_MD_INLINE_ESCAPE = re.compile(r"\\([*_`~\[\]<])")
# Under this many words from the extractor, the page is one it does not handle (a bare snippet,
# a tree nested deeper than libxml2's HTML parser keeps, which it drops): the block walker's
# text is taken instead when it finds any.
_MIN_EXTRACTED_WORDS = 10
_WORD = re.compile(r"\w+")
# trafilatura's time grows with the tree (about 80 µs an element here: 25 s and 1 GB for a 5 MB
# page of 300,000 elements). Past this many elements the page is walked by lxml instead (about a
# second for that page).
_MAX_EXTRACTOR_ELEMENTS = 100_000
# A start tag longer than this is an attack, not markup: HTML parsers check attributes for
# duplicates pairwise (100,000 attributes took 76 s), so it keeps its name and loses them.
_MONSTROUS_TAG = re.compile(r"<([A-Za-z][A-Za-z0-9-]{0,30})\s[^<>]{16384,}>")


def _load_html(data: bytes, settings: IngestSettings) -> tuple[str, str, str, tuple[Page, ...]]:
    """Main text by trafilatura (boilerplate dropped, headings as Markdown), else the walker.

    On the assembled page set of `bench/extraction.py` trafilatura 2.3 scored 0.94 bag-of-words
    F1 where the block walker alone scored 0.72 (BENCHMARKS.md, "Document extraction").
    """
    text = _MONSTROUS_TAG.sub(r"<\1>", decode_text(data))
    title, body = _trafilatura_main_text(text)
    if len(_WORD.findall(body)) < _MIN_EXTRACTED_WORDS:
        walked_title, walked = _walk_html(text)
        title = title or walked_title
        if walked.strip():
            body = walked
    if not title:
        title = next((b.lstrip("# ") for b in body.split("\n") if b.startswith("#")), "")
    return "html", clean_text(title), clean_text(body), ()


def _trafilatura_main_text(text: str) -> tuple[str, str]:
    """(title, Markdown main text) from trafilatura; ("", "") when it cannot make sense of it."""
    import logging

    import trafilatura
    from lxml import etree

    logging.getLogger("trafilatura").setLevel(logging.CRITICAL)
    try:
        tree = trafilatura.load_html(text)
        if tree is None:
            return "", ""
        title = " ".join((tree.findtext(".//title") or "").split())
        if sum(1 for _ in tree.iter()) > _MAX_EXTRACTOR_ELEMENTS:
            return title, _walk_tree(tree)
        etree.strip_tags(tree, *_HTML_INLINE)
        body = trafilatura.extract(
            tree, output_format="markdown", include_comments=False, include_tables=True,
            include_images=False, include_links=False, with_metadata=False,
        )
    except Exception:  # a third-party parser's own failure: the walker is the fallback
        return "", ""
    if not body:
        return title, ""
    lines = [line.rstrip() for line in body.replace("\r\n", "\n").split("\n")]
    body = _MD_INLINE_ESCAPE.sub(r"\1", "\n".join(lines))
    return title, re.sub(r"\n{3,}", "\n\n", body).strip()


def _walk_tree(tree: Any) -> str:
    """The block walk of `_walk_html` on an lxml tree: for trees too large for the extractor."""
    from lxml import etree

    etree.strip_elements(tree, *_HTML_DROP, etree.Comment, with_tail=False)
    root = next(tree.iter("main"), None)
    root = root if root is not None else next(tree.iter("article"), None)
    root = root if root is not None else tree
    blocks: list[str] = []
    for el in root.iter("h1", "h2", "h3", "h4", "h5", "h6", *_HTML_BLOCKS):
        if any(a.tag in _HTML_BLOCKS for a in el.iterancestors()):
            continue  # nested inside a block we already take whole
        line = " ".join(el.text_content().split())
        if not line:
            continue
        if el.tag[0] == "h":
            line = "#" * int(el.tag[1]) + " " + line
        elif el.tag == "li":
            line = "- " + line
        blocks.append(line)
    return "\n\n".join(blocks)


def _walk_html(text: str) -> tuple[str, str]:
    """(title, text) by walking block elements outside nav/header/footer/aside; headings as `#`.

    The extractor's fallback, and the hand extractor that `bench/extraction.py` compares with.
    """
    from bs4 import BeautifulSoup

    try:
        soup = BeautifulSoup(text, "lxml")
    except (ValueError, RecursionError) as exc:
        raise InputError(f"cannot parse HTML ({type(exc).__name__}: {exc})") from exc
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup.find_all(_HTML_DROP):
        tag.decompose()
    for tag in soup.select('[role="navigation"], [role="banner"], [role="contentinfo"]'):
        tag.decompose()
    root = soup.find("main") or soup.find("article") or soup.body or soup
    blocks: list[str] = []
    for el in root.find_all(["h1", "h2", "h3", "h4", "h5", "h6", *_HTML_BLOCKS]):
        if el.find_parent(_HTML_BLOCKS) is not None:
            continue  # nested inside a block we already take whole
        line = " ".join(el.get_text(" ", strip=True).split())
        if not line:
            continue
        if el.name[0] == "h" and el.name[1:].isdigit():
            line = "#" * int(el.name[1]) + " " + line
        elif el.name == "li":
            line = "- " + line
        blocks.append(line)
    if not blocks:  # pages without block markup: take the visible text
        blocks = [" ".join(p.split()) for p in root.get_text("\n").split("\n") if p.strip()]
    return title, "\n\n".join(blocks)


# --- PDF -----------------------------------------------------------------------------------------

# pypdf gives the presentation-form ligatures that fonts use (Chromium's PDFs are full of them):
# "ﬁrst" would not match "first" in search, so they are spelled out.
_LIGATURES = str.maketrans({"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi",
                            "\ufb04": "ffl", "\ufb05": "st", "\ufb06": "st"})


def _load_pdf(data: bytes, settings: IngestSettings) -> tuple[str, str, str, tuple[Page, ...]]:
    if not data.lstrip()[:5] == b"%PDF-":
        raise InputError(f"not a PDF (starts with {data[:8]!r})")
    import logging

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError, PyPdfError

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                ok = reader.decrypt("")
            except Exception as exc:  # pypdf raises several types for unsupported crypto
                raise InputError(f"encrypted PDF ({exc})") from exc
            if not ok:
                raise InputError("encrypted PDF: a password is required")
        parts: list[str] = []
        pages: list[Page] = []
        pos = 0
        for number, page in enumerate(reader.pages, start=1):
            page_text = _normalize_newlines(page.extract_text() or "").translate(_LIGATURES)
            page_text = page_text.strip()
            if parts:
                pos += 2  # the "\n\n" joining pages
            pages.append(Page(number, pos, pos + len(page_text)))
            parts.append(page_text)
            pos += len(page_text)
        meta_title = ""
        if reader.metadata is not None and reader.metadata.title:
            meta_title = str(reader.metadata.title)
    except InputError:
        raise
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError, AttributeError,
            IndexError, RecursionError, ZeroDivisionError, OverflowError) as exc:
        raise InputError(f"corrupt PDF ({type(exc).__name__}: {exc})") from exc
    text = "\n\n".join(parts)
    if not text.strip():
        raise InputError("PDF has no extractable text (scanned images need OCR)")
    return "pdf", meta_title, text, tuple(pages)


# --- DOCX ----------------------------------------------------------------------------------------

def _load_docx(data: bytes, settings: IngestSettings) -> tuple[str, str, str, tuple[Page, ...]]:
    _check_docx_archive(data, settings)
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise InputError(f"corrupt DOCX ({type(exc).__name__}: {exc})") from exc
    except Exception as exc:  # lxml raises XMLSyntaxError for broken parts
        raise InputError(f"corrupt DOCX ({type(exc).__name__}: {exc})") from exc
    blocks = _docx_blocks(document)
    title = document.core_properties.title or ""
    if not title:
        title = next((b.lstrip("# ") for b in blocks if b.startswith("#")), "")
    return "docx", clean_text(title), clean_text("\n\n".join(blocks)), ()


def _check_docx_archive(data: bytes, settings: IngestSettings) -> None:
    """A zip within the unpacked-size and compression-ratio limits, holding a Word body."""
    if not data.startswith(b"PK"):
        raise InputError(f"not a DOCX: not a zip archive (starts with {data[:8]!r})")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            total = sum(i.file_size for i in infos)
            if total > settings.max_unzipped_bytes:
                raise InputError(
                    f"DOCX unpacks to {total:,} bytes, over the limit of "
                    f"{settings.max_unzipped_bytes:,} (zip bomb?)"
                )
            packed = sum(i.compress_size for i in infos) or 1
            if total / packed > 200 and total > 10 * 1024 * 1024:
                raise InputError(
                    f"DOCX compression ratio {total / packed:.0f}:1 looks like a zip bomb"
                )
            if "word/document.xml" not in archive.namelist():
                raise InputError("not a DOCX: zip has no word/document.xml")
    except zipfile.BadZipFile as exc:
        raise InputError(f"not a DOCX: bad zip archive ({exc})") from exc


def _docx_blocks(document: Any) -> list[str]:
    """Paragraphs (headings as Markdown `#`), then table rows as `cell | cell`."""
    blocks: list[str] = []
    for para in document.paragraphs:
        line = para.text.strip()
        if not line:
            continue
        style = (para.style.name if para.style is not None else "") or ""
        level = _heading_level(style)
        blocks.append("#" * level + " " + line if level else line)
    for table in document.tables:
        for row in table.rows:
            cells = [c.text.strip() for c in row.cells if c.text.strip()]
            if cells:
                blocks.append(" | ".join(cells))
    return blocks


def _heading_level(style: str) -> int:
    if style == "Title":
        return 1
    match = re.fullmatch(r"Heading (\d)", style)
    return min(int(match.group(1)), 6) if match else 0


# --- JSONL (BEIR corpus rows) --------------------------------------------------------------------

def _load_jsonl(
    data: bytes, source: str, groups: tuple[str, ...], result: LoadResult
) -> None:
    text = decode_text(data)
    seen: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            result.failures.append(LoadFailure(where, f"invalid JSON ({exc.msg})"))
            continue
        except RecursionError:
            result.failures.append(LoadFailure(where, "invalid JSON (nested too deep)"))
            continue
        if not isinstance(row, dict):
            result.failures.append(LoadFailure(where, "expected a JSON object"))
            continue
        doc_id = row.get("_id", row.get("id"))
        body = row.get("text")
        if doc_id is None or str(doc_id).strip() == "":
            result.failures.append(LoadFailure(where, "missing '_id'"))
            continue
        if not isinstance(body, str) or not body.strip():
            result.failures.append(LoadFailure(where, f"row {doc_id!r} has no 'text'"))
            continue
        doc_id = str(doc_id)
        if doc_id in seen:
            result.failures.append(LoadFailure(where, f"duplicate '_id' {doc_id!r}"))
            continue
        seen.add(doc_id)
        title = row.get("title") or ""
        metadata = {k: v for k, v in row.items() if k not in ("_id", "id", "text", "title")}
        row_groups = metadata.pop("groups", None)
        result.documents.append(
            Document(
                id=doc_id,
                text=_normalize_newlines(body),
                source=source,
                format="jsonl",
                title=str(title),
                metadata=metadata,
                groups=tuple(row_groups) if isinstance(row_groups, list) else groups,
            )
        )
    if not result.documents and not result.failures:
        result.failures.append(LoadFailure(source, "no JSON rows found"))


_LOADERS = {
    ".md": _load_markdown,
    ".markdown": _load_markdown,
    ".txt": _load_text,
    ".text": _load_text,
    ".html": _load_html,
    ".htm": _load_html,
    ".pdf": _load_pdf,
    ".docx": _load_docx,
}
