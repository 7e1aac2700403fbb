"""Soak: the HTTP service under concurrent clients for minutes, mixing ingest, search and ask.

    .venv/bin/python bench/soak.py [--json OUT] [--clients 16] [--duration 600]
        [--mix search=60,ingest=25,ask=15] [--window 60] [--sample-every 5]
        [--answer-slots 4] [--seed-docs 300] [--cache DIR] [--torch-threads N] [--keep-home]

What it finds: errors under concurrency, latency drift (the first window against the last),
server memory growth after warm-up, and the SQLite write-ahead log (does it checkpoint, or
grow?). The defaults take about 12 minutes (setup ~1-2 min, 10 min of load, checks).

Everything runs from a fresh temporary data home, models offline:
1. a seed knowledge base `squad`: `--seed-docs` paragraphs of the SQuAD 2.0 dev subset
   (../shared/data/squad-v2-dev-subset, 16 Wikipedia articles; seeded shuffle) written as a
   BEIR-style corpus.jsonl and ingested with `ragtune ingest`; the other paragraphs are the
   pool the clients' new documents come from;
2. one API key per client (scopes read + ingest, no groups, as an application would hold),
   created with the library's `KeyStore`; the home's `config.toml` raises the per-key rate
   limit (`[service] requests_per_minute`, `burst`) far above what a client can send, so the
   load reaches the server and a 429 would count as an error;
3. `ragtune serve` on a free loopback port (its own process; `GET /readyz` is polled);
4. `--clients` threads, each with its own keep-alive `httpx.Client` and key, loop for
   `--duration` seconds, drawing each operation from the weighted `--mix`:
   - `search`: `POST /v1/search` (hybrid, k=5) with a SQuAD question about a seeded paragraph;
     must be 200 with a non-empty `hits` list and not `degraded`;
   - `ingest`: `POST /v1/documents` with 1-3 small JSON records; each is either a new
     document (a pool paragraph) or an update of one this client added before (the same
     paragraph with a new closing "revision" sentence, so the content changes and one chunk
     is re-embedded). Each client writes only its own ids, so the last acknowledged revision
     of every document is known; must be 200, nothing `failed`, every outcome added/updated;
   - `ask`: `POST /v1/ask` with an answerable SQuAD question; 200 with `answer`, `refused`,
     `citations` (a refusal is not an error: it is counted); `--stream-share` of them (default
     0.25) with `"stream": true`, read to the end: the last event must be `answer`;
   - `chat` (weight 0 by default): `POST /v1/chat/completions` with model `kb:squad`.
   A client stops starting operations at the deadline; operations in flight finish.
5. a sampler thread records, every `--sample-every` seconds: the server's RSS (its process
   and any children), threads and open files, every `*-wal` file under the home, and the
   knowledge base's folder size;
6. the server is stopped (SIGTERM), and the knowledge base is opened with the library:
   every document whose ingest was acknowledged must be there at its last acknowledged
   revision (the text holds that revision's sentence, and the store's version number equals
   the number of acknowledged writes); a write whose request failed in transport may or may
   not have happened, and either outcome is accepted; every seed document must be there;
   the store's own `check()` (SQLite integrity, chunk offsets) must be clean.

Latency is the client's (perf_counter around the request; clients and server share the
machine's cores). Windows are `--window` seconds by a request's start time (default 60, or a
third of the duration when that is under 3 minutes); drift is the last window's p50 and p95
over the first's. The warm-up ends with the first window, or when the first answer returns if
that is later (the generator's first batches grow the process): RSS growth is measured from
the sample after it to the end of the run. Searches also carry the route's own timings
(`timings_ms`: `index` is the wait for the search index, rebuilt after every write). The run
exits 1 when any request failed or the integrity checks found a problem.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from common import REPO, log, machine, versions, write_json
from serve import Server, cli, cpu_model, free_port, percentile

SQUAD = REPO.parent / "shared" / "data" / "squad-v2-dev-subset" / "dev-v2.0.json"
KB_NAME = "squad"
SEED = 17
SEARCH_K = 5
DEFAULT_MIX = "search=60,ingest=25,ask=15"
OPERATIONS = ("search", "ingest", "ask", "chat")
GENERATING = ("ask", "chat")  # operations that wait for the one local generator
# The limiter is a token bucket per key; these are far above anything a client sends.
RATE_LIMIT = {"requests_per_minute": 10_000_000, "burst": 1_000_000}
MAX_RECORDS_PER_INGEST = 3
UPDATE_SHARE = 0.5  # of the records in an ingest request, when the client has documents


# --- data -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Paragraph:
    id: str
    title: str
    text: str
    questions: tuple[str, ...]        # all of them (search)
    answerable: tuple[str, ...]       # those with an answer in the paragraph (ask)


def squad_paragraphs(seed: int) -> list[Paragraph]:
    """Every paragraph of the SQuAD subset with its questions, in a seeded shuffle."""
    data = json.loads(SQUAD.read_text(encoding="utf-8"))
    out = []
    for article in data["data"]:
        for i, para in enumerate(article["paragraphs"]):
            qas = para["qas"]
            out.append(Paragraph(
                f"squad-{article['title']}-{i:03d}", article["title"].replace("_", " "),
                para["context"], tuple(q["question"] for q in qas),
                tuple(q["question"] for q in qas if not q.get("is_impossible"))))
    random.Random(seed).shuffle(out)
    return out


def revision_sentence(doc_id: str, revision: int, client: int) -> str:
    return f"Soak note: this is revision {revision} of {doc_id}, written by client {client}."


# --- what the clients record ----------------------------------------------------------------

@dataclass
class Op:
    """One request: when it started (seconds into the run), its latency, and its error."""

    op: str
    t: float
    ms: float
    error: str | None = None   # None: success; else "HTTP 500", "ReadTimeout", "check: ..."
    detail: str = ""
    server_ms: dict[str, float] | None = None  # the route's own timings_ms, when it has them


@dataclass
class OwnedDoc:
    """A document one client writes: its base paragraph and what the server acknowledged."""

    id: str
    title: str
    base: str
    stored_id: str | None = None
    revision: int = 0              # the last revision sent
    acked_revision: int = 0        # the last revision acknowledged (2xx, outcome ok)
    acked_writes: int = 0
    uncertain: list[int] = field(default_factory=list)  # revisions whose fate is unknown


@dataclass
class ClientState:
    index: int
    ops: list[Op] = field(default_factory=list)
    docs: dict[str, OwnedDoc] = field(default_factory=dict)
    refused: int = 0
    redrawn: int = 0  # answers not sent because every answer slot was taken


class Pool:
    """New documents' paragraphs, shared by the clients (cycled: each new id is unique, and
    its revision sentence makes the text unique too)."""

    def __init__(self, paragraphs: list[Paragraph]) -> None:
        self.paragraphs, self.next, self.lock = paragraphs, 0, threading.Lock()

    def take(self) -> Paragraph:
        with self.lock:
            p = self.paragraphs[self.next % len(self.paragraphs)]
            self.next += 1
            return p


def check_search(data: Any) -> str | None:
    hits = data.get("hits") if isinstance(data, dict) else None
    if not isinstance(hits, list) or not hits:
        return "no hits"
    if data.get("degraded"):
        return f"degraded: {data['degraded']}"
    return None


def check_ask(data: Any) -> str | None:
    if not isinstance(data, dict) or not isinstance(data.get("answer"), str) or \
            not isinstance(data.get("refused"), bool) or \
            not isinstance(data.get("citations"), list):
        return "not an answer (answer, refused, citations)"
    return None


def check_chat(data: Any) -> str | None:
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return "not a chat.completion"
    return None if isinstance(content, str) else "no message content"


@dataclass
class Clock:
    """The run's start and deadline (perf_counter), set before the clients are released."""

    started: float = 0.0
    deadline: float = 0.0


