"""RayExecutor: the orchestration loop's :class:`~service.orchestration.executor.Executor` on Ray.

The only module that imports ray (like Hamilton's ``plugins/h_ray.py``). One plain function,
:func:`execute`, is made remote at submit time with per-task options: a GPU share when the
run asks for ``cuda`` (or ``auto`` on a cluster that has GPUs) -- ``gpus_per_task`` of one
while the task's batch fits in that share of ``gpu_memory_mb``, so that small batched tasks
share a GPU, the whole GPU above it (:func:`service.resources.gpu_share`; the task is told
its share and sizes its slots to it) -- one CPU otherwise, and
``max_retries`` (0 by default: a task lost with its worker or node comes back as
:class:`~service.errors.WorkerLost` and the runner retries it under a new lease, so
every attempt is counted in the database). Completed tasks are collected with ``ray.wait``
(never a blocking ``ray.get`` loop); Ray errors become per-run exceptions. A ``cuda`` run on
a cluster without GPUs fails at once (rather than waiting forever as an infeasible task).

A local Ray (no address) starts quietly and writes nothing outside its own folder
(:func:`start_local_ray`): its sessions and logs in a fresh temporary folder removed when the
executor closes, and Ray's default token authentication with a token made for this process
and passed to Ray's processes in their environment (``RAY_AUTH_TOKEN``), never written to
``~/.ray/auth_token``. An explicit ``RAY_AUTH_MODE``, ``RAY_AUTH_TOKEN`` or
``RAY_AUTH_TOKEN_PATH`` is left to Ray as given.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Collection, Iterator, Sequence
from typing import Any

import ray
from ray.exceptions import RayError, RayTaskError, TaskCancelledError

from service.errors import ExecutionError, TaskCancelled, TaskRaised, WorkerLost
from service.orchestration.executor import BatchFn, Outcome
from service.resources import gpu_share
from service.results import RunResult
from service.spec import RunConfig

log = logging.getLogger("scalesweep.executor")

GPU_CHECK_EVERY_S = 30.0
"""How long the answer to "does the cluster have GPUs?" is reused (nodes come and go)."""
RECANCEL_EVERY_S = 1.0
"""A cancelled task still in flight is cancelled again this often: a ``ray.cancel`` that
arrives while the task is being handed to a worker can be lost."""


RAY_AUTH_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
"""Ray's token-authentication settings (https://docs.ray.io/en/latest/ray-security/token-auth.html)."""
RAY_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
"""The logger of Ray's notice that a new local cluster turned token authentication on."""


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    """``name``'s warnings dropped inside the block (its level restored after)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def start_local_ray(num_cpus: int | None = None) -> str:
    """Start a new local Ray, quietly, with every file of it in a fresh temporary folder (its
    path returned; the caller removes it after ``ray.shutdown``).

    Token authentication (Ray's default for local clusters) keeps its token in this process's
    environment, which Ray's processes inherit, instead of generating ``~/.ray/auth_token``;
    Ray's notice that it turned token authentication on, and its INFO lines, are not
    printed. Warnings and errors still are.
    """
    if not any(os.environ.get(k) for k in RAY_AUTH_ENV):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    elif os.environ.get("RAY_AUTH_MODE", "").lower() == "token" and not (
        os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
    ):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)  # rather than a file in ~/.ray
    # short (Ray's socket paths must fit in 107 bytes), under RAY_TMPDIR when it is set
    temp_dir = tempfile.mkdtemp(prefix="scalesweep-ray-", dir=os.environ.get("RAY_TMPDIR"))
    kwargs: dict[str, Any] = {
        "address": "local",
        "include_dashboard": False,
        "logging_level": logging.WARNING,
        "_temp_dir": temp_dir,
    }
    if num_cpus is not None:
        kwargs["num_cpus"] = num_cpus
    try:
        with _quiet_logger(RAY_AUTH_LOGGER):
            ray.init(**kwargs)
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    return temp_dir


def execute(fn: BatchFn, cfgs: list[RunConfig], gpu_share: float = 0.0) -> list[RunResult]:
    """The task body: ``fn`` is the injected batch function, shipped by value; a GPU task
    tells it the share of the GPU it holds (``fn(cfgs, gpu_share=...)``)."""
    if gpu_share > 0.0:
        return fn(cfgs, gpu_share=gpu_share)  # type: ignore[call-arg]
    return fn(cfgs)


class RayExecutor:
    """Runs tasks on a Ray cluster; ``ray.init`` only when Ray is not initialized already.

    ``ray_address`` None starts a new local Ray (with ``num_cpus`` if given), even when a
    ``ray start`` cluster runs on this machine; ``skip_init`` leaves initialization to the
    caller (tests, a driver that owns Ray).
    """

    def __init__(
        self,
        ray_address: str | None,
        num_cpus: int | None = None,
        skip_init: bool = False,
        *,
        max_retries: int = 0,
        gpus_per_task: float = 1.0,
        gpu_memory_mb: int = 40960,
    ) -> None:
        if not 0.0 < gpus_per_task <= 1.0:
            raise ValueError(f"gpus_per_task must be in (0, 1], got {gpus_per_task}")
        self._owns_ray = False
        self._temp_dir: str | None = None
        self._gpus_per_task = gpus_per_task
        self._gpu_memory_bytes = gpu_memory_mb * 2**20
        if not skip_init and not ray.is_initialized():
            if ray_address is None:
                # a new local Ray, never a cluster some `ray start` left on this machine
                self._temp_dir = start_local_ray(num_cpus)
            else:
                ray.init(address=ray_address)
            self._owns_ray = True
        self._max_retries = max_retries
        self._remote: Any = None
        self._tasks: dict[Any, list[int]] = {}  # ObjectRef -> run ids, in task order
        self._refused: list[list[Outcome]] = []  # tasks answered without running them
        self._cancelled: set[int] = set()
        self._recancel_at = float("inf")
        self._gpus = 0.0
        self._cpus = 0.0
        self._gpus_checked = float("-inf")

    # -- Executor ------------------------------------------------------------------------

    def submit(self, fn: BatchFn, batch: Sequence[tuple[int, RunConfig]]) -> None:
        """Start one Ray task for the batch (its first run's device decides the resources)."""
        ids = [run_id for run_id, _ in batch]
        cfgs = [cfg for _, cfg in batch]
        if cfgs[0].training.device == "cuda" and not self._cluster_has_gpu():
            error = "device 'cuda' was asked for but the Ray cluster has no GPU"
            self._refused.append(
                [
                    (i, RunResult(config_hash=c.config_hash(), status="failed", error=error))
                    for i, c in batch
                ]
            )
            return
        if self._remote is None:
            self._remote = ray.remote(execute)
        options = self._resources(cfgs)
        share = float(options["num_gpus"])
        ref = self._remote.options(max_retries=self._max_retries, **options).remote(fn, cfgs, share)
        self._tasks[ref] = ids

    def completed(self, timeout_s: float) -> list[Outcome]:
        """Outcomes of every task finished within ``timeout_s`` (at least one, if any)."""
        if self._refused:
            return self._refused.pop()
        if not self._tasks:
            return []
        if time.monotonic() >= self._recancel_at:
            self._cancel_tasks()
        refs = list(self._tasks)
        first, _ = ray.wait(refs, num_returns=1, timeout=timeout_s)
        if not first:
            return []
        more, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        out: list[Outcome] = []
        for ref in dict.fromkeys([*first, *more]):
            ids = self._tasks.pop(ref)
            outcomes = self._outcomes(ref, ids)
            if ids and all(i in self._cancelled for i in ids):
                outcomes = [(i, as_cancelled(o)) for i, o in outcomes]
            out.extend(outcomes)
            self._cancelled.difference_update(ids)
        return out

    def cancel(self, run_ids: Collection[int]) -> None:
        """``ray.cancel`` every task all of whose runs are cancelled (best effort; repeated
        every :data:`RECANCEL_EVERY_S` while such a task is still in flight)."""
        self._cancelled.update(run_ids)
        self._cancel_tasks()

    def _cancel_tasks(self) -> None:
        pending = False
        for ref, ids in self._tasks.items():
            if all(i in self._cancelled for i in ids):
                pending = True
                try:
                    ray.cancel(ref, force=False)
                except RayError as exc:  # already finished, or its worker is gone
                    log.debug("ray.cancel failed: %s", exc)
        self._recancel_at = time.monotonic() + RECANCEL_EVERY_S if pending else float("inf")

    def inflight(self) -> int:
        """Tasks submitted and not delivered."""
        return len(self._tasks) + len(self._refused)

    def capacity(self) -> int:
        """Tasks the cluster runs at once: its CPUs (one per task), at least 1."""
        self._cluster_has_gpu()  # refreshes the cached resources
        return max(1, int(self._cpus))

    def close(self) -> None:
        """Cancel what is left; shut Ray down if this executor started it."""
        self.cancel([i for ids in self._tasks.values() for i in ids])
        self._tasks.clear()
        self._refused.clear()
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def status(self) -> dict[str, Any]:
        """Ray's readiness for ``/healthz``: alive nodes, their CPUs and GPUs, tasks in flight
        (raises when Ray is not reachable)."""
        if not ray.is_initialized():
            raise RuntimeError("Ray is not initialized")
        alive = [n for n in ray.nodes() if n.get("Alive")]  # type: ignore[no-untyped-call]
        resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
        return {
            "nodes": len(alive),
            "cpus": float(resources.get("CPU", 0.0)),
            "gpus": float(resources.get("GPU", 0.0)),
            "tasks_in_flight": self.inflight(),
        }

    # -- helpers -------------------------------------------------------------------------

    def _cluster_has_gpu(self) -> bool:
        now = time.monotonic()
        if now - self._gpus_checked > GPU_CHECK_EVERY_S:
            resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
            self._gpus = float(resources.get("GPU", 0))
            self._cpus = float(resources.get("CPU", 0))
            self._gpus_checked = now
        return self._gpus > 0

    def _resources(self, cfgs: Sequence[RunConfig]) -> dict[str, float]:
        device = cfgs[0].training.device
        if device == "cuda" or (device == "auto" and self._cluster_has_gpu()):
            share = gpu_share(cfgs, self._gpus_per_task, self._gpu_memory_bytes)
            return {"num_cpus": 1, "num_gpus": share}
        return {"num_cpus": 1, "num_gpus": 0}

    @staticmethod
    def _outcomes(ref: Any, ids: list[int]) -> list[Outcome]:
        try:
            results = ray.get(ref)
        except Exception as exc:
            err = translate(exc)
            return [(run_id, err) for run_id in ids]
        if not isinstance(results, list) or len(results) != len(ids):
            bad = TaskRaised(f"task returned {type(results).__name__} for {len(ids)} runs")
            return [(run_id, bad) for run_id in ids]
        return list(zip(ids, results, strict=True))


def translate(exc: BaseException) -> ExecutionError:
    """A Ray error (or anything ``ray.get`` raised) as the runner's per-run exception."""
    err: ExecutionError
    if isinstance(exc, TaskCancelledError):
        err = TaskCancelled(f"task cancelled: {exc}")
    elif isinstance(exc, RayTaskError):
        cause = getattr(exc, "cause", None) or exc
        err = TaskRaised(f"task raised {type(cause).__name__}: {_first_line(cause)}")
    elif isinstance(exc, RayError):  # WorkerCrashedError, NodeDiedError, OutOfMemoryError, ...
        err = WorkerLost(f"{type(exc).__name__}: {_first_line(exc)}")
    else:
        err = WorkerLost(f"{type(exc).__name__}: {_first_line(exc)}")
    err.__cause__ = exc
    return err


def as_cancelled(outcome: RunResult | Exception) -> RunResult | Exception:
    """The outcome of a task whose runs were all cancelled: an exception it raised is the
    cancellation's (Ray interrupts the task with SIGINT, which surfaces as whatever the task
    was doing when it arrived, e.g. ``TypeError: 'Handlers' object is not callable`` when it
    lands while the worker is still setting its handlers up), so it counts as cancelled, not
    as a failure; results and lost workers stay as they are."""
    if isinstance(outcome, TaskRaised):
        err = TaskCancelled(f"task cancelled (the interrupt surfaced as: {outcome})")
        err.__cause__ = outcome
        return err
    return outcome


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else ""
