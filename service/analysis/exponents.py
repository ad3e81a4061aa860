"""Fitted scaling exponents of a sweep: R ~ C x^-beta per group, seeds pooled.

For each group (the values of the ``by`` axes) every usable run contributes one point
(x, excess risk, seed). :func:`service.fitting.fit_scaling` chooses among a pure power law,
a power law with plateau and a broken power law (crossovers), and gives a 95% interval from
a bootstrap over seeds with a fixed seed, so the same query gives the same numbers. Runs that
failed, did not converge, or have a non-positive / non-finite risk are left out and counted.
Against x = width every group also says that R need not be a power law of the width, and
where its seed means rise and fall (:func:`width_notes`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from service.analysis.curves import fitted_curve
from service.analysis.grouping import axis_value, check_axes, default_by, group_points, usable
from service.analysis.reports import ExponentReport, GroupFit
from service.errors import FitError
from service.fitting import fit_broken, fit_plateau, fit_power_law, fit_scaling
from service.records import RunPoint

BOOTSTRAP = 200
BOOTSTRAP_SEED = 0
ESTIMATOR = (
    "one estimator everywhere (exponents, theory, phase diagram, verdicts, dashboard, "
    "figures): the form chosen by service.fitting.fit_scaling, fitted to log R of every "
    "usable run with the seeds pooled (Huber loss), i.e. the exponent of the geometric mean "
    "of R over seeds; 95% interval from a bootstrap over seeds. The state-evolution exponent "
    "is the same form fitted to the state-evolution curve at the same x"
)
"""Why the mean of log R and not the log of the mean R: the seed scatter of R is
multiplicative (8-30 % per seed, THEORY.md 8.8) and shrinks with n, so each seed is one
observation of log R with roughly constant variance; a bootstrap over seeds resamples
exactly those observations; one outlying seed moves the Huber fit little; and the state
evolution predicts the concentrated value of R, of which the geometric and the arithmetic
mean differ by a constant factor (1 + O(CV^2)) that does not change an exponent."""


def fit_group(
    x: str,
    group: dict[str, float | None],
    members: Sequence[RunPoint],
    *,
    bootstrap: int,
    include_non_unique: bool = False,
) -> tuple[GroupFit, str | None]:
    """Fit one group's usable runs and count the others; also returns the selection rule.
    Runs whose minimiser is not unique are left out (and counted) unless
    ``include_non_unique``."""
    xs: list[float] = []
    ys: list[float] = []
    seeds: list[int] = []
    counts = {"failed": 0, "unconverged": 0, "pending": 0, "nonpositive": 0, "non_unique": 0}
    for p in members:
        xv = axis_value(p, x)
        if p.status in ("queued", "running"):
            counts["pending"] += 1
        elif usable(p, include_non_unique) and xv is not None and xv > 0:
            xs.append(xv)
            ys.append(float(p.excess_risk))  # type: ignore[arg-type]
            seeds.append(p.seed)
        elif p.status == "cancelled":
            continue
        elif p.status == "failed" and p.converged is None:
            counts["failed"] += 1
        elif not p.converged:
            counts["unconverged"] += 1
        elif usable(p, include_non_unique=True):
            counts["non_unique"] += 1
        else:
            counts["nonpositive"] += 1
    common: dict[str, Any] = {
        "group": group,
        "n_points": len(set(xs)),
        "n_runs": len(xs),
        "n_left_out": sum(
            counts[k] for k in ("failed", "unconverged", "nonpositive", "non_unique")
        ),
        "n_non_unique": counts["non_unique"],
        "n_failed": counts["failed"],
        "n_unconverged": counts["unconverged"],
        "n_pending": counts["pending"],
    }
    notes = width_notes(xs, ys) if x == "width" else []
    try:
        fit = fit_scaling(
            np.array(xs), np.array(ys), np.array(seeds), bootstrap=bootstrap, seed=BOOTSTRAP_SEED
        )
    except FitError as exc:
        return GroupFit(**common, error=str(exc), selection_notes=notes), None
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
        selection_notes=[*notes, *fit.notes],
    )
    return gf.model_copy(update={"curve": fitted_curve(gf)}), fit.selection


WIDTH_NOTE = (
    "R against the width m is not expected to be a power law: below the rank of the convex "
    "solution the network solves another (non-convex, rank-constrained) problem, and R may "
    "rise and fall with m; the form and exponent summarise this window only"
)
"""Said by every group fitted against x = width."""


def width_notes(xs: Sequence[float], ys: Sequence[float]) -> list[str]:
    """What a fit against the width must not hide: :data:`WIDTH_NOTE`, and where the seed
    means of log R turn (an interior maximum or minimum above both ends by more than twice
    their standard errors), the turn in words."""
    logs: dict[float, list[float]] = defaultdict(list)
    for xv, yv in zip(xs, ys, strict=True):
        logs[xv].append(math.log(yv))
    ms = sorted(logs)
    if len(ms) < 3:
        return [WIDTH_NOTE]
    means = [float(np.mean(logs[m])) for m in ms]
    ses = [
        float(np.std(logs[m], ddof=1) / math.sqrt(len(logs[m]))) if len(logs[m]) > 1 else 0.0
        for m in ms
    ]

    def clear(i: int, j: int, sign: int) -> bool:
        """means[i] beyond means[j] in direction ``sign`` by more than 2 standard errors."""
        return sign * (means[i] - means[j]) > 2.0 * math.hypot(ses[i], ses[j])

    inner = range(1, len(ms) - 1)
    for sign, shape in ((1, "rises to a peak"), (-1, "falls to a dip")):
        k = max(inner, key=lambda i: sign * means[i])
        if clear(k, 0, sign) and clear(k, len(ms) - 1, sign):
            then = "falls" if sign == 1 else "rises"
            return [
                WIDTH_NOTE,
                f"R is not monotone in m: from m = {ms[0]:g} it {shape} at m = {ms[k]:g} "
                f"(geometric seed mean R = {math.exp(means[k]):.3g}) and {then} up to "
                f"m = {ms[-1]:g}; no single power law describes it",
            ]
    return [WIDTH_NOTE]


def sweep_exponents(
    sweep_id: int,
    points: Sequence[RunPoint],
    *,
    x: str = "n",
    by: Sequence[str] | None = None,
    bootstrap: int = BOOTSTRAP,
    include_non_unique: bool = False,
) -> ExponentReport:
    """Fit R against x per group of the ``by`` axes, pooling seeds."""
    check_axes(x, by)
    axes = list(by) if by is not None else default_by(x, points)
    done = [
        fit_group(x, g, m, bootstrap=bootstrap, include_non_unique=include_non_unique)
        for g, m in group_points(points, axes)
    ]
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


def same_form_exponent(form: str, n_breaks: int, curve: dict[float, float]) -> float | None:
    """The exponent of the state-evolution ``curve`` ({x: R}) fitted with the measured fit's
    form and loss (the last segment's for a broken form; None if it cannot be fitted)."""
    xs = np.array(sorted(curve))
    ys = np.array([curve[v] for v in xs])
    try:
        if form == "plateau":
            return fit_plateau(xs, ys)[2]
        if form == "broken_power_law" and n_breaks > 0:
            return fit_broken(xs, ys, n_breaks)[1][-1]
        return fit_power_law(xs, ys)[0]
    except (FitError, ValueError, np.linalg.LinAlgError):
        return None
