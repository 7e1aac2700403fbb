"""Document extraction benchmark: main text from HTML, text from PDF and DOCX, against references.

    .venv/bin/python bench/extraction.py [--json OUT] [--seed 17] [--repeat 3]
        [--only html,pdf,docx] [--pypdf-resources DIR] [--keep DIR]

HTML: the assembled page set of `bench/extraction_pages.py` (163 pages, 10 layouts; real text,
built here, not crawled). Each extractor's text is scored against the page's reference main text.
PDF: the same kind of articles printed to PDF by several producers (Chromium headless, reportlab,
fpdf2, LibreOffice), read by pypdf and by pypdfium2; and, with `--pypdf-resources DIR` (the
`resources/` folder of pypdf's sdist), pypdf's own `crazyones.pdf` against its `crazyones.txt`.
DOCX: articles written by python-docx, LibreOffice and pandoc, read by ragtune's loader.

Metric: bag-of-words F1 per document (NFKC, lowercased `\\w+` tokens, multiset overlap between
the extracted text and the reference), averaged over documents (macro). Markdown markers (`#`,
`-`) are not word tokens, so they neither help nor hurt. Times are per-document medians of the
median over `--repeat` runs.

Generated files go to a temporary folder (removed at the end unless `--keep DIR`).
"""

from __future__ import annotations

import argparse
import html as htmllib
import io
import json
import logging
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import extraction_pages as pages_mod
from common import log, machine, write_json
from ragtune.config import IngestSettings
from ragtune.documents import loaders

SETTINGS = IngestSettings()
CHROMIUM = "/usr/bin/chromium"
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
FONT_BOLD = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
PANDOC_TARGET = Path("/tmp/pypandoc")  # `pip install --target /tmp/pypandoc pypandoc_binary`
_TOKEN = re.compile(r"\w+")


# --- the metric ----------------------------------------------------------------------------------

def tokens(text: str) -> Counter[str]:
    """Lowercased word tokens after NFKC (so a ligature 'ﬁ' counts as 'fi')."""
    return Counter(_TOKEN.findall(unicodedata.normalize("NFKC", text).lower()))


def prf(extracted: str, reference: str) -> tuple[float, float, float]:
    """Bag-of-words precision, recall and F1 (multiset overlap)."""
    got, want = tokens(extracted), tokens(reference)
    overlap = sum((got & want).values())
    if not overlap:
        return 0.0, 0.0, 0.0
    p, r = overlap / sum(got.values()), overlap / sum(want.values())
    return p, r, 2 * p * r / (p + r)


def headings_kept(extracted: str, reference: str) -> tuple[int, int]:
    """(reference headings found as Markdown heading lines in the output, reference headings)."""
    want = [h.lstrip("# ").strip().lower() for h in reference.split("\n") if h.startswith("#")]
    got = {h.lstrip("# ").strip().lower() for h in extracted.split("\n") if h.startswith("#")}
    return sum(h in got for h in want), len(want)


def timed(fn: Callable[[], Any], repeat: int) -> tuple[Any, float]:
    """The result of fn() and the median of `repeat` wall times, in seconds."""
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, statistics.median(times)


# --- HTML ----------------------------------------------------------------------------------------

def html_extractors() -> dict[str, Callable[[str], str]]:
    """Name -> function(html) -> text. Each is the tool as a user would call it."""
    import lxml.html
    import trafilatura
    from readability import Document as Readability

    logging.getLogger("trafilatura").setLevel(logging.CRITICAL)
    logging.getLogger("readability").setLevel(logging.CRITICAL)

    def traf(**kw: Any) -> Callable[[str], str]:
        return lambda page: trafilatura.extract(page, **kw) or ""

    def readability_text(page: str) -> str:
        summary = Readability(page).summary(html_partial=True)
        return lxml.html.fromstring(summary).text_content() if summary.strip() else ""

    return {
        "hand walker (ragtune before)": lambda page: loaders._walk_html(page)[1],
        "trafilatura txt (defaults)": traf(),
        "trafilatura txt, no comments": traf(include_comments=False),
        "trafilatura txt, favor_precision": traf(include_comments=False, favor_precision=True),
        "trafilatura txt, favor_recall": traf(include_comments=False, favor_recall=True),
        "trafilatura markdown, no comments": traf(output_format="markdown",
                                                  include_comments=False),
        "trafilatura markdown, favor_precision": traf(output_format="markdown",
                                                      include_comments=False,
                                                      favor_precision=True),
        "trafilatura markdown, favor_recall": traf(output_format="markdown",
                                                   include_comments=False, favor_recall=True),
        "trafilatura markdown, fast (no fallback)": traf(output_format="markdown",
                                                         include_comments=False, fast=True),
        "readability-lxml summary() text": readability_text,
        "readability-lxml summary() -> walker (headings)": lambda page: loaders._walk_html(
            Readability(page).summary(html_partial=True))[1],
        "ragtune loader (after)": lambda page: loaders._load_html(page.encode(), SETTINGS)[2],
    }


def bench_html(seed: int, repeat: int) -> dict[str, Any]:
    pages = pages_mod.build_pages(seed)
    log(f"html: {len(pages)} pages, {len({p.layout for p in pages})} layouts")
    rows = []
    per_layout: dict[str, dict[str, float]] = {}
    fallbacks = sum(
        len(loaders._WORD.findall(loaders._trafilatura_main_text(p.html)[1]))
        < loaders._MIN_EXTRACTED_WORDS for p in pages)
    for name, fn in html_extractors().items():
        fn(pages[0].html)  # imports and caches out of the timing
        scores, times, kept, total = [], [], 0, 0
        by_layout: dict[str, list[float]] = {}
        for page in pages:
            out, seconds = timed(lambda page=page, fn=fn: fn(page.html), repeat)
            p, r, f1 = prf(out, page.reference)
            scores.append((p, r, f1))
            times.append(seconds)
            k, n = headings_kept(out, page.reference)
            kept, total = kept + k, total + n
            by_layout.setdefault(page.layout, []).append(f1)
        row = {
            "extractor": name,
            "f1": statistics.fmean(s[2] for s in scores),
            "precision": statistics.fmean(s[0] for s in scores),
            "recall": statistics.fmean(s[1] for s in scores),
            "pages_f1_below_0.8": sum(s[2] < 0.8 for s in scores),
            "headings_kept": kept / total if total else 0.0,
            "ms_per_page_median": 1000 * statistics.median(times),
            "ms_per_page_mean": 1000 * statistics.fmean(times),
        }
        per_layout[name] = {k: statistics.fmean(v) for k, v in by_layout.items()}
        log(f"  {name}: F1 {row['f1']:.3f} P {row['precision']:.3f} R {row['recall']:.3f} "
            f"headings {row['headings_kept']:.2f} {row['ms_per_page_median']:.1f} ms/page")
        rows.append(row)
    return {
        "pages": len(pages),
        "layouts": {layout: sum(p.layout == layout for p in pages)
                    for layout in pages_mod.LAYOUTS},
        "html_bytes_median": statistics.median(len(p.html.encode()) for p in pages),
        "reference_words_median": statistics.median(len(p.reference.split()) for p in pages),
        "ragtune_fallbacks_to_walker": fallbacks,
        "extractors": rows,
        "f1_by_layout": per_layout,
    }


# --- source documents for PDF and DOCX -----------------------------------------------------------

def source_articles(seed: int, count: int) -> list[pages_mod.Article]:
    """SQuAD articles (the first `count` of the seeded set) with headings and lists."""
    import random

    articles = pages_mod.load_articles(random.Random(seed))
    return [a for a in articles if len(a.sections) >= 3][:count]


def article_html(a: pages_mod.Article) -> str:
    return ('<!DOCTYPE html><html><head><meta charset="utf-8"><title>'
            f'{htmllib.escape(a.title)}</title><style>body{{font-family:"DejaVu Sans",sans-serif;'
            'font-size:11pt;margin:2cm}</style></head><body>'
            f"{pages_mod.body_semantic(a)}</body></html>")


def article_markdown(a: pages_mod.Article) -> str:
    return pages_mod.reference_text(a)


def have(cmd: str) -> bool:
    return shutil.which(cmd) is not None or Path(cmd).exists()


