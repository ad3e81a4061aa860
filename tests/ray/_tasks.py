"""Stand-in task functions for the Ray tests (a module, so Ray workers can import them)."""

from __future__ import annotations

import os
import time

from service.results import RunMetrics, RunResult
from service.spec import RunConfig

LOG_ENV = "SCALESWEEP_TEST_EXEC_LOG"


def metrics(cfg: RunConfig) -> RunMetrics:
    return RunMetrics(
        excess_risk=1.0 / (1 + cfg.seed),
        train_loss=0.1,
        objective=0.2,
        grad_norm=1e-9,
        converged=True,
        steps=1,
        stop_reason="duality_gap",
        wall_time_s=0.0,
        device="cpu",
        duality_gap=1e-9,
        support=1,
        penalty_norm=1.0,
    )


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
    return RunResult(config_hash=cfg.config_hash(), status="succeeded", metrics=metrics(cfg))


def boom(cfgs: list[RunConfig]) -> list[RunResult]:
    raise ValueError("bad batch")


def sleepy_batch(cfgs: list[RunConfig]) -> list[RunResult]:
    """:func:`sleepy` for each run of a task."""
    return [sleepy(cfg) for cfg in cfgs]
