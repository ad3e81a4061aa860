"""Fitted scaling exponents of a sweep: R ~ C x^-beta per group, seeds pooled.

For each group (the values of the ``by`` axes) every usable run contributes one point
(x, excess risk, seed). :func:`service.fitting.fit_scaling` chooses among a pure power law,
a power law with plateau and a broken power law (crossovers), and gives a 95% interval from
a bootstrap over seeds with a fixed seed, so the same query gives the same numbers. Runs that
failed, did not converge, or have a non-positive / non-finite risk are left out and counted.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from service.errors import FitError, SpecError
from service.fitting import Segment, fit_scaling
from service.records import RunPoint

X_AXES = ("n", "alpha", "d", "weight_decay", "gamma", "noise")
BY_AXES = (*X_AXES, "link_power")
BOOTSTRAP = 200
BOOTSTRAP_SEED = 0


class GroupFit(BaseModel):
    """The fit of one group."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    group: dict[str, float | None]
    form: str | None = None
    """power_law, plateau or broken_power_law: the form the model choice picked."""
    exponent: float | None = None
    """beta of R ~ C x^-beta (broken form: the last segment's, at the largest x)."""
    exponent_ci: tuple[float, float] | None = None
    """95% interval from a bootstrap over seeds."""
    ci_method: str | None = None
    """How the interval was made (bootstrap unit, small-sample widening, fallbacks)."""
    prefactor: float | None = None
    plateau: float | None = None
    """R_inf of R = R_inf + C x^-beta, where that form was chosen."""
    plateau_onset: float | None = None
    """The crossover x* = (C/R_inf)^(1/beta) where the decaying part meets the plateau."""
    breaks: list[float] = []
    """Crossover locations in x, where a broken power law was chosen."""
    segments: list[Segment] = []
    goodness: float | None = None
    """Root-mean-square log error of the chosen form on the points."""
    candidates: dict[str, float] = {}
    """Score of every form tried (lower is better)."""
    n_points: int
    """Distinct x values used."""
    n_runs: int
    """Runs behind those points."""
    n_left_out: int
    """Runs left out: failed, unconverged or with a non-positive risk."""
    n_failed: int
    n_unconverged: int
    n_pending: int
    """Runs still queued or running."""
    error: str | None = None
    """Why there is no fit."""


