"""The state-evolution prediction next to the measurement, per grid point and per group.

Per grid point (every axis but the seed): the SE prediction (THEORY.md sections 0-4: R, tau
or sigma, zeta, df, predicted support, train MSE) next to the measured mean and standard
error over seeds and their relative difference. Per group (the ``by`` axes): the exponent of
the measured curve and of the predicted curve, both fitted as pure power laws over the same
x-window. Quadratic points carry the finite-d note of THEORY.md 5.3: the network's
x x' - I data sits above the SE by about c/d, which is reported rather than hidden.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from service.analysis.grouping import (
    axis_value,
    check_axes,
    default_by,
    group_points,
    mean_se,
    usable,
)
from service.analysis.reports import GroupTheory, PointTheory, TheoryReport
from service.errors import FitError
from service.fitting import fit_power_law
from service.records import RunPoint
from service.spec import samples_per_unit
from service.theory import Prediction, predict


def _prediction(p: RunPoint) -> tuple[Prediction | None, str | None]:
    if p.signed:
        return None, "the state evolution here covers the PSD quadratic model, not a signed teacher"
    try:
        return (
            predict(p.model, p.d, p.n, p.weight_decay, p.gamma, p.noise, p.rank),  # type: ignore[arg-type]
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
    return (p.model, p.d, p.n, p.weight_decay, p.gamma, p.noise, p.rank, p.link_power)


def sweep_theory(
    sweep_id: int, points: Sequence[RunPoint], *, x: str = "n", by: Sequence[str] | None = None
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
        risks = [float(m.excess_risk) for m in members if usable(m)]  # type: ignore[arg-type]
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
                predicted=_as_dict(pred) if pred else None,
                prediction_error=err,
                measured_mean=mean,
                measured_se=se,
                n_seeds=len(risks),
                rel_diff=rel,
            )
        )
    groups = [_group_theory(x, g, m, preds) for g, m in group_points(points, axes)]
    note = None
    if any(p.model == "quadratic" for p in points):
        note = (
            "quadratic model: the network's x x'-I data sits above the SE by about c/d "
            "(c ~ 2-3 variance-dominated, 3-5 thresholding, 5-6 pure trace bias; THEORY.md 5.3); "
            "each point's finite_size_note says which applies"
        )
    return TheoryReport(sweep_id=sweep_id, x=x, by=axes, points=out, groups=groups, note=note)


def _group_theory(
    x: str,
    group: dict[str, float | None],
    members: Sequence[RunPoint],
    preds: dict[tuple[object, ...], Prediction | None],
) -> GroupTheory:
    by_x: dict[float, list[float]] = defaultdict(list)
    pred_at: dict[float, float] = {}
    for p in members:
        xv = axis_value(p, x)
        pred = preds.get(_point_key(p))
        if xv is None or xv <= 0 or not usable(p) or pred is None:
            continue
        by_x[xv].append(float(p.excess_risk))  # type: ignore[arg-type]
        pred_at[xv] = pred.excess_risk
    xs = np.array(sorted(by_x))
    window = (float(xs[0]), float(xs[-1])) if len(xs) else None
    beta_m: float | None = None
    beta_p: float | None = None
    error: str | None = None
    if len(xs) < 2:
        window = None
        error = f"need at least 2 distinct {x} values with usable runs and a prediction"
    else:
        measured = np.array([np.mean(by_x[v]) for v in xs])
        predicted = np.array([pred_at[v] for v in xs])
        try:
            beta_m, _ = fit_power_law(xs, measured)
            beta_p, _ = fit_power_law(xs, predicted)
        except FitError as exc:
            beta_m = beta_p = None
            error = str(exc)
    return GroupTheory(
        group=group,
        x_window=window,
        measured_exponent=beta_m,
        predicted_exponent=beta_p,
        n_points=len(xs),
        error=error,
    )
