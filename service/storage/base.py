"""The store interface, declared once: what the API needs and what the runner needs.

:class:`~service.storage.store.Store` (SQL: SQLite or PostgreSQL) implements both
protocols; the API (``api.deps``) depends on :class:`SweepStore`, the runner loop
(``service.orchestration.runner``) on :class:`RunnerStore`, and tests plug in doubles of
either. Methods accept and return only pydantic models (``service.spec``,
``service.results``, ``service.records``), never rows.

Conventions of every implementation:

* ids are integers, never reused (not even after a delete); sweeps are listed newest first,
  runs in expansion order; cursors are opaque strings (keyset on id / index); ``limit`` is
  1..1000 (``LimitError(422, "limit")``); a bad cursor is ``SpecError(field="cursor")``;
* unknown ids raise ``SweepNotFound`` / ``RunNotFound``; the database failing raises
  ``StorageError``; a write that contradicts stored state raises ``ConflictError``;
* ``SweepRecord.counts`` has all five run statuses (zeros included). Sweep status: ``queued``
  at creation (``succeeded`` at once when every run was reused), ``running`` once a run is
  claimed or one it waits on runs, ``succeeded`` when no run is queued or running,
  ``cancelled`` by cancel_sweep;
* teams: a sweep belongs to the team of the token that submitted it (None: no team, or
  auth off). ``team`` filters take a team name, None (the sweeps without a team) or
  :data:`ANY_TEAM` (every sweep, auth off). A finished run is reused only by sweeps of the
  same team, so ``reused_from`` never names a run its reader cannot see;
* a team trains a configuration once: one queued or running in another of the team's sweeps
  is not trained again; the new run waits for it, shows its status and gets a copy of its
  result (``reused_from`` set, as for reuse); if that run fails, or its sweep is cancelled
  or deleted, one waiting run is trained instead (``recompute`` sweeps train their own).
"""

from __future__ import annotations

from collections.abc import Iterator
from types import EllipsisType
from typing import Protocol

from service.records import (
    Claim,
    Page,
    RunPoint,
    RunRecord,
    SpectrumPoint,
    StoreMetrics,
    SweepRecord,
)
from service.results import RunResult, RunStatus, Spectrum
from service.spec import SweepSpec

TeamFilter = str | None | EllipsisType
"""A team name, None (sweeps without a team) or ANY_TEAM (no team filter)."""
ANY_TEAM: EllipsisType = ...
Grid = dict[str, list[float] | list[int]]
"""Values to add per grid axis (extend_sweep)."""


