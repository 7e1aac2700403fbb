"""The lab report: one self-contained HTML page and a Markdown summary of a `ragtune compare` run.

The input is the lab result (`LabResult`, or the `lab.json` document `compare` writes: the
experiment, recommendation, per-architecture metrics and failure causes, the freshness probe,
stage timings, and every case with each architecture's answer and retrieved passages). Missing
metrics are shown as "–" and unknown keys are ignored, so an older or newer `lab.json` still
renders.

The HTML page loads nothing: CSS is inline, the charts are SVG drawn here, and a
Content-Security-Policy forbids every fetch. The only script opens the drill-down before
printing. Everything that comes from the data (answers and passages are untrusted text) is
escaped.

Usage::

    from pathlib import Path
    from ragtune.lab.report import write_report
    from ragtune.lab.result import load_lab

    lab = load_lab(Path("runs/lab/lab.json"))
    paths = write_report(lab, Path("runs/lab"))
    print(paths["html"])  # runs/lab/report.html
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from ragtune.lab.result import (
    LAB_FILE,
    ArchMetrics,
    CaseAnswer,
    CasePassage,
    LabCase,
    LabRecommendation,
    LabResult,
)

LabData = LabResult | Mapping[str, Any]  # a result, or a lab.json document

__all__ = ["render_html", "render_markdown", "write_report"]

DASH = "–"

# Okabe–Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442",
           "#000000")

CHOICE_GLOSS = {
    "hybrid": "retrieval + a fine-tuned adapter",
    "rag": "retrieval-augmented generation, no training",
    "fine-tune": "a fine-tuned adapter, no retrieval",
}


# --- reading the lab ------------------------------------------------------------------------


def _num(value: Any) -> float | None:
    """A finite number, or None (null, missing, NaN, a bool or a string)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _metrics(lab: LabResult, arch: str) -> ArchMetrics:
    """An architecture's metrics (none for a column the lab holds no entry for)."""
    entry = lab.architectures.get(arch)
    return entry.metrics if entry is not None else ArchMetrics()


def _slug(name: str) -> str:
    """An id-safe form of a name: `rag+schema` -> `rag-schema`."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "x"


def _label(key: str) -> str:
    """A readable name for a snake_case key: `retrieval_miss` -> `retrieval miss`."""
    return key.replace("_", " ")


# --- formatting values ----------------------------------------------------------------------


def _fraction(value: Any) -> str:
    v = _num(value)
    return DASH if v is None else f"{v:.2f}"


def _milliseconds(value: Any) -> str:
    v = _num(value)
    return DASH if v is None else f"{v:,.0f}"


def _seconds(value: Any) -> str:
    v = _num(value)
    if v is None:
        return DASH
    return f"{v:.1f} s" if v < 10 else f"{v:,.0f} s"


def _count(value: Any) -> str:
    v = _num(value)
    return DASH if v is None else f"{v:,.0f}"


def _yes_no(value: Any) -> str:
    return DASH if not isinstance(value, bool) else ("yes" if value else "no")


def _metric_value(metric: str, value: Any) -> str:
    """A value named by a metric key, formatted as the table shows it (for `decided_by`)."""
    if metric.startswith("latency"):
        return f"{_milliseconds(value)} ms" if _num(value) is not None else DASH
    if metric.endswith("seconds"):
        return _seconds(value)
    if metric.endswith("tokens"):
        return _count(value)
    if isinstance(value, bool) or value is None:
        return _yes_no(value)
    v = _num(value)
    if v is None:
        return _text(value)
    return f"{v:.2f}" if abs(v) <= 1 else f"{v:,.1f}"


# --- the comparison rows --------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One row of the side-by-side table.

    `cell` renders an architecture's metrics; `score` is the number compared for the row's best
    value and `better` says which way is better ("higher", "lower", or None: no highlight,
    because the direction is a trade-off rather than a quality).
    """

    key: str
    label: str
    cell: Callable[[ArchMetrics], str]
    score: Callable[[ArchMetrics], float | None]
    better: str | None = None


def _single(key: str, label: str, fmt: Callable[[Any], str], better: str | None) -> Row:
    return Row(key, label, lambda m: fmt(m.get(key)), lambda m: _num(m.get(key)), better)


def _pair(key: str, label: str, first: str, second: str, fmt: Callable[[Any], str],
          sep: str, better: str | None) -> Row:
    """A row showing two metrics together; the best is judged on the second."""

    def cell(m: ArchMetrics) -> str:
        a, b = m.get(first), m.get(second)
        if _num(a) is None and _num(b) is None:
            return DASH
        return f"{fmt(a)}{sep}{fmt(b)}"

    return Row(key, label, cell, lambda m: _num(m.get(second)), better)


def _latency_cell(m: ArchMetrics) -> str:
    p50, p95 = m.latency_ms_p50, m.latency_ms_p95
    if _num(p50) is None and _num(p95) is None:
        return DASH
    return f"{_milliseconds(p50)} / {_milliseconds(p95)}"


def _change_cost_cell(m: ArchMetrics) -> str:
    what, seconds = _text(m.change_cost), _seconds(m.change_cost_seconds)
    if not what:
        return seconds
    # "retrain (95 s)" already says how long
    return what if seconds == DASH or seconds in what else f"{what} ({seconds})"