def run_client(state: ClientState, url: str, key: str, clock: Clock, mix: dict[str, int],
               paragraphs: list[Paragraph], pool: Pool, seed: int, timeout: float,
               barrier: threading.Barrier, answer_slots: threading.Semaphore | None,
               stream_share: float) -> None:
    """One client: a keep-alive connection, operations back to back until the deadline.
    An answer (ask, chat) needs one of `answer_slots` (None: no limit); when none is free the
    client draws again among the other operations (counted in `state.redrawn`)."""
    rng = random.Random(seed * 1000 + state.index)
    ops, weights = zip(*[(k, v) for k, v in mix.items() if v > 0], strict=True)
    others = [(k, v) for k, v in mix.items() if v > 0 and k not in GENERATING]
    asked = [p for p in paragraphs if p.answerable]
    with httpx.Client(base_url=url, timeout=timeout,
                      headers={"Authorization": f"Bearer {key}"}) as client:
        client.get("/healthz")
        barrier.wait()
        while time.perf_counter() < clock.deadline:
            op = rng.choices(ops, weights)[0]
            slot = False
            if op in GENERATING and answer_slots is not None:
                slot = answer_slots.acquire(blocking=not others)
                if not slot:
                    state.redrawn += 1
                    op = rng.choices(*zip(*others, strict=True))[0]
            pending: list[tuple[OwnedDoc, int]] = []
            if op == "search":
                path, body = "/v1/search", {"query": rng.choice(rng.choice(paragraphs)
                                                                .questions),
                                            "k": SEARCH_K, "kb": KB_NAME}
            elif op == "ask":
                stream = rng.random() < stream_share
                path, body = "/v1/ask", {"question": rng.choice(rng.choice(asked).answerable),
                                         "kb": KB_NAME, "stream": stream}
            elif op == "chat":
                question = rng.choice(rng.choice(asked).answerable)
                path, body = "/v1/chat/completions", {
                    "model": f"kb:{KB_NAME}",
                    "messages": [{"role": "user", "content": question}]}
            else:
                path, records = "/v1/documents", []
                for _ in range(rng.randint(1, MAX_RECORDS_PER_INGEST)):
                    taken = {d.id for d, _ in pending}
                    free = [d for d in state.docs.values() if d.id not in taken]
                    if free and rng.random() < UPDATE_SHARE:
                        doc = rng.choice(free)
                    else:
                        para = pool.take()
                        doc_id = f"soak-c{state.index:02d}-{len(state.docs):05d}"
                        doc = OwnedDoc(doc_id, para.title, para.text)
                        state.docs[doc_id] = doc
                    doc.revision += 1
                    pending.append((doc, doc.revision))
                    note = revision_sentence(doc.id, doc.revision, state.index)
                    records.append({
                        "id": doc.id, "title": doc.title, "text": f"{doc.base}\n\n{note}",
                        "metadata": {"client": state.index, "revision": doc.revision}})
                body = {"kb": KB_NAME, "documents": records}
            t0 = time.perf_counter()
            error, detail, data = None, "", None
            try:
                if body.get("stream"):
                    with client.stream("POST", path, json=body) as r:
                        text = r.read().decode()
                else:
                    r = client.post(path, json=body)
                    text = r.text
                ms = (time.perf_counter() - t0) * 1000
                if not 200 <= r.status_code < 300:
                    error, detail = f"HTTP {r.status_code}", text[:300]
                else:
                    data = last_event(text) if body.get("stream") else json.loads(text)
            except (httpx.HTTPError, json.JSONDecodeError) as exc:
                ms = (time.perf_counter() - t0) * 1000
                error, detail = type(exc).__name__, str(exc)[:300]
            if error is None and isinstance(data, str):  # a stream that did not end well
                error, detail = "check", data
            if error is None:
                problem = (ingest_outcome(data, pending) if op == "ingest" else
                           {"search": check_search, "ask": check_ask,
                            "chat": check_chat}[op](data))
                if problem:
                    error, detail = "check", problem
                elif op in GENERATING:
                    state.refused += bool(data.get("refused"))
            timings = data.get("timings_ms") if isinstance(data, dict) else None
            server_ms = {k: float(v) for k, v in timings.items()
                         if isinstance(v, int | float)} if isinstance(timings, dict) else None
            if op == "ingest" and error is not None:
                # a transport error or a 5xx: the write may or may not have happened
                for doc, revision in pending:
                    doc.uncertain.append(revision)
            if slot:
                answer_slots.release()  # type: ignore[union-attr]
            state.ops.append(Op(op, t0 - clock.started, ms, error, detail, server_ms))


