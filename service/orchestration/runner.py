"""The runner loop: claim queued runs under a lease, execute them, record results in batches.

The database is the source of truth (DESIGN.md, "Suggested orchestration"). One :class:`Runner`
per database holds the *runner lease* (renewed every few seconds; a second runner waits and
takes over when the first one dies). It claims queued runs under a *run lease*, hands them to an
:class:`~service.orchestration.executor.Executor` (Ray in production,
:class:`~service.orchestration.executor.InlineExecutor` in tests and ``--no-ray``), keeps
at most ``settings.max_inflight_runs`` tasks in flight, renews the leases of what is in flight,
and writes results in batches (``store.record_results``, idempotent: a result delivered twice or
late is stored once). A run that does not come back (worker crashed, node died, the task raised)
is handed back at once by expiring its lease; ``store.requeue_expired`` then queues it again or,
after ``settings.max_attempts`` claims, fails it with "worker lost after N attempts". Runs of a
cancelled sweep are stopped with ``executor.cancel``.

Tasks are packed several runs each (:mod:`service.orchestration.packing`) and run by one
injected batch function (this package never imports ``workers``), which every executor
calls as ``fn(list_of_configs) -> list_of_results``.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from service.config import Settings
from service.errors import TaskRaised
from service.orchestration.executor import BatchFn, Executor
from service.orchestration.packing import PackingRules, pack
from service.records import Claim
from service.results import RunResult
from service.storage.base import RunnerStore

log = logging.getLogger("scalesweep.runner")


@dataclass
class RunnerStats:
    """What a runner did (for logs and tests)."""

    claimed: int = 0
    tasks_submitted: int = 0
    recorded: int = 0
    ignored: int = 0
    """Results the store did not take (duplicate, late, or the run was cancelled)."""
    write_calls: int = 0
    lost: int = 0
    """Runs that came back as an exception and were handed back for a retry."""
    requeued: int = 0
    released: int = 0
    """Runs handed back unfinished at shutdown, without spending an attempt."""
    cancelled: int = 0


_EXPIRED = -1.0
"""A lease length that expires a lease now (hands the run back), whatever the clock resolution."""


def default_runner_id() -> str:
    """host:pid:random, unique per runner object."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Runner:
    """Claims, executes and records runs; see the module docstring.

    ``settings.max_inflight_runs`` bounds the *tasks* handed to the executor (what Ray
    schedules); a packed task of many tiny runs counts once. ``run_batch`` executes a task
    (one run or several). ``runner_lease_s`` (default ``settings.lease_s``) is how long a
    dead runner blocks a successor; ``check_every_s`` paces requeueing and cancellation
    checks; results are written when ``flush_every_s`` (default ``settings.runner_flush_s``)
    has passed, ``max_write_batch`` are waiting, or nothing is in flight.
    """

    def __init__(
        self,
        store: RunnerStore,
        executor: Executor,
        run_batch: BatchFn,
        *,
        settings: Settings,
        runner_id: str | None = None,
        runner_lease_s: float | None = None,
        check_every_s: float | None = None,
        flush_every_s: float | None = None,
        max_write_batch: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.executor = executor
        self.runner_id = runner_id or default_runner_id()
        self.stats = RunnerStats()
        self._run_batch = run_batch
        self._max_tasks = settings.max_inflight_runs
        self._lease_s = settings.lease_s
        self._max_attempts = settings.max_attempts
        self._poll_s = settings.runner_poll_s
        self._packing = PackingRules.from_settings(settings)
        self._runner_lease_s = runner_lease_s if runner_lease_s is not None else settings.lease_s
        self._check_every_s = (
            check_every_s if check_every_s is not None else min(1.0, self._lease_s / 4)
        )
        self._flush_every_s = (
            flush_every_s if flush_every_s is not None else settings.runner_flush_s
        )
        self._max_write_batch = max_write_batch
        self._clock = clock
        self._inflight: dict[int, str] = {}  # run id -> config hash
        self._sweep_of: dict[int, int] = {}  # run id -> sweep id (log records), until written
        self._pending: dict[int, RunResult] = {}  # results not written yet
        self._lost: list[int] = []
        self._backlog: deque[list[Claim]] = deque()  # packed tasks waiting for a free slot
        self._per_task = 1.0  # runs per task of the last claim (grows as runs pack)
        self._holder = False
        self._lease_check_at = float("-inf")
        self._renew_at = float("-inf")
        self._check_at = float("-inf")
        self._last_flush = clock()
        self._queue_empty = False
        self._stopping = False

    # -- one iteration -------------------------------------------------------------------

    def step(self, wait_s: float = 0.0) -> None:
        """One loop iteration: lease, hand back lost runs, housekeeping, claim, collect, write."""
        now = self._clock()
        if now >= self._lease_check_at:
            self._check_runner_lease(now)
        if self._holder:
            self._hand_back_lost()
            if now >= self._check_at:
                self._housekeeping(now)
            if now >= self._renew_at:
                self._renew(now)
            if not self._stopping:
                self._fill()
        self._collect(wait_s)
        self._flush(force=not self._holder or self.executor.inflight() == 0)

    def idle(self) -> bool:
        """Nothing queued (at the last claim), in flight, unwritten or waiting for a retry."""
        return (
            self._queue_empty
            and not self._inflight
            and self.executor.inflight() == 0
            and not self._pending
            and not self._lost
        )

    def run_until_idle(self, timeout_s: float = 60.0) -> RunnerStats:
        """Step until :meth:`idle` (tests); raises TimeoutError after ``timeout_s``."""
        deadline = self._clock() + timeout_s
        while True:
            self.step(wait_s=self._poll_s)
            if self._holder and self.idle():
                return self.stats
            if self._clock() > deadline:
                raise TimeoutError(f"runner not idle after {timeout_s} s: {self.stats}")
            if self.executor.inflight() == 0 and (not self._holder or self._queue_empty):
                time.sleep(self._poll_s)

    def run_forever(self, stop: threading.Event, grace_s: float = 5.0) -> RunnerStats:
        """Loop until ``stop`` is set, then :meth:`shutdown`.

        An error in one iteration (database down, executor hiccup) is logged and the loop goes
        on after a back-off (doubling from 5 polls up to 30 s); nothing in memory is dropped.
        """
        log.info("runner %s started", self.runner_id, extra=self._ids())
        failures = 0
        try:
            while not stop.is_set():
                try:
                    self.step(wait_s=self._poll_s)
                    failures = 0
                except Exception:
                    backoff = min(30.0, 5 * self._poll_s * 2**failures)
                    failures += 1
                    log.exception("runner step failed; retrying in %.1f s", backoff)
                    stop.wait(backoff)
                    continue
                if self.executor.inflight() == 0 and (not self._holder or self._queue_empty):
                    stop.wait(self._poll_s)
        finally:
            try:
                self.shutdown(grace_s)
            except Exception:  # the leases will expire and a successor requeues the runs
                log.exception("runner %s could not shut down cleanly", self.runner_id)
        return self.stats

    def shutdown(self, grace_s: float = 5.0) -> None:
        """Stop claiming, wait up to ``grace_s`` for tasks in flight, write, hand back, release.

        Runs still in flight (or waiting in the backlog) after ``grace_s`` are cancelled and
        handed back with ``store.release_runs``: queued again at once, their claim not counted
        as an attempt. Runs that came back as errors are handed back as lost (attempt spent).
        """
        self._stopping = True
        deadline = self._clock() + grace_s
        try:
            while self.executor.inflight() > 0 and self._clock() < deadline:
                self._collect(min(self._poll_s, max(0.0, deadline - self._clock())))
                if self._clock() >= self._renew_at:
                    self._renew(self._clock())
            self._flush(force=True)
            left = sorted(self._inflight)
            if left:  # hand them back now, attempt not spent, rather than when leases expire
                self.executor.cancel(left)
                self._inflight.clear()
                self._backlog.clear()
                self.stats.released += self.store.release_runs(self.runner_id, left)
                log.info("handed back %d unfinished runs", len(left), extra=self._ids())
                for run_id in left:
                    self._sweep_of.pop(run_id, None)
            self._hand_back_lost(requeue=self._holder)
        finally:
            if self._holder:
                self._holder = False
                self.store.release_runner_lease(self.runner_id)
            log.info("runner %s stopped: %s", self.runner_id, self.stats, extra=self._ids())

    # -- pieces --------------------------------------------------------------------------

    def _ids(self, run_id: int | None = None) -> dict[str, object]:
        """``extra=`` of a log record: this runner, and the run and its sweep when given."""
        ids: dict[str, object] = {"runner_id": self.runner_id}
        if run_id is not None:
            ids["run_id"] = run_id
            sweep_id = self._sweep_of.get(run_id)
            if sweep_id is not None:
                ids["sweep_id"] = sweep_id
        return ids

    def _check_runner_lease(self, now: float) -> None:
        held = self.store.acquire_runner_lease(self.runner_id, self._runner_lease_s)
        if held != self._holder:
            log.info(
                "runner %s %s the runner lease",
                self.runner_id,
                "holds" if held else "lost",
                extra={**self._ids(), "lease": "acquired" if held else "lost"},
            )
        self._holder = held
        self._lease_check_at = now + (self._runner_lease_s / 3 if held else self._poll_s)

    def _hand_back_lost(self, *, requeue: bool = True) -> None:
        """Expire the leases of runs that did not come back, then (lease holder) requeue them."""
        if not self._lost:
            return
        lost, self._lost = self._lost, []
        self.store.renew_leases(self.runner_id, lost, _EXPIRED)
        for run_id in lost:
            log.info("run %d handed back for a retry", run_id, extra=self._ids(run_id))
            self._sweep_of.pop(run_id, None)
        if requeue:
            self._requeue()

    def _requeue(self) -> None:
        """Queue expired runs again (or fail them after max_attempts), logging how many."""
        n = self.store.requeue_expired(max_attempts=self._max_attempts)
        if n:
            log.info("requeued %d runs whose lease expired", n, extra=self._ids())
            self._queue_empty = False  # queued again, or handed over to a follower
        self.stats.requeued += n

    def _housekeeping(self, now: float) -> None:
        self._check_at = now + self._check_every_s
        self._requeue()
        if self._inflight:
            cancelled = self.store.cancelled_run_ids(sorted(self._inflight))
            if cancelled:
                log.info("stopping %d runs of cancelled sweeps", len(cancelled), extra=self._ids())
                self.executor.cancel(cancelled)
                gone = set(cancelled)
                for run_id in gone:
                    self._inflight.pop(run_id, None)
                    self._sweep_of.pop(run_id, None)
                kept = ([c for c in task if c.run_id not in gone] for task in self._backlog)
                self._backlog = deque(task for task in kept if task)
                self.stats.cancelled += len(cancelled)

    def _renew(self, now: float) -> None:
        self._renew_at = now + self._lease_s / 3
        ids = sorted(self._inflight.keys() | self._pending.keys())
        if ids:
            self.store.renew_leases(self.runner_id, ids, self._lease_s)
            log.debug("renewed the leases of %d runs", len(ids), extra=self._ids())

    def _fill(self) -> None:
        """Submit packed tasks to every free slot, claiming enough runs to fill them.

        A claim asks for ``free slots x runs per task of the last claim`` runs, so tiny runs
        fill whole tasks while big runs are claimed one per slot; tasks that do not fit yet
        wait in a small backlog (their runs are leased and renewed like those in flight).
        """
        claimed_all = False
        for _ in range(16):
            free = self._max_tasks - self.executor.inflight()
            while free > 0 and self._backlog:
                self._submit(self._backlog.popleft())
                free -= 1
            if free <= 0 or claimed_all:
                return
            limit = min(free * 256, max(free, math.ceil(free * self._per_task)))
            claims = self.store.claim_runs(self.runner_id, limit=limit, lease_s=self._lease_s)
            self._queue_empty = claimed_all = len(claims) < limit
            if not claims:
                return
            self.stats.claimed += len(claims)
            for claim in claims:
                self._inflight[claim.run_id] = claim.config.config_hash()
                self._sweep_of[claim.run_id] = claim.sweep_id
                log.debug(
                    "claimed run %d (attempt %d)",
                    claim.run_id,
                    claim.attempt,
                    extra={**self._ids(claim.run_id), "attempt": claim.attempt},
                )
            tasks = pack(claims, self._packing, spread=self.executor.capacity())
            self._per_task = len(claims) / len(tasks)
            log.info("claimed %d runs in %d tasks", len(claims), len(tasks), extra=self._ids())
            self._backlog.extend(tasks)

    def _submit(self, task: list[Claim]) -> None:
        """Hand one task to the executor; if that fails, keep it (leased) for the next step."""
        try:
            self.executor.submit(self._run_batch, [(c.run_id, c.config) for c in task])
        except Exception:  # the executor is down: retrying later must not burn attempts
            self._backlog.appendleft(task)
            raise
        self.stats.tasks_submitted += 1

    def _collect(self, wait_s: float) -> None:
        if self.executor.inflight() == 0:
            return
        for run_id, outcome in self.executor.completed(wait_s):
            expected = self._inflight.pop(run_id, None)
            if isinstance(outcome, RunResult) and expected not in (None, outcome.config_hash):
                outcome = TaskRaised(f"result for another configuration ({outcome.config_hash})")
            if isinstance(outcome, Exception):
                if expected is not None:  # else: cancelled, or already handled
                    log.warning(
                        "run %d did not come back: %s; handing it back",
                        run_id,
                        outcome,
                        extra=self._ids(run_id),
                    )
                    self._lost.append(run_id)
                    self.stats.lost += 1
            elif run_id in self._pending:
                self.stats.ignored += 1  # delivered twice before the write
            else:
                self._pending[run_id] = outcome

    def _flush(self, *, force: bool) -> None:
        if not self._pending:
            return
        now = self._clock()
        due = now - self._last_flush >= self._flush_every_s
        if not (force or due or len(self._pending) >= self._max_write_batch):
            return
        items = sorted(self._pending.items())
        for i in range(0, len(items), self._max_write_batch):
            chunk = items[i : i + self._max_write_batch]
            stored = self.store.record_results(chunk)
            self.stats.write_calls += 1
            self.stats.recorded += stored
            self.stats.ignored += len(chunk) - stored
            if any(res.status != "succeeded" for _, res in chunk):
                self._queue_empty = False  # a failed leader queues a follower to train
            for run_id, res in chunk:
                del self._pending[run_id]
                log.info(
                    "run %d result: %s",
                    run_id,
                    res.status,
                    extra={**self._ids(run_id), "status": res.status, "error": res.error},
                )
                self._sweep_of.pop(run_id, None)
            log.info("wrote %d results (%d stored)", len(chunk), stored, extra=self._ids())
        self._last_flush = now