def make_chromium_pdfs(articles: list[pages_mod.Article], out: Path) -> list[Path]:
    paths = []
    for n, a in enumerate(articles):
        src, pdf = out / f"chromium-{n}.html", out / f"chromium-{n}.pdf"
        src.write_text(article_html(a), encoding="utf-8")
        subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--no-pdf-header-footer",
             f"--print-to-pdf={pdf}", src.as_uri()],
            check=True, capture_output=True, timeout=120)
        paths.append(pdf)
    return paths


def make_reportlab_pdfs(articles: list[pages_mod.Article], out: Path) -> list[Path]:
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    from reportlab.platypus import ListFlowable, ListItem, Paragraph, SimpleDocTemplate

    pdfmetrics.registerFont(TTFont("DejaVu", str(FONT)))
    pdfmetrics.registerFont(TTFont("DejaVu-Bold", str(FONT_BOLD)))
    body = ParagraphStyle("body", fontName="DejaVu", fontSize=10.5, leading=14, spaceAfter=6)
    h1 = ParagraphStyle("h1", fontName="DejaVu-Bold", fontSize=18, leading=22, spaceAfter=10)
    h2 = ParagraphStyle("h2", fontName="DejaVu-Bold", fontSize=13, leading=16, spaceAfter=6)
    paths = []
    for n, a in enumerate(articles):
        story: list[Any] = [Paragraph(htmllib.escape(a.title), h1)]
        for heading, blocks in a.sections:
            if heading:
                story.append(Paragraph(htmllib.escape(heading), h2))
            for kind, value in blocks:
                if kind == "p":
                    story.append(Paragraph(htmllib.escape(str(value)), body))
                else:
                    story.append(ListFlowable(
                        [ListItem(Paragraph(htmllib.escape(i), body)) for i in value],  # type: ignore[union-attr]
                        bulletType="bullet"))
        path = out / f"reportlab-{n}.pdf"
        SimpleDocTemplate(str(path), title=a.title).build(story)
        paths.append(path)
    return paths


def make_fpdf_pdfs(articles: list[pages_mod.Article], out: Path) -> list[Path]:
    from fpdf import FPDF

    paths = []
    for n, a in enumerate(articles):
        pdf = FPDF()
        pdf.add_font("DejaVu", "", str(FONT))
        pdf.add_font("DejaVu", "B", str(FONT_BOLD))
        pdf.set_title(a.title)
        pdf.add_page()
        pdf.set_font("DejaVu", "B", 16)
        pdf.multi_cell(0, 9, a.title, new_x="LMARGIN", new_y="NEXT")
        for heading, blocks in a.sections:
            if heading:
                pdf.set_font("DejaVu", "B", 13)
                pdf.multi_cell(0, 8, heading, new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("DejaVu", "", 10.5)
            for kind, value in blocks:
                items = [str(value)] if kind == "p" else [f"• {i}" for i in value]  # type: ignore[union-attr]
                for item in items:
                    pdf.multi_cell(0, 5.5, item, new_x="LMARGIN", new_y="NEXT")
                    pdf.ln(2)
        path = out / f"fpdf2-{n}.pdf"
        pdf.output(str(path))
        paths.append(path)
    return paths


def soffice_convert(sources: list[Path], target: str, out: Path) -> None:
    """One LibreOffice process converts all sources (its start-up is the slow part); the HTML
    is imported by Writer (not Writer/Web), so it is laid out and saved as a text document."""
    profile = out / "lo-profile"
    subprocess.run(
        ["soffice", f"-env:UserInstallation={profile.as_uri()}", "--headless",
         "--infilter=HTML (StarWriter)", "--convert-to", target, "--outdir", str(out),
         *map(str, sources)],
        check=True, capture_output=True, timeout=600)


def make_libreoffice(articles: list[pages_mod.Article], out: Path, target: str,
                     suffix: str) -> list[Path]:
    sources = []
    for n, a in enumerate(articles):
        src = out / f"libreoffice-{n}.html"
        src.write_text(article_html(a), encoding="utf-8")
        sources.append(src)
    soffice_convert(sources, target, out)
    return [out / f"libreoffice-{n}.{suffix}" for n in range(len(articles))]


# --- PDF -----------------------------------------------------------------------------------------

def read_pypdf(data: bytes) -> tuple[int, str]:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data), strict=False)
    return len(reader.pages), "\n\n".join(p.extract_text() or "" for p in reader.pages)