ROWS: tuple[Row, ...] = (
    _single("correct", "Correctness", _fraction, "higher"),
    _single("faithfulness", "Faithfulness", _fraction, "higher"),
    _single("citation_accuracy", "Citation accuracy", _fraction, "higher"),
    _single("format_valid", "Format validity", _fraction, "higher"),
    _single("refusal_correct", "Refusal correctness", _fraction, "higher"),
    _pair("freshness", "Freshness before → after change", "freshness_before",
          "freshness_after", _fraction, " → ", "higher"),
    _single("stale_after", "Stale answers after change", _fraction, "lower"),
    _single("consistency", "Consistency (paraphrases)", _fraction, "higher"),
    Row("latency", "Latency p50 / p95 (ms)", _latency_cell,
        lambda m: _num(m.latency_ms_p50), "lower"),
    _pair("tokens", "Prompt / output tokens per query", "prompt_tokens", "output_tokens",
          _count, " / ", None),
    _single("training_seconds", "Training time", _seconds, None),
    _single("adapter_stale", "Adapter stale after change", _yes_no, None),
    Row("change_cost", "Cost of absorbing the change set", _change_cost_cell,
        lambda m: _num(m.change_cost_seconds), None),
)


def _best(row: Row, metrics: Sequence[ArchMetrics]) -> set[int]:
    """Indexes of the best values in a row: none when the direction is unclear, fewer than two
    values are known, or all known values are equal."""
    if row.better is None:
        return set()
    scores = [(i, s) for i, m in enumerate(metrics) if (s := row.score(m)) is not None]
    if len(scores) < 2 or len({s for _, s in scores}) == 1:
        return set()
    pick = max if row.better == "higher" else min
    top = pick(s for _, s in scores)
    return {i for i, s in scores if s == top}


def _table_cells(lab: LabResult) -> list[tuple[Row, list[str], set[int]]]:
    """Each row with its cell texts (one per architecture) and the indexes of its best cells."""
    metrics = [_metrics(lab, arch) for arch in lab.columns]
    return [(row, [row.cell(m) for m in metrics], _best(row, metrics)) for row in ROWS]


def _failure_causes(lab: LabResult) -> tuple[list[str], dict[str, dict[str, float]]]:
    """The causes that occurred (most frequent first) and each architecture's counts."""
    counts: dict[str, dict[str, float]] = {}
    totals: dict[str, float] = {}
    for arch in lab.columns:
        entry = lab.architectures.get(arch)
        found = entry.failure_causes if entry is not None else {}
        row = {c: n for c, v in found.items() if (n := _num(v)) is not None}
        counts[arch] = row
        for cause, n in row.items():
            totals[cause] = totals.get(cause, 0.0) + n
    causes = sorted((c for c, n in totals.items() if n > 0), key=lambda c: (-totals[c], c))
    return causes, counts


def _stages(lab: LabResult) -> list[tuple[str, float | None]]:
    return [(s.stage, _num(s.seconds)) for s in lab.stages]


def _decided_by(rec: LabRecommendation) -> list[str]:
    """`decided_by` as "metric (arch) = value" lines."""
    lines = []
    for item in rec.decided_by:
        where = f" ({item.arch})" if item.arch else ""
        lines.append(f"{item.metric}{where} = {_metric_value(item.metric, item.value)}")
    return lines


def _experiment_line(lab: LabResult) -> list[str]:
    """The facts of the run, as short phrases."""
    exp = lab.experiment
    parts = []
    if exp.file:
        parts.append(f"from {exp.file}")
    if exp.kb:
        parts.append(f"knowledge base {exp.kb}")
    for count, noun in ((exp.documents, "documents"), (exp.eval_cases, "eval cases")):
        if count is not None:
            parts.append(f"{_count(count)} {noun}")
    if exp.train_examples:
        per_arch = ", ".join(f"{a} {_count(n)}" for a, n in exp.train_examples.items())
        parts.append(f"training examples: {per_arch}")
    if exp.seed is not None:
        parts.append(f"seed {exp.seed}")
    if lab.created_at:
        parts.append(f"run {lab.created_at}")
    if _num(lab.seconds) is not None:
        parts.append(f"took {_seconds(lab.seconds)}")
    if lab.ragtune:
        parts.append(f"ragtune {lab.ragtune}")
    return parts


def _title(lab: LabResult) -> str:
    name = _text(lab.experiment.name)
    return f"ragtune lab: {name}" if name else "ragtune lab report"


# --- SVG charts -----------------------------------------------------------------------------


