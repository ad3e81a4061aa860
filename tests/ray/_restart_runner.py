"""A runner process for test_restart: ``python _restart_runner.py URL SWEEP_ID RUNNER_ID``.

Runs the stand-in task (sleeps ``timeout_s``) in-process with short leases until the sweep
is finished, then stops cleanly. The test SIGKILLs the first one mid-sweep.
"""

from __future__ import annotations

import logging
import sys
import threading

from _tasks import sleepy
from factories import BatchOf

from service.config import Settings
from service.orchestration.executor import InlineExecutor
from service.orchestration.runner import Runner
from service.storage import make_store

RUNNER_LEASE_S = 4.0
LEASE_S = 1.0


def main() -> int:
    url, sweep_id, runner_id = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    store = make_store(url)
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=url,
        lease_s=LEASE_S,
        runner_poll_s=0.05,
        max_inflight_runs=2,
        pack_below_s=1e-6,
    )
    runner = Runner(
        store,
        InlineExecutor(),
        BatchOf(sleepy),
        settings=settings,
        runner_id=runner_id,
        runner_lease_s=RUNNER_LEASE_S,
        flush_every_s=0.0,
    )
    stop = threading.Event()
    thread = threading.Thread(target=runner.run_forever, args=(stop,))
    thread.start()
    while store.get_sweep(sweep_id).status != "succeeded":
        stop.wait(0.1)
    stop.set()
    thread.join()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
