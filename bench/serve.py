"""The HTTP service under load: requests/s and p50/p95 latency of `/v1/search` and `/v1/ask`.

    .venv/bin/python bench/serve.py [--json OUT] [--quick] [--concurrency 1,4,16]
        [--search-requests N] [--ask-requests N] [--torch-threads N] [--keep-home]

The defaults (200 searches and max(20, 4 x C) answers per level, C in 1, 4, 16) take about
6-7 minutes on 2 idle cores; `--quick` (20 searches, 4 answers, C in 1, 4) about 1.5 minutes.
On a busy machine answers are many times slower (torch's threads wait for each other when the
cores are oversubscribed); `--torch-threads 1` sets OMP_NUM_THREADS=1 for the server.

Everything runs from a fresh temporary data home, each step in its own process, models offline:
1. `ragtune ingest` of the lab sample (src/ragtune/lab/sample/kb/, 40 help-centre articles);
   a `config.toml` in the home raises the per-key rate limit (`[service] requests_per_minute`,
   `burst`) far above what the bench sends, so it measures the server, not the limiter;
2. `ragtune keys create --scope read --json`: the key the clients use;
3. `ragtune serve` on a free loopback port; `GET /readyz` is polled until the models are loaded;
4. for each endpoint and each concurrency C: C client threads (one keep-alive `httpx.Client`
   each) send requests back to back, drawing the first phrasing of the sample questions
   (seeded shuffle) from one shared iterator, until the level's request count is reached.
   Warm-up requests (not counted) go first. Each response must be 200 with the expected JSON
   fields (search: a non-empty `hits` list, not `degraded`; ask: `answer`, `refused`,
   `citations`); any other response is an error, and a run with errors exits 1.

Latency is the client's (perf_counter around the request), so for `ask` it includes the wait
in the server's generation queue (one worker on the shared model; the answers waiting together
are generated as one batch, up to `[service] max_batch`); `server p50` is the route's own
`timings_ms` total. The clients run on the same machine as the server and share its cores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from common import REPO, log, machine, versions, write_json

SAMPLE = REPO / "src" / "ragtune" / "lab" / "sample"
KB_NAME = "helpcentre"
SEED = 13
SEARCH_K = 5
# The limiter is a token bucket per key; these are far above anything the bench sends.
RATE_LIMIT = {"requests_per_minute": 10_000_000, "burst": 1_000_000}
# Rough costs on 2 otherwise idle cores, for the estimate printed before the run. On a busy
# machine generation is far slower (torch's threads wait on each other): see --torch-threads.
EST_SETUP_S = 75.0       # ingest (~28 s: embedder load + 122 chunks) + server start (~35-45 s)
EST_SEARCH_S = 0.05      # one search request, server busy
EST_ASK_S = 2.6          # one answer (~670 prompt tokens, <= 32 new), one at a time (a lock)


def ask_count(concurrency: int) -> int:
    """Default ask requests per level: enough for every client to send several."""
    return max(20, 4 * concurrency)


@dataclass
class Level:
    """One (endpoint, concurrency) measurement."""

    endpoint: str
    concurrency: int
    requests: int
    latencies_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    generate_ms: list[float] = field(default_factory=list)
    tokens_per_s: list[float] = field(default_factory=list)
    refused: int = 0
    wall_s: float = 0.0
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def summary(self) -> dict[str, Any]:
        lat = self.latencies_ms
        done = len(lat)
        return {
            "endpoint": self.endpoint, "concurrency": self.concurrency, "requests": done,
            "errors": len(self.errors), "wall_s": round(self.wall_s, 2),
            "requests_per_s": round(done / self.wall_s, 2) if self.wall_s else 0.0,
            "p50_ms": round(percentile(lat, 50), 1), "p95_ms": round(percentile(lat, 95), 1),
            "max_ms": round(max(lat), 1) if lat else 0.0,
            "server_p50_ms": round(percentile(self.server_ms, 50), 1),
            "server_p95_ms": round(percentile(self.server_ms, 95), 1),
            **({"refused": self.refused,
                "server_generate_p50_ms": round(percentile(self.generate_ms, 50), 1),
                "tokens_per_s_p50": round(percentile(self.tokens_per_s, 50), 2)}
               if self.endpoint == "ask" else {}),
            "load_average_before": [round(x, 2) for x in self.load_before],
            "error_samples": self.errors[:5],
        }


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile with linear interpolation (numpy's default; as ragtune's own)."""
    if not values:
        return 0.0
    xs = sorted(values)
    pos = (len(xs) - 1) * p / 100
    lo, hi = int(pos), min(int(pos) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def questions(seed: int) -> list[str]:
    rows = [json.loads(line) for line in (SAMPLE / "questions.jsonl").read_text().splitlines()
            if line.strip()]
    texts = [row["phrasings"][0] for row in rows]
    random.Random(seed).shuffle(texts)
    return texts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run one `ragtune ... --json` command; its JSON output, or exit with its stderr."""
    exe = Path(sys.executable).with_name("ragtune")
    t0 = time.perf_counter()
    proc = subprocess.run([str(exe), *args], env=env, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise SystemExit(f"ragtune {' '.join(args[:2])} failed ({proc.returncode}):\n"
                         f"{proc.stderr[-3000:]}")
    data = dict(json.loads(proc.stdout))
    data["_seconds"] = round(time.perf_counter() - t0, 2)
    return data


# --- the server -----------------------------------------------------------------------------

class Server:
    """`ragtune serve` in its own process (and session: a Ctrl-C reaches only the bench,
    which then stops the server itself: terminate, then kill)."""

    def __init__(self, env: dict[str, str], home: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = home / "serve.log"
        self._log = self.log_path.open("wb")
        exe = Path(sys.executable).with_name("ragtune")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen([str(exe), "serve", "--host", "127.0.0.1", "--port",
                                      str(port)], env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.listening_s: float | None = None
        self.ready_s: float | None = None
        self.stop_s: float | None = None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-chars:]

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        """Poll /readyz until 200; exit with the server's log if it dies or takes too long."""
        deadline = self.started + timeout
        with httpx.Client(timeout=2.0) as client:
            while True:
                code = self.proc.poll()
                if code is not None:
                    raise SystemExit(f"ragtune serve exited ({code}) before it was ready; its "
                                     f"log:\n{self.log_tail()}")
                try:
                    r = client.get(f"{self.url}/readyz")
                    if self.listening_s is None:
                        self.listening_s = time.perf_counter() - self.started
                    if r.status_code == 200:
                        self.ready_s = time.perf_counter() - self.started
                        return dict(r.json())
                    if r.status_code != 503:
                        raise SystemExit(f"GET /readyz answered {r.status_code}: {r.text[:500]}")
                except httpx.TransportError:
                    pass
                if time.perf_counter() > deadline:
                    raise SystemExit(f"ragtune serve not ready after {timeout:.0f} s "
                                     f"(listening: {self.listening_s is not None}); its log:\n"
                                     f"{self.log_tail()}")
                time.sleep(0.5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            t0 = time.perf_counter()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                log("server did not stop within 20 s of SIGTERM: killing it")
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.stop_s = time.perf_counter() - t0
        self._log.close()


# --- the clients ----------------------------------------------------------------------------

def check_search(data: Any) -> str | None:
    hits = data.get("hits") if isinstance(data, dict) else None
    if not isinstance(hits, list) or not hits:
        return "no 'hits' list (or empty)"
    if not all(isinstance(h, dict) and "chunk_id" in h and "doc_id" in h for h in hits):
        return "a hit without chunk_id/doc_id"
    if data.get("degraded"):
        return f"degraded: {data['degraded']}"
    return None


def check_ask(data: Any) -> str | None:
    if not isinstance(data, dict):
        return "not a JSON object"
    if not isinstance(data.get("answer"), str):
        return "no 'answer' string"
    if not isinstance(data.get("refused"), bool):
        return "no 'refused' boolean"
    if not isinstance(data.get("citations"), list):
        return "no 'citations' list"
    return None


ENDPOINTS: dict[str, tuple[str, Callable[[str], dict[str, Any]], Callable[[Any], str | None]]] = {
    "search": ("/v1/search", lambda q: {"query": q, "k": SEARCH_K, "kb": KB_NAME}, check_search),
    "ask": ("/v1/ask", lambda q: {"question": q, "kb": KB_NAME}, check_ask),
}


def run_level(url: str, key: str, endpoint: str, concurrency: int, requests: int,
              texts: Iterator[str], timeout: float) -> Level:
    """`concurrency` threads, each with its own keep-alive client, send `requests` in all."""
    path, body_of, check = ENDPOINTS[endpoint]
    level = Level(endpoint, concurrency, requests, load_before=os.getloadavg())
    lock = threading.Lock()
    tickets = iter(range(requests))
    # Connections are opened before the clock starts: the level measures requests, not TCP.
    clients = [httpx.Client(base_url=url, timeout=timeout,
                            headers={"Authorization": f"Bearer {key}"})
               for _ in range(concurrency)]
    for client in clients:
        client.get("/healthz")
    barrier = threading.Barrier(concurrency + 1)

    def work(client: httpx.Client) -> None:
        barrier.wait()
        while True:
            with lock:
                if next(tickets, None) is None:
                    return
                text = next(texts)
            t0 = time.perf_counter()
            error, refused, data = None, False, None
            try:
                r = client.post(path, json=body_of(text))
                ms = (time.perf_counter() - t0) * 1000
                if r.status_code != 200:
                    error = f"HTTP {r.status_code}: {r.text[:300]}"
                else:
                    data = r.json()
                    error = check(data)
                    refused = bool(data.get("refused"))
            except (httpx.HTTPError, json.JSONDecodeError) as exc:
                ms = (time.perf_counter() - t0) * 1000
                error = f"{type(exc).__name__}: {exc}"
            with lock:
                level.latencies_ms.append(ms)
                level.refused += refused
                if error is None and isinstance(data, dict):
                    timings = data.get("timings_ms") or {}
                    gen = data.get("generation") or {}
                    if "total" in timings:
                        level.server_ms.append(float(timings["total"]))
                    if "generate" in timings:
                        level.generate_ms.append(float(timings["generate"]))
                    if gen.get("tokens_per_second"):
                        level.tokens_per_s.append(float(gen["tokens_per_second"]))
                if error is not None:
                    level.errors.append(f"{text!r}: {error}")

    threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    level.wall_s = time.perf_counter() - t0
    for client in clients:
        client.close()
    return level


# --- main -----------------------------------------------------------------------------------

def table(rows: list[dict[str, Any]]) -> str:
    head = ("| endpoint | clients | requests | errors | wall s | req/s | p50 ms | p95 ms | max ms "
            "| server p50 ms | tokens/s | load |\n"
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    lines = [head] + [
        f"| {r['endpoint']} | {r['concurrency']} | {r['requests']} | {r['errors']} "
        f"| {r['wall_s']:.1f} | {r['requests_per_s']:.2f} | {r['p50_ms']:.0f} "
        f"| {r['p95_ms']:.0f} | {r['max_ms']:.0f} | {r['server_p50_ms']:.0f} "
        f"| {r.get('tokens_per_s_p50', '')} "
        f"| {r['load_average_before'][0]:.1f} |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "serve.json")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: search 20 and ask 4 requests per level, 1 and 4 "
                             "clients (explicit options still win)")
    parser.add_argument("--concurrency", default=None, help="client counts (default 1,4,16)")
    parser.add_argument("--search-requests", type=int, default=None,
                        help="per level (default 200)")
    parser.add_argument("--ask-requests", type=int, default=None,
                        help="per level (default max(20, 4 x clients))")
    parser.add_argument("--search-warmup", type=int, default=None, help="default 10")
    parser.add_argument("--ask-warmup", type=int, default=None, help="default 2")
    parser.add_argument("--ready-timeout", type=float, default=240.0,
                        help="seconds to wait for GET /readyz")
    parser.add_argument("--request-timeout", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="OMP_NUM_THREADS for the server (default: unset, as deployed; "
                             "1 helps a lot when other work shares the cores)")
    parser.add_argument("--keep-home", action="store_true",
                        help="keep the temporary data home (server log: serve.log)")
    args = parser.parse_args()

    quick = args.quick
    levels = [int(c) for c in (args.concurrency or ("1,4" if quick else "1,4,16")).split(",")]
    if not levels or min(levels) < 1:
        parser.error("--concurrency: positive integers, comma-separated")
    search_n = args.search_requests or (20 if quick else 200)
    search_warm = args.search_warmup if args.search_warmup is not None else (3 if quick else 10)
    ask_warm = args.ask_warmup if args.ask_warmup is not None else (1 if quick else 2)
    ask_n = {c: args.ask_requests or (4 if quick else ask_count(c)) for c in levels}
    total_search = search_n * len(levels) + search_warm
    total_ask = sum(ask_n.values()) + ask_warm
    estimate = EST_SETUP_S + total_search * EST_SEARCH_S + total_ask * EST_ASK_S
    log(f"plan: clients {levels}; search {search_n}/level (+{search_warm} warm-up), ask "
        f"{[ask_n[c] for c in levels]} per level (+{ask_warm} warm-up); estimated "
        f"{estimate / 60:.1f} min on 2 cores ({EST_ASK_S} s per answer, unbatched)")

    home = Path(tempfile.mkdtemp(prefix="ragtune-serve-"))
    env = dict(os.environ, RAGTUNE_HOME=str(home), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1")
    env.pop("RAGTUNE_CACHE", None)
    if args.torch_threads is not None:
        env["OMP_NUM_THREADS"] = str(args.torch_threads)
    (home / "config.toml").write_text(
        f'kb = "{KB_NAME}"\n\n[service]\n'
        + "".join(f"{k} = {v}\n" for k, v in RATE_LIMIT.items()))
    from ragtune.config import Settings  # pydantic only: no model library

    settings = Settings.load(home=home)  # what the server will read
    log(f"home {home}: rate limit raised to {RATE_LIMIT['requests_per_minute']:,}/min, burst "
        f"{RATE_LIMIT['burst']:,} per key (config.toml) so the limiter never answers 429")
    started = time.perf_counter()
    server: Server | None = None
    results: list[Level] = []
    warmups: dict[str, dict[str, Any]] = {}
    load_start = os.getloadavg()
    if load_start[0] > (os.cpu_count() or 1):
        log(f"WARNING: load average {load_start[0]:.1f} on {os.cpu_count()} cores: other work "
            "is running, the figures will be slower and noisier than on an idle machine")
    try:
        log(f"ingest {SAMPLE / 'kb'} ...")
        ingest = cli(["ingest", str(SAMPLE / "kb"), "--kb", KB_NAME, "--json"], env)
        if ingest.get("failed") or not ingest.get("added"):
            raise SystemExit(f"ingest failed or added nothing: {ingest}")
        log(f"  {ingest['added']} documents, {ingest['chunks_written']} chunks in "
            f"{ingest['_seconds']} s")
        key = cli(["keys", "create", "--scope", "read", "--name", "bench-serve", "--json"],
                  env)["key"]
        server = Server(env, home, free_port())
        log(f"ragtune serve on {server.url}: waiting for /readyz ...")
        ready = server.wait_ready(args.ready_timeout)
        log(f"  listening after {server.listening_s:.1f} s, ready (models loaded) after "
            f"{server.ready_s:.1f} s")
        texts = itertools.cycle(questions(args.seed))
        for endpoint, n, warm in (("search", search_n, search_warm), ("ask", None, ask_warm)):
            if warm:
                w = run_level(server.url, key, endpoint, 1, warm, texts, args.request_timeout)
                warmups[endpoint] = w.summary() | {
                    "latencies_ms": [round(x, 1) for x in w.latencies_ms]}
                if w.errors:
                    raise SystemExit(f"{endpoint} warm-up failed: {w.errors[:3]}")
                log(f"{endpoint} warm-up: {warmups[endpoint]['latencies_ms']} ms")
            for c in levels:
                count = n if n is not None else ask_n[c]
                t0 = time.perf_counter()
                level = run_level(server.url, key, endpoint, c, count, texts,
                                  args.request_timeout)
                results.append(level)
                s = level.summary()
                log(f"{endpoint} x{c}: {s['requests']} requests, {s['errors']} errors, "
                    f"{s['requests_per_s']} req/s, p50 {s['p50_ms']} ms, p95 {s['p95_ms']} ms "
                    f"({time.perf_counter() - t0:.0f} s)")
        after = httpx.get(f"{server.url}/readyz", timeout=10).json()
    except BaseException as exc:
        if server is not None and not isinstance(exc, SystemExit):
            log(f"server log (tail):\n{server.log_tail()}")
        raise
    finally:
        if server is not None:
            server.stop()
            log(f"server stopped ({server.stop_s or 0:.1f} s after SIGTERM)")
        server_log = server.log_tail(1_000_000) if server is not None else ""
        if args.keep_home:
            log(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)

    rows = [lvl.summary() for lvl in results]
    errors = sum(r["errors"] for r in rows)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "cpu": cpu_model(),
        "cores": os.cpu_count(), "versions": versions(),
        "generator": settings.generator.name, "embedder": settings.embedder.name,
        "parameters": {
            "quick": quick, "concurrency": levels, "search_requests": search_n,
            "ask_requests": {str(c): ask_n[c] for c in levels}, "search_warmup": search_warm,
            "ask_warmup": ask_warm, "search_k": SEARCH_K,
            "server_omp_num_threads": env.get("OMP_NUM_THREADS"), "ask_k": settings.answer.k,
            "max_new_tokens": settings.generator.max_new_tokens, "seed": args.seed,
            "corpus": str((SAMPLE / "kb").relative_to(REPO)),
            "questions": "first phrasing of each row of "
                         f"{(SAMPLE / 'questions.jsonl').relative_to(REPO)}, seeded shuffle",
            "rate_limit": RATE_LIMIT | {"note": "raised in the home's config.toml so the "
                                        "per-key limiter never answers 429"},
            "clients": "one thread + keep-alive httpx.Client per concurrent client, on the "
                       "same machine as the server",
        },
        "setup": {"ingest_seconds": ingest["_seconds"], "documents": ingest["added"],
                  "chunks": ingest["chunks_written"],
                  "server_listening_seconds": round(server.listening_s or 0, 2) if server
                  else None,
                  "server_ready_seconds": round(server.ready_s or 0, 2) if server else None,
                  "server_stop_seconds": round(server.stop_s or 0, 2) if server else None,
                  "readyz": ready, "readyz_after": after,
                  "server_log_tracebacks": server_log.count("Traceback")},
        "warmup_ms": warmups, "levels": rows,
        "total_seconds": round(time.perf_counter() - started, 1), "errors": errors,
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
    }
    print(f"ragtune serve on {cpu_model()} ({os.cpu_count()} cores; clients on the same "
          f"machine), {settings.generator.name} / {settings.embedder.name}; server ready after "
          f"{result['setup']['server_ready_seconds']} s; rate limit raised (config.toml) so "
          "the limiter is not measured\n")
    print(table(rows))
    print(f"\n{result['total_seconds']:.0f} s in all. Latency is the client's (ask: including "
          "the wait in the server's generation queue); server p50 is the route's own "
          "timings_ms total; tokens/s the generator's (p50); load the 1-minute load average "
          "before the level.")
    write_json(args.json, result)
    if errors:
        log(f"\n!!! {errors} REQUESTS FAILED: the figures above are not valid !!!")
        for r in rows:
            for sample in r["error_samples"]:
                log(f"  {r['endpoint']} x{r['concurrency']}: {sample}")
        sys.exit(1)


if __name__ == "__main__":
    main()
