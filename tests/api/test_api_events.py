"""GET /v1/sweeps/{id}/events: server-sent progress, run_finished, sweep_finished, then close."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from api_helpers import N_RUNS, SPEC, TestClient, result

from service.errors import StorageError
from service.storage import Store


def read_events(client: TestClient, sweep_id: int) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    with client.stream("GET", f"/v1/sweeps/{sweep_id}/events") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                assert name is not None
                events.append((name, json.loads(line[6:])))
    return events


def test_stream_of_a_finished_sweep_is_progress_then_sweep_finished(
    client: TestClient, store: Store
) -> None:
    sid = client.post("/v1/sweeps", json=SPEC).json()["id"]
    runs = store.list_runs(sid, limit=100).items
    store.record_results([(r.id, result(r.config_hash)) for r in runs[:-1]])
    store.record_results([(runs[-1].id, result(runs[-1].config_hash, status="failed"))])
    events = read_events(client, sid)
    assert [name for name, _ in events] == ["progress", "sweep_finished"]
    final = events[-1][1]
    assert final["status"] == "succeeded"
    assert final["counts"]["succeeded"] == N_RUNS - 1 and final["counts"]["failed"] == 1


def test_stream_follows_runs_as_they_finish(client: TestClient, store: Store) -> None:
    sid = client.post("/v1/sweeps", json=SPEC).json()["id"]
    runs = store.list_runs(sid, limit=100).items

    def runner() -> None:
        time.sleep(0.3)  # after the stream's first snapshot
        for i in range(0, N_RUNS, 3):
            batch = runs[i : i + 3]
            store.record_results([(r.id, result(r.config_hash, 0.1 * (1 + i))) for r in batch])
            time.sleep(0.06)

    thread = threading.Thread(target=runner)
    thread.start()
    try:
        events = read_events(client, sid)
    finally:
        thread.join()
    names = [name for name, _ in events]
    assert names[0] == "progress" and names[-1] == "sweep_finished"
    finished = [data for name, data in events if name == "run_finished"]
    assert sorted(d["run_id"] for d in finished) == sorted(r.id for r in runs)  # each once
    assert all(d["status"] == "succeeded" and d["excess_risk"] > 0 for d in finished)
    progress = [data for name, data in events if name == "progress"]
    assert len(progress) >= 2
    done = [p["counts"].get("succeeded", 0) for p in progress]
    assert done == sorted(done) and done[-1] == N_RUNS


def test_stream_ends_when_the_sweep_is_cancelled(client: TestClient, store: Store) -> None:
    sid = client.post("/v1/sweeps", json=SPEC).json()["id"]
    timer = threading.Timer(0.2, store.cancel_sweep, args=(sid,))
    timer.start()
    try:
        events = read_events(client, sid)
    finally:
        timer.join()
    assert events[-1][0] == "sweep_finished"
    assert events[-1][1]["status"] == "cancelled"
    assert events[-1][1]["counts"]["cancelled"] == N_RUNS


def test_a_store_failure_mid_stream_ends_it_with_an_error_event(
    client: TestClient, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = client.post("/v1/sweeps", json=SPEC).json()["id"]
    real = store.get_sweep
    calls = {"n": 0}

    def flaky(sweep_id: int) -> Any:
        calls["n"] += 1
        if calls["n"] > 2:  # the route's 404 check and the first poll succeed
            raise StorageError("database operation failed: connection reset")
        return real(sweep_id)

    monkeypatch.setattr(store, "get_sweep", flaky)
    events = read_events(client, sid)
    assert [n for n, _ in events] == ["progress", "error"]
    assert "connection reset" in events[-1][1]["detail"]
