"""Factories for the storage tests: small sweep specs and hand-built run results."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from service.results import CurvePoint, RunMetrics, RunResult, Spectrum, TailFit
from service.spec import SweepSpec

SpecFactory = Callable[..., SweepSpec]
ResultFactory = Callable[..., RunResult]


def build_spec(**grid: Any) -> SweepSpec:
    """A diagonal-model sweep; grid d=[4], n=[8, 16], weight_decay=[0.01, 0.1], seed=[0, 1]."""
    extra = {k: grid.pop(k) for k in ("name", "recompute") if k in grid}
    full = {"d": [4], "n": [8, 16], "weight_decay": [0.01, 0.1], "seed": [0, 1], **grid}
    return SweepSpec.model_validate({"model": "diagonal", "grid": full, **extra})


def build_result(
    config_hash: str,
    *,
    excess_risk: float = 0.125,
    status: str = "succeeded",
    n_curve: int = 3,
    spectra: bool = True,
) -> RunResult:
    """A RunResult as a worker would send it (built by hand: tests don't import workers)."""
    if status == "failed":
        return RunResult(config_hash=config_hash, status="failed", error="diverged")
    metrics = RunMetrics(
        excess_risk=excess_risk,
        train_loss=0.01,
        objective=0.02,
        grad_norm=1e-9,
        converged=True,
        steps=42,
        stop_reason="gradient",
        wall_time_s=0.5,
        device="cpu",
        duality_gap=1e-10,
        support=3,
        penalty_norm=1.5,
    )
    spec = [
        Spectrum(
            kind="abs_theta",
            values=[3.0, 2.0, 1.0, 0.5],
            tail_fit=TailFit(
                alpha=2.0,
                xmin=0.5,
                n_tail=4,
                ks_distance=0.1,
                sigma=0.5,
                alpha_ci=(1.5, 2.5),
                n_bootstrap=100,
            ),
            rank_fit_error="too few values",
        )
    ]
    curve = [
        CurvePoint(step=10 * i, train_loss=1.0 / (i + 1), excess_risk=2.0 / (i + 1))
        for i in range(n_curve)
    ]
    return RunResult(
        config_hash=config_hash,
        status="succeeded",
        metrics=metrics,
        spectra=spec if spectra else [],
        curve=curve,
    )


@pytest.fixture
def make_spec() -> SpecFactory:
    """Factory of small sweep specs (keyword arguments override grid axes, name, recompute)."""
    return build_spec


@pytest.fixture
def make_result() -> ResultFactory:
    """Factory of RunResults for a config_hash."""
    return build_result
