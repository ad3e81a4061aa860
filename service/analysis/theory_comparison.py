"""The state-evolution prediction next to the measurement, per grid point and per group.

Per grid point (every axis but the seed): the SE prediction (THEORY.md sections 0-4: R, tau
or sigma, zeta, df, predicted support, train MSE) next to the measured mean and standard
error over seeds and their relative difference. Per group (the ``by`` axes): the measured
exponent of the exponents query (one estimator: :data:`service.analysis.exponents.ESTIMATOR`)
and the state-evolution curve at the same x fitted with the same form. Quadratic points
carry the finite-d note of THEORY.md 5.3: the network's x x' - I data sits above the SE by
about c/d, which is reported rather than hidden.

A quadratic network narrower than d (``RunPoint.width`` m < d) is predicted at its width: its
global minimum is rank-constrained nuclear-norm sensing, whose state evolution
(:mod:`service.theory.quadratic`, finite width) was checked against simulated minima at
d = 20-40 (``bench/bench_width_theory.py``). Points are told apart by their width, so a width
sweep gets R measured against R_SE per width; against x = width the group's exponents only
summarise the window (R need not be monotone in m), the per-point comparison is the test.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from service.analysis.exponents import BOOTSTRAP, ESTIMATOR, fit_group, same_form_exponent
from service.analysis.grouping import (
    axis_value,
    check_axes,
    default_by,
    group_points,
    mean_se,
    usable,
)
from service.analysis.reports import GroupTheory, PointTheory, TheoryReport
from service.records import RunPoint
from service.spec import samples_per_unit
from service.theory import Prediction, predict

WIDTH_THEORY_NOTE = (
    "points narrower than d are predicted at their width m: the minimum of the rank-"
    "constrained problem (rank S <= m, non-convex), by the state evolution with the rank-m "
    "denoiser, a replica-symmetric prediction checked against simulated minima at d = 20-40 "
    "(narrow widths within +0-6 %, less than the full width's x x'-I excess; "
    "bench/bench_width_theory.py); a trained network may stop at a worse local minimum"
)


def _prediction(p: RunPoint) -> tuple[Prediction | None, str | None]:
    if p.signed:
        return None, "the state evolution here covers the PSD quadratic model, not a signed teacher"
    try:  # (a width >= d, the diagonal's always, is the full width: SEPoint drops it)
        return (
            predict(p.model, p.d, p.n, p.weight_decay, p.gamma, p.noise, p.rank, width=p.width),  # type: ignore[arg-type]
            None,
        )
    except (ValueError, ArithmeticError) as exc:
        return None, f"no SE solution: {exc}"


def _as_dict(pred: Prediction) -> dict[str, float | int | str | None]:
    return {
        "excess_risk": pred.excess_risk,
        "tau": pred.tau,
        "sigma": pred.sigma,
        "zeta": pred.zeta,
        "df": pred.df,
        "support": pred.support,
        "train_mse": pred.train_mse,
        "draws": pred.draws,
        "finite_size_note": pred.finite_size_note,
    }


def _point_key(p: RunPoint) -> tuple[object, ...]:
    return (p.model, p.d, p.n, p.weight_decay, p.gamma, p.noise, p.rank, p.link_power, p.width)


def sweep_theory(
    sweep_id: int,
    points: Sequence[RunPoint],
    *,
    x: str = "n",
    by: Sequence[str] | None = None,
    bootstrap: int = BOOTSTRAP,
    include_non_unique: bool = False,
) -> TheoryReport:
    """SE predictions next to the measured means, per grid point and per group."""
    check_axes(x, by)
    axes = list(by) if by is not None else default_by(x, points)
    cells: dict[tuple[object, ...], list[RunPoint]] = defaultdict(list)
    for p in points:
        cells[_point_key(p)].append(p)
    out: list[PointTheory] = []
    preds: dict[tuple[object, ...], Prediction | None] = {}
    for key, members in cells.items():
        p0 = members[0]
        pred, err = _prediction(p0)
        preds[key] = pred
        risks = [
            float(m.excess_risk)  # type: ignore[arg-type]
            for m in members
            if usable(m, include_non_unique)
        ]
        mean, se = mean_se(risks)
        rel = (mean - pred.excess_risk) / pred.excess_risk if (pred and mean is not None) else None
        out.append(
            PointTheory(
                model=p0.model,
                d=p0.d,
                n=p0.n,
                alpha=p0.n / samples_per_unit(p0.model, p0.d),
                weight_decay=p0.weight_decay,
                gamma=p0.gamma,
                noise=p0.noise,
                rank=p0.rank,
                link_power=p0.link_power,
                width=p0.width,
                predicted=_as_dict(pred) if pred else None,
                prediction_error=err,
                measured_mean=mean,
                measured_se=se,
                n_seeds=len(risks),
                rel_diff=rel,
            )
        )
    groups = [
        _group_theory(x, g, m, preds, bootstrap, include_non_unique)
        for g, m in group_points(points, axes)
    ]
    notes = []
    if any(p.model == "quadratic" for p in points):
        notes.append(
            "quadratic model: the network's x x'-I data sits above the SE by about c/d "
            "(c ~ 2-3 variance-dominated, 3-5 thresholding, 5-6 pure trace bias; THEORY.md 5.3); "
            "each point's finite_size_note says which applies"
        )
    if any(p.model == "quadratic" and not p.signed and p.width < p.d for p in points):
        notes.append(WIDTH_THEORY_NOTE)
    if x == "width":
        notes.append(
            "x = width: R against the width is not a power law (it may rise and fall); the "
            "groups' exponents summarise the window only, compare R with R_SE per point"
        )
    note = "; ".join(notes) or None
    return TheoryReport(
        sweep_id=sweep_id, x=x, by=axes, points=out, groups=groups, estimator=ESTIMATOR, note=note
    )


def _group_theory(
    x: str,
    group: dict[str, float | None],
    members: Sequence[RunPoint],
    preds: dict[tuple[object, ...], Prediction | None],
    bootstrap: int,
    include_non_unique: bool,
) -> GroupTheory:
    fit, _ = fit_group(
        x, group, members, bootstrap=bootstrap, include_non_unique=include_non_unique
    )
    curve: dict[float, float] = {}
    for p in members:
        xv = axis_value(p, x)
        pred = preds.get(_point_key(p))
        if xv is not None and xv > 0 and usable(p, include_non_unique) and pred is not None:
            curve[xv] = pred.excess_risk
    window = (min(curve), max(curve)) if curve else None
    predicted = None
    error = fit.error
    if fit.form is not None and curve:
        predicted = same_form_exponent(fit.form, len(fit.breaks), curve)
        if predicted is None:
            error = f"the state-evolution curve cannot be fitted with the form {fit.form}"
    elif not curve:
        error = error or f"no {x} value with both a usable run and a prediction"
    return GroupTheory(
        group=group,
        x_window=window,
        measured_exponent=fit.exponent,
        measured_ci=fit.exponent_ci,
        form=fit.form,
        predicted_exponent=predicted,
        n_points=len(curve),
        n_runs=fit.n_runs,
        n_left_out=fit.n_left_out,
        error=error,
    )
