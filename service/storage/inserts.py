"""Batch insertion of a sweep's runs, with the team-shared cache of finished results.

Runs go in as one executemany (thousands per sweep); a run whose config_hash already has a
succeeded run in a sweep of the *same team* (runs without a team form their own pool) is
inserted as succeeded, with the metrics copied and ``reused_from`` naming the run that
computed them, so a team never reads another team's results and ``reused_from`` never names
a run its reader cannot see; its spectra and curve are copied with one ``INSERT ... SELECT``
each. A run whose configuration is queued or running in another of the team's sweeps follows
that run instead of being trained (:mod:`service.storage.leaders`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, Row, insert, select

from service.spec import RunConfig
from service.storage.codec import chunks, config_columns
from service.storage.leaders import add_leaders, find_leaders
from service.storage.tables import CurveRow, Run, SpectrumRow, Sweep


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


class Inserted(NamedTuple):
    """What :func:`insert_runs` stored: runs still to finish, and how many of them run."""

    active: int
    """Runs queued or running (to be trained, or following a leader)."""
    running: int
    """Runs following a leader that is running already."""


def insert_runs(
    conn: Connection,
    sweep_id: int,
    configs: Mapping[str, RunConfig],
    *,
    first_index: int,
    reuse: bool,
    team: str | None,
    now: datetime,
) -> Inserted:
    """Insert runs (``configs``: config_hash -> config, in expansion order, indices from
    ``first_index``) of a sweep of ``team``; the caller holds the team pool's lock
    (:func:`service.storage.leaders.lock_pools`).

    With ``reuse``, a configuration with a succeeded run in the team is stored as succeeded
    (a copy), and one queued or running in another of the team's sweeps follows that run's
    leader; every other configuration is queued and leads (``recompute`` runs lead only
    where no run leads yet, and never follow)."""
    cols = [config_columns(cfg, h) for h, cfg in configs.items()]
    cache = cached_results(conn, configs, team) if reuse else {}
    leaders = find_leaders(conn, team, [h for h in configs if h not in cache])
    rows: list[dict[str, Any]] = []
    active = running = 0
    for i, c in enumerate(cols):
        hit = cache.get(c["config_hash"])
        leader = leaders.get(c["config_hash"]) if reuse else None
        row = {
            **c,
            "sweep_id": sweep_id,
            "run_index": first_index + i,
            "attempts": 0,
            "created_at": now,
            "started_at": None,
            "status": "queued",
            "reused_from": None,
            "follows": None,
            "metrics": None,
            "excess_risk": None,
            "converged": None,
            "stop_reason": None,
            "wall_time_s": None,
            "finished_at": None,
        }
        if hit is not None:
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
        else:
            active += 1
            if leader is not None:
                row.update(
                    status=leader.status, follows=leader.run_id, started_at=leader.started_at
                )
                running += leader.status == "running"
        rows.append(row)
    if rows:
        conn.execute(insert(Run), rows)
    lead = [h for h in configs if h not in cache and h not in leaders]
    if lead:
        new_ids: dict[str, int] = {}
        for part in chunks(lead):
            new_ids.update(
                conn.execute(
                    select(Run.config_hash, Run.id).where(
                        Run.sweep_id == sweep_id, Run.config_hash.in_(part)
                    )
                )
                .tuples()
                .all()
            )
        add_leaders(conn, team, new_ids)
    if len(rows) > active:
        _copy_artifacts(conn, sweep_id, first_index)
    return Inserted(active, running)


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
