"""Stand-in task functions for the Ray tests (a module, so Ray workers can import them)."""

from __future__ import annotations

import os
import time

from factories import result

from service.results import RunResult
from service.spec import RunConfig

LOG_ENV = "SCALESWEEP_TEST_EXEC_LOG"


def sleepy(cfg: RunConfig) -> RunResult:
    """Sleeps ``cfg.training.timeout_s`` seconds (a knob these tests borrow), then succeeds.

    Appends ``seed pid`` to the file named by $SCALESWEEP_TEST_EXEC_LOG (if set) when it starts.
    """
    log = os.environ.get(LOG_ENV)
    if log:
        with open(log, "a") as f:
            f.write(f"{cfg.seed} {os.getpid()}\n")
    end = time.monotonic() + (cfg.training.timeout_s or 0.0)
    while time.monotonic() < end:  # short sleeps: ray.cancel's KeyboardInterrupt gets through
        time.sleep(0.02)
    return result(cfg, 1.0 / (1 + cfg.seed), stop_reason="duality_gap", wall_time_s=0.0)


def boom(cfgs: list[RunConfig]) -> list[RunResult]:
    raise ValueError("bad batch")


def sleepy_batch(cfgs: list[RunConfig]) -> list[RunResult]:
    """:func:`sleepy` for each run of a task."""
    return [sleepy(cfg) for cfg in cfgs]
