"""The `ragtune` command line: parse arguments, call one library function, render the result.

`--json` prints exactly one JSON document on stdout; progress and logs go to stderr. Exit status:
0 success, 1 a user error or a file that failed, 2 a usage error.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperGroup

from ragtune.config import Settings
from ragtune.errors import InputError, RagtuneError
from ragtune.kb import KnowledgeBase
from ragtune.retrieval import MODES, parse_filter_args, search

if TYPE_CHECKING:
    from ragtune.lab.result import LabResult

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class _Group(TyperGroup):
    """Turns a `RagtuneError` into one line on stderr and exit status 1 (a traceback is a bug)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except RagtuneError as exc:
            err.print(f"[red]error[/] {escape(one_line(str(exc)))}", highlight=False)
            raise typer.Exit(1) from exc


def one_line(text: str) -> str:
    """`text` with control characters (a newline in a file name, say) written as escapes, so
    one error is always one line."""
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode()
                   for c in text)


app = typer.Typer(
    cls=_Group,
    help="Decide between RAG, fine-tuning or a hybrid by measuring them on your own data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
docs_app = typer.Typer(cls=_Group, help="The documents of a knowledge base and their versions.",
                       no_args_is_help=True)
app.add_typer(docs_app, name="docs")
bench_app = typer.Typer(cls=_Group, help="Benchmarks on standard data sets.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
keys_app = typer.Typer(cls=_Group, help="API keys of the HTTP service: scopes and access groups.",
                       no_args_is_help=True)
app.add_typer(keys_app, name="keys")
traces_app = typer.Typer(cls=_Group, help="Production traces of served answers, with their "
                         "online scores.", no_args_is_help=True)
app.add_typer(traces_app, name="traces")
kb_app = typer.Typer(cls=_Group, help="Knowledge bases: health check, repair, migration.",
                     no_args_is_help=True)
app.add_typer(kb_app, name="kb")

HomeOpt = Annotated[
    Path | None, typer.Option("--home", help="Data home (default $RAGTUNE_HOME or ~/.ragtune).")
]
KbOpt = Annotated[str | None, typer.Option("--kb", help="Knowledge base name.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
SchemaOpt = Annotated[Path | None, typer.Option(
    "--schema", help="JSON schema file: constrain answers to JSON valid for it.")]
FusionOpt = Annotated[str, typer.Option(help="Hybrid fusion: zscore (default) or rrf (k=60).")]
KbFusionOpt = Annotated[str | None, typer.Option(
    help="Hybrid fusion: zscore or rrf (default: the knowledge base's [retrieval] settings, "
         "zscore 0.3/0.7 unless tuned).")]


def _open(home: Path | None, kb: str | None) -> KnowledgeBase:
    return KnowledgeBase.open(kb, Settings.load(home=home))


def _open_existing(home: Path | None, kb: str | None) -> KnowledgeBase:
    return KnowledgeBase.open_existing(kb, Settings.load(home=home))


def _given(**options: Any) -> dict[str, Any] | None:
    """The options given on the command line (not None) as settings overrides; None when none
    was."""
    given = {name: value for name, value in options.items() if value is not None}
    return given or None


def _groups(groups: str | None) -> list[str] | None:
    return groups.split(",") if groups is not None else None


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files, folders, or BEIR corpus.jsonl.")],
    kb: KbOpt = None,
    home: HomeOpt = None,
    sync: Annotated[bool, typer.Option(help="Delete documents whose files are gone.")] = False,
    groups: Annotated[str, typer.Option(help="Access groups, comma-separated.")] = "",
    include: Annotated[list[str] | None, typer.Option(help="Glob to include (repeatable).")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Glob to exclude (repeatable).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add or update documents; unchanged ones are skipped by content hash."""
    base = _open(home, kb)
    with base, _progress(as_json) as bar:
        progress = bar(f"ingest {base.name}")
        report = base.ingest(
            paths, sync=sync, groups=groups.split(",") if groups else (),
            include=include or (), exclude=exclude, progress=progress,
        )
    for failure in report.failed:
        err.print(f"[red]failed[/] {escape(one_line(failure.path))}: "
                  f"{escape(one_line(failure.error))}")
    for flagged in report.flagged:
        err.print(f"[yellow]flagged[/] {escape(flagged['source'])} chunk {flagged['chunk']}: "
                  f"instruction-like text ({', '.join(flagged['flags'])}); "
                  "it stays data in answer prompts")
    if as_json:
        _print_json(report.to_dict())
    else:
        err.print(
            f"{report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
            f"{report.deleted} deleted, {len(report.failed)} failed "
            f"({report.chunks_embedded} chunks embedded, {report.chunks_reused} reused) "
            f"in {report.seconds:.1f}s"
        )
    if report.failed:
        raise typer.Exit(1)


@docs_app.command("list")
def docs_list(kb: KbOpt = None, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """List documents with their current version, chunk count and groups."""
    with _open(home, kb) as base:
        docs = base.documents() if base.exists() else []
    if as_json:
        _print_json({"documents": [
            {"id": d.id, "source": d.source, "title": d.title, "version": d.version,
             "chunks": d.chunks, "groups": list(d.groups), "metadata": dict(d.metadata)}
            for d in docs
        ]})
        return
    table = Table("id", "title", "version", "chunks", "groups", box=None)
    for d in docs:
        table.add_row(escape(d.id), escape(_short(d.title, 40)), str(d.version),
                      str(d.chunks), ",".join(d.groups))
    out.print(table)
    err.print(f"{len(docs)} documents")


@docs_app.command("show")
def docs_show(
    doc_id: Annotated[str, typer.Argument(help="Document id (see `docs list`).")],
    kb: KbOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one document: metadata, version history and chunks."""
    with _open(home, kb) as base:
        doc = base.document(doc_id)
        versions = base.store.versions(doc_id)
        chunks = base.store.chunks_of(doc_id)
    if as_json:
        _print_json({
            "id": doc.id, "source": doc.source, "title": doc.title, "format": doc.format,
            "version": doc.version, "content_hash": doc.content_hash, "groups": list(doc.groups),
            "metadata": dict(doc.metadata),
            "versions": [v.__dict__ for v in versions],
            "chunks": [{"chunk_id": c.id, "index": c.index, "start": c.start, "end": c.end,
                        "tokens": c.tokens, "heading": c.heading, "page": c.page,
                        "flags": list(c.flags)}
                       for c in chunks],
        })
        return
    out.print(f"[bold]{escape(doc.title)}[/]  {escape(doc.id)}")
    out.print(f"source {escape(doc.source)}  format {doc.format}  version {doc.version}  "
              f"groups {','.join(doc.groups) or '-'}")
    for v in versions:
        out.print(f"  v{v.version} {v.event:8} {v.chunks} chunks {v.chars} chars")
    for c in chunks:
        where = f"p.{c.page} " if c.page else ""
        flags = f"[yellow]flagged: {', '.join(c.flags)}[/] " if c.flags else ""
        out.print(f"  [{c.index}] {where}{escape(c.heading)} ({c.tokens} tokens) {flags}"
                  f"{escape(_short(c.text, 80))}")


@docs_app.command("rm")
def docs_rm(
    doc_ids: Annotated[list[str], typer.Argument(help="Document ids to delete.")],
    kb: KbOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete documents (their version history is kept)."""
    with _open(home, kb) as base:
        removed = base.remove(doc_ids)
    missing = [d for d in doc_ids if d not in removed]
    if as_json:
        _print_json({"deleted": removed, "missing": missing})
    else:
        err.print(f"{len(removed)} deleted")
    if missing:
        err.print(f"[red]error[/] no such document: {escape(', '.join(missing))}")
        raise typer.Exit(1)


@kb_app.command("check")
def kb_check(
    kb: KbOpt = None,
    home: HomeOpt = None,
    repair: Annotated[bool, typer.Option(
        "--repair", help="Mend what is found: rebuild indexes in place, or rebuild the file "
        "from every readable row (the damaged file is kept beside it).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Check a knowledge base's store (SQLite integrity, chunk offsets, vectors);
    exit status 1 while a problem remains."""
    with _open(home, kb) as base, _status(not as_json, f"checking {base.name}"):
        report = base.check(repair=repair)
    if as_json:
        _print_json(report.to_dict())
    else:
        for problem in report.problems[:20]:
            err.print(f"[red]problem[/] {escape(one_line(problem))}")
        if len(report.problems) > 20:
            err.print(f"… and {len(report.problems) - 20} more")
        if not report.problems:
            err.print(f"{escape(report.path)}: ok, {report.documents} documents")
        elif not repair:
            count = len(report.problems)
            err.print(f"{count} problem{'s' if count > 1 else ''}; run `ragtune kb check --kb "
                      f"{escape(base.name)} --repair` to mend them")
        else:
            lost = sum(report.lost.values())
            where = ", ".join(f"{table} {n}" for table, n in report.lost.items())
            err.print(
                f"{report.action}: {report.documents} documents"
                + (f"; the damaged file is kept as {escape(report.set_aside)}"
                   if report.set_aside else "")
                + (f"; {lost} unreadable rows ({where}): re-ingest their sources"
                   if lost else "")
                + (f"; unreadable: {', '.join(report.unreadable)}" if report.unreadable
                   else "")
                + (f"; {len(report.remaining)} problems remain" if report.remaining else ""))
    if not report.ok:
        raise typer.Exit(1)


@kb_app.command("migrate")
def kb_migrate(
    to: Annotated[str, typer.Option("--to", help="The backend to move to (postgres, sqlite).")],
    kb: KbOpt = None,
    home: HomeOpt = None,
    dsn: Annotated[str | None, typer.Option(
        help="postgres: the server (else store.dsn or RAGTUNE_PG_DSN).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy a knowledge base to another store backend (documents, versions, vectors, groups,
    traces), verify counts and a sample of vectors, then switch it over; the old store is kept
    beside it. Exit status 1 when the copy does not verify (nothing switched)."""
    settings = Settings.load(home, store={"dsn": dsn} if dsn else None)
    with KnowledgeBase.open(kb, settings) as base, _progress(as_json) as bar:
        report = base.migrate(to, progress=bar(f"copying {base.name} to {to}"))
    if as_json:
        _print_json(report.to_dict())
    else:
        copy = report.copy
        counts = ", ".join(f"{table} {a}" for table, (a, _) in copy.counts.items())
        err.print(f"{escape(report.kb)}: {copy.copied} documents copied, {copy.skipped} "
                  f"already there ({counts}); {copy.vectors_compared} vectors compared")
        for problem in copy.problems[:20]:
            err.print(f"[red]problem[/] {escape(one_line(problem))}")
        if copy.verified:
            err.print(f"now on {to}: {escape(report.where)}; the old store is kept as "
                      f"{escape(report.set_aside or '')}")
        else:
            err.print(f"[red]not verified[/]: {escape(report.kb)} stays on {report.source}")
    if not report.copy.verified:
        raise typer.Exit(1)


@app.command("search")
def search_cmd(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", help="Number of hits.")] = 10,
    mode: Annotated[str, typer.Option(help=f"One of {', '.join(MODES)}.")] = "hybrid",
    groups: Annotated[
        str | None, typer.Option(help="Search as a caller holding these groups (comma-separated).")
    ] = None,
    filter_args: Annotated[
        list[str] | None,
        typer.Option("--filter", help="Metadata filter: key=v, key=a,b, key!=v, key>=v, key<v."),
    ] = None,
    per_doc: Annotated[int | None, typer.Option(help="Max hits per document.")] = None,
    dedupe: Annotated[bool, typer.Option(help="Collapse near-duplicate chunks.")] = True,
    allow_fallback: Annotated[
        bool, typer.Option(help="Exit 0 even if hybrid had to fall back to BM25.")
    ] = False,
    fusion: KbFusionOpt = None,
    kb: KbOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Search a knowledge base (BM25, dense, or hybrid: fused BM25 and dense)."""
    filters = parse_filter_args(filter_args or [])
    with _open_existing(home, kb) as base:
        result = search(base, query, k=k, mode=mode, groups=_groups(groups), filters=filters,
                        per_doc=per_doc, dedupe=dedupe, fusion=fusion)
    if as_json:
        _print_json(result.to_dict())
    else:
        table = Table("#", "score", "document", "snippet", box=None, show_lines=False)
        for hit in result.hits:
            title = hit.metadata.get("title") or hit.doc_id
            heading = hit.metadata.get("heading")
            label = escape(_short(title, 30)) + (f"\n[dim]{escape(_short(heading, 30))}[/]"
                                                  if heading else "")
            table.add_row(str(hit.rank), f"{hit.score:.3f}", label, _highlight(hit.text, query))
        out.print(table)
    if result.degraded:
        err.print(f"[yellow]degraded[/] {escape(result.degraded)}")
        if not allow_fallback:
            err.print("[red]error[/] search degraded; pass --allow-fallback to accept it")
            raise typer.Exit(1)


@app.command("ask")
def ask_cmd(
    question: Annotated[str, typer.Argument(help="The question.")],
    k: Annotated[int | None, typer.Option("-k", help="Passages to retrieve (default: "
                                                    "answer.k).")] = None,
    mode: Annotated[str | None, typer.Option(help=f"One of {', '.join(MODES)}.")] = None,
    groups: Annotated[
        str | None, typer.Option(help="Answer as a caller holding these groups (comma-separated).")
    ] = None,
    generator: Annotated[str | None, typer.Option(
        help="local:smollm2 (bundled), local:PATH or openai:MODEL (default: generator.name).")
    ] = None,
    base_url: Annotated[str | None, typer.Option(help="Base URL for openai:MODEL.")] = None,
    adapter: Annotated[Path | None, typer.Option(help="LoRA adapter folder for a local model.")
                       ] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Most new tokens to generate.")] = None,
    schema: SchemaOpt = None,
    show_context: Annotated[bool, typer.Option(
        "--show-context", help="Also print the passages the model saw.")] = False,
    allow_unverified: Annotated[bool, typer.Option(
        "--allow-unverified", help="Print an answer the judge cannot support, marked "
        "unverified, instead of refusing it.")] = False,
    kb: KbOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer a question from a knowledge base, with citations and each claim's evidence, or
    refuse."""
    from ragtune.answering import Answerer
    from ragtune.models.constrained import load_schema

    json_schema = load_schema(schema) if schema is not None else None
    settings = Settings.load(home=home, generator=_given(name=generator, base_url=base_url,
                                                         adapter=adapter))
    streaming = not as_json and out.is_terminal
    with KnowledgeBase.open_existing(kb, settings) as base:
        _warn_if_stale(settings, base)
        answerer = Answerer(base, schema=json_schema,
                            on_unverified="mark" if allow_unverified else None)
        with _status(not as_json and err.is_terminal, "loading the model"):
            answerer.generator.warm_up()
        drafting = streaming and err.is_terminal
        answer = answerer.ask(question, k=k, mode=mode, groups=_groups(groups),
                              max_new_tokens=max_tokens,
                              on_token=_print_piece if streaming else None,
                              on_draft=_draft_printer() if drafting else None)
        if drafting and answer.generation is not None:
            err.print()  # the draft's line ends; the checked answer follows on stdout
    if as_json:
        _print_json(answer.to_dict(context=show_context))
        return
    _render_answer(answer, streaming, show_context)


def _print_piece(piece: str) -> None:
    """One piece of a streamed answer."""
    out.print(escape(piece), end="", highlight=False)


def _draft_printer() -> Callable[[str], None]:
    """A token callback printing the unchecked draft, dimmed, on stderr (a terminal)."""
    started = False

    def piece(text: str) -> None:
        nonlocal started
        if not started:
            err.print("[dim]draft (unverified):[/] ", end="")
            started = True
        err.print(f"[dim]{escape(text)}[/]", end="", highlight=False)

    return piece


def _render_answer(answer: Any, streamed: bool, show_context: bool) -> None:
    if streamed:
        out.print()  # what streamed is the checked answer: a refused draft is never shown
    else:
        out.print(escape(answer.text), highlight=False)
    _render_answer_warnings(answer)
    _render_sources(answer.citations)
    _render_evidence(answer.verification)
    flagged = answer.flagged_passages
    if flagged:
        err.print(f"[yellow]flagged[/] passage(s) {', '.join(map(str, flagged))} contain "
                  "instruction-like text; they were treated as data")
    if show_context:
        _render_context(answer.prompt)
    g = answer.generation
    stats = f"{answer.timings_ms['total'] / 1000:.1f}s"
    if g is not None:
        stats += f", {g.prompt_tokens} prompt + {g.output_tokens} output tokens"
    err.print(f"[dim]{stats}[/]")


def _render_answer_warnings(answer: Any) -> None:
    if answer.refused:
        err.print(f"[yellow]refused[/] ({_REFUSAL_REASONS[answer.refusal_reason or 'model']})")
    if answer.invalid_citations:
        err.print(f"[yellow]removed[/] {answer.invalid_citations} citation(s) to passages that "
                  "were not in the prompt")
    if answer.schema_errors:
        err.print(f"[yellow]schema[/] the answer does not match the schema: "
                  f"{escape(answer.schema_errors[0])}")


def _render_sources(citations: Any) -> None:
    if citations:
        out.print("\n[bold]Sources[/]")
    for c in citations:
        where = f", p. {c.page}" if c.page else ""
        how = " [dim](attributed: the model cited nothing)[/]" if c.inferred else ""
        out.print(f"[{c.number}] [bold]{escape(c.title or c.doc_id)}[/] — "
                  f"{escape(c.source)}{where} (v{c.version}, chars {c.start}-{c.end}){how}")
        out.print(f"    [italic]“{escape(c.snippet)}”[/]")


def _render_evidence(verification: Any) -> None:
    if verification is None:
        return
    state = "verified" if verification.verified else "[yellow]unverified[/]"
    out.print(f"\n[bold]Evidence[/] ({state}: judge {verification.judge}, threshold "
              f"{verification.threshold:.2f})")
    for c in verification.claims:
        mark = "✓" if c.supported else "✗"
        where = (f"{c.doc_id} v{c.version} chars {c.start}-{c.end}" if c.start is not None
                 else "no supporting sentence")
        out.print(f"{mark} {escape(c.text)} [dim]({c.score:.2f}; {escape(where)})[/]")
        if c.sentence:
            out.print(f"    [italic]“{escape(c.sentence)}”[/]")


def _render_context(prompt: Any) -> None:
    out.print("\n[bold]Context[/]")
    for p in prompt.passages:
        out.print(f"[{p.number}] {escape(p.title)} (score {p.score:.3f}, {p.tokens} tokens"
                  f"{', flagged' if p.flags else ''})\n{escape(p.text)}\n")
    if prompt.dropped:
        out.print(f"[dim]{len(prompt.dropped)} lower-ranked passage(s) left out "
                  "for the token budget[/]")


_REFUSAL_REASONS = {
    "no-passages": "no passages were found",
    "retrieval": "no passage is similar enough to the question",
    "model": "the model said the passages do not answer it",
    "confidence": "the model's confidence was under the calibrated threshold",
    "unsupported": "the judge found no passage that supports its answer",
    "flagged": "its only evidence is passages flagged for instruction-like text",
}


@app.command("calibrate")
def calibrate_cmd(
    cases: Annotated[Path, typer.Argument(help="Cases JSONL: question, answers ([] = "
                                               "unanswerable).")],
    keep_answerable: Annotated[float, typer.Option(
        help="Share of answerable questions the retrieval threshold lets through.")] = 0.97,
    max_risk: Annotated[float, typer.Option(
        help="Most wrong answers, as a share of the answers returned, that the verification "
             "threshold may let through.")] = 0.10,
    dry_run: Annotated[bool, typer.Option(help="Report, do not store the thresholds.")] = False,
    kb: KbOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Calibrate a knowledge base's refusal thresholds and its verification threshold (for at
    most --max-risk wrong answers) on answerable and unanswerable questions; `ask` uses
    them."""
    from ragtune.answering.ask import calibrate_answers
    from ragtune.cases import load_cases

    loaded = load_cases(cases)
    with _open_existing(home, kb) as base, _progress(as_json) as bar:
        result = calibrate_answers(base, loaded, keep_answerable=keep_answerable,
                                   max_risk=max_risk, progress=bar("calibrate"),
                                   save=not dry_run)
    if as_json:
        _print_json(result.to_dict() | {"stored": not dry_run})
        return
    r, v = result.refusal, result.verify
    p = r.policy
    out.print(f"min_similarity {p.min_similarity:.4f}  min_confidence "
              f"{'-' if p.min_confidence is None else f'{p.min_confidence:.4f}'}")
    out.print(f"on {r.cases} cases ({r.answerable} answerable): balanced accuracy "
              f"{r.balanced_accuracy:.3f}, refusal precision {r.refusal_precision:.3f}"
              f", recall {r.refusal_recall:.3f}")
    risk = "-" if v.risk is None else f"{v.risk:.1%}"
    out.print(f"verify threshold {v.threshold:.4f} ({v.judge}): {risk} wrong among the answers "
              f"returned (at most {v.max_risk:.0%}), coverage {v.coverage:.1%} of the cases")
    if v.risk is None:
        err.print(f"[yellow]no threshold keeps wrong answers under {v.max_risk:.0%} on these "
                  "cases: every answer will be refused until the model or the cases change[/]")
    err.print("stored in the knowledge base" if not dry_run else "not stored (--dry-run)")


@app.command("tune-retrieval")
def tune_retrieval_cmd(
    cases: Annotated[Path, typer.Argument(help="Cases JSONL with gold_doc_ids (the questions "
                                               "without them are left out).")],
    heldout: Annotated[float, typer.Option(help="Share of the questions held out to report "
                                                "on (never used for a choice).")] = 0.3,
    seed: Annotated[int, typer.Option(help="Seed of the train/held-out split.")] = 0,
    chunking: Annotated[str, typer.Option(
        help="Chunkings to try as MAX:OVERLAP tokens, comma-separated ('' = none); each is a "
             "trial copy of the knowledge base.")] = "128:16,384:48",
    embedder: Annotated[bool, typer.Option(
        "--embedder/--no-embedder", help="Also fine-tune the embedder on the training "
        "questions and try it (minutes per hundred questions on a CPU).")] = False,
    epochs: Annotated[int, typer.Option(help="Embedder fine-tuning epochs.")] = 1,
    apply: Annotated[bool, typer.Option(
        "--apply", help="Adopt the choice in the knowledge base: re-chunk / re-embed what "
        "changed and record the settings it searches with.")] = False,
    out_file: Annotated[Path | None, typer.Option(
        "--out", help="Write the chosen settings as a config.toml fragment.")] = None,
    kb: KbOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Try the retrieval levers (ranking and fusion weights, chunking, a tuned embedder, the
    prompt's k and per-document limit) on a knowledge base's own questions: chosen on a
    training split, reported on the held-out split."""
    from ragtune.cases import load_cases
    from ragtune.lab.levers import EmbedderTuning, apply_tuning, split_cases, tune_retrieval

    chunkings = _parse_chunkings(chunking)
    train, held = split_cases(load_cases(cases), heldout=heldout, seed=seed)
    say = (lambda line: None) if as_json else (lambda line: err.print(f"[dim]{escape(line)}[/]"))
    with _open_existing(home, kb) as base:
        tuning = tune_retrieval(base, train, held, chunkings=chunkings,
                                embedder=EmbedderTuning(epochs=epochs) if embedder else None,
                                seed=seed, progress=say)
        applied = None
        if apply:
            with _progress(as_json) as bar:
                applied = apply_tuning(base, tuning, progress=bar("apply"))
    if out_file is not None:
        out_file.write_text(tuning.toml(), encoding="utf-8")
    if as_json:
        _print_json(tuning.to_dict() | {"applied": None if applied is None else {
            "rewritten": applied.updated, "unchanged": applied.unchanged,
            "chunks_embedded": applied.chunks_embedded, "chunks_reused": applied.chunks_reused}})
        return
    _render_tuning(tuning)
    if applied is not None:
        err.print(f"applied: {applied.updated} documents re-chunked or re-embedded "
                  f"({applied.chunks_embedded} chunks embedded, {applied.chunks_reused} "
                  f"reused), {applied.unchanged} unchanged; settings recorded in the "
                  f"knowledge base")
    elif out_file is None:
        err.print("not applied: run again with --apply, or --out FILE for the settings")


def _parse_chunkings(spec: str) -> list[tuple[int, int]]:
    found = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        size, _, overlap = part.partition(":")
        try:
            found.append((int(size), int(overlap or 0)))
        except ValueError:
            raise InputError(f"--chunking: {part!r} is not MAX:OVERLAP (e.g. 128:16)") from None
    return found


def _render_tuning(tuning: Any) -> None:
    table = Table("lever", "setting", f"train ({tuning.train_queries} q)",
                  f"held-out ({tuning.heldout_queries} q)", "", box=None)
    for row in tuning.rows:
        metric = "ndcg@10" if "ndcg@10" in row.train else "prompt_recall"
        label = "nDCG@10" if metric == "ndcg@10" else "in prompt"
        table.add_row(row.lever, escape(row.setting), f"{row.train[metric]:.3f} {label}",
                      f"{row.heldout[metric]:.3f}", "[bold]chosen[/]" if row.chosen else "")
    out.print(table)
    b, a = tuning.before, tuning.after
    out.print(f"held-out nDCG@10 {b['ndcg@10']:.3f} -> {a['ndcg@10']:.3f}, recall@10 "
              f"{b['recall@10']:.3f} -> {a['recall@10']:.3f}, gold document in the prompt "
              f"{b['prompt_recall']:.3f} -> {a['prompt_recall']:.3f}")
    out.print(escape(tuning.toml()))
    for note in tuning.notes:
        err.print(f"[yellow]note[/] {escape(note)}")


def _warn_if_stale(settings: Settings, kb: KnowledgeBase) -> None:
    """Say so when the adapter in use was trained against an older version of this knowledge
    base."""
    from ragtune.tuning.manifest import adapter_staleness

    staleness = adapter_staleness(settings, kb)
    if staleness is not None and staleness.stale:
        err.print(f"[yellow]stale adapter[/] {escape(staleness.reason)}; retrain it with "
                  "`ragtune tune --raft` to match the documents")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


@app.command("eval")
def eval_cmd(
    cases: Annotated[Path | None, typer.Argument(
        help="Cases JSONL: question, answers ([] = unanswerable), gold_doc_ids, schema.")] = None,
    arch: Annotated[str, typer.Option(
        help="base (model alone), rag (retrieve + answer), tuned (model + --adapter) or hybrid "
             "(retrieve + answer with --adapter).")] = "rag",
    adapter: Annotated[Path | None, typer.Option(
        help="LoRA adapter folder (tuned and hybrid).")] = None,
    schema: SchemaOpt = None,
    compare: Annotated[tuple[Path, Path] | None, typer.Option(
        "--compare", help="Diff two saved runs instead: --compare RUN_A RUN_B.")] = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Folder for config.json, cases.jsonl (per-case traces) and summary.json "
                      "(default: <home>/runs/<time>-<kb>-<arch>).")] = None,
    k: Annotated[int | None, typer.Option("-k", help="Passages in the prompt (default: "
                                                    "answer.k).")] = None,
    mode: Annotated[str | None, typer.Option(help=f"One of {', '.join(MODES)}.")] = None,
    judge: Annotated[str | None, typer.Option(
        help="offline (default, no API key) or an LLM judge: openai:MODEL (with "
             "--judge-base-url) or local:...")] = None,
    judge_base_url: Annotated[str | None, typer.Option(help="Base URL of the judge.")] = None,
    generator: Annotated[str | None, typer.Option(
        help="local:smollm2 (bundled), local:PATH or openai:MODEL (default: generator.name).")
    ] = None,
    base_url: Annotated[str | None, typer.Option(help="Base URL for openai:MODEL.")] = None,
    batch: Annotated[int | None, typer.Option(
        help="Questions generated together (default eval.batch_size = 1: true latency).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N cases.")] = None,
    kb: KbOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate an architecture on a cases file: correctness, faithfulness, citations, format,
    refusal, retrieval, latency, tokens, cost, and the cause of every failure."""
    from ragtune.cases import load_cases
    from ragtune.evaluation.runner import Evaluator, compare_runs, load_run

    if compare is not None:
        if cases is not None:
            raise typer.BadParameter("give either CASES or --compare RUN_A RUN_B, not both")
        diff = compare_runs(load_run(compare[0]), load_run(compare[1]))
        if as_json:
            _print_json(diff)
        else:
            _render_compare(diff, compare)
        return
    if cases is None:
        raise typer.BadParameter("CASES is required (or --compare RUN_A RUN_B)")
    from ragtune.models.constrained import load_schema

    loaded = load_cases(cases)[:limit] if limit else load_cases(cases)
    json_schema = load_schema(schema) if schema is not None else None
    settings = Settings.load(
        home=home, generator=_given(name=generator, base_url=base_url, adapter=adapter),
        eval=_given(judge=judge, judge_base_url=judge_base_url))
    with KnowledgeBase.open_existing(kb, settings) as base:
        evaluator = Evaluator(base, arch=arch, k=k, mode=mode, schema=json_schema)
        _warn_if_stale(settings, base)
        with _status(not as_json and err.is_terminal, "loading the model"):
            evaluator.answerer.generator.warm_up()
        with _progress(as_json) as bar:
            run = evaluator.run(loaded, cases, progress=bar(f"eval {arch}"), batch=batch)
    target = out_dir or settings.home / "runs" / (
        time.strftime("%Y%m%d-%H%M%S") + f"-{base.name}-{arch}")
    run.save(target)
    if as_json:
        _print_json(run.summary | {"out": str(target)})
        return
    _render_summary(run.summary, run.config)
    err.print(f"traces and summary in [bold]{escape(str(target))}[/]")


def _render_summary(summary: dict[str, Any], config: dict[str, Any]) -> None:
    table = Table(title=f"{config['arch']} on {config['kb']} — {summary['cases']} cases "
                        f"({summary['unanswerable']} unanswerable), judge {config['judge']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in summary["metrics"].items():
        table.add_row(name, _fmt(value))
    out.print(table)
    causes = Table(title="failure causes")
    causes.add_column("cause")
    causes.add_column("cases", justify="right")
    for cause, n in summary["failure_causes"].items():
        causes.add_row(cause, str(n))
    out.print(causes)
    for r in summary["remedies"]:
        out.print(f"[bold]{r['remedy']}[/] ({r['cases']} cases): {escape(r['advice'])}")


def _render_compare(diff: dict[str, Any], runs: tuple[Path, Path]) -> None:
    table = Table(title=f"A = {runs[0]} ({diff['a']})   B = {runs[1]} ({diff['b']})")
    for column in ("metric", "A", "B", "B - A"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name, row in diff["metrics"].items():
        table.add_row(name, _fmt(row["a"]), _fmt(row["b"]), _fmt(row["delta"]))
    for cause, row in diff["failure_causes"].items():
        table.add_row(f"cause: {cause}", str(row["a"]), str(row["b"]), f"{row['delta']:+d}")
    out.print(table)
    for key, row in diff["config"].items():
        if key != "settings":
            out.print(f"config [bold]{key}[/]: {escape(_fmt(row['a']))} → "
                      f"{escape(_fmt(row['b']))}")
    if "settings" in diff["config"]:
        out.print("config [bold]settings[/] differ (see --json)")
    out.print(f"{diff['shared_cases']} shared cases: {len(diff['fixed'])} fixed in B, "
              f"{len(diff['broken'])} broken in B")
    for row in diff["broken"][:10]:
        out.print(f"  broken [{row['now']}] {escape(row['question'])}")


@app.command("testset")
def testset_cmd(
    out_file: Annotated[Path, typer.Option("--out", help="Cases JSONL to write.")],
    questions: Annotated[int, typer.Option("-n", help="Number of cases.")] = 50,
    unanswerable: Annotated[float, typer.Option(help="Share of unanswerable cases.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same cases).")] = 0,
    writer: Annotated[str | None, typer.Option(
        help="An LLM that writes the questions (openai:MODEL with --base-url); default: "
             "fill-in-the-blank questions, no model needed.")] = None,
    base_url: Annotated[str | None, typer.Option(help="Base URL for openai:MODEL.")] = None,
    kb: KbOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Generate an evaluation set from a knowledge base: questions with their gold document,
    plus unanswerable ones."""
    from ragtune.answering.ask import generator_for
    from ragtune.evaluation.testset import generate_testset, write_cases

    settings = Settings.load(home=home)
    llm = None
    if writer:  # the configured generator's settings, with the writer model in its place
        llm = generator_for(settings.with_overrides({"generator": {
            "name": writer, "base_url": base_url, "adapter": None, "reader": False}}))
    with KnowledgeBase.open(kb, settings) as base, _progress(as_json) as bar:
        cases = generate_testset(base, questions, unanswerable, seed, llm,
                                 progress=bar("generate"))
    write_cases(cases, out_file)
    answerable = sum(c.answerable for c in cases)
    if as_json:
        _print_json({"out": str(out_file), "cases": len(cases), "answerable": answerable,
                     "unanswerable": len(cases) - answerable, "seed": seed})
        return
    out.print(f"wrote {len(cases)} cases ({answerable} answerable, "
              f"{len(cases) - answerable} unanswerable) to {escape(str(out_file))}")
    if len(cases) < questions:
        err.print(f"[yellow]only {len(cases)} of {questions}[/]: the knowledge base has too "
                  "few documents with a usable sentence")


@app.command("tune")
def tune_cmd(
    data: Annotated[Path, typer.Argument(help="Training JSONL (chat 'messages' or 'prompt'/"
                                              "'completion'); with --raft, evaluation cases.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Adapter folder to write (PEFT files + "
                                                        "ragtune-adapter.json).")],
    base: Annotated[str | None, typer.Option(
        help="Base model: local:smollm2 (bundled) or a Hugging Face model folder.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Passes over the training set.")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Examples per batch.")] = None,
    grad_accum: Annotated[int | None, typer.Option(help="Batches per optimizer step.")] = None,
    rank: Annotated[int | None, typer.Option("--rank", help="LoRA rank r.")] = None,
    alpha: Annotated[int | None, typer.Option(help="LoRA alpha.")] = None,
    dropout: Annotated[float | None, typer.Option(help="LoRA dropout.")] = None,
    targets: Annotated[str | None, typer.Option(
        help="Modules to adapt: all-linear, or names like q_proj,v_proj.")] = None,
    max_length: Annotated[int | None, typer.Option(help="Longest example in tokens.")] = None,
    val_split: Annotated[float | None, typer.Option(help="Share held out for validation.")
                         ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the split, order and init.")] = None,
    patience: Annotated[int | None, typer.Option(
        help="Epochs without a better validation loss before stopping (0: never).")] = None,
    min_examples: Annotated[int | None, typer.Option(help="Fewest examples accepted.")] = None,
    save_every: Annotated[int | None, typer.Option(
        help="Steps between checkpoints (0: each epoch only).")] = None,
    precision: Annotated[str | None, typer.Option(help="auto, float32 or bfloat16.")] = None,
    raft: Annotated[bool, typer.Option(
        "--raft", help="Build RAFT examples from --kb and the cases in DATA, then train on "
                       "them.")] = False,
    distractors: Annotated[int | None, typer.Option(help="RAFT: distractor passages.")] = None,
    withhold: Annotated[float | None, typer.Option(
        help="RAFT: share of answerable examples whose oracle passage is withheld.")] = None,
    validate_only: Annotated[bool, typer.Option(
        "--validate-only", help="Check the data (rows, roles, duplicates, lengths); no "
                                "training.")] = False,
    restart: Annotated[bool, typer.Option(
        help="Discard checkpoints or an adapter of another run in --out.")] = False,
    kb: KbOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a LoRA adapter. Rerunning an interrupted command resumes from its last
    checkpoint. Multi-GPU: `accelerate launch -m ragtune tune ...` (same arguments)."""
    from ragtune.tuning import load_training_data, train_adapter
    from ragtune.tuning.data import validate_training_data

    flags = {"base": base, "epochs": epochs, "learning_rate": lr, "batch_size": batch_size,
             "grad_accum": grad_accum, "lora_r": rank, "lora_alpha": alpha,
             "lora_dropout": dropout, "max_length": max_length, "val_split": val_split,
             "seed": seed, "patience": patience, "min_examples": min_examples,
             "save_every": save_every, "precision": precision,
             "raft_distractors": distractors, "raft_withhold": withhold,
             "target_modules": None if targets is None else (
                 targets if targets == "all-linear" else
                 tuple(t.strip() for t in targets.split(",") if t.strip()))}
    settings = Settings.load(home=home, tune=_given(**flags))
    if raft and kb is None:
        raise typer.BadParameter("--raft needs --kb NAME (the knowledge base the passages come "
                                 "from)")
    if validate_only:
        if raft:
            raise typer.BadParameter("--validate-only checks a training file, not --raft cases")
        with _status(not as_json and err.is_terminal, "loading the tokenizer"):
            report = validate_training_data(data, settings)
        if as_json:
            _print_json(report.to_dict())
        else:
            out.print(f"{data}: {report.examples} valid examples ({report.train} train, "
                      f"{report.validation} validation), {report.mean_tokens} tokens on "
                      f"average, longest {report.max_tokens} (limit {report.limit}: "
                      f"{report.limit_name})")
        return
    # Under `accelerate launch` every process runs this command; one reports.
    main_process = os.environ.get("RANK", "0") == "0"
    with _training_progress(as_json, show=main_process) as progress:
        if raft:
            from ragtune.cases import load_cases
            from ragtune.tuning.raft import train_raft_adapter

            cases = load_cases(data)
            with KnowledgeBase.open_existing(kb, settings) as base_kb:
                raft_report, result = train_raft_adapter(
                    base_kb, cases, out_dir, settings, cases_file=data, progress=progress,
                    restart=restart)
            for skipped in raft_report.skipped:
                err.print(f"[yellow]skipped[/] {escape(skipped['id'])}: "
                          f"{escape(skipped['reason'])}")
            extra: dict[str, Any] = {"raft": raft_report.to_dict()}
        else:
            examples = load_training_data(data, settings.tune.min_examples)
            result = train_adapter(examples, out_dir, settings, data_file=data,
                                   progress=progress, restart=restart)
            extra = {}
    if not main_process:
        return
    if as_json:
        _print_json(result.to_dict() | extra)
        return
    _render_training(result, extra.get("raft"))


def _render_training(result: Any, raft: dict[str, Any] | None) -> None:
    m = result.manifest
    t = m.training
    if result.already_trained:
        err.print(f"[dim]{escape(str(result.out))} already holds this adapter (same data and "
                  "settings); nothing to do[/]")
    if result.resumed_from is not None:
        err.print(f"resumed from step {result.resumed_from}")
    if raft is not None:
        out.print(f"RAFT examples: {raft['examples']} ({raft['answered']} answered from the "
                  f"oracle, {raft['withheld']} with the oracle withheld, "
                  f"{raft['unanswerable']} unanswerable), {len(raft['skipped'])} skipped")
    table = Table(box=None)
    table.add_column("epoch", justify="right")
    table.add_column("step", justify="right")
    table.add_column("train loss", justify="right")
    table.add_column("val loss", justify="right")
    for row in m.history:
        table.add_row(str(row["epoch"]), str(row["step"]), _fmt(row.get("train_loss")),
                      _fmt(row.get("val_loss")))
    out.print(table)
    out.print(f"validation loss {_fmt(m.metrics.get('val_loss_before'))} → "
              f"{_fmt(m.metrics.get('val_loss'))} (best epoch {t.best_epoch}"
              f"{', stopped early' if t.stopped_early else ''}); {t.steps} steps in "
              f"{t.seconds:.0f}s ({_fmt(t.seconds_per_step)} s/step, {t.precision} on "
              f"{t.device}), peak memory {t.peak_rss_mb:,.0f} MB")
    out.print(f"adapter in [bold]{escape(str(result.out))}[/]; use it with "
              f"`ragtune ask --adapter {escape(str(result.out))}`")


@contextmanager
def _training_progress(transient: bool, show: bool = True) -> Iterator[Callable[[Any], None]]:
    """A progress bar with loss, validation loss and ETA on stderr."""
    from rich.progress import TimeRemainingColumn

    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}  val {task.fields[val]}"),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=err,
        transient=transient, disable=not show,
    ) as bars:
        task = bars.add_task("train", total=None, loss="-", val="-")

        def update(p: Any) -> None:
            fields: dict[str, Any] = {}
            if p.loss is not None:
                fields["loss"] = f"{p.loss:.3f}"
            if p.val_loss is not None:
                fields["val"] = f"{p.val_loss:.3f}"
            label = {"validate": "validate", "checkpoint": "checkpoint"}.get(p.phase, "train")
            bars.update(task, total=p.total_steps, completed=p.step,
                        description=f"{label} epoch {min(p.epoch + 1, p.epochs)}/{p.epochs}",
                        **fields)

        yield update


adapters_app = typer.Typer(cls=_Group, help="Trained LoRA adapters and whether they are stale.",
                           no_args_is_help=True)
app.add_typer(adapters_app, name="adapters")


@adapters_app.command("list")
def adapters_list(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Adapters trained under this data home, with their knowledge base and status."""
    from ragtune.tuning.manifest import list_adapters

    entries = list_adapters(Settings.load(home=home))
    if as_json:
        _print_json({"adapters": [e.to_dict() for e in entries]})
        return
    paths = [_display_path(e.path) for e in entries]
    table = Table(box=None)
    table.add_column("path", overflow="fold", min_width=min(60, max(map(len, paths), default=4)))
    for column in ("base", "examples", "val loss", "knowledge base", "status"):
        table.add_column(column, justify="right" if column in ("examples", "val loss")
                         else "left")
    for e, path in zip(entries, paths, strict=True):
        row = e.to_dict()
        kb = row.get("knowledge_base")
        status = {"ok": "[green]ok[/]", "stale": "[yellow]stale[/]"}.get(e.status,
                                                                         f"[red]{e.status}[/]")
        table.add_row(escape(path), escape(str(row.get("base_model", "-"))),
                      str(row.get("examples", "-")), _fmt(row.get("val_loss")),
                      "-" if not kb else f"{escape(kb['name'])}@{kb['generation']}", status)
    out.print(table)
    err.print(f"{len(entries)} adapters")


@adapters_app.command("show")
def adapters_show(
    path: Annotated[Path, typer.Argument(help="Adapter folder.")],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One adapter's manifest, and whether its knowledge base changed since training."""
    from ragtune.tuning.manifest import describe_adapter

    entry = describe_adapter(path, Settings.load(home=home))
    if entry.error is not None:
        raise RagtuneError(entry.error)
    if as_json:
        _print_json(entry.to_dict(full=True))
        return
    m = entry.manifest
    assert m is not None and entry.staleness is not None
    out.print(f"[bold]{escape(str(path))}[/]  created {m.created_at}")
    out.print(f"base      {escape(m.base_model.name)} ({m.base_model.parameters or 0:,} "
              f"parameters, sha256 {m.base_model.sha256[:12]})")
    out.print(f"data      {escape(str(m.data.path or '-'))} ({m.data.shape}, {m.data.examples} "
              f"examples: {m.data.train} train, {m.data.validation} validation; sha256 "
              f"{m.data.sha256[:12]})")
    h = m.hyperparameters
    out.print(f"lora      r={h['lora_r']} alpha={h['lora_alpha']} dropout={h['lora_dropout']} "
              f"targets={h['target_modules']}; lr {h['learning_rate']}, batch {h['batch_size']}"
              f"x{h['grad_accum']}, {h['epochs']} epochs, seed {h['seed']}")
    t = m.training
    out.print(f"training  {t.steps} steps, {t.epochs_run} epochs in {t.seconds:.0f}s "
              f"({t.precision} on {t.device}, peak {t.peak_rss_mb:,.0f} MB)"
              + (f", resumed from step(s) {t.resumed_from_steps}" if t.resumed_from_steps else ""))
    out.print(f"val loss  {_fmt(m.metrics.get('val_loss_before'))} → "
              f"{_fmt(m.metrics.get('val_loss'))} (best epoch {t.best_epoch})")
    stale = entry.staleness
    colour = "yellow" if stale.stale else "green"
    out.print(f"[{colour}]{'stale' if stale.stale else 'fresh'}[/]     {escape(stale.reason)}")
    for doc in stale.changed[:10]:
        out.print(f"          changed: {escape(doc)}")
    for doc in stale.removed[:10]:
        out.print(f"          removed: {escape(doc)}")


@bench_app.command("beir")
def bench_beir(
    dataset: Annotated[Path, typer.Argument(help="BEIR folder: corpus.jsonl, queries.jsonl, "
                                                 "qrels/<split>.tsv.")],
    mode: Annotated[str, typer.Option(help=f"One of {', '.join(MODES)}.")] = "hybrid",
    split: Annotated[str, typer.Option(help="qrels split to evaluate.")] = "test",
    fusion: FusionOpt = "zscore",
    kb: Annotated[str | None, typer.Option(
        "--kb", help="Reuse (and sync) this knowledge base; default: a temporary one.")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure retrieval on a BEIR data set: nDCG@10, recall@100, MRR@10, latency."""
    from ragtune.evaluation import run_beir

    if mode not in MODES:
        raise RagtuneError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    settings = Settings.load(home=home)
    with tempfile.TemporaryDirectory(prefix="ragtune-beir-") as tmp:
        if kb is None:
            settings = settings.with_overrides({"home": Path(tmp)})
        with KnowledgeBase.open(kb or "beir", settings) as base, _progress(as_json) as bar:
            report = run_beir(dataset, mode, base, split=split, fusion=fusion,
                              ingest_progress=bar(f"ingest {dataset.name}"),
                              progress=bar(f"{mode} queries"))
    data = report.to_dict()
    if as_json:
        _print_json(data)
        return
    table = Table("mode", "nDCG@10", "recall@100", "MRR@10", "p50 ms", "p95 ms", "queries",
                  "documents", box=None)
    table.add_row(data["mode"], f"{data['ndcg@10']:.4f}", f"{data['recall@100']:.4f}",
                  f"{data['mrr@10']:.4f}", f"{data['latency_ms']['p50']:.1f}",
                  f"{data['latency_ms']['p95']:.1f}", str(data["queries"]),
                  str(data["documents"]))
    out.print(table)


@app.command("assess")
def assess_cmd(
    answers_file: Annotated[Path | None, typer.Option(
        "--answers", help="Checklist answers (YAML, see examples/checklists); without it the "
                          "questions are asked on the terminal.")] = None,
    evidence_path: Annotated[Path | None, typer.Option(
        "--evidence", help="Measurements that decide: an eval run folder (`ragtune eval "
                           "--out`) or a lab folder or lab.json (`ragtune compare`).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Recommend RAG, fine-tuning, a hybrid or neither from a checklist about your workload,
    decided by measurements when --evidence is given."""
    from ragtune.lab.checklist import assess, load_answers, load_evidence

    # Evidence first: a bad path should fail before nine questions were answered.
    evidence = load_evidence(evidence_path) if evidence_path is not None else None
    if answers_file is not None:
        answers = load_answers(answers_file)
    elif sys.stdin.isatty() and sys.stdout.isatty():
        answers = _ask_checklist()
    else:
        raise InputError("no terminal: pass --answers FILE")
    result = assess(answers, evidence)
    if as_json:
        _print_json(result.to_dict())
        return
    out.print(f"Recommendation: {result.recommendation}", markup=False, highlight=False)
    out.print("\nWhy:", markup=False, highlight=False)
    for reason in result.reasons:
        out.print(f"  - {reason}", markup=False, highlight=False)
    if result.warnings:
        out.print("\nWarnings:", markup=False, highlight=False)
    for warning in result.warnings:
        out.print(f"  - {warning}", markup=False, highlight=False)


def _ask_checklist() -> Any:
    """The checklist asked on the terminal; questions go to stderr so stdout holds only the
    result (and `--json` stays one document)."""
    from ragtune.lab.checklist import interview

    def write(text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()

    try:
        return interview(sys.stdin.readline, write)
    except KeyboardInterrupt:
        write("\n")
        raise InputError("checklist cancelled (Ctrl-C)") from None


@app.command("compare")
def compare_cmd(
    experiment: Annotated[Path | None, typer.Argument(help="Experiment file (YAML): documents, "
                                                      "questions, change set, task, budgets; "
                                                      "or give --docs alone.")] = None,
    docs: Annotated[Path | None, typer.Option(
        "--docs", help="A folder of documents: everything else gets a measured default "
        "(generated questions, a synthetic change set, the plain cited-answer task).",
        exists=True, file_okay=False)] = None,
    questions: Annotated[Path | None, typer.Option(
        "--questions", help="JSONL of your questions (one phrasing each is fine; answers: [] "
        "for unanswerable ones), instead of generated ones.", exists=True, dir_okay=False)
    ] = None,
    checklist: Annotated[Path | None, typer.Option(
        "--checklist", help="`ragtune assess` answers (YAML). None given: asked on a terminal, "
        "else the measurements alone decide.", exists=True, dir_okay=False)] = None,
    budget: Annotated[float | None, typer.Option(
        "--budget", min=1.0, help="Minutes the run may take on this machine: the samples are "
        "shrunk to fit the estimate.")] = None,
    seed: Annotated[int | None, typer.Option(
        "--seed", help="Seed of the split, the generated questions and the synthetic changes "
        "(with --docs; default 0).")] = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Folder for the report, runs and adapters (default "
                      "<home>/labs/<experiment name>).")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train, evaluate and probe every architecture on the same cases; write the report.

    `ragtune compare --docs DIR` needs nothing else: it prints what it will do and how long it
    should take, then runs."""
    from ragtune.lab.experiment import load_experiment
    from ragtune.lab.prepare import docs_experiment

    if (experiment is None) == (docs is None):
        raise typer.BadParameter("give an experiment file or --docs DIR (one of them)")
    if experiment is not None:
        if seed is not None:
            raise typer.BadParameter("--seed goes with --docs (an experiment file has split.seed)")
        exp = load_experiment(experiment)
        exp = exp.model_copy(update={k: v.resolve() for k, v in (
            ("questions", questions), ("checklist", checklist)) if v is not None})
    else:
        assert docs is not None
        exp = docs_experiment(docs, questions, checklist, seed or 0)
    settings = Settings.load(home=home)
    answers = None
    if exp.checklist is None and sys.stdin.isatty() and not as_json:
        err.print("No checklist given: answer it here (or pass --checklist; Ctrl-D to skip "
                  "it and decide from the measurements alone).", highlight=False)
        answers = _ask_checklist_or_skip()
    _run_lab(exp, settings, out_dir or settings.home / "labs" / exp.name, as_json,
             budget=budget, checklist=answers)


def _ask_checklist_or_skip() -> Any:
    """The checklist's answers from the terminal, or None at the end of input (Ctrl-D)."""
    try:
        return _ask_checklist()
    except InputError as exc:
        if "end of input" not in str(exc):
            raise
        err.print("checklist skipped: the measurements alone will decide", highlight=False)
        return None


@app.command("demo")
def demo_cmd(
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Folder for the report (default <home>/labs/demo).")] = None,
    levers: Annotated[bool, typer.Option(
        "--levers", help="Also run rag-tuned-retrieval: the retrieval levers chosen on the "
        "training questions, and their table in the report (about a sixth more time).")
    ] = False,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The whole lab on the bundled sample: a fictional company's 40-article help centre,
    150 questions, a change set, and a JSON answer format (about 8 minutes on 2 cores)."""
    from ragtune.lab.experiment import SAMPLE_EXPERIMENT, load_experiment

    settings = Settings.load(home=home)
    exp = load_experiment(SAMPLE_EXPERIMENT)
    if levers:
        exp = exp.with_architecture("rag-tuned-retrieval")
    _run_lab(exp, settings, out_dir or settings.home / "labs" / "demo", as_json)


def _run_lab(exp: Any, settings: Settings, out_dir: Path, as_json: bool,
             budget: float | None = None, checklist: Any = None) -> None:
    from ragtune.lab.compare import Lab

    def log(message: str) -> None:
        err.print(f"[dim]lab[/] {escape(message)}", highlight=False)

    lab_run = Lab(exp, settings, out_dir, log=log, checklist=checklist)
    plan = lab_run.plan(budget)
    for line in plan.lines():
        err.print(escape(line), highlight=False)
    with _progress(transient=True) as bar:
        lab_run.stage_fn = lambda label, total: bar(label)
        lab = lab_run.run()
    paths = {"html": str(out_dir / "report.html"), "markdown": str(out_dir / "report.md"),
             "json": str(out_dir / "lab.json")}
    if as_json:
        data = lab.to_dict()
        _print_json({k: data[k] for k in ("experiment", "recommendation", "order",
                                          "architectures", "freshness", "retrieval_levers",
                                          "stages", "seconds") if k in data}
                    | {"plan": plan.to_dict(), "report": paths})
        return
    _render_lab(lab)
    out.print(f"\nReport: {_display_path(paths['html'])} (also report.md, lab.json; "
              f"{lab.seconds:.0f} s in all, {plan.seconds:.0f} s estimated)", highlight=False)


def _render_lab(lab: LabResult) -> None:
    rec = lab.recommendation
    out.print(f"Recommendation: [bold]{escape(rec.recommendation or '')}[/]")
    for reason in rec.reasons:
        out.print(f"  - {escape(reason)}", highlight=False)
    for warning in rec.warnings:
        out.print(f"  [yellow]![/] {escape(warning)}", highlight=False)
    rows = (("correct", "correct"), ("faithfulness", "faithful"),
            ("citation_accuracy", "citations"), ("format_valid", "format"),
            ("refusal_correct", "refusal"), ("freshness_after", "fresh"),
            ("consistency", "consistent"), ("latency_ms_p50", "p50 ms"),
            ("prompt_tokens", "prompt tok"), ("training_seconds", "train s"))
    quantities = {"latency_ms_p50", "prompt_tokens", "training_seconds"}  # rates keep 3 places

    def cell(key: str, value: Any) -> str:
        return f"{value:,.0f}" if key in quantities and isinstance(value, int | float) \
            else _fmt(value)

    table = Table(box=None, pad_edge=False)
    table.add_column("arch")
    for _, label in rows:
        table.add_column(label, justify="right")
    for arch in lab.order:
        m = lab.architectures[arch].metrics
        table.add_row(escape(arch), *(cell(key, m.get(key)) for key, _ in rows))
    out.print(table)


@keys_app.command("create")
def keys_create(
    scope: Annotated[list[str], typer.Option(
        "--scope", help="read, ingest or admin (repeat, or comma-separated).")],
    groups: Annotated[str, typer.Option(
        "--groups", help="Access groups whose documents the key may see (comma-separated); "
                         "documents without groups are visible to every key.")] = "",
    name: Annotated[str, typer.Option("--name", help="What the key is for.")] = "",
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a key; its secret is printed once and only its hash is stored."""
    from ragtune.service import KeyStore, parse_scopes

    store = KeyStore.open(Settings.load(home=home))
    secret, record = store.create(parse_scopes(scope), groups.split(","), name)
    if as_json:
        _print_json({"key": secret} | record.to_dict())
        return
    err.print(f"key {record.id} ({', '.join(record.scopes)}; groups: "
              f"{', '.join(record.groups) or 'none'}). Store it now: it is not shown again.",
              highlight=False)
    out.print(secret, markup=False, highlight=False)


@keys_app.command("list")
def keys_list(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Every key: id, name, scopes, groups, created, last used, revoked (never a secret)."""
    from ragtune.service import KeyStore

    records = KeyStore.open(Settings.load(home=home)).list()
    if as_json:
        _print_json([r.to_dict() for r in records])
        return
    table = Table("id", "name", "scopes", "groups", "created", "last used", "state", box=None)
    for r in records:
        d = r.to_dict()
        table.add_row(r.id, escape(r.name), ",".join(r.scopes), escape(",".join(r.groups)),
                      d["created_at"], d["last_used_at"] or "-",
                      "active" if r.active else f"revoked {d['revoked_at']}")
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (from ragtune keys list).")],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke a key: requests with it are refused from now on."""
    from ragtune.service import KeyStore

    record = KeyStore.open(Settings.load(home=home)).revoke(key_id)
    if as_json:
        _print_json(record.to_dict())
        return
    out.print(f"revoked {record.id}", highlight=False)


@traces_app.command("list")
def traces_list(
    below: Annotated[float | None, typer.Option(
        "--below", min=0.0, max=1.0, help="Only answers with groundedness under this (the "
        "share of claims the judge found supported).")] = None,
    refused: Annotated[bool | None, typer.Option(
        "--refused/--answered", help="Only refusals, or only answers.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    kb: KbOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Served answers (`ragtune serve`), newest first: groundedness, refusal, latency, tokens."""
    from ragtune.evaluation.online import trace_to_dict

    with _open_existing(home, kb) as base:
        traces = base.store.list_traces(limit=limit, below=below, refused=refused)
    rows = [trace_to_dict(t, detail=False) for t in traces]
    if as_json:
        _print_json({"kb": base.name, "traces": rows})
        return
    table = Table("id", "when", "grounded", "refused", "ms", "tokens", "question", box=None)
    for r in rows:
        g = "-" if r["groundedness"] is None else f"{r['groundedness']:.2f}"
        table.add_row(r["id"], r["created_at"], g, "yes" if r["refused"] else "",
                      f"{r['latency_ms']:.0f}", f"{r['prompt_tokens']}+{r['output_tokens']}",
                      escape(_short(r["question"], 50)))
    out.print(table)
    err.print(f"{len(rows)} traces")


@traces_app.command("show")
def traces_show(
    trace_id: Annotated[str, typer.Argument(help="A trace id (from ragtune traces list).")],
    kb: KbOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One trace: question, answer, citations, passages, the judged claims, timings."""
    from ragtune.evaluation.online import trace_to_dict

    with _open_existing(home, kb) as base:
        trace = base.store.get_trace(trace_id)
    if trace is None:
        raise InputError(f"no trace {trace_id!r} in knowledge base {base.name!r}")
    data = trace_to_dict(trace)
    if as_json:
        _print_json(data)
        return
    g = "-" if trace.groundedness is None else f"{trace.groundedness:.2f}"
    out.print(f"[bold]{escape(trace.question)}[/bold]")
    out.print(escape(trace.answer), highlight=False)
    state = f"refused: {trace.refusal_reason}" if trace.refused else "answered"
    out.print(f"groundedness {g} · {escape(state)} · {trace.latency_ms:.0f} ms · "
              f"{trace.prompt_tokens} prompt + {trace.output_tokens} output tokens · "
              f"{data['created_at']} · {trace.route}",
              highlight=False)
    for claim in data.get("claims", []):
        mark = "supported" if claim["supported"] else "NOT supported"
        out.print(f"  claim ({mark}, {claim['score']:.2f}): {escape(claim['claim'])}",
                  highlight=False)
    for p in data.get("passages", []):
        out.print(f"  [{p['number']}] {escape(p['title'] or p['doc_id'])}: "
                  f"{escape(_short(p['text'], 160))}", highlight=False)


@app.command("serve")
def serve_cmd(
    host: Annotated[str, typer.Option(help="Address to listen on (non-loopback needs a key).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    home: HomeOpt = None,
) -> None:
    """Serve the HTTP API (documents, search, ask) with API keys and access groups."""
    import uvicorn

    from ragtune.service import KeyStore
    from ragtune.service.app import check_bind, create_app, header_timeout_protocol

    settings = Settings.load(home=home)
    keys = KeyStore.open(settings)
    check_bind(host, keys)
    err.print(f"serving {settings.home} on http://{host}:{port} (OpenAPI schema: "
              "/openapi.json)", highlight=False)
    uvicorn.run(create_app(settings, keys), host=host, port=port, log_level="warning",
                http=header_timeout_protocol(settings.service.header_timeout_s))


ProgressFn = Callable[[int, int | None], None]


@contextmanager
def _progress(transient: bool) -> Iterator[Callable[[str], ProgressFn]]:
    """Rich progress bars on stderr; `bar(label)` adds one and returns the library callback
    (done in this step, new total or None)."""
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=err, transient=transient,
    ) as bars:

        def new_bar(label: str) -> ProgressFn:
            task = bars.add_task(label, total=None)

            def update(done: int, total: int | None) -> None:
                if total is not None:
                    bars.update(task, total=total)
                if done:
                    bars.advance(task, done)

            return update

        yield new_bar


@contextmanager
def _status(show: bool, message: str) -> Iterator[None]:
    if not show:
        yield
        return
    with err.status(message):
        yield


def _display_path(path: str) -> str:
    """A path relative to the working directory when it lies under it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


def _short(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _highlight(text: str, query: str, width: int = 160) -> str:
    words = {w.lower() for w in re.findall(r"\w{3,}", query)}
    flat = " ".join(text.split())
    start = 0
    for m in re.finditer(r"\w+", flat):
        if m.group(0).lower() in words:
            start = max(0, m.start() - 40)
            break
    snippet = flat[start : start + width]
    pieces = re.split(r"(\w+)", snippet)
    return ("…" if start else "") + "".join(
        f"[bold yellow]{escape(p)}[/]" if p.lower() in words else escape(p) for p in pieces
    ) + ("…" if start + width < len(flat) else "")


def main() -> None:
    """Entry point of the `ragtune` console script."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
