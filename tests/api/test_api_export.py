"""GET /v1/sweeps/{id}/export: every run, one row each, in CSV, JSON lines and Parquet,
streamed in constant memory; Client.export and Client.runs_frame read it."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
from typing import Any

import factories
import pandas as pd
import pyarrow.parquet as pq
import pytest
from api_helpers import N_RUNS, TestClient, result, spec

from api.main import create_app
from service.client import Client
from service.config import Settings
from service.export import COLUMN_NAMES
from service.spec import SweepSpec
from service.storage import Store, make_store
from service.storage.base import iter_runs

DESIGN_COLUMNS = (
    "run_id", "status", "error", "model", "d", "n", "alpha", "weight_decay", "gamma", "rank",
    "noise", "seed", "optimizer", "width", "dtype", "device", "excess_risk", "train_loss",
    "objective", "grad_norm", "converged", "steps", "stop_reason", "wall_time_s", "duality_gap",
)  # fmt: skip


def _finished_sweep(client: TestClient, store: Store) -> int:
    sweep_id = int(client.post("/v1/sweeps", json=spec()).json()["id"])
    runs = list(iter_runs(store, sweep_id))
    done = [(r.id, result(r.config_hash, 1.0 / r.config.n)) for r in runs[:-2]]
    done.append((runs[-2].id, result(runs[-2].config_hash, status="failed")))
    store.record_results(done)  # the last run stays queued: exported too
    return sweep_id


def _rows(content: bytes, fmt: str) -> list[dict[str, Any]]:
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(content.decode())))
    if fmt == "jsonl":
        return [json.loads(line) for line in content.decode().splitlines()]
    table = pq.read_table(io.BytesIO(content))
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_every_run_once_with_the_design_columns(client: TestClient, store: Store, fmt: str) -> None:
    sweep_id = _finished_sweep(client, store)
    response = client.get(f"/v1/sweeps/{sweep_id}/export", params={"format": fmt})
    assert response.status_code == 200
    assert f"sweep-{sweep_id}.{fmt}" in response.headers["content-disposition"]
    rows = _rows(response.content, fmt)
    assert len(rows) == N_RUNS
    assert sorted(int(r["run_id"]) for r in rows) == sorted(
        r.id for r in iter_runs(store, sweep_id)
    )
    assert tuple(rows[0]) == COLUMN_NAMES
    assert set(DESIGN_COLUMNS) <= set(COLUMN_NAMES)
    by_status = {r["status"] for r in rows}
    assert by_status == {"succeeded", "failed", "queued"}
    ok = next(r for r in rows if r["status"] == "succeeded")
    assert float(ok["excess_risk"]) == pytest.approx(1.0 / int(ok["n"]), rel=1e-12)
    failed = next(r for r in rows if r["status"] == "failed")
    assert failed["error"] == "diverged"
    assert failed["excess_risk"] in (None, "")  # missing, never a made-up number


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_the_width_column_is_the_runs_effective_width(
    client: TestClient, store: Store, fmt: str
) -> None:
    assert len(set(COLUMN_NAMES)) == len(COLUMN_NAMES)  # one column per name
    body = {
        "model": "quadratic",
        "grid": {"d": [4, 6], "n": [30], "weight_decay": [0.1], "width_ratio": [0.5, 2]},
        "training": {"restarts": 2},
    }
    sweep_id = int(client.post("/v1/sweeps", json=body).json()["id"])
    runs = list(iter_runs(store, sweep_id))
    store.record_results(
        [
            (r.id, factories.result(r.config_hash, 0.1, certificate="second_order", restarts=2))
            for r in runs
        ]
    )
    response = client.get(f"/v1/sweeps/{sweep_id}/export", params={"format": fmt})
    rows = _rows(response.content, fmt)
    assert [(int(r["d"]), int(r["width"])) for r in rows] == [(4, 2), (4, 8), (6, 3), (6, 12)]
    # what was asked (training.restarts) beside what was compared (the metric)
    assert {str(r["training_restarts"]) for r in rows} == {"2"}
    assert {str(r["restarts"]) for r in rows} == {"2"}
    assert {r["certificate"] for r in rows} == {"second_order"}
    diagonal = _finished_sweep(client, store)  # the diagonal net's width is d
    rows = _rows(client.get(f"/v1/sweeps/{diagonal}/export", params={"format": fmt}).content, fmt)
    assert all(int(r["width"]) == int(r["d"]) for r in rows)


def test_bad_format_and_unknown_sweep_are_4xx_naming_the_field(client: TestClient) -> None:
    bad = client.get("/v1/sweeps/1/export", params={"format": "xlsx"})
    assert bad.status_code == 422 and "format" in bad.text
    assert client.get("/v1/sweeps/999/export").status_code == 404


def test_client_export_and_runs_frame(client: TestClient, store: Store) -> None:
    sweep_id = _finished_sweep(client, store)
    api = Client(http=client)  # the TestClient is an httpx.Client
    frame = api.runs_frame(sweep_id)
    assert isinstance(frame, pd.DataFrame)
    assert frame.shape == (N_RUNS, len(COLUMN_NAMES))
    assert list(frame.columns) == list(COLUMN_NAMES)
    assert frame["excess_risk"].notna().sum() == N_RUNS - 2
    buf = io.BytesIO()
    assert api.export(sweep_id, buf, format="jsonl") == len(buf.getvalue()) > 0
    with pytest.raises(Exception, match="404"):
        api.export(999, io.BytesIO())


def _peak_export_bytes(client: TestClient, sweep_id: int) -> tuple[int, int]:
    """(rows, peak Python memory while streaming the CSV export)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    rows = 0
    with client.stream("GET", f"/v1/sweeps/{sweep_id}/export", params={"format": "csv"}) as r:
        for line in r.iter_lines():
            rows += bool(line)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return rows - 1, peak  # minus the header


@pytest.mark.slow
def test_a_10000_run_export_streams_in_constant_memory(sqlite_url: str) -> None:
    settings = Settings(_env_file=None, database_url=sqlite_url, max_runs_per_sweep=10_000)  # type: ignore[call-arg]
    store = make_store(sqlite_url)
    try:

        def sweep(seeds: int) -> int:
            body = SweepSpec.model_validate(
                {
                    "name": f"export-{seeds}",
                    "model": "diagonal",
                    "grid": {"d": [8], "n": [16, 32, 64, 128], "weight_decay": [0.01, 0.1],
                             "seed": list(range(seeds))},
                }
            )  # fmt: skip
            record = store.create_sweep(body, max_runs=10_000)
            runs = list(iter_runs(store, record.id))
            store.record_results([(r.id, result(r.config_hash, 0.1)) for r in runs])
            return record.id

        small, large = sweep(125), sweep(1250)  # 1,000 and 10,000 runs
        with TestClient(create_app(settings, store)) as client:
            _peak_export_bytes(client, small)  # warm caches (SQLAlchemy, pydantic)
            rows_small, peak_small = _peak_export_bytes(client, small)
            rows_large, peak_large = _peak_export_bytes(client, large)
        assert (rows_small, rows_large) == (1_000, 10_000)
        # constant in the number of runs: ten times the runs, not ten times the memory
        # (tolerance: 2x the 1,000-run peak, which itself holds one page of 1,000 runs)
        assert peak_large < 2.0 * peak_small, (peak_small, peak_large)
    finally:
        store.close()