def last_event(text: str) -> Any:
    """A streamed answer's end: the `answer` event's data (an `error` event: its message)."""
    blocks = [b for b in text.split("\n\n") if b.strip()]
    if not blocks:
        return "no events"
    fields = dict(line.split(": ", 1) for line in blocks[-1].splitlines() if ": " in line)
    if fields.get("event") != "answer":
        return f"stream ended with {blocks[-1][:200]!r}"
    return json.loads(fields.get("data", "null"))


def ingest_outcome(data: Any, pending: list[tuple[OwnedDoc, int]]) -> str | None:
    """Check an ingest answer and record what it acknowledged; the problem, or None."""
    if not isinstance(data, dict):
        return "not a JSON object"
    if data.get("failed"):
        return f"failed: {data['failed'][:2]}"
    outcomes = data.get("documents") or []
    if len(outcomes) != len(pending):
        return f"{len(outcomes)} outcomes for {len(pending)} records"
    for (doc, revision), outcome in zip(pending, outcomes, strict=True):
        expected = "added" if doc.stored_id is None and doc.acked_writes == 0 and \
            not doc.uncertain else None
        if outcome.get("outcome") not in ("added", "updated") or (
                expected and outcome["outcome"] != expected):
            return f"{doc.id}: outcome {outcome.get('outcome')!r}"
        doc.stored_id = outcome["id"]
        doc.acked_revision = revision
        doc.acked_writes += 1
    return None