class ExponentReport(BaseModel):
    """Answer to GET /v1/sweeps/{id}/exponents."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sweep_id: int
    x: str
    by: list[str]
    selection: str
    """How the form of each group was chosen."""
    bootstrap: int
    bootstrap_seed: int
    groups: list[GroupFit]


def axis_value(p: RunPoint, axis: str) -> float | None:
    """The value of a grid axis (or ``link_power``) for one run."""
    match axis:
        case "n":
            return float(p.n)
        case "alpha":
            return p.n / (p.d * p.d if p.model == "quadratic" else p.d)
        case "d":
            return float(p.d)
        case "weight_decay":
            return p.weight_decay
        case "gamma":
            return p.gamma
        case "noise":
            return p.noise
        case "link_power":
            return p.link_power
    raise SpecError(f"unknown axis {axis!r}; use one of {', '.join(BY_AXES)}", field="query.by")


def check_axes(x: str, by: Sequence[str] | None) -> None:
    """SpecError (422) naming the query parameter for an unknown axis."""
    if x not in X_AXES:
        raise SpecError(f"x must be one of {', '.join(X_AXES)}, not {x!r}", field="query.x")
    for axis in by or ():
        if axis not in BY_AXES or axis == x:
            raise SpecError(
                f"by: {axis!r} is not a grouping axis (use {', '.join(BY_AXES)}, not x)",
                field="query.by",
            )
    if by is not None and len(set(by)) != len(by):
        raise SpecError("by lists an axis twice", field="query.by")


def default_by(x: str, points: Sequence[RunPoint]) -> list[str]:
    """Every other axis that varies in the sweep and is not tied to x."""
    linked = any(p.link_power is not None for p in points)
    candidates = ["d", "n", "link_power" if linked else "weight_decay", "gamma", "noise"]
    tied = {"n", "alpha"} if x in ("n", "alpha") else {x}
    if x == "d":
        tied |= {"n"}  # n changes with d when the grid gives alpha
    return [a for a in candidates if a not in tied and len({axis_value(p, a) for p in points}) > 1]


def usable(p: RunPoint) -> bool:
    """A run that contributes to a fit."""
    r = p.excess_risk
    return (
        p.status == "succeeded"
        and bool(p.converged)
        and r is not None
        and math.isfinite(r)
        and r > 0
    )


def group_points(
    points: Sequence[RunPoint], by: Sequence[str]
) -> list[tuple[dict[str, float | None], list[RunPoint]]]:
    """Runs grouped by the values of the ``by`` axes, groups in sorted order."""
    groups: dict[tuple[float | None, ...], list[RunPoint]] = defaultdict(list)
    for p in points:
        groups[tuple(axis_value(p, a) for a in by)].append(p)
    order = sorted(groups, key=lambda k: tuple((v is None, v or 0.0) for v in k))
    return [(dict(zip(by, key, strict=True)), groups[key]) for key in order]


def fit_group(
    x: str, group: dict[str, float | None], members: Sequence[RunPoint], *, bootstrap: int
) -> tuple[GroupFit, str | None]:
    """Fit one group's usable runs and count the others; also returns the selection rule."""
    xs: list[float] = []
    ys: list[float] = []
    seeds: list[int] = []
    counts = {"failed": 0, "unconverged": 0, "pending": 0, "nonpositive": 0}
    for p in members:
        xv = axis_value(p, x)
        if p.status in ("queued", "running"):
            counts["pending"] += 1
        elif usable(p) and xv is not None and xv > 0:
            xs.append(xv)
            ys.append(float(p.excess_risk))  # type: ignore[arg-type]
            seeds.append(p.seed)
        elif p.status == "cancelled":
            continue
        elif p.status == "failed" and p.converged is None:
            counts["failed"] += 1
        elif not p.converged:
            counts["unconverged"] += 1
        else:
            counts["nonpositive"] += 1
    common: dict[str, Any] = {
        "group": group,
        "n_points": len(set(xs)),
        "n_runs": len(xs),
        "n_left_out": counts["failed"] + counts["unconverged"] + counts["nonpositive"],
        "n_failed": counts["failed"],
        "n_unconverged": counts["unconverged"],
        "n_pending": counts["pending"],
    }
    try:
        fit = fit_scaling(
            np.array(xs), np.array(ys), np.array(seeds), bootstrap=bootstrap, seed=BOOTSTRAP_SEED
        )
    except FitError as exc:
        return GroupFit(**common, error=str(exc)), None
    gf = GroupFit(
        **common,
        form=fit.form,
        exponent=fit.exponent,
        exponent_ci=fit.exponent_ci,
        ci_method=fit.ci_method,
        prefactor=fit.prefactor,
        plateau=fit.plateau,
        plateau_onset=(
            (fit.prefactor / fit.plateau) ** (1.0 / fit.exponent)
            if fit.plateau and fit.exponent > 0 and fit.prefactor > 0
            else None
        ),
        breaks=list(fit.breaks),
        segments=list(fit.segments),
        goodness=fit.goodness,
        candidates=dict(fit.candidates),
    )
    return gf, fit.selection


def sweep_exponents(
    sweep_id: int,
    points: Sequence[RunPoint],
    *,
    x: str = "n",
    by: Sequence[str] | None = None,
    bootstrap: int = BOOTSTRAP,
) -> ExponentReport:
    """Fit R against x per group of the ``by`` axes, pooling seeds."""
    check_axes(x, by)
    axes = list(by) if by is not None else default_by(x, points)
    done = [fit_group(x, g, m, bootstrap=bootstrap) for g, m in group_points(points, axes)]
    fits = [f for f, _ in done]
    selection = next((rule for _, rule in done if rule), "no group could be fitted")
    return ExponentReport(
        sweep_id=sweep_id,
        x=x,
        by=axes,
        selection=selection,
        bootstrap=bootstrap,
        bootstrap_seed=BOOTSTRAP_SEED,
        groups=fits,
    )
