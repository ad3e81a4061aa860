"""The one place the runtime is assembled: settings -> store -> executor -> runner -> app.

:func:`build_runtime` is used by ``scalesweep serve`` and ``scalesweep demo`` (API and runner
in one process, the runner in a thread) and by ``python -m workers`` (:func:`runner_main`:
the runner alone in the foreground, next to a Ray head in a team deployment). The API
process needs neither torch nor Ray unless it also runs the runner; the runner is given the
task function (``workers.tasks.run_batch`` with the task budget, :func:`task_function`) and
the Ray executor here, so ``service`` never imports ``workers``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any

from service.config import Settings, get_settings
from service.errors import StorageError
from service.logs import configure_logging
from service.orchestration.executor import BatchFn, Executor, InlineExecutor
from service.orchestration.runner import Runner
from service.storage import Store, check_schema, make_store, upgrade_head

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("scalesweep.runner")


def freeze_startup_heap() -> None:
    """Collect once, then move everything alive (modules, the app, the store) out of the
    cyclic collector's sight (``gc.freeze``): a server's full collections then scan only what
    its requests allocate. Measured (bench/bench_queries.py, the uncached exponents query over
    10,000 runs): a full collection of the started server's heap took 80-210 ms and landed in
    every fifth request (p95 308-344 ms); frozen, they take a few milliseconds."""
    gc.collect()
    gc.freeze()


SERVER_START_S = 60.0
"""How long :func:`serving` waits for uvicorn to listen."""
RUNNER_JOIN_S = 60.0
"""How long closing the runtime waits for the runner thread to write back and hand back."""


@dataclass
class Runtime:
    """What :func:`build_runtime` assembled; :meth:`close` takes it down in order."""

    settings: Settings
    store: Store
    executor: Executor | None = None
    runner: Runner | None = None
    app: FastAPI | None = None
    ray_status: Callable[[], dict[str, Any]] | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def start_runner_thread(self) -> None:
        """Run the runner loop in a daemon thread (stopped by :meth:`close`)."""
        if self.runner is None:
            return
        self._thread = threading.Thread(
            target=self.runner.run_forever,
            args=(self._stop,),
            name="scalesweep-runner",
            daemon=True,
        )
        self._thread.start()

    def run_runner(self) -> None:
        """Run the runner loop here until :meth:`stop` (a signal handler) is called."""
        assert self.runner is not None
        self.runner.run_forever(self._stop)

    def stop(self) -> None:
        """Ask the runner loop to stop (it writes back what came in and hands back the rest)."""
        self._stop.set()

    def close(self) -> None:
        """Stop the runner, then the executor, then the store."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=RUNNER_JOIN_S)
        if self.executor is not None:
            self.executor.close()
        self.store.close()


def build_executor(
    settings: Settings, *, no_ray: bool = False, num_cpus: int | None = None
) -> tuple[Executor, Callable[[], dict[str, Any]] | None]:
    """The Ray executor on ``settings.ray_address`` (a local Ray when unset) and its status
    for ``/healthz``; or the inline executor (no status)."""
    if no_ray:
        return InlineExecutor(), None
    from workers.executor import RayExecutor  # ray is imported only when it is used

    executor = RayExecutor(
        settings.ray_address,
        num_cpus=num_cpus,
        gpus_per_task=settings.gpus_per_task,
        gpu_memory_mb=settings.gpu_memory_mb,
    )
    return executor, executor.status


def task_function(settings: Settings) -> BatchFn:
    """The real task function with this deployment's budget per task (batching, memory,
    GPU share, the per-run time limit), picklable for Ray."""
    from workers.tasks import run_batch
    from workers.training import TaskBudget

    budget = TaskBudget(
        batched=settings.batching == "on",
        memory_mb=settings.task_memory_mb,
        gpu_share=settings.gpus_per_task,
        run_time_limit_s=settings.run_time_limit_s,
        width_restarts=settings.width_restarts,
    )
    return functools.partial(run_batch, budget=budget)


