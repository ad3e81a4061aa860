"""Exports of a sweep's runs: one flat row per run, streamed as CSV, JSON lines or Parquet.

The columns are fixed (:data:`COLUMNS`, the DESIGN.md names): the run's identity and
status, its configuration flattened (``model``, ``d``, ``n``, ``alpha``, ``weight_decay``,
``gamma``, ``rank``, ``noise``, ``seed``, ``optimizer``, ``width``, ``dtype``, ``device``,
...), and every metric under its own name. ``width`` is the run's effective hidden width
(``RunConfig.width``: ``training.width``, else d, 2d with a signed second layer; d for the
diagonal net). The configuration's ``device`` is the one asked for (``auto``, ``cpu``,
``cuda``); the metric of the device the run trained on is ``device_used``; likewise
``training_restarts`` is the configuration's ``training.restarts`` (empty: the deployment's
default) and ``restarts`` the metric (the trainings a narrow run compared). A missing value
is empty in CSV and null in JSON lines and Parquet.

Each writer consumes an iterator of runs (``service.storage.iter_runs`` reads one page at
a time) and yields chunks, one per page of runs, so an export never holds more than a page
of the sweep in memory. pyarrow is imported only for Parquet.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any, Literal

from service.records import RunRecord
from service.results import RunMetrics
from service.spec import MeasureSpec, TeacherSpec, TrainingSpec

Format = Literal["csv", "parquet", "jsonl"]
Kind = Literal["int", "float", "bool", "str"]

MEDIA_TYPES: dict[str, str] = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}
CHUNK_RUNS = 1000
"""Runs per yielded chunk (and per Parquet row group)."""

_RUN: tuple[tuple[str, Kind], ...] = (
    ("run_id", "int"),
    ("sweep_id", "int"),
    ("index", "int"),
    ("status", "str"),
    ("error", "str"),
    ("attempts", "int"),
    ("reused_from", "int"),
    ("config_hash", "str"),
    ("model", "str"),
    ("d", "int"),
    ("n", "int"),
    ("alpha", "float"),
    ("weight_decay", "float"),
    ("seed", "int"),
    ("link_power", "float"),
    ("width", "int"),
)
_TIMES: tuple[tuple[str, Kind], ...] = (
    ("created_at", "str"),
    ("started_at", "str"),
    ("finished_at", "str"),
)


def _kind(annotation: Any) -> Kind:
    """The column type of a field annotation (Optional and Annotated unwrapped)."""
    text = str(annotation)
    if "Literal[" in text:
        return "str"
    for kind in ("bool", "float", "int"):
        if re.search(rf"\b{kind}\b", text):
            return kind  # type: ignore[return-value]
    return "str"


def _fields(
    model: Any, skip: tuple[str, ...] = (), rename: dict[str, str] | None = None
) -> tuple[tuple[str, str, Kind], ...]:
    """(attribute, column, kind) of a pydantic model's fields."""
    names = rename or {}
    return tuple(
        (name, names.get(name, name), _kind(f.annotation))
        for name, f in model.model_fields.items()
        if name not in skip
    )


_TEACHER = _fields(TeacherSpec)
# the effective width is a run column; the restarts asked for are ``training_restarts``
# (None: the deployment's default), beside the metric ``restarts`` (how many were compared)
_TRAINING = _fields(TrainingSpec, skip=("width",), rename={"restarts": "training_restarts"})
_MEASURE = _fields(MeasureSpec)
_METRICS = _fields(RunMetrics, rename={"device": "device_used"})

COLUMNS: tuple[tuple[str, Kind], ...] = (
    *_RUN,
    *((c, k) for _, c, k in _TEACHER),
    *((c, k) for _, c, k in _TRAINING),
    *((c, k) for _, c, k in _MEASURE),
    *((c, k) for _, c, k in _METRICS),
    *_TIMES,
)
"""Every export column with its type, in order."""
COLUMN_NAMES: tuple[str, ...] = tuple(c for c, _ in COLUMNS)


def row_of(run: RunRecord) -> dict[str, Any]:
    """One run as a flat row of :data:`COLUMNS` (None for a missing value)."""
    cfg = run.config
    row: dict[str, Any] = {
        "run_id": run.id,
        "sweep_id": run.sweep_id,
        "index": run.index,
        "status": run.status,
        "error": run.error,
        "attempts": run.attempts,
        "reused_from": run.reused_from,
        "config_hash": run.config_hash,
        "model": cfg.model,
        "d": cfg.d,
        "n": cfg.n,
        "alpha": cfg.alpha,
        "weight_decay": cfg.weight_decay,
        "seed": cfg.seed,
        "link_power": cfg.link_power,
        "width": cfg.width,
    }
    for source, fields in ((cfg.teacher, _TEACHER), (cfg.training, _TRAINING)):
        row.update({col: getattr(source, attr) for attr, col, _ in fields})
    row.update({col: getattr(cfg.measure, attr) for attr, col, _ in _MEASURE})
    metrics = run.metrics
    row.update(
        {col: None if metrics is None else getattr(metrics, attr) for attr, col, _ in _METRICS}
    )
    for name, _ in _TIMES:
        when = getattr(run, name)
        row[name] = None if when is None else when.isoformat()
    return row


def _pages(runs: Iterable[RunRecord]) -> Iterator[list[dict[str, Any]]]:
    it = iter(runs)
    while page := [row_of(r) for r in islice(it, CHUNK_RUNS)]:
        yield page


def csv_chunks(runs: Iterable[RunRecord]) -> Iterator[str]:
    """The header, then one chunk of CSV lines per page of runs."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMN_NAMES, lineterminator="\n")
    writer.writeheader()
    yield buf.getvalue()
    for page in _pages(runs):
        buf.seek(0)
        buf.truncate()
        writer.writerows(page)
        yield buf.getvalue()


def jsonl_chunks(runs: Iterable[RunRecord]) -> Iterator[str]:
    """One JSON object per line, one chunk per page of runs."""
    for page in _pages(runs):
        yield "".join(json.dumps(row, allow_nan=True) + "\n" for row in page)


class _Sink(io.RawIOBase):
    """A write-only file whose written bytes are taken out after each row group."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.pos = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.parts.append(data)
        self.pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self.pos

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def parquet_chunks(runs: Iterable[RunRecord]) -> Iterator[bytes]:
    """A Parquet file, one row group per page of runs, yielded as it is written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "str": pa.string()}
    schema = pa.schema([(c, types[k]) for c, k in COLUMNS])
    sink = _Sink()
    with pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema) as writer:
        for page in _pages(runs):
            writer.write_table(pa.Table.from_pylist(page, schema=schema))
            yield sink.take()
    yield sink.take()


def export_chunks(runs: Iterable[RunRecord], fmt: Format) -> Iterator[bytes]:
    """The export of ``runs`` in format ``fmt``, as byte chunks."""
    if fmt == "parquet":
        yield from parquet_chunks(runs)
        return
    chunks = csv_chunks(runs) if fmt == "csv" else jsonl_chunks(runs)
    for text in chunks:
        yield text.encode()
