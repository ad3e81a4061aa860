"""The phase diagram of a scaling-path sweep: exponent against the power l of lambda ~ n^-l.

A sweep whose weight decay is linked to n with several powers (``link: {weight_decay: {coef,
of: n, power: [..]}}``) has one family per power. For each family: the measured exponent
(fitted with the model choice of :mod:`service.fitting`), the SE exponent over the same
window, the heuristic exponent of THEORY.md 7.1, and a regime label from the state
evolution's own quantities (df/n, df/p and how zeta/tau moves with n: ``REGIME_RULE``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from service.analysis.grouping import group_points, width_varies
from service.analysis.reports import FamilyPhase, PhaseDiagram, PointTheory
from service.analysis.theory_comparison import sweep_theory
from service.errors import SpecError
from service.records import RunPoint
from service.spec import SweepSpec
from service.theory import heuristic_exponent

FLAT = 0.05
"""A measured exponent below this counts as no decay."""
KAPPA_FLAT = 0.1
"""|d log(zeta/tau) / d log n| below this: the threshold follows the effective noise."""

REGIME_RULE = (
    "from the state evolution's own quantities at the window's ends: parametric when n "
    "exceeds the convex problem's parameters p (d, or d(d+1)/2) and df/p >= 0.9 (every "
    "component learned); noise fitting (interpolation without noise) when df/n >= 0.5 at the "
    "largest n; plateau when lambda is fixed (l = 0); otherwise by the slope of "
    "kappa = zeta/tau (diagonal) or zeta/sigma (quadratic) against n over the window: tuned "
    f"when |slope| < {KAPPA_FLAT} (the threshold follows the effective noise), "
    f"bias-dominated when it grows faster, towards noise fitting when it falls faster"
)


def sweep_phase_diagram(
    sweep_id: int,
    spec: SweepSpec,
    points: Sequence[RunPoint],
    *,
    bootstrap: int = 200,
    include_non_unique: bool = False,
) -> PhaseDiagram:
    """One entry per family of the linked weight decay (measured and SE exponents from
    :func:`~service.analysis.theory_comparison.sweep_theory`: one estimator)."""
    link = (spec.link or {}).get("weight_decay")
    if link is None:
        raise SpecError(
            "the phase diagram needs a sweep whose weight_decay is linked to n "
            "(link: {weight_decay: {coef, of: n, power: [...]}})",
            field="link",
        )
    x = link.of if link.of != "d" else "n"
    others = [a for a in ("d", "gamma", "noise") if len({getattr(p, a) for p in points}) > 1]
    if width_varies(points):
        others.append("width")  # one family per (power, width)
    by = ["link_power", *others]
    theory = sweep_theory(
        sweep_id, points, x=x, by=by, bootstrap=bootstrap, include_non_unique=include_non_unique
    )
    by_group = {tuple(sorted(g.group.items())): g for g in theory.groups}
    families = []
    for group, members in group_points(points, by):
        g = by_group[tuple(sorted(group.items()))]
        power = float(group["link_power"] or 0.0)
        p0 = members[0]
        h_exp: float | None
        if power > 0:  # lambda grows with n: no regime of the phase diagram applies
            h_exp, h_regime = None, GROWING
        else:
            h_exp, h_regime = heuristic_exponent(p0.gamma, p0.noise, -power)
        ends = _window_ends(theory.points, group, p0)
        families.append(
            FamilyPhase(
                power=power,
                decay=-power,
                group=group,
                measured_exponent=g.measured_exponent,
                measured_ci=g.measured_ci,
                measured_form=g.form,
                se_exponent=g.predicted_exponent,
                se_form=g.form if g.predicted_exponent is not None else None,
                heuristic_exponent=h_exp,
                heuristic_regime=h_regime,
                regime=_regime(g.measured_exponent, -power, p0, ends, h_regime),
                df_over_n=ends[1].df_over_n if ends else None,
                kappa_slope=_kappa_slope(ends),
                x_window=g.x_window,
                n_runs=g.n_runs,
                n_left_out=g.n_left_out,
                error=g.error,
            )
        )
    return PhaseDiagram(sweep_id=sweep_id, x=x, families=families, regime_rule=REGIME_RULE)


class _End:
    """The state evolution at one end of a family's window."""

    def __init__(self, pt: PointTheory) -> None:
        pred = pt.predicted or {}
        self.n = pt.n
        self.df_over_n = float(pred["df"]) / pt.n  # type: ignore[arg-type]
        noise_scale = pred.get("tau") if pt.model == "diagonal" else pred.get("sigma")
        zeta = pred.get("zeta")
        self.kappa = (
            float(zeta) / float(noise_scale)  # type: ignore[arg-type]
            if isinstance(zeta, float) and isinstance(noise_scale, float) and noise_scale > 0
            else None
        )
        self.df = float(pred["df"])  # type: ignore[arg-type]


def _window_ends(
    points: Sequence[PointTheory], group: dict[str, float | None], p0: RunPoint
) -> tuple[_End, _End] | None:
    """The SE at the smallest and the largest n of the family (None without predictions)."""
    mine = [
        pt
        for pt in points
        if pt.link_power == group.get("link_power")
        and all(getattr(pt, k) == v for k, v in group.items() if k != "link_power")
        and pt.predicted
        and isinstance(pt.predicted.get("df"), float)
    ]
    if not mine:
        return None
    mine.sort(key=lambda pt: pt.n)
    return _End(mine[0]), _End(mine[-1])


def _kappa_slope(ends: tuple[_End, _End] | None) -> float | None:
    if ends is None or ends[0].n == ends[1].n:
        return None
    lo, hi = ends
    if lo.kappa is None or hi.kappa is None or lo.kappa <= 0 or hi.kappa <= 0:
        return None
    return math.log(hi.kappa / lo.kappa) / math.log(hi.n / lo.n)


GROWING = "growing weight decay"
"""The regime of a family whose lambda grows with n (link power > 0): outside the phase
diagram, which is drawn for lambda = lambda0 n^-l with l >= 0."""


def _regime(
    exponent: float | None,
    decay: float,
    p0: RunPoint,
    ends: tuple[_End, _End] | None,
    heuristic: str,
) -> str | None:
    """The regime of a family (REGIME_RULE), from the state evolution at its window's ends."""
    if exponent is None:
        return None
    if heuristic == GROWING:
        return GROWING
    if ends is None:
        return None
    hi = ends[1]
    params = p0.d if p0.model == "diagonal" else p0.d * (p0.d + 1) // 2
    if hi.n > params and hi.df / params >= 0.9:
        return "parametric"
    if hi.df_over_n >= 0.5:
        return "noise fitting" if p0.noise > 0 else "interpolation"
    if np.isclose(decay, 0.0):
        return "plateau"
    slope = _kappa_slope(ends)
    if slope is None:
        return None
    if abs(slope) < KAPPA_FLAT:
        return "tuned"
    return "bias-dominated" if slope > 0 else "towards noise fitting"