def _nice_step(span: float, ticks: int = 5) -> float:
    """A 1-2-5 tick step that cuts `span` into about `ticks` parts."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _ticks(top: float) -> list[float]:
    step = _nice_step(top)
    return [i * step for i in range(int(math.ceil(top / step - 1e-9)) + 1)]


def _svg_open(chart_id: str, width: int, height: int, title: str, desc: str) -> list[str]:
    return [
        f'<svg class="chart" id="{chart_id}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(desc)}</desc>',
    ]


def _y_axis(left: float, right: float, y_of: Callable[[float], float], ticks: Iterable[float],
            fmt: Callable[[float], str], label: str, top: float, bottom: float) -> list[str]:
    out = []
    for t in ticks:
        y = y_of(t)
        out.append(f'<line class="grid" x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" '
                   f'text-anchor="end">{escape(fmt(t))}</text>')
    mid = (top + bottom) / 2
    out.append(f'<text class="axis-label" x="14" y="{mid:.1f}" text-anchor="middle" '
               f'transform="rotate(-90 14 {mid:.1f})">{escape(label)}</text>')
    return out


def _legend(items: Sequence[tuple[str, str]], x: float, y: float, width: float) -> list[str]:
    """Swatches and names, wrapped into rows that fit `width`."""
    out, cx, cy = [], x, y
    for name, colour in items:
        span = 18 + 7 * len(name) + 16
        if cx > x and cx + span > x + width:
            cx, cy = x, cy + 18
        out.append(f'<rect x="{cx:.1f}" y="{cy - 10:.1f}" width="12" height="12" '
                   f'fill="{colour}"/>')
        out.append(f'<text class="legend" x="{cx + 17:.1f}" y="{cy:.1f}">{escape(name)}</text>')
        cx += span
    return out


def _legend_height(items: Sequence[tuple[str, str]], width: float) -> int:
    rows, cx = 1, 0.0
    for name, _ in items:
        span = 18 + 7 * len(name) + 16
        if cx > 0 and cx + span > width:
            rows, cx = rows + 1, 0.0
        cx += span
    return rows * 18


def quality_latency_svg(lab: LabData) -> str:
    """Scatter: latency p50 (x) against correctness (y), one labelled point per architecture."""
    lab = LabResult.read(lab)
    width, height, left, right, top, bottom = 640, 340, 60, 620, 20, 290
    points = [(arch, p50, correct, i) for i, arch in enumerate(lab.columns)
              if (p50 := _num(_metrics(lab, arch).latency_ms_p50)) is not None
              and (correct := _num(_metrics(lab, arch).correct)) is not None]
    x_ticks = _ticks(max([p for _, p, _, _ in points] + [1.0]) * 1.05)
    x_max = x_ticks[-1]

    def x_of(v: float) -> float:
        return left + (right - left) * v / x_max

    def y_of(v: float) -> float:
        return bottom - (bottom - top) * v

    out = _svg_open("chart-quality", width, height, "Quality vs latency",
                    "Correctness against median latency, one point per architecture.")
    out += _y_axis(left, right, y_of, [0, 0.25, 0.5, 0.75, 1.0], lambda t: f"{t:.2f}",
                   "correctness", top, bottom)
    for t in x_ticks:
        out.append(f'<text class="tick" x="{x_of(t):.1f}" y="{bottom + 16}" '
                   f'text-anchor="middle">{t:,.0f}</text>')
    out.append(f'<line class="axis" x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}"/>')
    out.append(f'<text class="axis-label" x="{(left + right) / 2}" y="{height - 10}" '
               f'text-anchor="middle">latency p50 (ms)</text>')
    for arch, p50, correct, i in points:
        x, y = x_of(p50), y_of(correct)
        anchor, dx = ("end", -10) if x > right - 90 else ("start", 10)
        out.append(f'<g class="point"><title>{escape(arch)}: correctness {correct:.2f}, '
                   f'p50 {p50:,.0f} ms</title>'
                   f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6" fill="{PALETTE[i % len(PALETTE)]}"/>'
                   f'<text class="point-label" x="{x + dx:.1f}" y="{y + 4:.1f}" '
                   f'text-anchor="{anchor}">{escape(arch)}</text></g>')
    out.append("</svg>")
    return "".join(out)


def freshness_svg(lab: LabData) -> str:
    """Grouped bars: freshness before and after the change set, per architecture."""
    lab = LabResult.read(lab)
    archs = lab.columns
    series = (("before change", "freshness_before", PALETTE[0]),
              ("after change", "freshness_after", PALETTE[1]))
    width, left, right, top = 640, 60, 620, 34
    bottom = 270
    height = bottom + 46
    group = (right - left) / max(len(archs), 1)
    bar = min(36.0, group * 0.8 / len(series))

    def y_of(v: float) -> float:
        return bottom - (bottom - top) * v

    out = _svg_open("chart-freshness", width, height, "Freshness before and after the change",
                    "Share of freshness questions answered with the current facts, before and "
                    "after the documents changed, per architecture.")
    out += _legend([(name, colour) for name, _, colour in series], left, 14, right - left)
    out += _y_axis(left, right, y_of, [0, 0.25, 0.5, 0.75, 1.0], lambda t: f"{t:.2f}",
                   "freshness", top, bottom)
    for g, arch in enumerate(archs):
        m = _metrics(lab, arch)
        x0 = left + g * group + (group - bar * len(series)) / 2
        for s, (name, key, colour) in enumerate(series):
            x, v = x0 + s * bar, _num(m.get(key))
            if v is None:
                out.append(f'<text class="tick" x="{x + bar / 2:.1f}" y="{bottom - 4}" '
                           f'text-anchor="middle">{DASH}</text>')
                continue
            out.append(f'<rect x="{x:.1f}" y="{y_of(v):.1f}" width="{bar - 2:.1f}" '
                       f'height="{bottom - y_of(v):.1f}" fill="{colour}">'
                       f'<title>{escape(arch)}, {name}: {v:.2f}</title></rect>')
            out.append(f'<text class="value" x="{x + bar / 2 - 1:.1f}" y="{y_of(v) - 4:.1f}" '
                       f'text-anchor="middle">{v:.2f}</text>')
        out.append(f'<text class="tick" x="{left + (g + 0.5) * group:.1f}" y="{bottom + 16}" '
                   f'text-anchor="middle">{escape(arch)}</text>')
    out.append(f'<line class="axis" x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}"/>')
    out.append("</svg>")
    return "".join(out)


def failure_causes_svg(lab: LabData) -> str:
    """Stacked bars: failure causes per architecture, with a legend."""
    lab = LabResult.read(lab)
    archs = lab.columns
    causes, counts = _failure_causes(lab)
    colours = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(causes)}
    legend = [(_label(c), colours[c]) for c in causes]
    width, left, right = 640, 60, 620
    top = 20 + _legend_height(legend, right - left) + 8
    bottom = top + 230
    height = bottom + 30
    totals = [sum(counts[a].get(c, 0.0) for c in causes) for a in archs]
    y_ticks = _ticks(max(totals + [1.0]))
    y_max = y_ticks[-1]
    group = (right - left) / max(len(archs), 1)
    bar = min(56.0, group * 0.6)

    def y_of(v: float) -> float:
        return bottom - (bottom - top) * v / y_max

    out = _svg_open("chart-failures", width, height, "Failure causes",
                    "Number of failed cases per architecture, by attributed cause.")
    out += _legend(legend, left, 18, right - left)
    out += _y_axis(left, right, y_of, y_ticks, lambda t: f"{t:,.0f}", "failed cases", top, bottom)
    for g, arch in enumerate(archs):
        x, base = left + g * group + (group - bar) / 2, 0.0
        for cause in causes:
            n = counts[arch].get(cause, 0.0)
            if n <= 0:
                continue
            out.append(f'<rect x="{x:.1f}" y="{y_of(base + n):.1f}" width="{bar:.1f}" '
                       f'height="{y_of(base) - y_of(base + n):.1f}" fill="{colours[cause]}" '
                       f'stroke="#fff"><title>{escape(arch)}: {escape(_label(cause))} '
                       f'{n:,.0f}</title></rect>')
            base += n
        out.append(f'<text class="value" x="{x + bar / 2:.1f}" y="{y_of(base) - 4:.1f}" '
                   f'text-anchor="middle">{base:,.0f}</text>')
        out.append(f'<text class="tick" x="{left + (g + 0.5) * group:.1f}" y="{bottom + 16}" '
                   f'text-anchor="middle">{escape(arch)}</text>')
    out.append(f'<line class="axis" x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}"/>')
    out.append("</svg>")
    return "".join(out)


# --- HTML -----------------------------------------------------------------------------------

CSS = """
:root { color-scheme: light; --ink: #1b1f24; --muted: #57606a; --line: #d0d7de;
  --soft: #f6f8fa; --best: #dafbe1; --best-ink: #0a5c2b; --bad: #a40e26; --good: #0a5c2b; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 72rem; padding: 1.5rem 1.25rem 4rem; color: var(--ink);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; background: #fff; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.25rem; margin: 2.2rem 0 .6rem; border-bottom: 1px solid var(--line);
  padding-bottom: .2rem; }
