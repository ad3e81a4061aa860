"""Observability: a JSON request log (ASGI middleware) and ``GET /metrics`` (Prometheus).

:class:`RequestLog` logs one line per request on the ``scalesweep.api`` logger with
``method``, ``path``, ``status`` and ``duration_ms`` (and ``sweep_id`` / ``run_id`` when
the path names one); service.logs formats it as JSON. It is plain ASGI, so server-sent
event streams pass through unbuffered (their duration is the stream's).

``GET /metrics`` answers the Prometheus text exposition format (version 0.0.4), computed
from the database at scrape time (service.storage.metrics): ``scalesweep_runs{status}``,
``scalesweep_queue_depth``, the ``scalesweep_run_duration_seconds`` histogram of finished
runs, and ``scalesweep_runner_lease_holder{runner_id}``. The format is written here by hand:
four families read from SQL per scrape need a custom collector with prometheus_client
anyway, and the text format is a few lines, so the API carries no extra dependency.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import StoreDep
from api.schemas import ErrorBody

if TYPE_CHECKING:
    from service.records import StoreMetrics

log = logging.getLogger("scalesweep.api")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_IDS = (
    (re.compile(r"^/v1/sweeps/(\d{1,18})(?:/|$)"), "sweep_id"),
    (re.compile(r"^/v1/runs/(\d{1,18})(?:/|$)"), "run_id"),
)


class RequestLog:
    """ASGI middleware: one log record per HTTP request, once the response has ended."""

    def __init__(self, app: ASGIApp, logger: logging.Logger | None = None) -> None:
        self.app = app
        self.log = logger or log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app raises before responding

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self._log(scope, status, time.perf_counter() - started)

    def _log(self, scope: Scope, status: int, seconds: float) -> None:
        method = str(scope.get("method", ""))
        path = str(scope.get("path", ""))
        extra: dict[str, object] = {
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
        }
        for pattern, key in _IDS:
            match = pattern.match(path)
            if match:
                extra[key] = int(match.group(1))
        level = logging.ERROR if status >= 500 else logging.INFO
        self.log.log(level, "%s %s -> %d", method, path, status, extra=extra)


# --------------------------------------------------------------------------------------
# Prometheus text format


def _escape(value: str) -> str:
    """A label value: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _family(name: str, kind: str, help_: str, samples: Iterable[str]) -> list[str]:
    return [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", *samples]


def render_metrics(metrics: StoreMetrics) -> str:
    """The exposition text of a snapshot of the store."""
    runs = [
        f'scalesweep_runs{{status="{_escape(status)}"}} {_number(count)}'
        for status, count in metrics.runs_by_status.items()
    ]
    hist = "scalesweep_run_duration_seconds"
    buckets = [
        f'{hist}_bucket{{le="{_number(bound)}"}} {_number(count)}'
        for bound, count in metrics.duration_buckets
    ]
    buckets += [
        f'{hist}_bucket{{le="+Inf"}} {_number(metrics.duration_count)}',
        f"{hist}_sum {_number(metrics.duration_sum_s)}",
        f"{hist}_count {_number(metrics.duration_count)}",
    ]
    holder = (
        [f'scalesweep_runner_lease_holder{{runner_id="{_escape(metrics.lease_holder)}"}} 1']
        if metrics.lease_holder is not None
        else []
    )
    lines = [
        *_family("scalesweep_runs", "gauge", "Runs in the store by status.", runs),
        *_family(
            "scalesweep_queue_depth",
            "gauge",
            "Queued runs waiting for a runner.",
            [f"scalesweep_queue_depth {_number(metrics.queue_depth)}"],
        ),
        *_family(hist, "histogram", "Wall time of finished runs (succeeded or failed).", buckets),
        *_family(
            "scalesweep_runner_lease_holder",
            "gauge",
            "1 for the runner holding the runner lease (no sample when none holds it).",
            holder,
        ),
    ]
    return "\n".join(lines) + "\n"


router = APIRouter(tags=["observability"])


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format 0.0.4"},
        503: {"model": ErrorBody, "description": "Database unreachable"},
    },
)
def metrics(store: StoreDep) -> PlainTextResponse:
    """Runs by status, queue depth, run duration histogram, runner lease holder (Prometheus)."""
    return PlainTextResponse(render_metrics(store.metrics()), media_type=CONTENT_TYPE)
