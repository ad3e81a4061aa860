"""GET /metrics (Prometheus text format, values from the store) and the JSON logs
(service.logs): the API's request log and the runner's records carry their ids."""

from __future__ import annotations

import io
import json
import logging
import math
import re
from collections.abc import Iterator
from typing import Any

import pytest
from api_helpers import TestClient, result, spec
from factories import BatchOf

from service.config import Settings
from service.logs import JsonFormatter, configure_logging
from service.orchestration.executor import InlineExecutor
from service.orchestration.runner import Runner
from service.results import RunResult
from service.spec import RunConfig
from service.storage import Store
from service.storage.metrics import DURATION_BUCKETS_S

# --------------------------------------------------------------------------------------
# a parser that follows the text format's rules (exposition format 0.0.4)

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: (-?\d+))?")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}

Samples = dict[str, list[tuple[dict[str, str], float]]]


def _value(text: str) -> float:
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    return float(text)  # ValueError for anything else


def _labels(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    labels: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        assert m, f"bad label set {text!r} at {pos}"
        assert m.group(1) not in labels, f"repeated label {m.group(1)}"
        raw = m.group(2)
        labels[m.group(1)] = re.sub(
            r"\\(.)", lambda e: "\n" if e.group(1) == "n" else e.group(1), raw
        )
        pos = m.end()
        if pos < len(text):
            assert text[pos] == ",", f"labels not comma-separated: {text!r}"
            pos += 1
    return labels


def parse_exposition(text: str) -> tuple[dict[str, str], Samples]:
    """Families' types and samples per sample name; asserts the format's rules on the way."""
    assert text.endswith("\n"), "the exposition ends with a line feed"
    types: dict[str, str] = {}
    helps: set[str] = set()
    samples: Samples = {}
    finished: set[str] = set()  # families whose samples are over (they must be contiguous)
    current: str | None = None

    def family_of(name: str) -> str:
        for fam, kind in types.items():
            if name == fam or any(name == fam + s for s in SUFFIXES.get(kind, ())):
                return fam
        raise AssertionError(f"sample {name} has no # TYPE line before it")

    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                assert METRIC_NAME.fullmatch(name), name
                if parts[1] == "TYPE":
                    assert name not in types, f"second TYPE line for {name}"
                    assert name not in samples, f"TYPE of {name} after its samples"
                    assert parts[3] in TYPES, line
                    types[name] = parts[3]
                else:
                    assert name not in helps, f"second HELP line for {name}"
                    helps.add(name)
            continue
        m = SAMPLE.fullmatch(line)
        assert m, f"not a sample line: {line!r}"
        name, labels, value = m.group(1), _labels(m.group(2)), _value(m.group(3))
        fam = family_of(name)
        if fam != current:
            assert fam not in finished, f"samples of {fam} are not contiguous"
            if current is not None:
                finished.add(current)
            current = fam
        samples.setdefault(name, []).append((labels, value))
    for fam, kind in types.items():
        if kind == "histogram":
            _check_histogram(fam, samples)
    return types, samples


def _check_histogram(fam: str, samples: Samples) -> None:
    buckets = samples.get(fam + "_bucket", [])
    assert buckets, f"histogram {fam} without buckets"
    bounds = [_value(labels["le"]) for labels, _ in buckets]
    counts = [v for _, v in buckets]
    assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds), bounds
    assert math.isinf(bounds[-1]) and bounds[-1] > 0, "the last bucket is le=+Inf"
    assert counts == sorted(counts), f"buckets of {fam} are cumulative"
    (_, count), (_, total) = samples[fam + "_count"][0], samples[fam + "_sum"][0]
    assert counts[-1] == count and total >= 0


def gauge(samples: Samples, name: str, **labels: str) -> float:
    matches = [v for lab, v in samples.get(name, []) if lab == labels]
    assert len(matches) == 1, (name, labels, samples.get(name))
    return matches[0]