h3 { font-size: 1rem; margin: 1rem 0 .3rem; }
.experiment, .muted, figcaption, .desc { color: var(--muted); }
.experiment { margin: 0 0 1rem; }
.experiment span + span::before { content: " · "; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: .9em; }
#recommendation { border: 2px solid #0072B2; border-radius: 8px; padding: 1rem 1.25rem;
  background: #f0f7fc; }
#recommendation .label { text-transform: uppercase; letter-spacing: .06em; font-size: .8rem;
  color: var(--muted); margin: 0; }
#recommendation .choice { font-size: 2.4rem; font-weight: 700; margin: 0; line-height: 1.2; }
#recommendation .gloss { margin: 0 0 .6rem; color: var(--muted); }
#recommendation ul { margin: .2rem 0 .6rem; padding-left: 1.3rem; }
.warnings li { color: var(--bad); }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; margin: .4rem 0 1rem; }
th, td { border: 1px solid var(--line); padding: .35rem .6rem; text-align: left;
  vertical-align: top; }
thead th { background: var(--soft); }
#comparison td { text-align: right; white-space: nowrap; }
#comparison td.text { text-align: left; white-space: normal; }
#comparison th .desc { display: block; font-weight: 400; font-size: .8rem; max-width: 12rem; }
td.best { background: var(--best); color: var(--best-ink); font-weight: 700; }
td.best::after { content: " ★"; font-size: .8em; }
td.num { text-align: right; }
figure { margin: 1rem 0 1.5rem; }
svg.chart { display: block; max-width: 100%; height: auto; }
svg.chart text { font-family: inherit; font-size: 12px; fill: var(--ink); }
svg.chart .tick, svg.chart .value { fill: var(--muted); font-size: 11px; }
svg.chart .axis-label { fill: var(--muted); }
svg.chart .point-label { font-weight: 600; }
svg.chart .grid { stroke: #eaeef2; }
svg.chart .axis { stroke: var(--muted); }
details { border: 1px solid var(--line); border-radius: 6px; margin: .4rem 0; padding: 0 .8rem; }
details[open] { padding-bottom: .6rem; }
summary { cursor: pointer; padding: .45rem 0; }
summary .case-id { font-weight: 600; }
.kind { display: inline-block; border-radius: 4px; background: var(--soft);
  border: 1px solid var(--line); padding: 0 .35rem; font-size: .8rem; margin: 0 .3rem; }
.marks { white-space: nowrap; }
.mark { display: inline-block; font-size: .8rem; padding: 0 .3rem; border-radius: 4px;
  margin-left: .2rem; border: 1px solid var(--line); }
.ok { color: var(--good); }
.no { color: var(--bad); }
.arch-answer { border-top: 1px solid var(--line); padding-top: .4rem; margin-top: .6rem; }
.answer { white-space: pre-wrap; overflow-wrap: anywhere; background: var(--soft);
  padding: .4rem .6rem; border-radius: 4px; margin: .3rem 0; }
.passage { white-space: pre-wrap; overflow-wrap: anywhere; margin: .2rem 0 .6rem;
  padding-left: .6rem; border-left: 3px solid var(--line); }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .1rem .8rem;
  margin: .3rem 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
@media print {
  body { max-width: none; padding: 0; font-size: 10pt; }
  .table-wrap { overflow: visible; }
  #comparison { width: 100%; font-size: 9pt; }
  #comparison td, #comparison th { white-space: normal; padding: .2rem .3rem; }
  table, figure, svg.chart, #recommendation, .arch-answer, .keep { break-inside: avoid;
    page-break-inside: avoid; }
  td.best, #recommendation { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  h2, h3 { break-after: avoid; page-break-after: avoid; }
  summary { list-style: none; }
  details { border: none; padding: 0; }
}
"""

# Opens every <details> for printing and restores the reader's view afterwards.
PRINT_JS = (
    "(function(){var opened=[];"
    "addEventListener('beforeprint',function(){document.querySelectorAll('details:not([open])')"
    ".forEach(function(d){d.open=true;opened.push(d);});});"
    "addEventListener('afterprint',function(){opened.forEach(function(d){d.open=false;});"
    "opened=[];});})();"
)


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


def inline_hashes() -> tuple[str, str]:
    """CSP sources of the report's own style and script: a page that shows the report in a
    frame of its own (the service's web page: a blob: frame inherits the page's policy) must
    allow exactly these."""
    return _csp_hash(CSS), _csp_hash(PRINT_JS)


def _csp() -> str:
    """Nothing may be fetched; only this page's own style and script run."""
    style, script = inline_hashes()
    return (f"default-src 'none'; style-src {style}; script-src {script}; "
            "img-src data:; base-uri 'none'; form-action 'none'")


