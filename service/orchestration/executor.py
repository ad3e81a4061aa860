"""Where tasks run: the :class:`Executor` protocol, and :class:`InlineExecutor` in-process.

A task is a batch of (run id, config) pairs executed by one injected batch function,
``fn(list_of_configs) -> list_of_results`` (``workers.tasks.run_batch`` in production; a
task of one run is a batch of one). Every executor turns what goes wrong into per-run
:class:`~service.errors.ExecutionError` outcomes, which the runner hands back for a retry.
:class:`InlineExecutor` runs tasks in this process (tests, ``--no-ray``); the Ray one is
``workers.executor.RayExecutor``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Sequence
from typing import Protocol

from service.errors import TaskRaised
from service.results import RunResult
from service.spec import RunConfig

BatchFn = Callable[[list[RunConfig]], list[RunResult]]
Outcome = tuple[int, RunResult | Exception]


class Executor(Protocol):
    """Where tasks run. A task is a batch of (run id, config) pairs executed by ``fn``."""

    def submit(self, fn: BatchFn, batch: Sequence[tuple[int, RunConfig]]) -> None:
        """Start one task; ``fn(configs)`` returns one result per config, in order."""
        ...

    def completed(self, timeout_s: float) -> list[Outcome]:
        """Wait up to ``timeout_s`` for a task to finish; every outcome ready now, per run."""
        ...

    def cancel(self, run_ids: Collection[int]) -> None:
        """Stop the tasks of these runs (best effort); their outcomes may still arrive."""
        ...

    def inflight(self) -> int:
        """Tasks submitted whose outcomes were not delivered yet."""
        ...

    def capacity(self) -> int:
        """Tasks that can run at the same time (packing spreads a batch over them)."""
        ...

    def close(self) -> None:
        """Release what the executor started."""
        ...


def call_task(fn: BatchFn, batch: Sequence[tuple[int, RunConfig]]) -> list[Outcome]:
    """Run one task here; a raising ``fn`` or a wrong result count becomes per-run errors."""
    ids = [run_id for run_id, _ in batch]
    try:
        results = fn([cfg for _, cfg in batch])
    except Exception as exc:
        err = TaskRaised(f"task raised {type(exc).__name__}: {exc}")
        err.__cause__ = exc
        return [(run_id, err) for run_id in ids]
    if len(results) != len(ids):
        bad = TaskRaised(f"task returned {len(results)} results for {len(ids)} runs")
        return [(run_id, bad) for run_id in ids]
    return list(zip(ids, results, strict=True))


class InlineExecutor:
    """Runs tasks in this process, one task per :meth:`completed` call (tests, ``--no-ray``)."""

    def __init__(self) -> None:
        self._queue: deque[tuple[BatchFn, list[tuple[int, RunConfig]]]] = deque()

    def submit(self, fn: BatchFn, batch: Sequence[tuple[int, RunConfig]]) -> None:
        self._queue.append((fn, list(batch)))

    def completed(self, timeout_s: float) -> list[Outcome]:
        if not self._queue:
            return []
        fn, batch = self._queue.popleft()
        return call_task(fn, batch)

    def cancel(self, run_ids: Collection[int]) -> None:
        drop = set(run_ids)
        kept = [(fn, [p for p in b if p[0] not in drop]) for fn, b in self._queue]
        self._queue = deque((fn, b) for fn, b in kept if b)

    def inflight(self) -> int:
        return len(self._queue)

    def capacity(self) -> int:
        return 1

    def close(self) -> None:
        self._queue.clear()