def read_pypdfium2(data: bytes) -> tuple[int, str]:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(data)
    try:
        texts = []
        for page in pdf:
            textpage = page.get_textpage()
            texts.append(textpage.get_text_bounded())
            textpage.close()
            page.close()
        return len(pdf), "\n\n".join(texts)
    finally:
        pdf.close()


def read_ragtune_pdf(data: bytes) -> tuple[int, str]:
    _, _, text, pages = loaders._load_pdf(data, SETTINGS)
    return len(pages), text


PDF_READERS = {"pypdf": read_pypdf, "pypdfium2": read_pypdfium2,
               "ragtune loader": read_ragtune_pdf}
LIGATURES = re.compile("[\ufb00-\ufb06]")


def expected_pages(path: Path) -> int | None:
    """The page count the producer wrote, from the PDF's own page tree (/Count), read by both
    libraries; None when they disagree."""
    a, b = read_pypdf(path.read_bytes())[0], read_pypdfium2(path.read_bytes())[0]
    return a if a == b else None


def bench_pdf(seed: int, repeat: int, work: Path, resources: Path | None) -> dict[str, Any]:
    articles = source_articles(seed, 8)
    producers: dict[str, Callable[[], list[Path]]] = {
        "reportlab": lambda: make_reportlab_pdfs(articles, work),
        "fpdf2": lambda: make_fpdf_pdfs(articles, work),
    }
    if have(CHROMIUM):
        producers["Chromium headless"] = lambda: make_chromium_pdfs(articles, work)
    if have("soffice"):
        producers["LibreOffice Writer"] = lambda: make_libreoffice(
            articles, work, "pdf:writer_pdf_Export", "pdf")
    refs = [article_markdown(a) for a in articles]
    sets: list[tuple[str, list[Path], list[str]]] = []
    for name, make in producers.items():
        log(f"pdf: producing with {name}")
        sets.append((name, make(), refs))
    if resources is not None and (resources / "crazyones.pdf").exists():
        sets.append(("XeTeX (pypdf sdist: crazyones.pdf)", [resources / "crazyones.pdf"],
                     [(resources / "crazyones.txt").read_text(encoding="utf-8")]))
    rows = []
    for producer, paths, references in sets:
        pdf_producer = _pdf_producer(paths[0])
        for reader, fn in PDF_READERS.items():
            scores, times, counts_ok, ligatures = [], [], 0, 0
            for path, reference in zip(paths, references, strict=True):
                data = path.read_bytes()
                fn(data)
                (count, text), seconds = timed(lambda data=data, fn=fn: fn(data), repeat)
                scores.append(prf(text, reference))
                times.append(seconds)
                counts_ok += count == expected_pages(path)
                ligatures += len(LIGATURES.findall(text))
            rows.append({
                "producer": producer, "producer_string": pdf_producer, "reader": reader,
                "files": len(paths),
                "pages": sum(expected_pages(p) or 0 for p in paths),
                "f1": statistics.fmean(s[2] for s in scores),
                "precision": statistics.fmean(s[0] for s in scores),
                "recall": statistics.fmean(s[1] for s in scores),
                "page_count_correct": f"{counts_ok}/{len(paths)}",
                "ligature_chars": ligatures,
                "ms_per_file_median": 1000 * statistics.median(times),
            })
            log(f"  {producer} / {reader}: F1 {rows[-1]['f1']:.3f} "
                f"{rows[-1]['ms_per_file_median']:.1f} ms/file")
    return {"rows": rows}


def _pdf_producer(path: Path) -> str:
    from pypdf import PdfReader

    meta = PdfReader(str(path)).metadata or {}
    return " / ".join(str(meta.get(k, "")) for k in ("/Producer", "/Creator") if meta.get(k))


# --- DOCX ----------------------------------------------------------------------------------------

def make_python_docx(articles: list[pages_mod.Article], out: Path) -> list[Path]:
    import docx

    paths = []
    for n, a in enumerate(articles):
        document = docx.Document()
        document.core_properties.title = a.title
        document.add_heading(a.title, level=1)
        for heading, blocks in a.sections:
            if heading:
                document.add_heading(heading, level=2)
            for kind, value in blocks:
                if kind == "p":
                    document.add_paragraph(str(value))
                else:
                    for item in value:  # type: ignore[union-attr]
                        document.add_paragraph(item, style="List Bullet")
        path = out / f"python-docx-{n}.docx"
        document.save(str(path))
        paths.append(path)
    return paths