def _e(value: Any) -> str:
    return escape(_text(value))


def _html_list(items: Iterable[Any], cls: str = "") -> str:
    lis = "".join(f"<li>{_e(i)}</li>" for i in items)
    return f'<ul class="{cls}">{lis}</ul>' if cls else f"<ul>{lis}</ul>"


def _header_html(lab: LabResult) -> str:
    exp = lab.experiment
    spans = "".join(f"<span>{_e(p)}</span>" for p in _experiment_line(lab))
    task = f'<p class="muted">Task: {_e(exp.task)}</p>' if exp.task else ""
    notes = "".join(f'<p class="muted">{_e(n)}</p>' for n in exp.notes)
    prepared = (f'<section aria-label="Prepared by the lab"><h2>Prepared by the lab</h2>'
                f"{_html_list(exp.prepared)}</section>" if exp.prepared else "")
    return (f"<header><h1>{_e(_title(lab))}</h1>"
            f'<p class="experiment">{spans}</p>{task}{notes}{prepared}</header>')


def _edit_rows(lab: LabResult) -> list[list[str]]:
    """The synthetic change set's edits: document, question, old fact → new fact."""
    return [[_text(e.get("doc_id")), _text(e.get("question_id")),
             f"{_text(e.get('old'))} → {_text(e.get('new'))}", _text(e.get("kind"))]
            for e in lab.freshness.edits]


EDIT_HEADER = ("Document", "Question", "Fact (old → new)", "Kind")


def _edits_html(lab: LabResult) -> str:
    if not lab.freshness.edits:
        return ""
    head = "".join(f'<th scope="col">{h}</th>' for h in EDIT_HEADER)
    body = "".join("<tr>" + "".join(_td(c) for c in row) + "</tr>" for row in _edit_rows(lab))
    return ('<section aria-labelledby="edits-heading"><h2 id="edits-heading">Synthetic change '
            'set (freshness probe)</h2><p class="muted">No change set was given: these facts '
            "were rewritten in copies of their documents, each new fact first verified absent "
            "from every document; the questions were asked again after the re-sync.</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></section>")


