"""Factories of what the tests build by hand: run results as a worker sends them, spectra,
learning curves, small sweep specs, and every run of a sweep read back from a store.

A plain module at the top of ``tests/`` (importable as ``factories`` from every test module,
and from Ray workers whose PYTHONPATH names ``tests/``): the tests of ``service`` and ``api``
never import ``workers``, so results are made here, not by training.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from service.records import RunRecord
from service.results import CurvePoint, RankFit, RunMetrics, RunResult, Spectrum, TailFit
from service.spec import RunConfig, SweepSpec
from service.storage.base import SweepStore, iter_runs


def metrics(excess_risk: float = 0.125, *, converged: bool = True, **overrides: Any) -> RunMetrics:
    """Metrics of a finished run (``overrides`` replace any field)."""
    fields: dict[str, Any] = {
        "excess_risk": excess_risk,
        "train_loss": 0.01,
        "objective": 0.02,
        "grad_norm": 1e-9,
        "converged": converged,
        "steps": 10,
        "stop_reason": "gradient" if converged else "max_steps",
        "wall_time_s": 0.01,
        "device": "cpu",
        "duality_gap": 1e-10,
        "support": 3,
        "penalty_norm": 1.0,
    }
    fields.update(overrides)
    return RunMetrics(**fields)


def tail_fit(alpha: float = 2.0, **overrides: Any) -> TailFit:
    """A tail fit with a bootstrap interval around ``alpha``."""
    fields: dict[str, Any] = {
        "alpha": alpha,
        "xmin": 0.5,
        "n_tail": 4,
        "ks_distance": 0.1,
        "sigma": 0.5,
        "alpha_ci": (alpha - 0.5, alpha + 0.5),
        "n_bootstrap": 100,
    }
    fields.update(overrides)
    return TailFit(**fields)


def spectrum(
    values: Sequence[float] = (3.0, 2.0, 1.0, 0.5),
    *,
    kind: str = "abs_theta",
    tail: TailFit | None = None,
    rank_exponent: float | None = None,
) -> Spectrum:
    """A stored spectrum (sorted decreasing) with the fits given (or their errors)."""
    rank = (
        RankFit(exponent=rank_exponent, prefactor=1.0, n_points=min(6, len(values)), r2=0.99)
        if rank_exponent is not None
        else None
    )
    return Spectrum.model_validate(
        {
            "kind": kind,
            "values": sorted((float(v) for v in values), reverse=True),
            "tail_fit": tail,
            "tail_fit_error": None if tail is not None else "too few values",
            "rank_fit": rank,
            "rank_fit_error": None if rank is not None else "too few values",
        }
    )


def curve(points: int = 3) -> list[CurvePoint]:
    """A decreasing learning curve of ``points`` points, every 10 steps."""
    return [
        CurvePoint(step=10 * i, train_loss=1.0 / (i + 1), excess_risk=2.0 / (i + 1))
        for i in range(points)
    ]


def result(
    config: str | RunConfig,
    excess_risk: float = 0.125,
    *,
    status: str = "succeeded",
    converged: bool = True,
    error: str = "diverged",
    spectra: Sequence[Spectrum] = (),
    learning_curve: Sequence[CurvePoint] = (),
    **metric_overrides: Any,
) -> RunResult:
    """A RunResult for a config hash (or a config) as a worker would send it.

    ``status="failed"``: a failure without metrics (``error``); ``converged=False``: a
    ``failed`` result that keeps its metrics, as an unconverged run does.
    """
    chash = config if isinstance(config, str) else config.config_hash()
    if status == "failed":
        return RunResult(config_hash=chash, status="failed", error=error)
    m = metrics(excess_risk, converged=converged, **metric_overrides)
    return RunResult(
        config_hash=chash,
        status="succeeded" if converged else "failed",
        error=None if converged else "did not converge",
        metrics=m,
        spectra=list(spectra),
        curve=list(learning_curve),
    )


SMALL_SPEC: dict[str, Any] = {
    "name": "small",
    "model": "diagonal",
    "grid": {"d": [8], "n": [16, 32, 64, 128], "weight_decay": [0.01, 0.1], "seed": [0, 1]},
}
"""A sweep body of :data:`SMALL_SPEC_RUNS` runs, as a client submits it."""
SMALL_SPEC_RUNS = 16


def diagonal_spec(**grid: Any) -> SweepSpec:
    """A small diagonal sweep (keyword arguments override grid axes; name/recompute/... too)."""
    extra = {k: grid.pop(k) for k in ("name", "recompute", "training", "teacher") if k in grid}
    full = {"d": [4], "n": [8, 16], "weight_decay": [0.01, 0.1], "seed": [0, 1], **grid}
    return SweepSpec.model_validate({"model": "diagonal", "grid": full, **extra})


def all_runs(store: SweepStore, sweep_id: int) -> list[RunRecord]:
    """Every run of a sweep, in expansion order (every page)."""
    return list(iter_runs(store, sweep_id))


@dataclass(frozen=True)
class BatchOf:
    """A task function (a batch of runs, as the runner calls it) made of a one-run stand-in;
    picklable when ``run`` is, so Ray workers can run it."""

    run: Callable[[RunConfig], RunResult]

    def __call__(self, cfgs: list[RunConfig]) -> list[RunResult]:
        return [self.run(cfg) for cfg in cfgs]


def finish(store: Any, sweep_id: int, delay: float = 0.0) -> None:
    """Record R = 1/n for every run of a sweep (optionally one at a time, ``delay`` apart)."""
    import time

    for run in all_runs(store, sweep_id):
        time.sleep(delay)
        store.record_results([(run.id, result(run.config_hash, 1.0 / run.config.n))])
