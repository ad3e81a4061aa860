"""The runner's composition root: settings -> store -> executor -> Runner loop.

``python -m workers`` runs it as its own process (a team deployment, next to a Ray head);
``scalesweep serve`` starts it in a thread with :func:`start_runner_thread` (the embedded
default). SIGTERM or SIGINT stop claiming, write the results that came back, hand back
what is still running, release the runner lease and exit.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType

from service.config import Settings, get_settings
from service.errors import StorageError
from service.logs import configure_logging
from service.orchestration import Executor, InlineExecutor, Runner, RunnerStore

log = logging.getLogger("scalesweep.runner")


def build_executor(
    settings: Settings, *, no_ray: bool = False, num_cpus: int | None = None
) -> Executor:
    """A RayExecutor on ``settings.ray_address`` (local Ray when unset), or the inline one."""
    if no_ray:
        return InlineExecutor()
    from workers.executor import RayExecutor  # ray is imported only when it is used

    return RayExecutor(settings.ray_address, num_cpus=num_cpus)


def build_runner(
    settings: Settings, store: RunnerStore, executor: Executor, *, runner_id: str | None = None
) -> Runner:
    """A Runner with the real task functions (workers.tasks) injected."""
    from workers.tasks import run_batch, run_one

    return Runner(store, executor, run_one, run_batch, settings=settings, runner_id=runner_id)


def start_runner_thread(
    settings: Settings, store: RunnerStore, executor: Executor
) -> tuple[threading.Thread, threading.Event]:
    """Run the loop in a daemon thread; set the event, then join, then ``executor.close()``."""
    runner = build_runner(settings, store, executor)
    stop = threading.Event()
    thread = threading.Thread(
        target=runner.run_forever, args=(stop,), name="scalesweep-runner", daemon=True
    )
    thread.start()
    return thread, stop


def main(argv: list[str] | None = None) -> int:
    """``python -m workers``: the runner process of a team deployment."""
    parser = argparse.ArgumentParser(prog="python -m workers", description=__doc__)
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

    from service.storage import check_schema, make_store

    try:
        check_schema(settings.database_url)
    except StorageError as exc:
        log.error("cannot start: %s", exc)
        return 2
    store = make_store(settings.database_url)
    executor = build_executor(settings, no_ray=args.no_ray, num_cpus=args.num_cpus)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        build_runner(settings, store, executor, runner_id=args.runner_id).run_forever(stop)
    finally:
        executor.close()
    return 0
