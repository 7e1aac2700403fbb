"""A corpus of malicious and malformed files, built on demand (never committed).

Each `Case` names a file under the corpus root and what ingesting it must give: `loads` (one or
more documents, with `contains` in their text and none of `absent`), `fails` (a failure whose
one-line reason contains `reason`), `skipped` (not read at all: not a regular file, or behind a
link to a folder), or `either` (a document or a failure, both safe: no document may hold
`absent`).

    cases = build(tmp_path / "hostile", outside=tmp_path / "secret")
"""

from __future__ import annotations

import io
import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from helpers import make_docx, make_pdf, make_zip_bomb, pdf_from_objects

SECRET = "TOP-SECRET-OUTSIDE-THE-ROOT"


@dataclass(frozen=True)
class Case:
    name: str  # path under the root (may hold odd characters)
    outcome: str  # "loads" | "fails" | "skipped" | "either" (loads or fails: both are safe)
    reason: str = ""  # for "fails" (and a "loads" with a bad row): part of the one-line reason
    contains: tuple[str, ...] = ()  # for "loads": text the document must hold
    absent: tuple[str, ...] = field(default=(SECRET,))  # text no document may hold


def _page(content: bytes, extra: bytes = b"") -> list[bytes]:
    """Catalog, page tree, one page, its content stream and a font (objects 1-5)."""
    return [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d %s>>\nstream\n" % (len(content), extra) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]


def _docx_with_xml(path: Path, document_xml: bytes) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", (
            '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
            'content-types"><Default Extension="rels" ContentType="application/vnd.openxml'
            'formats-package.relationships+xml"/><Override PartName="/word/document.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.'
            'document.main+xml"/></Types>'))
        archive.writestr("_rels/.rels", (
            '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/'
            'package/2006/relationships"><Relationship Id="r1" Type="http://schemas.'
            'openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
            'Target="word/document.xml"/></Relationships>'))
        archive.writestr("word/document.xml", document_xml)
    return path


