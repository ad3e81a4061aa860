"""Quick scaling exponents: a plain log-log least-squares fit per group (numpy only).

For each group (the values of the ``by`` axes), the mean excess risk over seeds at each
value of ``x`` is fitted as R = C x^-beta by least squares on (log x, log mean R).
Runs that failed, did not converge, or have a non-positive / non-finite risk (or x <= 0)
are left out and counted. The bootstrap interval, plateaus and broken power laws of
DESIGN.md extend this report later (service.fitting).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from service.errors import SpecError
from service.records import RunRecord
from service.spec import RunConfig, SweepSpec

X_AXES = ("n", "alpha", "d", "weight_decay", "gamma", "noise")
BY_AXES = (*X_AXES, "link_power")


class GroupFit(BaseModel):
    """The fit of one group: R ~ prefactor * x^-exponent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    group: dict[str, float | None]
    exponent: float | None
    prefactor: float | None
    r2: float | None
    """Coefficient of determination of the fit in log-log space."""
    n_points: int
    """Distinct x values used (each the mean over seeds)."""
    n_runs: int
    """Runs behind those points."""
    n_left_out: int
    """Failed, unconverged, non-positive risk or x <= 0."""
    n_pending: int
    """Runs still queued or running."""
    error: str | None = None
    """Why there is no fit (fewer than two points)."""


class ExponentReport(BaseModel):
    """Answer to GET /v1/sweeps/{id}/exponents."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sweep_id: int
    x: str
    by: list[str]
    method: Literal["loglog_lstsq"] = "loglog_lstsq"
    groups: list[GroupFit]


def axis_value(config: RunConfig, axis: str) -> float | None:
    """The value of a grid axis (or ``link_power``) for one run."""
    match axis:
        case "n":
            return float(config.n)
        case "alpha":
            return config.alpha
        case "d":
            return float(config.d)
        case "weight_decay":
            return config.weight_decay
        case "gamma":
            return config.teacher.gamma
        case "noise":
            return config.teacher.noise
        case "link_power":
            return config.link_power
    raise SpecError(f"unknown axis {axis!r}; use one of {', '.join(BY_AXES)}", field="query.by")


def default_by(spec: SweepSpec, x: str, configs: Sequence[RunConfig]) -> list[str]:
    """Every other axis that varies in the sweep and is not tied to x."""
    linked = any(c.link_power is not None for c in configs)
    sample_axis = "n" if spec.grid.n is not None else "alpha"
    candidates = ["d", sample_axis, "link_power" if linked else "weight_decay", "gamma", "noise"]
    tied = {"n", "alpha"} if x in ("n", "alpha") else {x}
    return [a for a in candidates if a not in tied and len({axis_value(c, a) for c in configs}) > 1]


def fit_loglog(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least squares of log y on log x: (beta, C, r2) of y = C x^-beta."""
    lx, ly = np.log(x), np.log(y)
    design = np.column_stack([lx, np.ones_like(lx)])
    (slope, intercept), *_ = np.linalg.lstsq(design, ly, rcond=None)
    resid = ly - (slope * lx + intercept)
    ss_tot = float(np.sum((ly - ly.mean()) ** 2))
    ss_res = float(np.sum(resid**2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else 0.0)
    return -float(slope), math.exp(float(intercept)), r2


def _usable(run: RunRecord, xv: float | None) -> bool:
    m = run.metrics
    return (
        run.status == "succeeded"
        and m is not None
        and m.converged
        and math.isfinite(m.excess_risk)
        and m.excess_risk > 0
        and xv is not None
        and xv > 0
    )


def sweep_exponents(
    sweep_id: int,
    spec: SweepSpec,
    runs: Sequence[RunRecord],
    *,
    x: str = "n",
    by: Sequence[str] | None = None,
) -> ExponentReport:
    """Fit R ~ C x^-beta per group of the ``by`` axes, pooling seeds (mean R per x)."""
    if x not in X_AXES:
        raise SpecError(f"x must be one of {', '.join(X_AXES)}, not {x!r}", field="query.x")
    configs = [r.config for r in runs]
    if by is None:
        by = default_by(spec, x, configs)
    for axis in by:
        if axis not in BY_AXES or axis == x:
            raise SpecError(
                f"by: {axis!r} is not a grouping axis (use {', '.join(BY_AXES)}, not x)",
                field="query.by",
            )
    groups: dict[tuple[float | None, ...], list[RunRecord]] = defaultdict(list)
    for run in runs:
        groups[tuple(axis_value(run.config, a) for a in by)].append(run)

    fits = []
    for key in sorted(groups, key=lambda k: tuple((v is None, v or 0.0) for v in k)):
        members = groups[key]
        by_x: dict[float, list[float]] = defaultdict(list)
        left_out = pending = 0
        for run in members:
            xv = axis_value(run.config, x)
            if run.status in ("queued", "running"):
                pending += 1
            elif _usable(run, xv):
                assert run.metrics is not None and xv is not None
                by_x[xv].append(run.metrics.excess_risk)
            elif run.status != "cancelled":
                left_out += 1
        xs = np.array(sorted(by_x))
        used = sum(len(v) for v in by_x.values())
        common = {
            "group": dict(zip(by, key, strict=True)),
            "n_points": len(xs),
            "n_runs": used,
            "n_left_out": left_out,
            "n_pending": pending,
        }
        if len(xs) < 2:
            fits.append(
                GroupFit(
                    **common,
                    exponent=None,
                    prefactor=None,
                    r2=None,
                    error=f"need at least 2 distinct {x} values with usable runs, have {len(xs)}",
                )
            )
            continue
        ys = np.array([np.mean(by_x[v]) for v in xs])
        beta, pref, r2 = fit_loglog(xs, ys)
        fits.append(GroupFit(**common, exponent=beta, prefactor=pref, r2=r2))
    return ExponentReport(sweep_id=sweep_id, x=x, by=list(by), groups=fits)
