"""Loaders: each format reads real files; each kind of bad input fails alone, with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import make_docx, make_pdf, make_zip_bomb
from ragtune.config import IngestSettings
from ragtune.documents import iter_source_files, load_path
from ragtune.documents.loaders import decode_text
from ragtune.errors import InputError

LIMITS = IngestSettings()


def load_one(path: Path, limits: IngestSettings = LIMITS):
    result = load_path(path, limits)
    assert not result.failures, result.failures
    assert len(result.documents) == 1
    return result.documents[0]


def failure_of(path: Path, limits: IngestSettings = LIMITS) -> str:
    result = load_path(path, limits)
    assert result.documents == []
    assert len(result.failures) == 1
    assert result.failures[0].path == path.resolve().as_posix()
    return result.failures[0].error


def test_markdown_title_id_and_text(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text("# The Guide\n\nBody text.\n", encoding="utf-8")
    doc = load_one(path)
    assert doc.id == path.resolve().as_posix() == doc.source
    assert doc.title == "The Guide"
    assert doc.text == "# The Guide\n\nBody text.\n"
    assert doc.format == "md"


def test_crlf_is_normalized_so_offsets_are_stable(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"line one\r\nline two\r\n")
    assert load_one(path).text == "line one\nline two\n"


def test_html_keeps_main_text_and_drops_boilerplate(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>Page</title><style>p{color:red}</style></head><body>"
        "<nav>Menu Login</nav><header>Banner</header><main><h2>Part</h2>"
        "<p>Visible <b>bold</b> text.</p><ul><li>one</li><li>two</li></ul>"
        "<script>alert('x')</script></main><footer>Legal</footer></body></html>",
        encoding="utf-8",
    )
    doc = load_one(path)
    assert doc.title == "Page"
    assert doc.text == "## Part\n\nVisible bold text.\n\n- one\n\n- two"
    for junk in ("Menu", "Banner", "alert", "color", "Legal"):
        assert junk not in doc.text


ARTICLE = [
    ("h2", "Early years"),
    ("p", "The Normans were the people who in the 10th and 11th centuries gave their name to "
          "Normandy, a region in France. They were descended from Norse raiders and pirates from "
          "Denmark, Iceland and Norway who, under their leader Rollo, agreed to swear fealty."),
    ("p", "Through generations of assimilation and mixing with the native Frankish and "
          "Roman-Gaulish populations, their descendants would gradually merge with the "
          "Carolingian-based cultures of West Francia."),
    ("h2", "Later developments"),
    ("p", "The distinct cultural and ethnic identity of the Normans emerged initially in the "
          "first half of the 10th century, and it continued to evolve over the succeeding "
          "centuries, with a footnote<sup>[3]</sup> and some <b>bold</b> words."),
]


def blog_page(article: list[tuple[str, str]]) -> str:
    """A WordPress-like page: menu, sidebar widgets, comments, cookie banner around the post."""
    body = "".join(f"<{tag}>{text}</{tag}>" for tag, text in article)
    widgets = "".join(f'<li><a href="/p{i}">Recent post number {i} about travel</a></li>'
                      for i in range(12))
    comments = "".join(
        f'<li class="comment"><b class="fn">Reader {i}</b> says: <div class="comment-content">'
        f"<p>I am still waiting on my card, it has been a week now {i}.</p></div>"
        '<a class="comment-reply-link">Reply</a></li>' for i in range(6))
    return (
        '<!DOCTYPE html><html><head><title>The Normans – a notebook</title>'
        '<script type="application/ld+json">{"headline": "Secret JSON-LD words"}</script></head>'
        '<body><div class="cookie-banner"><p>We use cookies to improve your experience. '
        "By clicking Accept all you agree to our use of cookies.</p></div>"
        '<header><nav><a href="/">Home</a><a href="/about">About</a></nav></header>'
        '<div id="content"><main><article class="post hentry">'
        f'<h1 class="entry-title">The Normans</h1><div class="entry-content">{body}</div>'
        f'</article><div id="comments"><h2>6 thoughts on this post</h2><ol>{comments}</ol>'
        "</div></main><aside><h2>Recent Posts</h2><ul>" + widgets + "</ul></aside></div>"
        "<footer><p>Copyright 2026 Example Media Group</p></footer></body></html>"
    )


def test_html_article_keeps_headings_and_drops_boilerplate(tmp_path: Path) -> None:
    path = tmp_path / "post.html"
    path.write_text(blog_page(ARTICLE), encoding="utf-8")
    doc = load_one(path)
    assert doc.title == "The Normans – a notebook"
    lines = doc.text.split("\n")
    assert "## Early years" in lines and "## Later developments" in lines
    assert lines.index("## Early years") < lines.index("## Later developments")
    for _, text in ARTICLE:
        plain = text.replace("<sup>[3]</sup>", "[3]").replace("<b>", "").replace("</b>", "")
        assert plain in doc.text
    for junk in ("cookies", "Recent post", "waiting on my card", "Reply", "Copyright",
                 "Secret JSON-LD", "Home", "<sup>", "**", "\\["):
        assert junk not in doc.text, junk


def test_html_chunks_follow_the_extracted_headings(tmp_path: Path, counter) -> None:
    from ragtune.config import ChunkingSettings
    from ragtune.documents import chunk_document

    path = tmp_path / "post.html"
    path.write_text(blog_page(ARTICLE), encoding="utf-8")
    chunks = chunk_document(load_one(path), 1, counter, ChunkingSettings(max_tokens=64,
                                                                          overlap_tokens=0))
    headings = {c.heading for c in chunks}
    assert {"Early years", "Later developments"} <= {h.split(" > ")[-1] for h in headings}


def test_html_tiny_page_falls_back_to_the_block_walker(tmp_path: Path) -> None:
    path = tmp_path / "hours.html"
    path.write_text("<html><body><nav>Home Shop</nav><p>Open 9 to 5.</p></body></html>",
                    encoding="utf-8")
    doc = load_one(path)
    assert doc.text == "Open 9 to 5."
    assert doc.title == "hours"


def test_html_page_that_is_one_list_keeps_its_items(tmp_path: Path) -> None:
    path = tmp_path / "glossary.html"
    items = "".join(f"<li>term {i}: its meaning</li>" for i in range(40))
    path.write_text(f"<html><body><h1>Glossary</h1><ul>{items}</ul></body></html>",
                    encoding="utf-8")
    doc = load_one(path)
    assert all(f"term {i}: its meaning" in doc.text for i in range(40))


def test_html_deep_nesting_and_huge_pages_are_bounded(tmp_path: Path) -> None:
    """10,000 nested elements (deeper than libxml2's HTML parser keeps) and a 5 MB page load in
    a child process capped at 1.5 GiB of address space and 120 s: text, no exception."""
    import subprocess
    import sys

    deep = tmp_path / "deep.html"
    deep.write_text("<html><body>" + "<div>" * 10_000 + "<p>deep text here</p>"
                    + "</div>" * 10_000 + "</body></html>", encoding="utf-8")
    huge = tmp_path / "huge.html"
    row = "<div><span>cell</span> <a href='/x'>link</a></div>\n"
    huge.write_text("<html><body><main>" + "<p>" + "word " * 200 + "</p>" + row * 100_000
                    + "</main></body></html>", encoding="utf-8")
    assert huge.stat().st_size > 5_000_000
    script = (
        "import resource, sys; from pathlib import Path\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))\n"
        "from ragtune.config import IngestSettings\n"
        "from ragtune.documents import load_path\n"
        "for name in sys.argv[1:]:\n"
        "    r = load_path(Path(name), IngestSettings(max_file_bytes=50 << 20))\n"
        "    print(name, len(r.documents), [f.error for f in r.failures],\n"
        "          r.documents[0].text[:40] if r.documents else '')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(deep), str(huge)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout.splitlines()
    assert out[0].endswith("1 [] deep text here"), out[0]
    assert " 1 [] " in out[1], out[1]


def test_pdf_text_per_page_with_page_spans(tmp_path: Path) -> None:
    path = tmp_path / "two.pdf"
    path.write_bytes(make_pdf(["First page words.", "Second page words."]))
    doc = load_one(path)
    assert [p.number for p in doc.pages] == [1, 2]
    assert doc.text[doc.pages[0].start : doc.pages[0].end] == "First page words."
    assert doc.text[doc.pages[1].start : doc.pages[1].end] == "Second page words."
    assert doc.page_at(doc.text.index("Second")) == 2


def test_pdf_ligatures_are_spelled_out(tmp_path: Path) -> None:
    path = tmp_path / "lig.pdf"
    # \\256 is the /fi glyph in Helvetica's standard encoding; pypdf reads it as U+FB01.
    path.write_bytes(make_pdf(["The QQQQrst ofQQQQce."]).replace(b"QQQQ", b"\\256"))
    assert load_one(path).text == "The first office."


def test_docx_paragraphs_and_headings(tmp_path: Path) -> None:
    path = make_docx(
        tmp_path / "memo.docx", "Memo",
        [("Heading 1", "Budget"), ("", "We spend less."), ("Heading 2", "Travel"),
         ("", "Trains only.")],
    )
    doc = load_one(path)
    assert doc.title == "Memo"
    assert doc.text == "# Budget\n\nWe spend less.\n\n## Travel\n\nTrains only."


def test_jsonl_beir_rows_become_documents_with_metadata(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    rows = [{"_id": "d1", "title": "T1", "text": "alpha", "year": 2020},
            {"_id": 7, "title": "", "text": "beta"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    result = load_path(path, LIMITS)
    assert [d.id for d in result.documents] == ["d1", "7"]
    assert result.documents[0].metadata == {"year": 2020}
    assert result.documents[0].title == "T1"
    assert all(d.source == path.resolve().as_posix() for d in result.documents)


def test_malformed_jsonl_lines_are_reported_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    path.write_text(
        '{"_id": "a", "text": "ok"}\n{not json}\n[1, 2]\n{"text": "no id"}\n'
        '{"_id": "b", "text": ""}\n{"_id": "a", "text": "dup"}\n{"_id": "c", "text": "fine"}\n',
        encoding="utf-8",
    )
    result = load_path(path, LIMITS)
    assert [d.id for d in result.documents] == ["a", "c"]
    where = {f.path.rsplit(":", 1)[1]: f.error for f in result.failures}
    assert set(where) == {"2", "3", "4", "5", "6"}
    assert "invalid JSON" in where["2"]
    assert "object" in where["3"]
    assert "_id" in where["4"]
    assert "text" in where["5"]
    assert "duplicate" in where["6"]


# --- bad input: every loader must survive it -----------------------------------------------------


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.md"
    path.write_bytes(b"")
    assert failure_of(path) == "empty file"


def test_whitespace_only_file(tmp_path: Path) -> None:
    path = tmp_path / "blank.txt"
    path.write_bytes(b"  \n\n \t")
    assert failure_of(path) == "empty file"


def test_binary_with_text_extension(tmp_path: Path) -> None:
    path = tmp_path / "image.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 10)
    assert "binary" in failure_of(path)


def test_wrong_encoding_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    text = "Le café coûte trois euros. Les crêpes sont délicieuses à Noël. " * 5
    path.write_bytes(text.encode("cp1252"))
    assert load_one(path).text == text


def test_utf16_with_bom(tmp_path: Path) -> None:
    path = tmp_path / "wide.txt"
    path.write_bytes("Grüße aus Köln".encode("utf-16"))
    assert load_one(path).text == "Grüße aus Köln"


def test_file_over_the_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_bytes(b"word " * 3000)
    error = failure_of(path, IngestSettings(max_file_bytes=10_000))
    assert "15,000 bytes" in error and "10,000" in error


def test_corrupt_pdf(tmp_path: Path) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(make_pdf(["hello"])[:60] + b"\x00garbage" * 20)
    assert "PDF" in failure_of(path)


def test_not_a_pdf(tmp_path: Path) -> None:
    path = tmp_path / "fake.pdf"
    path.write_bytes(b"PK\x03\x04 this is a zip")
    assert failure_of(path).startswith("not a PDF (starts with b'PK")


def test_encrypted_pdf(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    source = tmp_path / "plain.pdf"
    source.write_bytes(make_pdf(["secret plans"]))
    writer = PdfWriter()
    for page in PdfReader(str(source)).pages:
        writer.add_page(page)
    writer.encrypt(user_password="hunter2", algorithm="RC4-128")
    path = tmp_path / "locked.pdf"
    with path.open("wb") as fh:
        writer.write(fh)
    assert "encrypted PDF" in failure_of(path)


def test_pdf_without_text(tmp_path: Path) -> None:
    path = tmp_path / "scan.pdf"
    path.write_bytes(make_pdf([""]))
    assert "no extractable text" in failure_of(path)


def test_docx_that_is_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "report.docx"
    path.write_bytes(b"%PDF-1.4 not a docx at all")
    assert "not a zip" in failure_of(path)


def test_docx_zip_bomb_is_refused_before_inflating(tmp_path: Path) -> None:
    path = make_zip_bomb(tmp_path / "bomb.docx", 5 * 1024 * 1024)
    error = failure_of(path, IngestSettings(max_unzipped_bytes=1024 * 1024))
    assert "zip bomb" in error


def test_docx_high_compression_ratio_is_refused(tmp_path: Path) -> None:
    path = make_zip_bomb(tmp_path / "ratio.docx", 30 * 1024 * 1024)
    assert "zip bomb" in failure_of(path)


def test_docx_zip_without_document_part(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "other.docx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "hi")
    assert "word/document.xml" in failure_of(path)


def test_unsupported_suffix_named_explicitly(tmp_path: Path) -> None:
    path = tmp_path / "table.xlsx"
    path.write_bytes(b"PK..")
    assert failure_of(path) == "unsupported file type '.xlsx'"


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=0, max_size=2048), st.sampled_from(
    [".md", ".txt", ".html", ".pdf", ".docx", ".jsonl"]))
def test_any_bytes_give_documents_or_failures_never_exceptions(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, suffix: str
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / f"f{suffix}"
    path.write_bytes(data)
    result = load_path(path, LIMITS)
    assert result.documents or result.failures
    for failure in result.failures:
        assert failure.error


@given(st.text(min_size=1, max_size=300))
def test_decode_text_round_trips_utf8(text: str) -> None:
    data = text.encode("utf-8")
    try:
        decoded = decode_text(data)
    except InputError:
        return  # control-heavy strings are refused as binary, which is allowed
    assert decoded == text.removeprefix("\ufeff")


def test_walk_uses_supported_suffixes_and_globs(tmp_path: Path) -> None:
    for name in ("a.md", "b.txt", "c.png", "sub/d.html", ".git/e.md", "sub/skip.md"):
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    found = [p.relative_to(tmp_path).as_posix()
             for p in iter_source_files(tmp_path, exclude=LIMITS.exclude + ("skip.md",))]
    assert found == ["a.md", "b.txt", "sub/d.html"]
    only_md = [p.name for p in iter_source_files(tmp_path, include=["*.md"], exclude=[".git/*"])]
    assert only_md == ["a.md", "skip.md"]
