"""Batch insertion of a sweep's runs, with the team-shared cache of finished results.

Runs go in as one executemany (thousands per sweep); a run whose config_hash already has a
succeeded run in a sweep of the *same team* (runs without a team form their own pool) is
inserted as succeeded, with the metrics copied and ``reused_from`` naming the run that
computed them, so a team never reads another team's results and ``reused_from`` never names
a run its reader cannot see; its spectra and curve are copied with one ``INSERT ... SELECT``
each.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Row, insert, select

from service.spec import RunConfig
from service.storage.codec import config_columns
from service.storage.tables import CurveRow, Run, SpectrumRow, Sweep

_CHUNK = 500  # bound parameters per IN (...) list
T = TypeVar("T")


def chunks(items: Sequence[T], size: int = _CHUNK) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def cached_results(
    conn: Connection, hashes: Iterable[str], team: str | None
) -> dict[str, Row[Any]]:
    """For each hash with a succeeded run in a sweep of ``team``: the oldest such run."""
    wanted = sorted(set(hashes))
    found: dict[str, Row[Any]] = {}
    cols = (
        Run.id,
        Run.config_hash,
        Run.reused_from,
        Run.metrics,
        Run.excess_risk,
        Run.converged,
        Run.stop_reason,
        Run.wall_time_s,
    )
    same_team = Sweep.team.is_(None) if team is None else Sweep.team == team
    for part in chunks(wanted):
        stmt = (
            select(*cols)
            .join(Sweep, Sweep.id == Run.sweep_id)
            .where(Run.config_hash.in_(part), Run.status == "succeeded", same_team)
            .order_by(Run.id)
        )
        for row in conn.execute(stmt):
            found.setdefault(row.config_hash, row)
    return found


def insert_runs(
    conn: Connection,
    sweep_id: int,
    configs: Mapping[str, RunConfig],
    *,
    first_index: int,
    reuse: bool,
    team: str | None,
    now: datetime,
) -> int:
    """Insert runs (``configs``: config_hash -> config, in expansion order, indices from
    ``first_index``) of a sweep of ``team``; return how many are queued (the others reuse a
    finished run of the same team)."""
    cols = [config_columns(cfg, h) for h, cfg in configs.items()]
    cache = cached_results(conn, configs, team) if reuse else {}
    rows: list[dict[str, Any]] = []
    queued = 0
    for i, c in enumerate(cols):
        hit = cache.get(c["config_hash"])
        row = {
            **c,
            "sweep_id": sweep_id,
            "run_index": first_index + i,
            "attempts": 0,
            "created_at": now,
            "status": "queued",
            "reused_from": None,
            "metrics": None,
            "excess_risk": None,
            "converged": None,
            "stop_reason": None,
            "wall_time_s": None,
            "finished_at": None,
        }
        if hit is None:
            queued += 1
        else:
            row.update(
                status="succeeded",
                reused_from=hit.reused_from if hit.reused_from is not None else hit.id,
                metrics=hit.metrics,
                excess_risk=hit.excess_risk,
                converged=hit.converged,
                stop_reason=hit.stop_reason,
                wall_time_s=hit.wall_time_s,
                finished_at=now,
            )
        rows.append(row)
    if rows:
        conn.execute(insert(Run), rows)
    if len(rows) > queued:
        _copy_artifacts(conn, sweep_id, first_index)
    return queued


def _copy_artifacts(conn: Connection, sweep_id: int, first_index: int) -> None:
    """Copy spectra and curve points of reused runs from the runs they reuse."""
    new = (
        select(Run.id, Run.reused_from)
        .where(
            Run.sweep_id == sweep_id,
            Run.run_index >= first_index,
            Run.reused_from.is_not(None),
        )
        .subquery()
    )
    spectra = (
        select(
            new.c.id,
            SpectrumRow.kind,
            SpectrumRow.n_values,
            SpectrumRow.values,
            SpectrumRow.resolution,
            SpectrumRow.tail_alpha,
            SpectrumRow.tail_fit,
            SpectrumRow.tail_fit_error,
            SpectrumRow.rank_fit,
            SpectrumRow.rank_fit_error,
        )
        .select_from(SpectrumRow)
        .join(new, SpectrumRow.run_id == new.c.reused_from)
    )
    conn.execute(
        insert(SpectrumRow).from_select(
            [
                "run_id",
                "kind",
                "n_values",
                "values",
                "resolution",
                "tail_alpha",
                "tail_fit",
                "tail_fit_error",
                "rank_fit",
                "rank_fit_error",
            ],
            spectra,
        )
    )
    curve = (
        select(new.c.id, CurveRow.step, CurveRow.train_loss, CurveRow.excess_risk)
        .select_from(CurveRow)
        .join(new, CurveRow.run_id == new.c.reused_from)
    )
    conn.execute(
        insert(CurveRow).from_select(["run_id", "step", "train_loss", "excess_risk"], curve)
    )
