"""Team-scoped queries on sweeps (column ``sweeps.team``), for SCALESWEEP_AUTH=on.

With auth on, a token sees only the sweeps of its own team (tokens without a team: the
sweeps without a team). The API checks :meth:`TeamStore.sweep_team` /
:meth:`TeamStore.run_team` before serving a sweep or a run, lists with
:meth:`TeamStore.list_sweeps` and submits with :meth:`TeamStore.create_sweep`, which
stores the team in the same transaction as the sweep.
"""

from __future__ import annotations

from sqlalchemy import select

from service.errors import RunNotFound, SweepNotFound
from service.records import Page, SweepRecord
from service.spec import SweepSpec
from service.storage.engine import TransactionalStore
from service.storage.store import Store
from service.storage.tables import Run, Sweep


class TeamStore(TransactionalStore):
    """Sweeps and runs as one team sees them; shares the engine of a Store."""

    def __init__(self, store: Store) -> None:
        super().__init__(store._engine)
        self._store = store

    def sweep_team(self, sweep_id: int) -> str | None:
        """The team a sweep belongs to (SweepNotFound)."""
        with self._transaction(write=False) as conn:
            row = conn.execute(select(Sweep.team).where(Sweep.id == sweep_id)).first()
        if row is None:
            raise SweepNotFound(f"sweep {sweep_id} not found")
        team: str | None = row.team
        return team

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

    def list_sweeps(
        self, team: str | None, *, limit: int = 50, cursor: str | None = None
    ) -> Page[SweepRecord]:
        """A team's sweeps (None: sweeps without a team), newest first, keyset-paginated."""
        return self._store.list_sweeps(limit=limit, cursor=cursor, team=team)

    def create_sweep(self, spec: SweepSpec, *, max_runs: int, team: str | None) -> SweepRecord:
        """Store.create_sweep, with the sweep's team written in the same transaction."""
        return self._store.create_sweep(spec, max_runs=max_runs, team=team)