def make_pandoc_docx(articles: list[pages_mod.Article], out: Path) -> list[Path]:
    binary = next(PANDOC_TARGET.glob("pypandoc/files/pandoc*"), None)
    if binary is None:
        return []
    paths = []
    for n, a in enumerate(articles):
        src, path = out / f"pandoc-{n}.md", out / f"pandoc-{n}.docx"
        src.write_text(article_markdown(a), encoding="utf-8")
        subprocess.run([str(binary), str(src), "-o", str(path)], check=True,
                       capture_output=True, timeout=120)
        paths.append(path)
    return paths


def bench_docx(seed: int, repeat: int, work: Path) -> dict[str, Any]:
    articles = source_articles(seed, 8)
    refs = [article_markdown(a) for a in articles]
    producers: dict[str, Callable[[], list[Path]]] = {
        "python-docx": lambda: make_python_docx(articles, work)}
    if have("soffice"):
        producers["LibreOffice Writer (HTML import)"] = lambda: make_libreoffice(
            articles, work, "docx:MS Word 2007 XML", "docx")
    producers["pandoc (Markdown)"] = lambda: make_pandoc_docx(articles, work)
    rows = []
    for producer, make in producers.items():
        log(f"docx: producing with {producer}")
        paths = make()
        if not paths:
            log(f"  {producer}: not available, skipped")
            continue
        scores, times, kept, total = [], [], 0, 0
        for path, reference in zip(paths, refs, strict=True):
            data = path.read_bytes()
            (_, _, text, _), seconds = timed(
                lambda data=data: loaders._load_docx(data, SETTINGS), repeat)
            scores.append(prf(text, reference))
            times.append(seconds)
            k, n = headings_kept(text, reference)
            kept, total = kept + k, total + n
        rows.append({
            "producer": producer, "reader": "ragtune loader (python-docx)", "files": len(paths),
            "f1": statistics.fmean(s[2] for s in scores),
            "precision": statistics.fmean(s[0] for s in scores),
            "recall": statistics.fmean(s[1] for s in scores),
            "headings_kept": kept / total if total else 0.0,
            "ms_per_file_median": 1000 * statistics.median(times),
        })
        log(f"  {producer}: F1 {rows[-1]['f1']:.3f} headings {rows[-1]['headings_kept']:.2f}")
    return {"rows": rows}


# --- main ----------------------------------------------------------------------------------------

PACKAGES = ("trafilatura", "readability-lxml", "lxml", "beautifulsoup4", "pypdf", "pypdfium2",
            "python-docx", "reportlab", "fpdf2")


def _versions() -> dict[str, str]:
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "missing"
    for cmd, args in ((CHROMIUM, ["--version"]), ("soffice", ["--version"])):
        if have(cmd):
            proc = subprocess.run([cmd, *args], capture_output=True, text=True, timeout=60)
            out[Path(cmd).name] = proc.stdout.strip().splitlines()[0] if proc.stdout else "?"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--repeat", type=int, default=3, help="timing runs per document")
    parser.add_argument("--only", default="html,pdf,docx")
    parser.add_argument("--pypdf-resources", type=Path,
                        help="the resources/ folder of an unpacked pypdf sdist")
    parser.add_argument("--keep", type=Path, help="keep the generated PDF/DOCX files here")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    work = args.keep or Path(tempfile.mkdtemp(prefix="ragtune-bench-extraction-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"), "machine": machine(), "versions": _versions(),
        "seed": args.seed, "repeat": args.repeat,
        "metric": "bag-of-words F1 (NFKC, lowercase, \\w+ tokens, multiset), macro average",
    }
    try:
        if "html" in parts:
            results["html"] = bench_html(args.seed, args.repeat)
        if "pdf" in parts:
            results["pdf"] = bench_pdf(args.seed, args.repeat, work, args.pypdf_resources)
        if "docx" in parts:
            results["docx"] = bench_docx(args.seed, args.repeat, work)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    write_json(args.json, results)


if __name__ == "__main__":
    sys.exit(main())
