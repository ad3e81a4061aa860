"""The store: sweeps and runs in SQL, implementing :mod:`service.storage.base`.

API-side operations (:class:`~service.storage.base.SweepStore`) live here; runner-side ones
(:class:`~service.storage.base.RunnerStore`: leases, claims, results) in
:mod:`service.storage.queue`. Methods accept and return only pydantic models
(service.spec, service.results, service.records), never rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    and_,
    delete,
    func,
    insert,
    select,
    text,
    update,
)

from service.errors import ConflictError, LimitError, RunNotFound, SpecError, SweepNotFound
from service.records import Page, RunPoint, RunRecord, SpectrumPoint, StoreMetrics, SweepRecord
from service.results import CurvePoint, RunStatus, Spectrum
from service.spec import (
    GRID_AXES,
    RunConfig,
    Space,
    SweepSpec,
    expand,
    width_axis_name,
    widths,
)
from service.storage.base import ANY_TEAM, Grid, TeamFilter
from service.storage.codec import (
    ACTIVE,
    RUN_STATUSES,
    check_limit,
    decode_cursor,
    encode_cursor,
    filter_value,
    run_record,
    spectrum_from_row,
    sweep_record,
)
from service.storage.engine import make_engine
from service.storage.housekeeping import delete_sweep_rows, set_tags, tags_of
from service.storage.inserts import insert_runs
from service.storage.leaders import hand_over, lock_pools, pool_of
from service.storage.metrics import collect
from service.storage.queue import RunnerQueue, end_attempts, utcnow
from service.storage.tables import CurveRow, Run, SpectrumRow, Submission, Sweep, SweepTag

_FLOAT_RTOL = 1e-9  # float filters match values within this relative tolerance


def _expand_at_most(spec: SweepSpec, max_runs: int) -> dict[str, RunConfig]:
    """The sweep's distinct runs by config_hash, or LimitError(422, "grid") beyond max_runs."""
    configs: dict[str, RunConfig] = {}
    for cfg in itertools.islice(expand(spec), max_runs + 1):
        configs.setdefault(cfg.config_hash(), cfg)
    if len(configs) > max_runs:
        raise LimitError(
            f"the sweep expands to {spec.n_runs()} runs, more than the maximum of {max_runs} "
            "(SCALESWEEP_MAX_RUNS_PER_SWEEP)",
            422,
            "grid",
        )
    return configs


def extended_spec(spec: SweepSpec, grid: Mapping[str, list[float] | list[int]]) -> SweepSpec:
    """``spec`` with the values of ``grid`` appended to its axes (SpecError naming the axis).

    ``gamma`` and ``noise`` extend the teacher's single value when the grid has no such axis,
    and ``width`` the sweep's ``training.width`` (which then moves into the grid). A sweep of
    default-width runs has no width to extend: its runs' configurations say no width, and
    writing d into them would make them other runs."""
    if not grid:
        raise SpecError("give at least one grid axis to extend", "grid")
    data = spec.model_dump(mode="json")
    for axis, values in grid.items():
        field = f"grid.{axis}"
        if axis not in GRID_AXES:
            raise SpecError(f"unknown grid axis {axis!r}; axes: {', '.join(GRID_AXES)}", field)
        if not isinstance(values, list) or not values:
            raise SpecError(f"{field} must be a non-empty list of values to add", field)
        current = getattr(spec.grid, axis)
        base: list[Any]
        if axis == "width" and current is not None:
            base = list(widths(spec, 1))  # whole numbers, a range's points rounded
        elif current is not None:
            base = current.values() if isinstance(current, Space) else list(current)
        elif axis in ("gamma", "noise"):
            base = [getattr(spec.teacher, axis)]
        elif axis == "width" and spec.training.width is not None:
            base = [spec.training.width]
            data["training"]["width"] = None
        elif axis in ("width", "width_ratio"):
            other = width_axis_name(spec.grid)
            if other is not None:
                why = f"its widths are grid.{other}: extend that"
            elif spec.training.width is not None:
                why = f"its width is training.width = {spec.training.width}: extend grid.width"
            else:
                why = "its runs have the default width (d); submit a sweep with grid.width"
            raise SpecError(f"the sweep has no {field} axis to extend ({why})", field)
        else:
            raise SpecError(f"the sweep has no {field} axis to extend", field)
        data["grid"][axis] = base + [v for v in dict.fromkeys(values) if v not in base]
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = tuple(str(p) for p in first["loc"])
        named = ".".join(loc[:2]) if len(loc) >= 2 and loc[0] == "grid" else None
        where = named or (f"grid.{next(iter(grid))}" if len(grid) == 1 else "grid")
        raise SpecError(f"the extended spec is invalid: {first['msg']}", where) from e