def _recommendation_html(lab: LabResult) -> str:
    rec = lab.recommendation
    choice = _text(rec.recommendation) or DASH
    parts = ['<section id="recommendation" aria-labelledby="recommendation-heading">',
             '<h2 id="recommendation-heading" class="label">Recommendation</h2>',
             f'<p class="choice">{escape(choice)}</p>']
    if choice in CHOICE_GLOSS:
        parts.append(f'<p class="gloss">{escape(CHOICE_GLOSS[choice])}</p>')
    if rec.reasons:
        parts += ["<h3>Why</h3>", _html_list(rec.reasons, "reasons")]
    if rec.warnings:
        parts += ["<h3>Warnings</h3>", _html_list(rec.warnings, "warnings")]
    if decided := _decided_by(rec):
        parts += ["<h3>Decided by</h3>", _html_list(decided, "decided-by mono")]
    if rec.scores:
        parts.append('<p class="muted">Checklist scores: '
                     + ", ".join(f"{_e(k)} {_e(v)}" for k, v in rec.scores.items()) + "</p>")
    if lab.checklist:
        facts = "".join(f"<dt>{_e(_label(k))}</dt><dd>{_e(_metric_value(k, v))}</dd>"
                        for k, v in lab.checklist.items())
        parts.append(f'<details><summary>Checklist answers</summary>'
                     f'<dl class="facts">{facts}</dl></details>')
    parts.append("</section>")
    return "".join(parts)


def _td(text: str, best: bool = False, wrap: bool = False) -> str:
    classes = " ".join(c for c, on in (("best", best), ("text", wrap)) if on)
    return f'<td class="{classes}">{escape(text)}</td>' if classes else f"<td>{escape(text)}</td>"


def _description(lab: LabResult, arch: str) -> str | None:
    entry = lab.architectures.get(arch)
    return entry.description if entry is not None else None


def _comparison_html(lab: LabResult) -> str:
    head = "".join(
        f'<th scope="col" id="arch-{_slug(a)}">{escape(a)}'
        f'<span class="desc">{_e(_description(lab, a))}</span></th>'
        for a in lab.columns)
    body = []
    for row, cells, best in _table_cells(lab):
        tds = "".join(_td(cell, best=i in best, wrap=row.key == "change_cost")
                      for i, cell in enumerate(cells))
        hint = {"higher": " (higher is better)", "lower": " (lower is better)"}.get(
            row.better or "", "")
        body.append(f'<tr data-metric="{row.key}">'
                    f'<th scope="row" title="{escape(row.label + hint)}">{escape(row.label)}</th>'
                    f"{tds}</tr>")
    return ('<section class="keep" aria-labelledby="comparison-heading">'
            '<h2 id="comparison-heading">Side by side</h2>'
            '<p class="muted">★ marks the best value in rows where higher or lower is clearly '
            "better; – means not measured for that architecture.</p>"
            '<div class="table-wrap"><table id="comparison">'
            f'<thead><tr><th scope="col">Metric</th>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div></section>")


def _lever_rows(lab: LabResult) -> tuple[str, list[list[str]]]:
    """The retrieval-lever table of a lab (what `rag-tuned-retrieval` searches with): a caption
    and rows of lever, setting, training figure, held-out figure, chosen."""
    levers = lab.retrieval_levers or {}
    rows = []
    for row in levers.get("levers", []):
        train, held = row.get("train", {}), row.get("heldout", {})
        metric, label = (("ndcg@10", "nDCG@10") if "ndcg@10" in train
                         else ("prompt_recall", "gold in prompt"))
        rows.append([_text(row.get("lever")), _text(row.get("setting")),
                     f"{_fraction(train.get(metric))} {label}", _fraction(held.get(metric)),
                     "chosen" if row.get("chosen") else ""])
    b, a = levers.get("before", {}), levers.get("after", {})
    caption = (f"Chosen on {_count(levers.get('train_queries'))} training phrasings, measured "
               f"on {_count(levers.get('heldout_queries'))} evaluation questions: nDCG@10 "
               f"{_fraction(b.get('ndcg@10'))} → {_fraction(a.get('ndcg@10'))}, recall@10 "
               f"{_fraction(b.get('recall@10'))} → {_fraction(a.get('recall@10'))}, gold "
               f"document in the prompt {_fraction(b.get('prompt_recall'))} → "
               f"{_fraction(a.get('prompt_recall'))}.")
    return caption, rows


LEVER_HEADER = ("Lever", "Setting", "Training", "Held-out", "")


def _levers_html(lab: LabResult) -> str:
    if not lab.retrieval_levers:
        return ""
    caption, rows = _lever_rows(lab)
    body = "".join("<tr>" + "".join(_td(c, best=c == "chosen") for c in row) + "</tr>"
                   for row in rows)
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in LEVER_HEADER)
    return ('<section aria-labelledby="levers-heading">'
            '<h2 id="levers-heading">Retrieval levers (rag-tuned-retrieval)</h2>'
            f'<p class="muted">{escape(caption)}</p>'
            f'<div class="table-wrap"><table id="levers"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div></section>")


def _charts_html(lab: LabResult) -> str:
    fresh = lab.freshness
    changed = fresh.changed_documents
    fresh_note = []
    if changed:
        fresh_note.append(f"{len(changed)} changed documents ({', '.join(changed)})")
    if fresh.questions is not None:
        fresh_note.append(f"{_count(fresh.questions)} questions")
    if _num(fresh.resync_seconds) is not None:
        fresh_note.append(f"re-sync took {_seconds(fresh.resync_seconds)}")
    missing = [a for a in lab.columns
               if _num(_metrics(lab, a).latency_ms_p50) is None
               or _num(_metrics(lab, a).correct) is None]
    quality_note = "Up and to the left is better."
    if missing:
        quality_note += " Not plotted (no measurement): " + ", ".join(missing) + "."
    figures = [
        (quality_latency_svg(lab), quality_note),
        (freshness_svg(lab), "Freshness probe: " + "; ".join(fresh_note) + "."
         if fresh_note else "Freshness probe."),
        (failure_causes_svg(lab), "Failed cases by the cause the attribution assigned."),
    ]
    body = "".join(f"<figure>{svg}<figcaption>{escape(note)}</figcaption></figure>"
                   for svg, note in figures)
    return ('<section aria-labelledby="charts-heading"><h2 id="charts-heading">Charts</h2>'
            f"{body}</section>")


def _share(part: float | None, total: float) -> str:
    return DASH if part is None or not total else f"{100 * part / total:.0f}%"


def _stages_html(lab: LabResult) -> str:
    stages = _stages(lab)
    if not stages:
        return ""
    total = sum(s for _, s in stages if s is not None)
    rows = "".join(
        f'<tr><td>{escape(name)}</td><td class="num">{_seconds(s)}</td>'
        f'<td class="num">{_share(s, total)}</td></tr>'
        for name, s in stages)
    return ('<section class="keep" aria-labelledby="stages-heading">'
            '<h2 id="stages-heading">Stage timings</h2>'
            '<table id="stages"><thead><tr><th scope="col">Stage</th><th scope="col">Time</th>'
            f'<th scope="col">Share</th></tr></thead><tbody>{rows}</tbody>'
            f'<tfoot><tr><th scope="row">total</th><td class="num">{_seconds(total)}</td>'
            "<td></td></tr></tfoot></table></section>")


def _mark(value: Any, good: str, bad: str) -> str:
    """A judged property as symbol + words (never colour alone)."""
    if value is True:
        return f'<span class="mark ok">✓ {good}</span>'
    if value is False:
        return f'<span class="mark no">✗ {bad}</span>'
    return f'<span class="mark">{DASH} {good}: not judged</span>'


def _chip(arch: str, correct: Any) -> str:
    """An architecture's outcome on a case, for the case's one-line summary."""
    if correct is True:
        return f'<span class="mark ok" title="correct">{escape(arch)} ✓</span>'
    if correct is False:
        return f'<span class="mark no" title="incorrect">{escape(arch)} ✗</span>'
    return f'<span class="mark" title="not judged">{escape(arch)} {DASH}</span>'


def _passages_html(passages: list[CasePassage]) -> str:
    if not passages:
        return '<p class="muted">No retrieved passages.</p>'
    items = []
    for p in passages:
        title = _e(p.title) or _e(p.doc_id)
        items.append(f"<li><strong>[{_e(p.n)}] {title}</strong> "
                     f'<span class="mono muted">{_e(p.doc_id)}</span>'
                     f'<div class="passage">{_e(p.text)}</div></li>')
    return (f'<details class="passages"><summary>Retrieved passages ({len(passages)})</summary>'
            f"<ol>{''.join(items)}</ol></details>")


def _arch_answer_html(arch: str, result: CaseAnswer) -> str:
    facts = []
    if result.refused:
        facts.append(("refused", _text(result.refusal_reason) or "yes"))
    facts.append(("cited", ", ".join(result.cited_docs) or DASH))
    facts.append(("cause", _label(_text(result.cause)) or DASH))
    if _num(result.latency_ms) is not None:
        facts.append(("latency", f"{_milliseconds(result.latency_ms)} ms"))
    dl = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts)
    return (f'<div class="arch-answer"><h3>{escape(arch)} <span class="marks">'
            f'{_mark(result.correct, "correct", "incorrect")}'
            f'{_mark(result.format_valid, "format valid", "format invalid")}</span></h3>'
            f'<div class="answer">{escape(result.answer) if result.answer else DASH}</div>'
            f'<dl class="facts">{dl}</dl>{_passages_html(result.passages)}</div>')


