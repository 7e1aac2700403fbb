"""Prometheus metrics of the service, kept in memory and written in the text exposition format.

    >>> m = Metrics()
    >>> m.observe_request("/v1/ask", "POST", 200, 0.8)
    >>> print(m.render())          # what GET /metrics returns
    >>> app.add_middleware(RequestMetrics, metrics=m)     # every request counted and timed
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response

BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
GROUNDEDNESS_BUCKETS = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)


class Metrics:
    """Request counts and latency histograms per route, answers (refused or not) and the
    refusal rate, the groundedness of traced answers, ingests."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency: dict[str, list[int]] = {}  # route -> cumulative bucket counts (+Inf last)
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.answers: dict[bool, int] = defaultdict(int)
        self.ingested: dict[str, int] = defaultdict(int)
        self.groundedness = [0] * (len(GROUNDEDNESS_BUCKETS) + 1)  # cumulative, +Inf last
        self.groundedness_sum = 0.0

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        with self.lock:
            self.requests[(route, method, status)] += 1
            counts = self.latency.setdefault(route, [0] * (len(BUCKETS) + 1))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            counts[-1] += 1
            self.latency_sum[route] += seconds

    def observe_answer(self, refused: bool) -> None:
        with self.lock:
            self.answers[refused] += 1

    def observe_groundedness(self, value: float) -> None:
        """A traced answer's groundedness (share of its claims the judge found supported)."""
        with self.lock:
            for i, bound in enumerate(GROUNDEDNESS_BUCKETS):
                if value <= bound:
                    self.groundedness[i] += 1
            self.groundedness[-1] += 1
            self.groundedness_sum += value

    def observe_ingest(self, outcome: str, count: int) -> None:
        with self.lock:
            self.ingested[outcome] += count

    def render(self) -> str:
        with self.lock:
            lines = ["# HELP ragtune_requests_total HTTP requests by route, method and status.",
                     "# TYPE ragtune_requests_total counter"]
            for (route, method, status), n in sorted(self.requests.items()):
                lines.append(f'ragtune_requests_total{{route="{_label(route)}",method="{method}",'
                             f'status="{status}"}} {n}')
            lines += ["# HELP ragtune_request_seconds Request latency by route.",
                      "# TYPE ragtune_request_seconds histogram"]
            for route, counts in sorted(self.latency.items()):
                r = _label(route)
                for bound, n in zip(BUCKETS, counts, strict=False):
                    lines.append(f'ragtune_request_seconds_bucket{{route="{r}",le="{bound}"}} {n}')
                lines.append(f'ragtune_request_seconds_bucket{{route="{r}",le="+Inf"}} '
                             f"{counts[-1]}")
                lines.append(f'ragtune_request_seconds_sum{{route="{r}"}} '
                             f"{self.latency_sum[route]:.6f}")
                lines.append(f'ragtune_request_seconds_count{{route="{r}"}} {counts[-1]}')
            lines += ["# HELP ragtune_answers_total Answers given, by whether they were refusals.",
                      "# TYPE ragtune_answers_total counter"]
            for refused in (False, True):
                lines.append(f'ragtune_answers_total{{refused="{str(refused).lower()}"}} '
                             f"{self.answers[refused]}")
            answered = self.answers[False] + self.answers[True]
            rate = self.answers[True] / answered if answered else 0.0
            lines += ["# HELP ragtune_refusal_rate Share of answers that were refusals, since "
                      "start.", "# TYPE ragtune_refusal_rate gauge",
                      f"ragtune_refusal_rate {rate:.6f}"]
            lines += ["# HELP ragtune_answer_groundedness Groundedness of traced answers (share "
                      "of claims the offline judge found supported; refusals not included).",
                      "# TYPE ragtune_answer_groundedness histogram"]
            for bound, n in zip(GROUNDEDNESS_BUCKETS, self.groundedness, strict=False):
                lines.append(f'ragtune_answer_groundedness_bucket{{le="{bound}"}} {n}')
            lines.append(f'ragtune_answer_groundedness_bucket{{le="+Inf"}} '
                         f"{self.groundedness[-1]}")
            lines.append(f"ragtune_answer_groundedness_sum {self.groundedness_sum:.6f}")
            lines.append(f"ragtune_answer_groundedness_count {self.groundedness[-1]}")
            lines += ["# HELP ragtune_documents_ingested_total Documents ingested over HTTP, "
                      "by outcome.", "# TYPE ragtune_documents_ingested_total counter"]
            for outcome in ("added", "updated", "unchanged", "failed"):
                lines.append(f'ragtune_documents_ingested_total{{outcome="{outcome}"}} '
                             f"{self.ingested[outcome]}")
        return "\n".join(lines) + "\n"


class RequestMetrics(BaseHTTPMiddleware):
    """Middleware: each request's route (its template, never the raw path), method, status and
    latency into `metrics`; refusals by inner middleware (413, 408) are counted too."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        super().__init__(app)
        self.metrics = metrics

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint
                       ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        self.metrics.observe_request(getattr(route, "path", "(unmatched)"), request.method,
                                     response.status_code, time.perf_counter() - started)
        return response


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