W = b'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def build(root: Path, outside: Path) -> list[Case]:
    """Write the corpus under `root` (and a secret under `outside`, which symlinks point to)."""
    root.mkdir(parents=True)
    outside.mkdir(parents=True)
    (outside / "secret.md").write_text(f"# Secret\n\n{SECRET}\n", encoding="utf-8")
    cases: list[Case] = []

    def put(name: str, data: bytes | str, case: Case) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        cases.append(case)

    ok = "A plain paragraph about the pump maintenance schedule."
    put("control/ok.md", f"# Control\n\n{ok}\n", Case("control/ok.md", "loads", contains=(ok,)))

    # --- archives -----------------------------------------------------------------------------
    make_zip_bomb(root / "zip-bomb.docx", 300 * 1024 * 1024)
    cases.append(Case("zip-bomb.docx", "fails", "zip bomb"))
    make_zip_bomb(root / "zip-ratio-bomb.docx", 60 * 1024 * 1024)
    cases.append(Case("zip-ratio-bomb.docx", "fails", "zip bomb"))
    with zipfile.ZipFile(root / "nested-zip.docx", "w", zipfile.ZIP_DEFLATED) as archive:
        inner = io.BytesIO()
        with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("word/document.xml", b"\0" * (20 << 20))
        archive.writestr("inner.zip", inner.getvalue())
    cases.append(Case("nested-zip.docx", "fails", "no word/document.xml"))
    laughs = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
              + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1
                                                          else b"&lol;") * 10)
                         for i in range(1, 10))
              + b']><w:document ' + W + b'><w:body><w:p><w:r><w:t>&lol9; laughs'
              + b'</w:t></w:r></w:p></w:body></w:document>')
    _docx_with_xml(root / "billion-laughs.docx", laughs)
    cases.append(Case("billion-laughs.docx", "either", absent=("lollollol", SECRET)))
    xxe = (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file://'
           + str(outside / "secret.md").encode() + b'">]><w:document ' + W
           + b'><w:body><w:p><w:r><w:t>before &x; after</w:t></w:r></w:p></w:body>'
           + b'</w:document>')
    _docx_with_xml(root / "xxe.docx", xxe)
    cases.append(Case("xxe.docx", "either"))
    make_docx(root / "real.docx", "Real document", [("Heading 1", "Real document"),
                                                    ("Normal", "Valves are checked weekly.")])
    cases.append(Case("real.docx", "loads", contains=("Valves are checked weekly.",)))
    put("pdf-named.docx", make_pdf(["a pdf"]), Case("pdf-named.docx", "fails", "not a DOCX"))

    # --- HTML -----------------------------------------------------------------------------------
    put("deep-10k.html", "<html><body>" + "<div>" * 10_000 + "deep text" + "</div>" * 10_000
        + "<p>" + ok + "</p></body></html>", Case("deep-10k.html", "loads", contains=(ok,)))
    put("deep-100k-unclosed.html", "<html><body>" + "<div><span><b>" * 33_000 + "x",
        Case("deep-100k-unclosed.html", "either"))
    put("scripts-only.html", "<html><body>" + "<script>var a = 1;</script>" * 5_000
        + "</body></html>", Case("scripts-only.html", "fails", "no text"))
    links = "".join(f'<li><a href="/p/{i}">Related story number {i}</a></li>'
                    for i in range(90_000))
    put("5mb-boilerplate.html", f"<html><body><nav><ul>{links}</ul></nav><article><h1>Pumps"
        f"</h1><p>{ok}</p><p>{ok} Twice.</p></article></body></html>",
        Case("5mb-boilerplate.html", "loads", contains=(ok,), absent=("Related story", SECRET)))
    put("many-attributes.html", '<html><body><p ' + " ".join(f'a{i}="{i}"' for i in range(100_000))
        + f'>{ok}</p></body></html>', Case("many-attributes.html", "loads", contains=(ok,)))
    put("markup-garbage.html", "<<<>>><p<p<p>>" * 20_000 + f"<p>{ok}</p>",
        Case("markup-garbage.html", "loads", contains=(ok,)))

    # --- PDF ------------------------------------------------------------------------------------
    text_ops = b"BT /F1 12 Tf 72 720 Td (Pumps run at night.) Tj ET"
    many = _page(text_ops) + [b"<< /Type /Junk /N %d >>" % i for i in range(100_000)]
    put("objects-100k.pdf", pdf_from_objects(many),
        Case("objects-100k.pdf", "loads", contains=("Pumps run at night.",)))
    nested = _page(text_ops)
    nested[4] = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Widths " \
        + b"[" * 50_000 + b"]" * 50_000 + b" >>"
    put("nested-arrays.pdf", pdf_from_objects(nested), Case("nested-arrays.pdf", "either"))
    loop = _page(text_ops)
    loop[1] = b"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>"  # the tree holds itself
    put("page-tree-loop.pdf", pdf_from_objects(loop), Case("page-tree-loop.pdf", "either"))
    packer = zlib.compressobj(9)
    bomb = b"".join(packer.compress(b"0 0 m " * (1 << 18)) for _ in range(200)) + packer.flush()
    put("flate-bomb.pdf", pdf_from_objects(_page(bomb, b"/Filter /FlateDecode ")),
        Case("flate-bomb.pdf", "either"))  # 300 MB of path operators, 300 KB on disk
    whole = make_pdf(["Truncated pages are refused."])
    put("truncated.pdf", whole[: len(whole) // 2], Case("truncated.pdf", "fails", "PDF"))
    put("xref-beyond-end.pdf", whole.replace(b"startxref\n", b"startxref\n99999999"),
        Case("xref-beyond-end.pdf", "loads", contains=("Truncated pages are refused.",)))
    put("not-really.pdf", b"%PDF-1.4\n" + os.urandom(4096),
        Case("not-really.pdf", "fails", "PDF"))

    # --- text -----------------------------------------------------------------------------------
    sparse = root / "sparse-1g.txt"
    with sparse.open("wb") as fh:
        fh.truncate(1 << 30)  # a 1 GB file that takes no disk
    cases.append(Case("sparse-1g.txt", "fails", "over the limit"))
    put("nul-start.txt", b"\0\0\0binary\0" * 100, Case("nul-start.txt", "fails", "binary"))
    put("nul-late.md", ("# Late NULs\n\n" + ok + "\n" + "filler line\n" * 1000).encode()
        + b"tail\0with\0nuls\n", Case("nul-late.md", "loads", contains=(ok, "tailwithnuls"),
                                      absent=("\0", SECRET)))
    bidi = "Invoice total: \u202e0001\u202c EUR, approved \u2066by admin\u2069."
    put("bidi.md", f"# Bidi\n\n{bidi}\n", Case("bidi.md", "loads",
                                               contains=("Invoice total: 0001 EUR",),
                                               absent=("\u202e", "\u2066", SECRET)))
    put("one-long-word.txt", "x" * (2 << 20), Case("one-long-word.txt", "loads",
                                                   contains=("xxxx",)))
    put("headings-only.md", "#\n" * 20_000 + ok, Case("headings-only.md", "loads",
                                                        contains=(ok,)))
    put("invalid-utf8.txt", b"caf\xe9 cr\xe8me " * 200 + b"\xff\xfe\xfd" + ok.encode(),
        Case("invalid-utf8.txt", "loads", contains=(ok,)))
    put("empty.md", b"", Case("empty.md", "fails", "empty"))
    put("whitespace.txt", b" \n\t\n" * 1000, Case("whitespace.txt", "fails", "empty"))
    deep_json = json.dumps({"_id": "deep", "text": ok}) + "\n" + '{"_id": "x", "text": ' \
        + "[" * 100_000 + "]" * 100_000 + "}\n"
    put("deep.jsonl", deep_json, Case("deep.jsonl", "loads", "nested too deep", contains=(ok,)))
    put("long-line.jsonl", json.dumps({"_id": "long", "text": "z" * (8 << 20)}) + "\n",
        Case("long-line.jsonl", "loads", contains=("zzzz",)))

    # --- names and links ------------------------------------------------------------------------
    put("new\nline.md", f"# Newline\n\n{ok}\n", Case("new\nline.md", "loads", contains=(ok,)))
    put("\x1b[31mred\x1b[0m.md", f"# Escape\n\n{ok}\n",
        Case("\x1b[31mred\x1b[0m.md", "loads", contains=(ok,)))
    raw = root / os.fsdecode(b"latin1-\xe9t\xe9.md")
    raw.write_text(f"# Latin-1 name\n\n{ok}\n", encoding="utf-8")
    cases.append(Case(os.fsdecode(b"latin1-\xe9t\xe9.md"), "loads", contains=(ok,)))
    long_name = "n" * 240 + ".md"
    put(long_name, f"# Long\n\n{ok}\n", Case(long_name, "loads", contains=(ok,)))
    deep_dir = "/".join(["d"] * 100) + "/deep.md"
    put(deep_dir, f"# Deep folder\n\n{ok}\n", Case(deep_dir, "loads", contains=(ok,)))
    (root / "link-out.md").symlink_to(outside / "secret.md")
    cases.append(Case("link-out.md", "fails", "outside the ingest root"))
    (root / "link-dir-out").symlink_to(outside, target_is_directory=True)
    cases.append(Case("link-dir-out/secret.md", "skipped"))
    (root / "link-in.md").symlink_to(root / "control" / "ok.md")
    cases.append(Case("link-in.md", "loads", contains=(ok,)))
    (root / "loop-a").symlink_to(root / "loop-b", target_is_directory=True)
    (root / "loop-b").symlink_to(root / "loop-a", target_is_directory=True)
    cases.append(Case("loop-a/x.md", "skipped"))
    (root / "dangling.md").symlink_to(root / "nowhere.md")
    cases.append(Case("dangling.md", "skipped"))
    os.mkfifo(root / "fifo.txt")  # reading it would block forever
    cases.append(Case("fifo.txt", "skipped"))
    return cases