def _case_html(index: int, case: LabCase, archs: Sequence[str]) -> str:
    case_id = case.id or f"case {index + 1}"
    shown = [a for a in archs if a in case.by_arch]
    chips = "".join(_chip(a, case.by_arch[a].correct) for a in shown)
    answers = ", ".join(case.answers) or "(none: should refuse)"
    gold = ", ".join(case.gold_doc_ids) or DASH
    results = "".join(_arch_answer_html(a, case.by_arch[a]) for a in shown)
    return (f'<details class="case" id="case-{index + 1}-{_slug(case_id)}">'
            f'<summary><span class="case-id">{escape(case_id)}</span>'
            f'<span class="kind">{_e(case.kind)}</span> {_e(case.question)} '
            f'<span class="marks">{chips}</span></summary>'
            f'<dl class="facts"><dt>question</dt><dd>{_e(case.question)}</dd>'
            f"<dt>gold answers</dt><dd>{escape(answers)}</dd>"
            f"<dt>gold documents</dt><dd>{escape(gold)}</dd></dl>{results}</details>")


def _cases_html(lab: LabResult) -> str:
    cases = lab.cases
    body = "".join(_case_html(i, c, lab.columns) for i, c in enumerate(cases))
    return ('<section id="cases" aria-labelledby="cases-heading">'
            f'<h2 id="cases-heading">Cases ({len(cases)})</h2>'
            '<p class="muted">Open a case for each architecture\'s answer, marks and retrieved '
            f"passages.</p>{body}</section>")