def build_runtime(
    settings: Settings,
    *,
    runner: bool = True,
    app: bool = True,
    no_ray: bool = False,
    migrate: bool = True,
    num_cpus: int | None = None,
    runner_id: str | None = None,
) -> Runtime:
    """Assemble the runtime.

    ``migrate``: upgrade an empty or older database to head (``serve``); else refuse to
    start unless it is at head (``python -m workers``; StorageError). ``runner``: a runner
    with the real task function and an executor (Ray unless ``no_ray``). ``app``: the
    FastAPI app on the same store, reporting Ray's readiness in ``/healthz``; with
    SCALESWEEP_AUTH=on it verifies bearer tokens against the database's ``api_tokens``.
    """
    if migrate:
        upgrade_head(settings.database_url)
    else:
        check_schema(settings.database_url)
    rt = Runtime(settings=settings, store=make_store(settings.database_url))
    if runner:
        rt.executor, rt.ray_status = build_executor(settings, no_ray=no_ray, num_cpus=num_cpus)
        rt.runner = Runner(
            rt.store, rt.executor, task_function(settings), settings=settings, runner_id=runner_id
        )
    if app:
        rt.app = _app(settings, rt)
    return rt


def _app(settings: Settings, rt: Runtime) -> FastAPI:
    from api.main import create_app
    from service.auth import TokenService
    from service.storage.tokens import TokenStore

    verify_token = None
    if settings.auth == "on":
        tokens = TokenService(TokenStore.of(rt.store))
        verify_token = tokens.verify
        if not any(t.revoked_at is None for t in tokens.list()):
            print(
                "scalesweep: SCALESWEEP_AUTH=on and no active token: every /v1 request will be "
                "refused until one is made with `scalesweep token create --name N --scope S`",
                file=sys.stderr,
            )
    return create_app(settings, rt.store, ray_status=rt.ray_status, verify_token=verify_token)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serving(app: Any, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """``app`` under uvicorn in a daemon thread (port 0: a free one); yields its base URL and
    stops it on exit. RuntimeError if it does not listen within :data:`SERVER_START_S`."""
    import uvicorn

    port = port or free_port(host)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="scalesweep-api", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + SERVER_START_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the API server did not start on {host}:{port}")
            time.sleep(0.02)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def embedded_server(settings: Settings, *, no_ray: bool = False, port: int = 0) -> Iterator[str]:
    """A whole server on loopback for its own client (``demo``, ``reproduce``): the runtime
    with its runner thread (local Ray, or in-process with ``no_ray``) under uvicorn; yields
    the base URL and takes everything down in order on exit."""
    rt = build_runtime(settings, no_ray=no_ray)
    assert rt.app is not None
    rt.start_runner_thread()
    try:
        with serving(rt.app, port=port) as url:
            yield url
    finally:
        rt.close()


def runner_main(argv: list[str] | None = None) -> int:
    """``python -m workers``: the runner process of a team deployment.

    SIGTERM or SIGINT stop claiming, write the results that came back, hand back what is
    still running, release the runner lease and exit.
    """
    parser = argparse.ArgumentParser(prog="python -m workers", description=runner_main.__doc__)
    parser.add_argument("--database-url", help="default: SCALESWEEP_DATABASE_URL")
    parser.add_argument("--ray-address", help="default: RAY_ADDRESS (unset: a local Ray)")
    parser.add_argument("--num-cpus", type=int, help="CPUs of a local Ray")
    parser.add_argument("--no-ray", action="store_true", help="run tasks in this process")
    parser.add_argument("--runner-id", help="default: host:pid:random")
    parser.add_argument("--log-level", help="default: SCALESWEEP_LOG_LEVEL, else INFO")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)  # JSON lines on stderr (service.logs)

    update: dict[str, object] = {}
    if args.database_url:
        update["database_url"] = args.database_url
    if args.ray_address:
        update["ray_address"] = args.ray_address
    settings = get_settings().model_copy(update=update)
    try:
        rt = build_runtime(
            settings,
            app=False,
            migrate=False,
            no_ray=args.no_ray,
            num_cpus=args.num_cpus,
            runner_id=args.runner_id,
        )
    except StorageError as exc:
        log.error("cannot start: %s", exc)
        return 2

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        rt.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        rt.run_runner()
    finally:
        rt.close()
    return 0