# --- the sampler ----------------------------------------------------------------------------

def tree_rss(proc: psutil.Process) -> tuple[int, int, int]:
    """RSS bytes, threads and open files of a process and its children."""
    rss = threads = files = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            with p.oneshot():
                rss += p.memory_info().rss
                threads += p.num_threads()
                files += p.num_fds()
        except psutil.Error:
            continue
    return rss, threads, files


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def sample(proc: psutil.Process, home: Path, t: float) -> dict[str, Any]:
    rss, threads, files = tree_rss(proc)
    wal = {str(p.relative_to(home)): p.stat().st_size for p in sorted(home.rglob("*-wal"))}
    return {"t": round(t, 1), "rss_mib": round(rss / 2**20, 1), "threads": threads,
            "open_files": files, "wal_bytes": wal,
            "kb_bytes": folder_bytes(home / "kb" / KB_NAME),
            "load_1m": round(os.getloadavg()[0], 2)}


class Sampler(threading.Thread):
    def __init__(self, proc: psutil.Process, home: Path, started: float, every: float) -> None:
        super().__init__(daemon=True, name="soak-sampler")
        self.proc, self.home, self.started, self.every = proc, home, started, every
        self.samples: list[dict[str, Any]] = []
        self.stop = threading.Event()

    def take(self) -> None:
        try:
            self.samples.append(sample(self.proc, self.home, time.perf_counter() - self.started))
        except (psutil.Error, OSError) as exc:  # a file vanished between listing and stat
            log(f"sample skipped: {exc}")

    def run(self) -> None:
        while not self.stop.wait(self.every):
            self.take()


# --- the figures ----------------------------------------------------------------------------

def latency(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(values, 50), 1), "p95_ms": round(percentile(values, 95), 1),
            "p99_ms": round(percentile(values, 99), 1),
            "max_ms": round(max(values), 1) if values else 0.0}


