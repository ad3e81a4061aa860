"""The phase diagram of a scaling-path sweep: exponent against the power l of lambda ~ n^-l.

A sweep whose weight decay is linked to n with several powers (``link: {weight_decay: {coef,
of: n, power: [..]}}``) has one family per power. For each family: the measured exponent
(fitted with the model choice of :mod:`service.fitting`), the SE exponent over the same
window, the heuristic exponent of THEORY.md 7.1, and a regime label derived from the fitted
curve and the predicted df/n.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.analysis.exponents import fit_group
from service.analysis.grouping import axis_value, group_points, usable
from service.analysis.reports import FamilyPhase, PhaseDiagram
from service.analysis.theory_comparison import sweep_theory
from service.errors import FitError, SpecError
from service.fitting import fit_broken, fit_plateau, fit_power_law
from service.records import RunPoint
from service.spec import SweepSpec
from service.theory import heuristic_exponent

FLAT = 0.05
"""A measured exponent below this counts as no decay."""


REGIME_RULE = (
    "parametric/interpolation when n exceeds the number of parameters (d, or d(d+1)/2) at the "
    "largest n; else plateau when the chosen form is a plateau or the exponent is below "
    f"{FLAT} and there is no noise-fitting signature; noise fitting when the noise is positive, "
    "l > 1/2 and the predicted df/n at the largest n exceeds 0.5 or the exponent is below "
    f"{FLAT}; otherwise the heuristic regime of THEORY.md 7.1 (bias-dominated or tuned)"
)


def sweep_phase_diagram(
    sweep_id: int, spec: SweepSpec, points: Sequence[RunPoint], *, bootstrap: int = 200
) -> PhaseDiagram:
    """One entry per family of the linked weight decay."""
    link = (spec.link or {}).get("weight_decay")
    if link is None:
        raise SpecError(
            "the phase diagram needs a sweep whose weight_decay is linked to n "
            "(link: {weight_decay: {coef, of: n, power: [...]}})",
            field="link",
        )
    x = link.of if link.of != "d" else "n"
    others = [a for a in ("d", "gamma", "noise") if len({getattr(p, a) for p in points}) > 1]
    by = ["link_power", *others]
    theory = sweep_theory(sweep_id, points, x=x, by=by)
    se_by_group = {tuple(sorted(g.group.items())): g for g in theory.groups}
    df_at: dict[tuple[object, ...], float] = {}
    r_at: dict[tuple[object, ...], float] = {}
    for pt in theory.points:
        if pt.predicted and isinstance(pt.predicted.get("df"), float):
            df_at[(pt.link_power, pt.n, pt.d, pt.gamma, pt.noise)] = pt.predicted["df"] / pt.n  # type: ignore[operator]
        if pt.predicted and isinstance(pt.predicted.get("excess_risk"), float):
            r_at[(pt.link_power, pt.n, pt.d, pt.gamma, pt.noise)] = pt.predicted["excess_risk"]  # type: ignore[assignment]
    families = []
    for group, members in group_points(points, by):
        fit, _ = fit_group(x, group, members, bootstrap=bootstrap)
        power = float(group["link_power"] or 0.0)
        p0 = members[0]
        h_exp: float | None
        if power > 0:  # lambda grows with n: no regime of the phase diagram applies
            h_exp, h_regime = None, GROWING
        else:
            h_exp, h_regime = heuristic_exponent(p0.gamma, p0.noise, -power)
        se = se_by_group.get(tuple(sorted(group.items())))
        n_max = max(m.n for m in members)
        dfn = df_at.get((group["link_power"], n_max, p0.d, p0.gamma, p0.noise))
        params = p0.d if p0.model == "diagonal" else p0.d * (p0.d + 1) // 2
        se_exp, se_form = (se.predicted_exponent, "power_law") if se else (None, None)
        if se and se.x_window and fit.form and fit.form != "power_law":
            lo, hi = se.x_window
            curve = {
                xv: r_at[k]
                for m in members
                if usable(m)
                and (k := (m.link_power, m.n, m.d, m.gamma, m.noise)) in r_at
                and (xv := axis_value(m, x)) is not None
                and lo <= xv <= hi
            }
            same = same_form_exponent(fit.form, len(fit.breaks), curve)
            if same is not None:
                se_exp, se_form = same, fit.form
        families.append(
            FamilyPhase(
                power=power,
                decay=-power,
                group=group,
                measured_exponent=fit.exponent,
                measured_ci=fit.exponent_ci,
                measured_form=fit.form,
                se_exponent=se_exp,
                se_form=se_form,
                heuristic_exponent=h_exp,
                heuristic_regime=h_regime,
                regime=_regime(
                    fit.exponent, fit.form, -power, p0.noise, dfn, n_max > params, h_regime
                ),
                df_over_n=dfn,
                x_window=se.x_window if se else None,
                n_runs=fit.n_runs,
                n_left_out=fit.n_left_out,
                error=fit.error,
            )
        )
    return PhaseDiagram(sweep_id=sweep_id, x=x, families=families, regime_rule=REGIME_RULE)


def same_form_exponent(form: str, n_breaks: int, curve: dict[float, float]) -> float | None:
    """Exponent of the SE curve fitted with the measured fit's form (None if it cannot be)."""
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


GROWING = "growing weight decay"
"""The regime of a family whose lambda grows with n (link power > 0): outside the phase
diagram, which is drawn for lambda = lambda0 n^-l with l >= 0."""


def _regime(
    exponent: float | None,
    form: str | None,
    decay: float,
    noise: float,
    df_over_n: float | None,
    overparametrised_data: bool,
    heuristic: str,
) -> str | None:
    if exponent is None:
        return None
    if heuristic == GROWING:
        return GROWING
    if overparametrised_data:
        return "parametric/interpolation"
    noisy_fit = noise > 0 and decay > 0.5
    if noisy_fit and ((df_over_n is not None and df_over_n > 0.5) or exponent < FLAT):
        return "noise fitting"
    if form == "plateau" or exponent < FLAT or np.isclose(decay, 0.0):
        return "plateau"
    return "tuned" if heuristic in ("tuned", "noiseless-recovery") else "bias-dominated"