def _run_filter(field: str, value: float | int | str) -> ColumnElement[bool]:
    v = filter_value(field, value)  # SpecError for a field that is not filterable
    col = getattr(Run, field)
    if isinstance(v, float):
        tol = abs(v) * _FLOAT_RTOL
        return and_(col >= v - tol, col <= v + tol)
    return col == v  # type: ignore[no-any-return]


class Store(RunnerQueue):
    """Sweeps, runs, results; one instance per process, safe to share between threads."""

    # --- sweeps

    def create_sweep(
        self, spec: SweepSpec, *, max_runs: int, team: str | None = None
    ) -> SweepRecord:
        """Expand and store a sweep in one transaction (finished runs reused, queued or running
        ones followed, unless recompute); ``team`` is the submitting token's team (None
        without teams)."""
        pool_of(team)  # ValueError for an empty team name
        configs = _expand_at_most(spec, max_runs)
        now = utcnow()
        with self._transaction() as conn:
            lock_pools(conn, [team])
            sweep_id = conn.execute(
                insert(Sweep)
                .values(
                    name=spec.name,
                    spec=spec.model_dump(mode="json"),
                    status="queued",
                    n_runs=len(configs),
                    created_at=now,
                    updated_at=now,
                    team=team,
                )
                .returning(Sweep.id)
            ).scalar_one()
            inserted = insert_runs(
                conn,
                sweep_id,
                configs,
                first_index=0,
                reuse=not spec.recompute,
                team=team,
                now=now,
            )
            if inserted.active == 0:
                conn.execute(
                    update(Sweep)
                    .where(Sweep.id == sweep_id)
                    .values(status="succeeded", finished_at=now)
                )
            elif inserted.running:  # following leaders that run already
                conn.execute(update(Sweep).where(Sweep.id == sweep_id).values(status="running"))
            return self._sweep(conn, sweep_id)

    def extend_sweep(self, sweep_id: int, grid: Grid, *, max_runs: int) -> SweepRecord:
        """Add grid values; only new configurations become runs, finished runs are kept;
        ``max_runs`` bounds the extended sweep's size."""
        now = utcnow()
        with self._transaction() as conn:
            lock_pools(conn, [self._team(conn, sweep_id)])
            row = self._sweep_row(conn, sweep_id, lock=True)
            if row.status == "cancelled":
                raise ConflictError(f"sweep {sweep_id} is cancelled and cannot be extended")
            spec = extended_spec(SweepSpec.model_validate(row.spec), grid)
            configs = _expand_at_most(spec, max_runs)
            existing = set(
                conn.execute(select(Run.config_hash).where(Run.sweep_id == sweep_id)).scalars()
            )
            new = {h: c for h, c in configs.items() if h not in existing}
            last = conn.execute(
                select(func.max(Run.run_index)).where(Run.sweep_id == sweep_id)
            ).scalar()
            inserted = insert_runs(
                conn,
                sweep_id,
                new,
                first_index=(last + 1) if last is not None else 0,
                reuse=not spec.recompute,
                team=row.team,
                now=now,
            )
            active = conn.execute(
                select(func.count()).where(Run.sweep_id == sweep_id, Run.status.in_(ACTIVE))
            ).scalar_one()
            if active:
                waiting = row.status == "queued" and not inserted.running
                status, finished = ("queued" if waiting else "running"), None
            else:
                status, finished = "succeeded", row.finished_at or now
            conn.execute(
                update(Sweep)
                .where(Sweep.id == sweep_id)
                .values(
                    spec=spec.model_dump(mode="json"),
                    n_runs=len(existing) + len(new),
                    status=status,
                    finished_at=finished,
                    updated_at=now,
                )
            )
            return self._sweep(conn, sweep_id)

    def get_sweep(self, sweep_id: int) -> SweepRecord:
        """A sweep with its run counts (SweepNotFound)."""
        with self._transaction(write=False) as conn:
            return self._sweep(conn, sweep_id)

    def list_sweeps(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        team: TeamFilter = ANY_TEAM,
        tag: str | None = None,
        archived: bool | None = False,
    ) -> Page[SweepRecord]:
        """Sweeps, newest first, keyset-paginated on id; ``team`` given: only that team's
        (None: the sweeps without a team); ``tag``: only sweeps with that tag; ``archived``:
        False (default) hides archived sweeps, True lists only them, None lists both."""
        check_limit(limit)
        stmt = select(Sweep).order_by(Sweep.id.desc()).limit(limit + 1)
        if archived is not None:
            stmt = stmt.where(Sweep.archived.is_(archived))
        if tag is not None:
            tagged = select(SweepTag.sweep_id).where(SweepTag.tag == tag)
            stmt = stmt.where(Sweep.id.in_(tagged))
        if team is not ANY_TEAM:
            stmt = stmt.where(Sweep.team.is_(None) if team is None else Sweep.team == team)
        if cursor is not None:
            stmt = stmt.where(Sweep.id < decode_cursor("s", cursor))
        with self._transaction(write=False) as conn:
            rows = conn.execute(stmt).mappings().all()
            page = rows[:limit]
            counts: dict[int, dict[str, int]] = {r["id"]: {} for r in page}
            if page:
                for sid, status, count in conn.execute(
                    select(Run.sweep_id, Run.status, func.count())
                    .where(Run.sweep_id.in_(list(counts)))
                    .group_by(Run.sweep_id, Run.status)
                ):
                    counts[sid][status] = count
            tags = tags_of(conn, counts)
        items = [sweep_record(r, counts[r["id"]], tags.get(r["id"])) for r in page]
        more = len(rows) > limit
        return Page(items=items, next_cursor=encode_cursor("s", page[-1]["id"]) if more else None)

    def cancel_sweep(self, sweep_id: int) -> SweepRecord:
        """Queued and running runs -> cancelled (the runner stops running ones); idempotent.

        A cancelled run that leads hands its configuration over to a follower in another
        sweep, which is then trained (a cancellation is never inherited)."""
        now = utcnow()
        with self._transaction() as conn:
            self._lock_active(conn, sweep_id)
            row = self._sweep_row(conn, sweep_id, lock=True)
            if row.status in ("queued", "running"):
                ids = list(
                    conn.execute(
                        update(Run)
                        .where(Run.sweep_id == sweep_id, Run.status.in_(ACTIVE))
                        .values(
                            status="cancelled",
                            follows=None,
                            lease_owner=None,
                            lease_expires_at=None,
                            finished_at=now,
                        )
                        .returning(Run.id)
                    ).scalars()
                )
                end_attempts(conn, ids, "cancelled", now)
                hand_over(conn, ids)
                conn.execute(
                    update(Sweep)
                    .where(Sweep.id == sweep_id)
                    .values(status="cancelled", finished_at=now, updated_at=now)
                )
            return self._sweep(conn, sweep_id)

    def update_sweep(
        self,
        sweep_id: int,
        *,
        name: str | None = None,
        tags: list[str] | None = None,
        archived: bool | None = None,
    ) -> SweepRecord:
        """Rename, retag (replacing the tags) or (un)archive a sweep; None leaves a field."""
        with self._transaction() as conn:
            row = self._sweep_row(conn, sweep_id, lock=True)
            values: dict[str, Any] = {"updated_at": utcnow()}
            if name is not None:
                values["name"] = name
                values["spec"] = {**row.spec, "name": name}
            if archived is not None:
                values["archived"] = archived
            conn.execute(update(Sweep).where(Sweep.id == sweep_id).values(**values))
            if tags is not None:
                set_tags(conn, sweep_id, tags)
            return self._sweep(conn, sweep_id)

    def delete_sweep(self, sweep_id: int) -> int:
        """Delete a sweep with its runs, spectra and curves in one transaction; the runner
        stops its running runs (they read as cancelled), and those that lead hand over to a
        follower in another sweep. Returns how many runs went."""
        with self._transaction() as conn:
            active = self._lock_active(conn, sweep_id)
            self._sweep_row(conn, sweep_id, lock=True)
            hand_over(conn, active)
            return delete_sweep_rows(conn, sweep_id)

    # --- runs

    def list_runs(
        self,
        sweep_id: int,
        *,
        status: RunStatus | None = None,
        filters: dict[str, float | int | str] | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[RunRecord]:
        """Runs of a sweep in expansion order, filtered, keyset-paginated on the index."""
        check_limit(limit)
        stmt = select(Run).where(Run.sweep_id == sweep_id)
        if status is not None:
            if status not in RUN_STATUSES:
                raise SpecError(f"unknown run status {status!r}", "status")
            stmt = stmt.where(Run.status == status)
        for field, value in (filters or {}).items():
            stmt = stmt.where(_run_filter(field, value))
        if cursor is not None:
            stmt = stmt.where(Run.run_index > decode_cursor("r", cursor))
        stmt = stmt.order_by(Run.run_index).limit(limit + 1)
        with self._transaction(write=False) as conn:
            self._sweep_row(conn, sweep_id)
            rows = conn.execute(stmt).mappings().all()
        page = [run_record(r) for r in rows[:limit]]
        more = len(rows) > limit
        return Page(items=page, next_cursor=encode_cursor("r", page[-1].index) if more else None)

    def get_run(self, run_id: int) -> RunRecord:
        """One run with its learning curve (RunNotFound)."""
        with self._transaction(write=False) as conn:
            row = conn.execute(select(Run).where(Run.id == run_id)).mappings().first()
            if row is None:
                raise RunNotFound(f"run {run_id} not found")
            curve = [
                CurvePoint(step=c.step, train_loss=c.train_loss, excess_risk=c.excess_risk)
                for c in conn.execute(
                    select(CurveRow.step, CurveRow.train_loss, CurveRow.excess_risk)
                    .where(CurveRow.run_id == run_id)
                    .order_by(CurveRow.step)
                )
            ]
        return run_record(row, curve)

    def get_spectra(self, run_id: int) -> list[Spectrum]:
        """The spectra of a run (empty until it finished; RunNotFound)."""
        with self._transaction(write=False) as conn:
            if conn.execute(select(Run.id).where(Run.id == run_id)).first() is None:
                raise RunNotFound(f"run {run_id} not found")
            rows = conn.execute(
                select(SpectrumRow).where(SpectrumRow.run_id == run_id).order_by(SpectrumRow.id)
            ).mappings()
            return [spectrum_from_row(r) for r in rows]

    # --- analysis queries (only the indexed columns: no JSON decoding per run)

    def run_points(self, sweep_id: int) -> list[RunPoint]:
        """Key columns and excess risk of every run of a sweep, in expansion order."""
        cols = (
            Run.id, Run.status, Run.converged, Run.model, Run.d, Run.n, Run.weight_decay,
            Run.gamma, Run.noise, Run.seed, Run.link_power, Run.excess_risk, Run.width,
        )  # fmt: skip
        with self._transaction(write=False) as conn:
            sweep = self._sweep_row(conn, sweep_id)
            teacher = (sweep.spec or {}).get("teacher", {})
            rank = teacher.get("rank")
            signed = bool(teacher.get("signed", False))
            rows: list[Any] = list(
                conn.execute(
                    select(*cols).where(Run.sweep_id == sweep_id).order_by(Run.run_index)
                ).all()
            )
        # trusted rows of typed columns (Integer / Double / Boolean / a status the store
        # wrote): built without re-validation
        return [
            RunPoint(
                run_id=r[0],
                status=r[1],
                converged=r[2],
                model=r[3],
                d=r[4],
                n=r[5],
                weight_decay=r[6],
                gamma=r[7],
                noise=r[8],
                seed=r[9],
                link_power=r[10],
                rank=rank,
                signed=signed,
                excess_risk=r[11],
                width=r[12],
            )  # fmt: skip
            for r in rows
        ]

    def spectrum_points(self, sweep_id: int) -> list[SpectrumPoint]:
        """Tail and rank fits of every stored spectrum of a sweep's runs."""
        stmt = (
            select(
                SpectrumRow.run_id,
                SpectrumRow.kind,
                func.length(SpectrumRow.values),
                SpectrumRow.tail_fit,
                SpectrumRow.rank_fit,
            )  # fmt: skip
            .join(Run, Run.id == SpectrumRow.run_id)
            .where(Run.sweep_id == sweep_id)
            .order_by(Run.run_index, SpectrumRow.id)
        )
        with self._transaction(write=False) as conn:
            self._sweep_row(conn, sweep_id)
            rows = conn.execute(stmt).all()
        out = []
        for run_id, kind, nbytes, tail, rank in rows:
            tail = tail or {}
            rank = rank or {}
            ci = tail.get("alpha_ci")
            out.append(
                SpectrumPoint(
                    run_id=run_id,
                    kind=kind,
                    n_values=int(nbytes or 0) // 8,
                    tail_alpha=tail.get("alpha"),
                    tail_alpha_ci=tuple(ci) if ci else None,
                    n_tail=tail.get("n_tail"),
                    rank_exponent=rank.get("exponent"),
                    rank_points=rank.get("n_points"),
                )
            )
        return out

    # --- teams, health, metrics

    def sweep_team(self, sweep_id: int) -> str | None:
        """The team a sweep belongs to (SweepNotFound)."""
        with self._transaction(write=False) as conn:
            return self._team(conn, sweep_id)

    def run_team(self, run_id: int) -> str | None:
        """The team of the sweep a run belongs to (RunNotFound)."""
        with self._transaction(write=False) as conn:
            row = conn.execute(
                select(Sweep.team).join(Run, Run.sweep_id == Sweep.id).where(Run.id == run_id)
            ).first()
        if row is None:
            raise RunNotFound(f"run {run_id} not found")
        team: str | None = row.team
        return team

    def record_submission(self, key: str, *, limit: int, window_s: float) -> float | None:
        """Count a submission of ``key``: None if it is within ``limit`` per ``window_s``
        (and recorded), else the seconds until one is allowed again (nothing recorded).

        Counted in the database, so the limit holds across every API process: the check and
        the insert are one transaction, serialised per key (SQLite: BEGIN IMMEDIATE;
        PostgreSQL: a transaction-level advisory lock on the key). Rows older than the
        window are deleted on the way, so the table holds at most ``limit`` rows a key.
        """
        now = utcnow()
        since = now - timedelta(seconds=window_s)
        with self._transaction() as conn:
            if self.dialect == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(key))))
            conn.execute(delete(Submission).where(Submission.at <= since))
            recent = (
                conn.execute(
                    select(Submission.at)
                    .where(Submission.key == key)
                    .order_by(Submission.at)
                    .limit(limit)
                )
                .scalars()
                .all()
            )
            if len(recent) >= limit:
                return max(0.0, (recent[0] + timedelta(seconds=window_s) - now).total_seconds())
            conn.execute(insert(Submission).values(key=key, at=now))
        return None

    def ping(self) -> None:
        """SELECT 1 (StorageError when the database is unreachable)."""
        with self._transaction(write=False) as conn:
            conn.execute(text("SELECT 1"))

    def metrics(self) -> StoreMetrics:
        """The snapshot ``GET /metrics`` reports (three queries)."""
        return collect(self._engine)

    # --- helpers

    def _team(self, conn: Connection, sweep_id: int) -> str | None:
        """A sweep's team (it never changes, so no lock is needed; SweepNotFound)."""
        row = conn.execute(select(Sweep.team).where(Sweep.id == sweep_id)).first()
        if row is None:
            raise SweepNotFound(f"sweep {sweep_id} not found")
        team: str | None = row.team
        return team

    def _lock_active(self, conn: Connection, sweep_id: int) -> list[int]:
        """Before a cancel or a delete: the team pool's lock, then (PostgreSQL) the sweep's
        queued and running runs in id order, before the sweep's row, in the order the runner
        takes them (a claim locks runs, then their sweeps). Returns their ids."""
        lock_pools(conn, [self._team(conn, sweep_id)])
        stmt = (
            select(Run.id).where(Run.sweep_id == sweep_id, Run.status.in_(ACTIVE)).order_by(Run.id)
        )
        if self.dialect == "postgresql":
            stmt = stmt.with_for_update()
        return list(conn.execute(stmt).scalars())

    def _sweep_row(self, conn: Connection, sweep_id: int, *, lock: bool = False) -> Row[Any]:
        stmt = select(Sweep.__table__).where(Sweep.id == sweep_id)
        if lock and self.dialect == "postgresql":
            stmt = stmt.with_for_update()
        row = conn.execute(stmt).first()
        if row is None:
            raise SweepNotFound(f"sweep {sweep_id} not found")
        return row

    def _sweep(self, conn: Connection, sweep_id: int) -> SweepRecord:
        row = self._sweep_row(conn, sweep_id)
        counts: dict[str, int] = {}
        for status, count in conn.execute(
            select(Run.status, func.count()).where(Run.sweep_id == sweep_id).group_by(Run.status)
        ):
            counts[status] = count
        return sweep_record(row._mapping, counts, tags_of(conn, [sweep_id]).get(sweep_id))


def make_store(url: str) -> Store:
    """A store on ``url`` (the schema must exist: see upgrade_head / check_schema)."""
    return Store(make_engine(url))
