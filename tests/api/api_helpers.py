"""Spec bodies, hand-built results and the TestClient import for the API tests."""

from __future__ import annotations

import copy
import warnings
from typing import Any

from starlette.exceptions import StarletteDeprecationWarning

from service.results import RunMetrics, RunResult, Spectrum

with warnings.catch_warnings():
    # starlette 1.x asks for httpx2 under its TestClient; the venv has httpx (same API)
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

__all__ = ["MAX_RUNS", "N_RUNS", "SPEC", "TestClient", "result", "spec"]

MAX_RUNS = 50
"""settings.max_runs_per_sweep in these tests."""

SPEC: dict[str, Any] = {
    "name": "api-test",
    "model": "diagonal",
    "teacher": {"gamma": 1.0, "noise": 0.01},
    "grid": {"d": [8], "n": [16, 32, 64], "weight_decay": [0.01, 0.1], "seed": [0, 1]},
    "training": {"optimizer": "convex", "max_steps": 500},
}
N_RUNS = 12


def spec(**changes: Any) -> dict[str, Any]:
    """A copy of SPEC; ``grid__seed=[...]`` style keys change one grid axis."""
    body = copy.deepcopy(SPEC)
    for key, value in changes.items():
        if key.startswith("grid__"):
            body["grid"][key[6:]] = value
        else:
            body[key] = value
    return body


def result(
    config_hash: str,
    excess_risk: float = 0.1,
    *,
    status: str = "succeeded",
    converged: bool = True,
    spectrum: bool = False,
) -> RunResult:
    """A RunResult as a worker would send it."""
    if status == "failed":
        return RunResult(config_hash=config_hash, status="failed", error="diverged")
    metrics = RunMetrics(
        excess_risk=excess_risk,
        train_loss=0.01,
        objective=0.02,
        grad_norm=1e-9,
        converged=converged,
        steps=10,
        stop_reason="gradient" if converged else "max_steps",
        wall_time_s=0.01,
        device="cpu",
        duality_gap=1e-10,
        support=3,
        penalty_norm=1.0,
    )
    spectra = [Spectrum(kind="abs_theta", values=[1.0, 0.5, 0.25])] if spectrum else []
    return RunResult(config_hash=config_hash, status="succeeded", metrics=metrics, spectra=spectra)