def summarize_ops(ops: list[Op], window: float, duration: float) -> dict[str, Any]:
    """Per operation: counts, errors by kind, latency overall and per window, and drift."""
    n_windows = max(1, int(-(-duration // window)))
    out: dict[str, Any] = {}
    for name in OPERATIONS:
        mine = [o for o in ops if o.op == name]
        if not mine:
            continue
        ok = [o.ms for o in mine if o.error is None]
        windows = []
        for w in range(n_windows):
            inside = [o for o in mine if w * window <= o.t < (w + 1) * window
                      or (w == n_windows - 1 and o.t >= (w + 1) * window)]
            lat = [o.ms for o in inside if o.error is None]
            server: dict[str, list[float]] = {}
            for o in inside:
                for k, v in (o.server_ms or {}).items() if o.error is None else ():
                    server.setdefault(k, []).append(v)
            windows.append({"window": w, "from_s": round(w * window), "count": len(inside),
                            "errors": sum(o.error is not None for o in inside),
                            "per_s": round(len(inside) / window, 2), **latency(lat),
                            "server_p50_ms": {k: round(percentile(v, 50), 1)
                                              for k, v in sorted(server.items())},
                            "server_mean_ms": {k: round(sum(v) / len(v), 1)
                                               for k, v in sorted(server.items())}})
        first, last = windows[0], windows[-1]
        ratio = {k: round(last[k] / first[k], 2) if first[k] and last[k] else None
                 for k in ("p50_ms", "p95_ms")}

        out[name] = {
            "count": len(mine), "ok": len(ok), "errors": len(mine) - len(ok),
            "errors_by_kind": dict(Counter(o.error for o in mine if o.error)),
            "error_samples": [f"{o.error}: {o.detail}" for o in mine if o.error][:5],
            "per_s": round(len(mine) / duration, 2), **latency(ok),
            "drift_last_over_first": {"p50": ratio["p50_ms"], "p95": ratio["p95_ms"]},
            "windows": windows}
    return out


def at(samples: list[dict[str, Any]], t: float) -> dict[str, Any]:
    """The first sample taken at or after `t` seconds (else the last)."""
    return next((s for s in samples if s["t"] >= t), samples[-1])


def warmup_end(ops: list[Op], window: float) -> float:
    """The end of the warm-up: the first window, or the first answer's return if later (the
    generator's first batches grow the process; that is not what the soak looks for)."""
    answered = [o.t + o.ms / 1000 for o in ops if o.op in GENERATING and o.error is None]
    return max(window, min(answered)) if answered else window


def summarize_resources(samples: list[dict[str, Any]], warmup: float) -> dict[str, Any]:
    if not samples:
        return {}
    rss = [s["rss_mib"] for s in samples]
    warm = at(samples, warmup)
    end = samples[-1]
    wal_total = [sum(s["wal_bytes"].values()) for s in samples]
    wal_files = sorted({f for s in samples for f in s["wal_bytes"]})
    return {
        "warmup_end_s": round(warmup, 1),
        "rss_mib": {"start": rss[0], "after_warmup": warm["rss_mib"], "peak": max(rss),
                    "end": end["rss_mib"],
                    "growth_after_warmup": round(end["rss_mib"] - warm["rss_mib"], 1),
                    "growth_after_warmup_pct": round(100 * (end["rss_mib"] - warm["rss_mib"])
                                                     / warm["rss_mib"], 1)},
        "threads": {"start": samples[0]["threads"], "peak": max(s["threads"] for s in samples),
                    "end": end["threads"]},
        "open_files": {"start": samples[0]["open_files"],
                       "peak": max(s["open_files"] for s in samples),
                       "end": end["open_files"]},
        "wal_bytes": {f: {"peak": max(s["wal_bytes"].get(f, 0) for s in samples),
                          "end": end["wal_bytes"].get(f, 0)} for f in wal_files},
        "wal_total_bytes": {"peak": max(wal_total), "end": wal_total[-1]},
        "kb_bytes": {"start": samples[0]["kb_bytes"], "after_warmup": warm["kb_bytes"],
                     "end": end["kb_bytes"]},
    }


def integrity(home: Path, clients: list[ClientState], seed_ids: list[str]) -> dict[str, Any]:
    """Open the knowledge base with the library (server stopped) and check what was
    acknowledged is there, at its last acknowledged revision; and the store's check()."""
    from ragtune import KnowledgeBase, Settings

    problems: list[str] = []
    checked = uncertain_docs = 0
    with KnowledgeBase.open(KB_NAME, Settings.load(home=home)) as kb:
        store = kb.store
        stored = {d.id: d for d in store.list_documents()}
        missing_seed = [i for i in seed_ids if i not in stored]
        if missing_seed:
            problems.append(f"{len(missing_seed)} seed documents missing, e.g. {missing_seed[:3]}")
        for state in clients:
            for doc in state.docs.values():
                if doc.stored_id is None:  # never acknowledged
                    continue
                checked += 1
                uncertain_docs += bool(doc.uncertain)
                found = stored.get(doc.stored_id)
                if found is None:
                    problems.append(f"{doc.stored_id}: acknowledged (revision "
                                    f"{doc.acked_revision}) but missing")
                    continue
                text = store.document_text(doc.stored_id) or ""
                allowed = [doc.acked_revision] + [r for r in doc.uncertain
                                                  if r > doc.acked_revision]
                if not any(revision_sentence(doc.id, r, state.index) in text for r in allowed):
                    problems.append(f"{doc.stored_id}: text is not revision "
                                    f"{doc.acked_revision} (or a later unacknowledged one)")
                if not doc.uncertain and found.version != doc.acked_writes:
                    problems.append(f"{doc.stored_id}: version {found.version}, "
                                    f"{doc.acked_writes} writes acknowledged")
        check = store.check()
        stats = store.stats()
    return {"documents": stats.documents, "chunks": stats.chunks, "vectors": stats.vectors,
            "versions": stats.versions, "store_bytes": stats.bytes_on_disk,
            "acknowledged_documents_checked": checked,
            "documents_with_unacknowledged_writes": uncertain_docs,
            "seed_documents_checked": len(seed_ids), "store_check": check,
            "problems": problems[:50], "problem_count": len(problems) + len(check)}


# --- main -----------------------------------------------------------------------------------

def parse_mix(text: str) -> dict[str, int]:
    mix: dict[str, int] = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        name = name.strip()
        if name not in OPERATIONS or not weight.strip().isdigit():
            raise ValueError(f"--mix: expected op=weight with op in {', '.join(OPERATIONS)}, "
                             f"got {part!r}")
        mix[name] = int(weight)
    if not any(mix.values()):
        raise ValueError("--mix: every weight is 0")
    return mix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--mix", default=DEFAULT_MIX,
                        help=f"operation weights (default {DEFAULT_MIX}; ops: "
                             f"{', '.join(OPERATIONS)})")
    parser.add_argument("--answer-slots", type=int, default=4,
                        help="answers (ask, chat) in flight at most; a client that draws one "
                             "when all are taken draws again among the other operations "
                             "(0: no limit, and the clients soon all wait for the generator)")
    parser.add_argument("--stream-share", type=float, default=0.25,
                        help="share of asks sent with \"stream\": true (server-sent events)")
    parser.add_argument("--window", type=float, default=None,
                        help="seconds per latency window (default 60, or duration/3 under 3 "
                             "minutes); the first is the warm-up")
    parser.add_argument("--sample-every", type=float, default=5.0,
                        help="seconds between RSS / WAL samples")
    parser.add_argument("--seed-docs", type=int, default=300,
                        help="SQuAD paragraphs in the seed knowledge base (of 646)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--request-timeout", type=float, default=300.0)
    parser.add_argument("--ready-timeout", type=float, default=300.0)
    parser.add_argument("--cache", type=Path, default=None,
                        help="model cache to reuse (RAGTUNE_CACHE; default: a fresh one in the "
                             "temporary home, so the first start converts the generator)")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="OMP_NUM_THREADS for the server (default: unset, as deployed)")
    parser.add_argument("--keep-home", action="store_true",
                        help="keep the temporary data home (server log: serve.log)")
    args = parser.parse_args()
    try:
        mix = parse_mix(args.mix)
    except ValueError as exc:
        parser.error(str(exc))
    if args.clients < 1 or args.duration <= 0:
        parser.error("--clients and --duration must be positive")
    window = args.window or (60.0 if args.duration >= 180 else args.duration / 3)
    paragraphs = squad_paragraphs(args.seed)
    if not 1 <= args.seed_docs < len(paragraphs):
        parser.error(f"--seed-docs: 1 to {len(paragraphs) - 1}")
    seeded, pool = paragraphs[:args.seed_docs], paragraphs[args.seed_docs:]

    home = Path(tempfile.mkdtemp(prefix="ragtune-soak-"))
    env = dict(os.environ, RAGTUNE_HOME=str(home), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1")
    env.pop("RAGTUNE_CACHE", None)
    if args.cache is not None:
        env["RAGTUNE_CACHE"] = str(args.cache.resolve())
    if args.torch_threads is not None:
        env["OMP_NUM_THREADS"] = str(args.torch_threads)
    (home / "config.toml").write_text(
        f'kb = "{KB_NAME}"\n\n[service]\n'
        + "".join(f"{k} = {v}\n" for k, v in RATE_LIMIT.items()))
    from ragtune.config import Settings
    from ragtune.service.keys import KeyStore

    settings = Settings.load(home=home)
    load_start = os.getloadavg()
    log(f"plan: {args.clients} clients x {args.duration:.0f} s, mix {mix}, windows of "
        f"{window:.0f} s; seed {len(seeded)} SQuAD paragraphs, pool {len(pool)}; home {home}")
    if load_start[0] > (os.cpu_count() or 1):
        log(f"WARNING: load average {load_start[0]:.1f} on {os.cpu_count()} cores: other work "
            "is running; latencies will be slower and noisier than on an idle machine")

    started_all = time.perf_counter()
    server: Server | None = None
    states = [ClientState(i) for i in range(args.clients)]
    sampler: Sampler | None = None
    after_stop: dict[str, Any] = {}
    try:
        corpus = home / "seed" / "corpus.jsonl"
        corpus.parent.mkdir()
        corpus.write_text("".join(json.dumps({"_id": p.id, "title": p.title, "text": p.text},
                                             ensure_ascii=False) + "\n" for p in seeded),
                          encoding="utf-8")
        log(f"ingest {len(seeded)} seed paragraphs ...")
        seed_report = cli(["ingest", str(corpus), "--kb", KB_NAME, "--json"], env)
        if seed_report.get("failed") or seed_report.get("added") != len(seeded):
            raise SystemExit(f"seed ingest failed: {json.dumps(seed_report)[:2000]}")
        log(f"  {seed_report['added']} documents, {seed_report['chunks_written']} chunks in "
            f"{seed_report['_seconds']} s")
        keystore = KeyStore.open(settings)
        keys = [keystore.create(["read", "ingest"], name=f"soak-client-{i}")[0]
                for i in range(args.clients)]
        keystore.close()

        server = Server(env, home, free_port())
        log(f"ragtune serve on {server.url}: waiting for /readyz ...")
        server.wait_ready(args.ready_timeout)
        log(f"  ready after {server.ready_s:.1f} s")
        proc = psutil.Process(server.proc.pid)

        barrier = threading.Barrier(args.clients + 1)
        clock, shared_pool = Clock(), Pool(pool)
        answer_slots = threading.BoundedSemaphore(args.answer_slots) if args.answer_slots \
            else None
        threads = [threading.Thread(target=run_client, daemon=True,
                                    name=f"soak-client-{state.index}",
                                    args=(state, server.url, key, clock, mix, seeded,
                                          shared_pool, args.seed, args.request_timeout,
                                          barrier, answer_slots, args.stream_share))
                   for state, key in zip(states, keys, strict=True)]
        for t in threads:
            t.start()  # each connects, then waits at the barrier
        clock.started = time.perf_counter()
        clock.deadline = clock.started + args.duration
        sampler = Sampler(proc, home, clock.started, args.sample_every)
        sampler.take()
        sampler.start()
        barrier.wait()
        next_report = clock.started + window
        while any(t.is_alive() for t in threads):
            time.sleep(1.0)
            if time.perf_counter() >= next_report:
                next_report += window
                done = [o for s in states for o in s.ops]
                last = sampler.samples[-1] if sampler.samples else {}
                wal_mib = sum(last.get("wal_bytes", {}).values()) / 2**20
                log(f"  {time.perf_counter() - clock.started:.0f} s: "
                    + ", ".join(f"{k} {sum(o.op == k for o in done)}" for k in mix if mix[k])
                    + f"; errors {sum(o.error is not None for o in done)}; RSS "
                    f"{last.get('rss_mib')} MiB; WAL {wal_mib:.1f} MiB")
        ran_s = time.perf_counter() - clock.started
        sampler.stop.set()
        sampler.join()
        sampler.take()  # after the last request
        server.stop()
        log(f"server stopped ({server.stop_s or 0:.1f} s after SIGTERM)")
        after_stop = {"wal_bytes": {str(p.relative_to(home)): p.stat().st_size
                                    for p in sorted(home.rglob("*-wal"))}}
        checks = integrity(home, states, [p.id for p in seeded])
    except BaseException as exc:
        if server is not None and not isinstance(exc, SystemExit):
            log(f"server log (tail):\n{server.log_tail()}")
        raise
    finally:
        if server is not None:
            server.stop()
        if sampler is not None:
            sampler.stop.set()
        server_log = server.log_tail(1_000_000) if server is not None else ""
        if args.keep_home:
            log(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)

    ops = [o for s in states for o in s.ops]
    by_op = summarize_ops(ops, window, args.duration)
    resources = summarize_resources(sampler.samples, warmup_end(ops, window))
    errors = sum(o.error is not None for o in ops)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "cpu": cpu_model(),
        "cores": os.cpu_count(), "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "versions": versions(), "generator": settings.generator.name,
        "embedder": settings.embedder.name,
        "arguments": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "parameters": {
            "clients": args.clients, "duration_s": args.duration, "mix": mix,
            "window_s": window, "sample_every_s": args.sample_every,
            "seed_documents": len(seeded), "pool_paragraphs": len(pool),
            "records_per_ingest": f"1-{MAX_RECORDS_PER_INGEST}",
            "update_share": UPDATE_SHARE, "search_k": SEARCH_K,
            "server_omp_num_threads": env.get("OMP_NUM_THREADS"),
            "corpus": "SQuAD 2.0 dev subset (CS224N), ../shared/data/squad-v2-dev-subset",
            "keys": "one per client, scopes read + ingest, no groups",
            "rate_limit": RATE_LIMIT | {"note": "raised in the home's config.toml so the "
                                        "per-key limiter never answers 429"},
            "trace_sample_rate": settings.service.trace_sample_rate,
            "max_batch": settings.service.max_batch,
            "answer_slots": args.answer_slots or None,
            "ask_stream_share": args.stream_share,
        },
        "setup": {"seed_ingest_seconds": seed_report["_seconds"],
                  "seed_chunks": seed_report["chunks_written"],
                  "server_ready_seconds": round(server.ready_s or 0, 2) if server else None,
                  "server_stop_seconds": round(server.stop_s or 0, 2) if server else None,
                  "server_log_tracebacks": server_log.count("Traceback")},
        "ran_seconds": round(ran_s, 1), "requests": len(ops), "errors": errors,
        "refused_answers": sum(s.refused for s in states),
        "answers_redrawn": sum(s.redrawn for s in states),
        "realized_mix": {k: round(v["count"] / max(1, len(ops)), 3) for k, v in by_op.items()},
        "operations": by_op, "resources": resources, "after_stop": after_stop,
        "integrity": checks, "samples": sampler.samples,
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "total_seconds": round(time.perf_counter() - started_all, 1),
    }
    print_summary(result)
    write_json(args.json, result)
    if errors or checks["problem_count"] or result["setup"]["server_log_tracebacks"]:
        log(f"\n!!! {errors} requests failed, {checks['problem_count']} integrity problems, "
            f"{result['setup']['server_log_tracebacks']} tracebacks in the server log !!!")
        for name, s in by_op.items():
            for sample_text in s["error_samples"]:
                log(f"  {name}: {sample_text}")
        for problem in checks["problems"][:10] + checks["store_check"][:10]:
            log(f"  integrity: {problem}")
        sys.exit(1)


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def print_summary(r: dict[str, Any]) -> None:
    p = r["parameters"]
    print(f"soak: {p['clients']} clients x {r['ran_seconds']:.0f} s, mix {p['mix']}, on "
          f"{r['cpu']} ({r['cores']} cores, clients on the same machine); {r['generator']} / "
          f"{r['embedder']}; seed {p['seed_documents']} SQuAD paragraphs; rate limit raised\n")
    print("| op | requests | errors | req/s | p50 ms | p95 ms | p99 ms | max ms "
          "| first→last window p50 | p95 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, s in r["operations"].items():
        d = s["drift_last_over_first"]
        print(f"| {name} | {s['count']} | {s['errors']} | {s['per_s']:.2f} | {s['p50_ms']:.0f} "
              f"| {s['p95_ms']:.0f} | {s['p99_ms']:.0f} | {s['max_ms']:.0f} "
              f"| {fmt_ratio(d['p50'])} | {fmt_ratio(d['p95'])} |")
    search = r["operations"].get("search")
    if search:
        first, last = search["windows"][0], search["windows"][-1]

        def ms(window: dict[str, Any], stat: str, key: str) -> str:
            value = window[stat].get(key)
            return "n/a" if value is None else f"{value:.0f}"

        print(f"\nsearch, the route's own timings, first → last window: waiting for the index "
              f"(rebuilt after every write) mean {ms(first, 'server_mean_ms', 'index')} → "
              f"{ms(last, 'server_mean_ms', 'index')} ms; total p50 "
              f"{ms(first, 'server_p50_ms', 'total')} → {ms(last, 'server_p50_ms', 'total')} ms")
    res = r["resources"]
    if res:
        rss = res["rss_mib"]
        print(f"\nserver RSS MiB: start {rss['start']:.0f}, after warm-up "
              f"({res['warmup_end_s']:.0f} s) "
              f"{rss['after_warmup']:.0f}, peak {rss['peak']:.0f}, end {rss['end']:.0f} "
              f"(growth after warm-up {rss['growth_after_warmup']:+.0f} MiB, "
              f"{rss['growth_after_warmup_pct']:+.1f}%); threads {res['threads']['start']}→"
              f"{res['threads']['end']} (peak {res['threads']['peak']}), open files "
              f"{res['open_files']['start']}→{res['open_files']['end']}")
        print("WAL: " + "; ".join(f"{f} peak {v['peak'] / 2**20:.1f} MiB, end "
                                   f"{v['end'] / 2**20:.1f} MiB"
                                   for f, v in res["wal_bytes"].items())
              + f"; after stop: {r['after_stop'].get('wal_bytes')}")
        kb = res["kb_bytes"]
        print(f"knowledge base folder: {kb['start'] / 2**20:.1f} → {kb['end'] / 2**20:.1f} MiB")
    c = r["integrity"]
    print(f"\nintegrity: {c['documents']} documents ({c['acknowledged_documents_checked']} "
          f"written by the clients and acknowledged, {c['seed_documents_checked']} seed), "
          f"{c['chunks']} chunks, {c['versions']} versions; problems {c['problem_count']}; "
          f"store check {'clean' if not c['store_check'] else c['store_check'][:3]}")
    mix = ", ".join(f"{k} {v:.0%}" for k, v in r["realized_mix"].items())
    print(f"{r['requests']} requests ({mix}; {r['answers_redrawn']} answers redrawn, all "
          f"{p['answer_slots']} answer slots taken), {r['errors']} errors, "
          f"{r['refused_answers']} refused answers; {r['total_seconds']:.0f} s in all; load "
          f"average {r['load_average_start'][0]} → {r['load_average_end'][0]}")


if __name__ == "__main__":
    main()
