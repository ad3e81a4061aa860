"""Text output of the ``scalesweep`` CLI: status lines, run tables (table, CSV, JSON), exponents."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydantic

from service.exponents import ExponentReport
from service.records import RunRecord, SweepRecord

CONFIG_COLUMNS = ("model", "d", "n", "weight_decay", "gamma", "noise", "seed", "optimizer")
METRIC_COLUMNS = (
    "excess_risk",
    "train_loss",
    "objective",
    "grad_norm",
    "converged",
    "steps",
    "stop_reason",
    "wall_time_s",
    "device",
    "test_error",
)
COLUMNS = ("id", "index", "status", *CONFIG_COLUMNS, *METRIC_COLUMNS, "attempts", "error")
TABLE_COLUMNS = (
    "id",
    "status",
    "d",
    "n",
    "weight_decay",
    "seed",
    "excess_risk",
    "converged",
    "steps",
    "stop_reason",
)


def validation_message(source: Path | str, exc: pydantic.ValidationError) -> str:
    """One line per invalid field, naming it."""
    lines = [f"error: {source} is not a valid sweep spec:"]
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(spec)"
        lines.append(f"  {loc}: {err['msg']}")
    return "\n".join(lines)


def status_text(sweep: SweepRecord) -> str:
    """A few lines describing a sweep."""
    counts = ", ".join(f"{k} {v}" for k, v in sorted(sweep.counts.items()) if v) or "no runs"
    finished = sweep.finished_at.isoformat() if sweep.finished_at else "-"
    return (
        f"sweep {sweep.id} {sweep.name!r}: {sweep.status}, {sweep.n_runs} runs ({counts})\n"
        f"  created {sweep.created_at.isoformat()}  finished {finished}"
    )


def run_row(run: RunRecord) -> dict[str, Any]:
    """A flat row: identity, config fields, metrics (DESIGN.md field names)."""
    c = run.config
    row: dict[str, Any] = {
        "id": run.id,
        "index": run.index,
        "status": run.status,
        "model": c.model,
        "d": c.d,
        "n": c.n,
        "weight_decay": c.weight_decay,
        "gamma": c.teacher.gamma,
        "noise": c.teacher.noise,
        "seed": c.seed,
        "optimizer": c.training.optimizer,
        "attempts": run.attempts,
        "error": run.error,
    }
    metrics = run.metrics.model_dump() if run.metrics else {}
    row.update({k: metrics.get(k) for k in METRIC_COLUMNS})
    return row


def runs_csv(runs: Sequence[RunRecord]) -> str:
    """CSV with a header line; empty cells for missing values."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for run in runs:
        writer.writerow({k: "" if v is None else v for k, v in run_row(run).items()})
    return buf.getvalue()


def runs_json(runs: Sequence[RunRecord]) -> str:
    """A JSON array of the run records, as the API serves them."""
    return json.dumps([r.model_dump(mode="json") for r in runs], indent=2) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def runs_table(runs: Sequence[RunRecord]) -> str:
    """An aligned text table of the main columns."""
    rows = [[_cell(run_row(r)[k]) for k in TABLE_COLUMNS] for r in runs]
    return _table(TABLE_COLUMNS, rows) + f"{len(runs)} runs\n"


def exponent_table(report: ExponentReport) -> str:
    """One line per group: R ~ prefactor * x^-exponent."""
    header = [*report.by, "exponent", "prefactor", "r2", "points", "left_out", "pending"]
    rows = []
    for g in report.groups:
        rows.append(
            [
                *(_cell(g.group[a]) for a in report.by),
                _cell(g.exponent) if g.error is None else f"- ({g.error})",
                _cell(g.prefactor),
                _cell(g.r2),
                str(g.n_points),
                str(g.n_left_out),
                str(g.n_pending),
            ]
        )
    title = f"sweep {report.sweep_id}: R ~ C {report.x}^-exponent ({report.method})\n"
    return title + (_table(header, rows) if rows else "no runs\n")
