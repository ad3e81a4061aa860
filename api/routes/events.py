"""Server-sent events of a sweep: ``progress``, ``run_finished``, ``sweep_finished``, then close.

The stream polls the store (every ``events_poll_s``, 0.5 s by default): ``progress`` is sent
first and whenever the counts or the status change, ``run_finished`` for every run that
ends while the stream is open, ``sweep_finished`` when the sweep has ended (``error`` if
the store fails mid-stream). A comment line keeps idle connections open through proxies.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import StoreDep, visible_sweep
from api.schemas import ErrorBody, SweepId
from service.errors import SweepServiceError
from service.records import RunRecord, SweepRecord
from service.results import RunStatus
from service.storage.base import SweepStore, iter_runs

router = APIRouter(prefix="/sweeps", tags=["sweeps"], dependencies=[Depends(visible_sweep)])

TERMINAL_SWEEP = ("succeeded", "cancelled")
FINISHED_RUN: tuple[RunStatus, ...] = ("succeeded", "failed")
KEEPALIVE_S = 10.0


def sse(event: str, data: dict[str, Any]) -> str:
    """One server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def progress_data(sweep: SweepRecord) -> dict[str, Any]:
    """The payload of ``progress`` and ``sweep_finished``."""
    return {
        "sweep_id": sweep.id,
        "status": sweep.status,
        "n_runs": sweep.n_runs,
        "counts": dict(sweep.counts),
    }


def run_data(run: RunRecord) -> dict[str, Any]:
    """The payload of ``run_finished``."""
    m = run.metrics
    return {
        "run_id": run.id,
        "sweep_id": run.sweep_id,
        "index": run.index,
        "status": run.status,
        "excess_risk": m.excess_risk if m else None,
        "converged": m.converged if m else None,
        "stop_reason": m.stop_reason if m else None,
        "error": run.error,
    }


def _finished_runs(store: SweepStore, sweep_id: int) -> list[RunRecord]:
    return [r for status in FINISHED_RUN for r in iter_runs(store, sweep_id, status=status)]


def _n_finished(sweep: SweepRecord) -> int:
    return sum(sweep.counts.get(s, 0) for s in FINISHED_RUN)


async def sweep_events(store: SweepStore, sweep_id: int, poll_s: float) -> AsyncIterator[str]:
    """The stream; a store failure mid-stream ends it with an ``error`` event."""
    try:
        async for event in _poll(store, sweep_id, poll_s):
            yield event
    except SweepServiceError as exc:
        yield sse("error", {"detail": str(exc)})


async def _poll(store: SweepStore, sweep_id: int, poll_s: float) -> AsyncIterator[str]:
    """Poll the store and yield events until the sweep has ended."""
    seen = {r.id for r in await run_in_threadpool(_finished_runs, store, sweep_id)}
    last: tuple[Any, ...] | None = None
    n_finished: int | None = None
    last_sent = time.monotonic()
    while True:
        sweep = await run_in_threadpool(store.get_sweep, sweep_id)
        ended = sweep.status in TERMINAL_SWEEP
        if n_finished is not None and (_n_finished(sweep) != n_finished or ended):
            for run in await run_in_threadpool(_finished_runs, store, sweep_id):
                if run.id not in seen:
                    seen.add(run.id)
                    yield sse("run_finished", run_data(run))
        n_finished = _n_finished(sweep)
        state = (sweep.status, sweep.n_runs, sorted(sweep.counts.items()))
        if state != last:
            last = state
            last_sent = time.monotonic()
            yield sse("progress", progress_data(sweep))
        if ended:
            yield sse("sweep_finished", progress_data(sweep))
            return
        if time.monotonic() - last_sent > KEEPALIVE_S:
            last_sent = time.monotonic()
            yield ": keepalive\n\n"
        await anyio.sleep(poll_s)


@router.get(
    "/{sweep_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "Event stream"},
        404: {"model": ErrorBody, "description": "Unknown sweep id"},
    },
)
def stream_events(sweep_id: SweepId, store: StoreDep, request: Request) -> StreamingResponse:
    """Server-sent events: progress, run_finished, sweep_finished; closes when the sweep ends."""
    store.get_sweep(sweep_id)  # 404 before the stream starts
    poll_s: float = request.app.state.events_poll_s
    return StreamingResponse(
        sweep_events(store, sweep_id, poll_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