# --------------------------------------------------------------------------------------
# /metrics


def _finish(store: Store, sid: int, wall_times: list[float | None]) -> None:
    """Results for the first runs: a float is a success taking that long, None a failure."""
    runs = store.list_runs(sid, limit=1000).items
    results: list[tuple[int, RunResult]] = []
    for run, wall in zip(runs, wall_times, strict=False):
        res = result(run.config_hash, status="failed" if wall is None else "succeeded")
        if wall is not None:
            assert res.metrics is not None
            res = res.model_copy(
                update={"metrics": res.metrics.model_copy(update={"wall_time_s": wall})}
            )
        results.append((run.id, res))
    store.record_results(results)


def test_metrics_follow_the_text_format_and_match_the_store(
    client: TestClient, store: Store
) -> None:
    walls: list[float | None] = [0.003, 0.02, 0.2, 0.7, 4.0, 45.0, 2000.0, 5000.0, None]
    sid = client.post("/v1/sweeps", json=spec()).json()["id"]
    _finish(store, sid, walls)
    cancelled = client.post("/v1/sweeps", json=spec(grid__seed=[5, 6])).json()["id"]
    client.post(f"/v1/sweeps/{cancelled}/cancel").raise_for_status()
    store.claim_runs("metrics-test", limit=1, lease_s=60)  # one of the rest is running

    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    types, samples = parse_exposition(r.text)
    assert types == {
        "scalesweep_runs": "gauge",
        "scalesweep_queue_depth": "gauge",
        "scalesweep_run_duration_seconds": "histogram",
        "scalesweep_runner_lease_holder": "gauge",
    }
    counts: dict[str, int] = {}
    for s in (sid, cancelled):
        for status, n in store.get_sweep(s).counts.items():
            counts[status] = counts.get(status, 0) + n
    assert counts["succeeded"] == 8 and counts["failed"] == 1 and counts["running"] == 1
    assert counts["cancelled"] == 12 and counts["queued"] == 2
    for status, n in counts.items():
        assert gauge(samples, "scalesweep_runs", status=status) == n
    assert gauge(samples, "scalesweep_queue_depth") == counts["queued"]

    finished = [w for w in walls if w is not None]  # a failed run without metrics has no time
    buckets = {labels["le"]: v for labels, v in samples["scalesweep_run_duration_seconds_bucket"]}
    for bound in DURATION_BUCKETS_S:
        le = str(int(bound)) if bound.is_integer() else repr(bound)
        assert buckets[le] == sum(w <= bound for w in finished), le
    assert buckets["+Inf"] == len(finished)
    assert gauge(samples, "scalesweep_run_duration_seconds_count") == len(finished)
    assert gauge(samples, "scalesweep_run_duration_seconds_sum") == pytest.approx(sum(finished))
    assert "scalesweep_runner_lease_holder" not in samples  # no runner holds the lease


def test_metrics_name_the_runner_lease_holder(client: TestClient, store: Store) -> None:
    holder = 'node-1:42:"odd"\\name'  # quotes and backslashes are escaped in label values
    assert store.acquire_runner_lease(holder, 60.0)
    _, samples = parse_exposition(client.get("/metrics").text)
    assert samples["scalesweep_runner_lease_holder"] == [({"runner_id": holder}, 1.0)]
    store.release_runner_lease(holder)
    _, samples = parse_exposition(client.get("/metrics").text)
    assert "scalesweep_runner_lease_holder" not in samples
    assert store.metrics().lease_holder is None