class SweepStore(Protocol):
    """The API side: sweeps, runs and their results, as a team sees them."""

    def create_sweep(
        self, spec: SweepSpec, *, max_runs: int, team: str | None = None
    ) -> SweepRecord:
        """Expand ``spec`` into runs and store them in one transaction; runs whose
        config_hash has a succeeded run of the same team are stored as succeeded with its
        results copied and ``reused_from`` set, and runs whose config_hash is queued or
        running in another sweep of the team wait for its result, unless
        ``spec.recompute``. More than ``max_runs`` runs: ``LimitError(422, "grid")`` and
        nothing is stored."""
        ...

    def extend_sweep(self, sweep_id: int, grid: Grid, *, max_runs: int) -> SweepRecord:
        """Append grid values (more seeds, larger n); only new configurations become runs,
        finished runs are kept; ``SpecError(field="grid.<axis>")`` for an axis the sweep
        lacks; ``ConflictError`` for a cancelled sweep; ``LimitError`` beyond ``max_runs``."""
        ...

    def get_sweep(self, sweep_id: int) -> SweepRecord:
        """A sweep with its run counts."""
        ...

    def list_sweeps(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        team: TeamFilter = ANY_TEAM,
        tag: str | None = None,
        archived: bool | None = False,
    ) -> Page[SweepRecord]:
        """Sweeps, newest first, one page; only those with ``tag`` when given; archived
        ones hidden (``archived=False``), alone (True) or listed too (None)."""
        ...

    def update_sweep(
        self,
        sweep_id: int,
        *,
        name: str | None = None,
        tags: list[str] | None = None,
        archived: bool | None = None,
    ) -> SweepRecord:
        """Rename, replace the tags of, or (un)archive a sweep; None leaves a field alone."""
        ...

    def delete_sweep(self, sweep_id: int) -> int:
        """Delete a sweep, its runs, spectra and curves in one transaction (a run another
        sweep reused keeps that sweep's copy); returns how many runs were deleted."""
        ...

    def cancel_sweep(self, sweep_id: int) -> SweepRecord:
        """Queued and running runs become cancelled (the runner stops running ones)."""
        ...

    def list_runs(
        self,
        sweep_id: int,
        *,
        status: RunStatus | None = None,
        filters: dict[str, float | int | str] | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[RunRecord]:
        """Runs of a sweep in expansion order; filters on config fields (floats match
        within 1e-9 relative); ``SpecError`` naming a field that cannot be filtered on."""
        ...

    def get_run(self, run_id: int) -> RunRecord:
        """One run with its learning curve."""
        ...

    def get_spectra(self, run_id: int) -> list[Spectrum]:
        """The spectra of a run (empty until it finished)."""
        ...

    def run_points(self, sweep_id: int) -> list[RunPoint]:
        """Key columns and excess risk of every run of a sweep (for the fits)."""
        ...

    def spectrum_points(self, sweep_id: int) -> list[SpectrumPoint]:
        """Tail and rank fits of every stored spectrum of a sweep's runs."""
        ...

    def sweep_team(self, sweep_id: int) -> str | None:
        """The team a sweep belongs to."""
        ...

    def run_team(self, run_id: int) -> str | None:
        """The team of the sweep a run belongs to."""
        ...

    def record_submission(self, key: str, *, limit: int, window_s: float) -> float | None:
        """Count one submission of a client ``key``: None when it is within ``limit`` per
        ``window_s`` seconds (counted across every process on the database), else the
        seconds until one is allowed again (and nothing is counted)."""
        ...

    def ping(self) -> None:
        """A trivial query (readiness); raises StorageError when the database is down."""
        ...

    def metrics(self) -> StoreMetrics:
        """Runs by status, run durations and the runner lease holder (``GET /metrics``)."""
        ...

    def close(self) -> None:
        """Release the connections (the store is unusable afterwards)."""
        ...


class RunnerStore(Protocol):
    """The runner side: the runner lease, claims under leases, results exactly once."""

    def acquire_runner_lease(self, runner_id: str, ttl_s: float) -> bool:
        """Take or renew the one runner lease of the database; False while another runner
        holds an unexpired one."""
        ...

    def release_runner_lease(self, runner_id: str) -> None:
        """Give the lease up (a no-op unless ``runner_id`` holds it)."""
        ...

    def claim_runs(self, runner_id: str, *, limit: int, lease_s: float) -> list[Claim]:
        """Queued runs become running under a lease (oldest sweep first), one attempt each."""
        ...

    def renew_leases(self, runner_id: str, run_ids: list[int], lease_s: float) -> None:
        """Extend the leases ``runner_id`` holds on these running runs."""
        ...

    def release_runs(self, runner_id: str, run_ids: list[int]) -> int:
        """Hand claimed runs back without spending an attempt (a graceful stop); returns
        how many were released (other runners' and finished runs are left alone)."""
        ...

    def record_results(self, results: list[tuple[int, RunResult]]) -> int:
        """Store results of runs still queued or running, idempotently: a duplicate, late
        or wrong-hash result is ignored; returns how many were stored."""
        ...

    def requeue_expired(self, *, max_attempts: int) -> int:
        """Running runs whose lease expired go back to queued, or fail ("worker lost after
        N attempts") once ``max_attempts`` are spent; returns how many changed."""
        ...

    def cancelled_run_ids(self, run_ids: list[int]) -> list[int]:
        """Which of these in-flight runs were cancelled (the runner stops them)."""
        ...


def iter_runs(
    store: SweepStore, sweep_id: int, *, status: RunStatus | None = None, page_size: int = 1000
) -> Iterator[RunRecord]:
    """Every run of a sweep (of one status), in expansion order, one page at a time."""
    cursor: str | None = None
    while True:
        page = store.list_runs(sweep_id, status=status, limit=page_size, cursor=cursor)
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor
