"""Runs as points of a scaling study: the value of an axis for a run, which runs count, and
the groups of runs that share every ``by`` axis (the unit every analysis fits)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from service.errors import SpecError
from service.records import RunPoint
from service.spec import samples_per_unit, unique_minimizer

X_AXES = ("n", "alpha", "d", "weight_decay", "gamma", "noise", "width")
BY_AXES = (*X_AXES, "link_power")


def mean_se(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and standard error of the mean (None where there are too few values)."""
    if not values:
        return None, None
    mean = float(np.mean(values))
    se = float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else None
    return mean, se


def axis_value(p: RunPoint, axis: str) -> float | None:
    """The value of a grid axis (or ``link_power``) for one run."""
    match axis:
        case "n":
            return float(p.n)
        case "alpha":
            return p.n / samples_per_unit(p.model, p.d)
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
        case "width":
            return float(p.width)
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


def widths_by_d(points: Sequence[RunPoint]) -> dict[int, frozenset[int]]:
    """The widths of the runs at each d."""
    out: dict[int, set[int]] = defaultdict(set)
    for p in points:
        out[p.d].add(p.width)
    return {d: frozenset(ws) for d, ws in out.items()}


def width_varies(points: Sequence[RunPoint]) -> bool:
    """Whether the width is an axis of the sweep: it takes several values at some d (a width
    that follows d, as the default m = d does, is told apart by d)."""
    return any(len(ws) > 1 for ws in widths_by_d(points).values())


def default_by(x: str, points: Sequence[RunPoint]) -> list[str]:
    """Every other axis that varies in the sweep and is not tied to x.

    The width is an axis of its own only where it varies at a fixed d (``grid.width``,
    ``grid.width_ratio``); a width that follows d (the default m = d, one width ratio) is
    told apart by d already. Against x = d it is tied to d unless every d has the same
    widths (``grid.width``; a ratio's widths change with d, as alpha's n do)."""
    linked = any(p.link_power is not None for p in points)
    candidates = ["d", "n", "width", "link_power" if linked else "weight_decay", "gamma", "noise"]
    tied = {"n", "alpha"} if x in ("n", "alpha") else {x}
    if x == "d":
        tied |= {"n"}  # n changes with d when the grid gives alpha
    by_d = widths_by_d(points)
    if not width_varies(points):
        tied.add("width")  # a function of d (or one width)
    elif x == "d" and len(set(by_d.values())) > 1:
        tied.add("width")  # the widths change with d (a width ratio)
    return [a for a in candidates if a not in tied and len({axis_value(p, a) for p in points}) > 1]


def usable(p: RunPoint, include_non_unique: bool = False) -> bool:
    """A run that contributes to a fit: certified, with a finite positive risk, and a unique
    minimiser unless asked (:func:`service.spec.unique_minimizer`: with weight_decay = 0 and
    fewer samples than parameters the risk is the optimiser's, not the objective's)."""
    r = p.excess_risk
    return (
        p.status == "succeeded"
        and bool(p.converged)
        and r is not None
        and math.isfinite(r)
        and r > 0
        and (include_non_unique or unique_minimizer(p.model, p.d, p.n, p.weight_decay))  # type: ignore[arg-type]
    )


def group_order(values: Iterable[float | None]) -> tuple[tuple[bool, float], ...]:
    """The sort key of a group's axis values: numeric order, a missing value last."""
    return tuple((v is None, v or 0.0) for v in values)


def group_points(
    points: Sequence[RunPoint], by: Sequence[str]
) -> list[tuple[dict[str, float | None], list[RunPoint]]]:
    """Runs grouped by the values of the ``by`` axes, groups in sorted order."""
    groups: dict[tuple[float | None, ...], list[RunPoint]] = defaultdict(list)
    for p in points:
        groups[tuple(axis_value(p, a) for a in by)].append(p)
    order = sorted(groups, key=group_order)
    return [(dict(zip(by, key, strict=True)), groups[key]) for key in order]