def test_metrics_are_in_the_openapi_document(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert "/metrics" in doc["paths"]


# --------------------------------------------------------------------------------------
# logs


class Records(logging.Handler):
    """Keeps the records of one logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records(request: pytest.FixtureRequest) -> Iterator[dict[str, Records]]:
    """Handlers on the API's and the runner's loggers, at DEBUG, removed afterwards."""
    handlers: dict[str, Records] = {}
    saved: dict[str, int] = {}
    for name in ("scalesweep.api", "scalesweep.runner"):
        logger = logging.getLogger(name)
        saved[name] = logger.level
        handlers[name] = Records()
        logger.addHandler(handlers[name])
        logger.setLevel(logging.DEBUG)
    yield handlers
    for name, handler in handlers.items():
        logger = logging.getLogger(name)
        logger.removeHandler(handler)
        logger.setLevel(saved[name])


def as_json(record: logging.LogRecord) -> dict[str, Any]:
    line = JsonFormatter().format(record)
    assert "\n" not in line  # one record, one line
    doc: dict[str, Any] = json.loads(line)
    assert {"ts", "level", "logger", "msg"} <= doc.keys()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", doc["ts"]), doc["ts"]
    return doc


def test_every_request_is_logged_as_json_with_its_ids(
    client: TestClient, records: dict[str, Records]
) -> None:
    sid = client.post("/v1/sweeps", json=spec()).json()["id"]
    client.get(f"/v1/sweeps/{sid}/runs")
    client.get("/v1/runs/999999")
    docs = [as_json(r) for r in records["scalesweep.api"].records]
    by_path = {d["path"]: d for d in docs}
    post = by_path["/v1/sweeps"]
    assert post["method"] == "POST" and post["status"] == 201 and post["level"] == "INFO"
    assert post["logger"] == "scalesweep.api" and post["duration_ms"] >= 0
    runs = by_path[f"/v1/sweeps/{sid}/runs"]
    assert runs["sweep_id"] == sid and runs["status"] == 200 and runs["msg"].startswith("GET")
    missing = by_path["/v1/runs/999999"]
    assert missing["run_id"] == 999999 and missing["status"] == 404


def _ok(cfg: RunConfig) -> RunResult:
    return result(cfg.config_hash())


def test_runner_records_carry_run_sweep_and_runner_ids(
    client: TestClient, store: Store, records: dict[str, Records]
) -> None:
    sid = client.post("/v1/sweeps", json=spec(grid__seed=[0])).json()["id"]
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url="sqlite://", runner_poll_s=0.01, pack_below_s=1e-6
    )
    runner = Runner(store, InlineExecutor(), BatchOf(_ok), settings=settings, runner_id="runner-7")
    runner.run_until_idle(timeout_s=30)
    runner.shutdown()
    docs = [as_json(r) for r in records["scalesweep.runner"].records]
    assert all(d["runner_id"] == "runner-7" for d in docs)
    lease = [d for d in docs if d.get("lease") == "acquired"]
    assert len(lease) == 1 and lease[0]["msg"] == "runner runner-7 holds the runner lease"
    claimed = [d for d in docs if d["msg"].startswith("claimed run ")]
    done = [d for d in docs if d.get("status") == "succeeded"]
    run_ids = {r.id for r in store.list_runs(sid, limit=100).items}
    assert {d["run_id"] for d in claimed} == run_ids == {d["run_id"] for d in done}
    assert all(d["sweep_id"] == sid for d in claimed + done)
    assert all(d["level"] == "DEBUG" for d in claimed) and all(d["level"] == "INFO" for d in done)


def test_configure_logging_writes_json_lines(records: dict[str, Records]) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    try:
        configure_logging("info", stream=stream)
        log = logging.getLogger("scalesweep.test")
        log.info("hello %s", "world", extra={"sweep_id": 3, "run_id": 9, "runner_id": "r"})
        log.debug("not at INFO")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed", extra={"run_id": 1})
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["msg"] == "hello world" and first["level"] == "INFO"
    assert (first["sweep_id"], first["run_id"], first["runner_id"]) == (3, 9, "r")
    assert first["logger"] == "scalesweep.test"
    assert second["level"] == "ERROR" and "ValueError: boom" in second["exc"]