def render_html(lab: LabData) -> str:
    """The whole report as one self-contained HTML page (no network, one tiny print script).

    >>> "<svg" in render_html({"order": ["rag"], "architectures": {"rag": {"metrics": {}}}})
    True
    """
    lab = LabResult.read(lab)
    sections = [_header_html(lab), _recommendation_html(lab), _comparison_html(lab),
                _levers_html(lab), _charts_html(lab), _edits_html(lab), _stages_html(lab),
                _cases_html(lab)]
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_csp()}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(_title(lab))}</title><style>{CSS}</style></head>"
            f"<body>{''.join(sections)}"
            f'<footer class="muted"><p>Written by ragtune {_e(lab.ragtune)}; '
            "the data is in lab.json beside this file.</p></footer>"
            f"<script>{PRINT_JS}</script></body></html>\n")


# --- Markdown -------------------------------------------------------------------------------


def _md(value: Any) -> str:
    """Text safe inside a Markdown table cell or list item: one line, pipes and tags escaped."""
    text = " ".join(_text(value).split())
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _md_recommendation(lab: LabResult) -> list[str]:
    rec = lab.recommendation
    choice = _text(rec.recommendation) or DASH
    gloss = f" ({CHOICE_GLOSS[choice]})" if choice in CHOICE_GLOSS else ""
    lines = ["## Recommendation", "", f"**{_md(choice)}**{gloss}", ""]
    for heading, items in (("Why", rec.reasons), ("Warnings", rec.warnings),
                           ("Decided by", _decided_by(rec))):
        if items:
            lines += [f"{heading}:", ""] + [f"- {_md(i)}" for i in items] + [""]
    if rec.scores:
        lines += ["Checklist scores: "
                  + ", ".join(f"{_md(k)} {_md(v)}" for k, v in rec.scores.items()), ""]
    return lines


def render_markdown(lab: LabData) -> str:
    """The report's summary as Markdown: recommendation, the side-by-side table, failure
    causes and stage timings (charts and the per-case drill-down are in report.html).

    >>> "| Correctness |" in render_markdown({"order": ["rag"], "architectures": {}})
    True
    """
    lab = LabResult.read(lab)
    archs = lab.columns
    exp = lab.experiment
    lines = [f"# {_md(_title(lab))}", "", " · ".join(_md(p) for p in _experiment_line(lab)), ""]
    if exp.task:
        lines += [f"Task: {_md(exp.task)}", ""]
    lines += [f"{_md(n)}" for n in exp.notes] + ([""] if exp.notes else [])
    if exp.prepared:
        lines += ["## Prepared by the lab", ""] + [f"- {_md(n)}" for n in exp.prepared] + [""]
    lines += _md_recommendation(lab)

    lines += ["## Side by side", "",
              "**Bold** marks the best value where higher or lower is clearly better; "
              f"{DASH} means not measured.", ""]
    rows = [[_md(row.label)] + [f"**{_md(c)}**" if i in best else _md(c)
                                for i, c in enumerate(cells)]
            for row, cells, best in _table_cells(lab)]
    lines += _md_table(["Metric"] + [_md(a) for a in archs], rows) + [""]

    if lab.retrieval_levers:
        caption, lever_rows = _lever_rows(lab)
        lines += ["## Retrieval levers (rag-tuned-retrieval)", "", _md(caption), ""]
        lines += _md_table(LEVER_HEADER[:4] + ("Chosen",),
                           [[_md(c) for c in row] for row in lever_rows]) + [""]

    if lab.freshness.edits:
        lines += ["## Synthetic change set (freshness probe)", "",
                  "No change set was given: these facts were rewritten in copies of their "
                  "documents, each new fact first verified absent from every document.", ""]
        lines += _md_table(EDIT_HEADER, [[_md(c) for c in row] for row in _edit_rows(lab)])
        lines += [""]

    causes, counts = _failure_causes(lab)
    lines += ["## Failure causes", ""]
    if causes:
        rows = [[_md(_label(c))] + [_count(counts[a].get(c, 0)) for a in archs] for c in causes]
        lines += _md_table(["Cause"] + [_md(a) for a in archs], rows) + [""]
    else:
        lines += ["No failures were attributed.", ""]

    if stages := _stages(lab):
        lines += ["## Stage timings", ""]
        lines += _md_table(["Stage", "Time"], [[_md(n), _seconds(s)] for n, s in stages]) + [""]

    lines += ["Charts (quality vs latency, freshness, failure causes) and the per-case "
              "drill-down with answers and retrieved passages are in report.html.", ""]
    return "\n".join(lines)


def write_report(lab: LabData, out: Path) -> dict[str, Path]:
    """Write `lab.json` (indent 2), `report.html` and `report.md` into the folder `out`
    (created if missing) and return their paths keyed "json", "html" and "markdown"."""
    lab = LabResult.read(lab)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / LAB_FILE, "html": out / "report.html", "markdown": out / "report.md"}
    paths["json"].write_text(json.dumps(lab.to_dict(), indent=2, ensure_ascii=False) + "\n",
                             encoding="utf-8")
    paths["html"].write_text(render_html(lab), encoding="utf-8")
    paths["markdown"].write_text(render_markdown(lab), encoding="utf-8")
    return paths
