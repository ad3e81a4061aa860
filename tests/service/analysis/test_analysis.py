"""service.analysis on hand-built RunPoint lists: exponents, theory next to measurement, the
phase diagram of a scaling path, the spectra summary and the query cache (the fits themselves
are tested in test_fitting.py, the state evolution in test_theory_*.py)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from service.analysis.cache import QueryCache
from service.analysis.exponents import ESTIMATOR, sweep_exponents
from service.analysis.grouping import check_axes, default_by
from service.analysis.phase_diagram import sweep_phase_diagram
from service.analysis.spectra_summary import sweep_spectra_summary
from service.analysis.theory_comparison import sweep_theory
from service.errors import SpecError
from service.fitting import fit_power_law
from service.records import RunPoint, SpectrumPoint
from service.spec import SweepSpec
from service.theory import heuristic_exponent, predict

N4 = (100, 200, 400, 800)
N8 = [100, 268, 720, 1931, 5179, 13895, 37276, 100000]  # ~ geomspace(1e2, 1e5, 8)
LOG_SPAN = math.log(N8[-1] / N8[0])


def pt(run_id: int, **kw: Any) -> RunPoint:
    """A succeeded, converged diagonal run; keywords override any column."""
    base: dict[str, Any] = {
        "run_id": run_id,
        "status": "succeeded",
        "converged": True,
        "model": "diagonal",
        "d": 50,
        "n": 100,
        "weight_decay": 0.1,
        "gamma": 1.0,
        "noise": 0.01,
        "seed": 0,
        "link_power": None,
        "rank": None,
        "excess_risk": 0.1,
    }
    base.update(kw)
    return RunPoint(**base)


def ids() -> Any:
    return iter(range(1, 10_000))


# --------------------------------------------------------------------------------------
# exponents


def test_exact_power_law_per_group() -> None:
    counter = ids()
    beta = {0.01: 1.0, 0.1: 0.5}
    points = [
        pt(next(counter), n=n, weight_decay=wd, seed=s, excess_risk=5.0 * n**-b * (1 + 0.01 * s))
        for wd, b in beta.items()
        for n in N8[:6]
        for s in range(3)
    ]
    rep = sweep_exponents(7, points, x="n", by=["weight_decay"], bootstrap=60)
    assert rep.sweep_id == 7 and rep.x == "n" and rep.by == ["weight_decay"]
    assert rep.selection.startswith("aicc") and rep.bootstrap == 60
    assert [g.group for g in rep.groups] == [{"weight_decay": 0.01}, {"weight_decay": 0.1}]
    for g in rep.groups:
        truth = beta[g.group["weight_decay"]]  # type: ignore[index]
        assert g.form == "power_law"
        assert g.exponent == pytest.approx(truth, abs=1e-8)  # tolerance: 1e-8 absolute
        assert g.exponent_ci is not None
        lo, hi = g.exponent_ci
        assert lo - 1e-9 <= truth <= hi + 1e-9  # tolerance: 1e-9 round-off on the bounds
        # geometric mean of the seed factors 1, 1.01, 1.02
        c = 5.0 * (1.01 * 1.02) ** (1 / 3)
        assert g.prefactor == pytest.approx(c, rel=1e-8)  # tolerance: 1e-8 relative
        assert g.n_points == 6 and g.n_runs == 18 and g.n_left_out == 0 and g.error is None
        assert g.ci_method and "seeds" in g.ci_method
        assert g.plateau is None and g.plateau_onset is None and g.breaks == []
    again = sweep_exponents(7, points, x="n", by=["weight_decay"], bootstrap=60)
    assert again.model_dump() == rep.model_dump()  # fixed bootstrap seed: same numbers


def test_plateau_group_and_its_onset() -> None:
    # R = R_inf + C n^-1 with the crossover C n^-1 = R_inf at n* = 10^3.5
    counter = ids()
    n_star, r_inf = 10**3.5, 1e-3
    points = [
        pt(next(counter), n=n, seed=s, excess_risk=r_inf + r_inf * n_star / n)
        for n in N8
        for s in range(2)
    ]
    rep = sweep_exponents(1, points, x="n", by=[], bootstrap=20)
    (g,) = rep.groups
    assert g.group == {}
    assert g.form == "plateau"
    assert g.exponent == pytest.approx(1.0, abs=1e-5)  # tolerance: 1e-5 absolute (exact data)
    assert g.plateau == pytest.approx(r_inf, rel=1e-4)  # tolerance: 1e-4 relative
    assert g.plateau_onset is not None
    # tolerance: 1 % of the sweep's log span (exact data; measured ~1e-6)
    assert abs(math.log(g.plateau_onset / n_star)) / LOG_SPAN < 0.01
    assert set(g.candidates) >= {"power_law", "plateau"}


def test_left_out_runs_are_counted() -> None:
    counter = ids()
    good = [pt(next(counter), n=n, excess_risk=2.0 / n) for n in (100, 200, 400, 800)]
    bad = [
        pt(next(counter), n=100, status="failed", converged=None, excess_risk=None),
        pt(next(counter), n=200, converged=False, excess_risk=0.01),
        pt(next(counter), n=200, seed=1, excess_risk=0.0),  # non-positive risk
        pt(next(counter), n=400, seed=1, excess_risk=float("nan")),  # non-finite risk
        pt(next(counter), n=800, status="queued", converged=None, excess_risk=None),
        pt(next(counter), n=800, seed=1, status="running", converged=None, excess_risk=None),
        pt(next(counter), n=400, seed=2, status="cancelled", converged=None, excess_risk=None),
    ]
    (g,) = sweep_exponents(1, good + bad, by=[], bootstrap=0).groups
    assert g.n_runs == 4 and g.n_points == 4
    assert g.n_failed == 1 and g.n_unconverged == 1 and g.n_pending == 2
    assert g.n_left_out == 4  # failed + unconverged + zero + nan; cancelled and pending are not
    assert g.exponent == pytest.approx(1.0, abs=1e-8)  # tolerance: 1e-8 absolute


def test_a_group_without_enough_points_reports_why() -> None:
    counter = ids()
    points = [pt(next(counter), n=100), pt(next(counter), n=200)]
    (g,) = sweep_exponents(1, points, by=[], bootstrap=0).groups
    assert g.exponent is None and g.form is None and g.error
    rep = sweep_exponents(1, [], by=None, bootstrap=0)
    assert rep.groups == [] and rep.selection == "no group could be fitted"


def test_default_by() -> None:
    counter = ids()
    grid = [
        pt(next(counter), d=d, n=n, weight_decay=wd, seed=s)
        for d in (10, 20)
        for n in (100, 200)
        for wd in (0.01, 0.1)
        for s in (0, 1)
    ]
    assert default_by("n", grid) == ["d", "weight_decay"]  # seed, gamma, noise do not vary
    assert default_by("alpha", grid) == ["d", "weight_decay"]  # alpha is tied to n
    assert default_by("d", grid) == ["weight_decay"]  # n is tied to d (alpha grids)
    assert default_by("weight_decay", grid) == ["d", "n"]
    linked = [
        pt(next(counter), n=n, weight_decay=0.5 * n**p, link_power=p)
        for n in (100, 200)
        for p in (-0.5, -1.0)
    ]
    assert default_by("n", linked) == ["link_power"]  # lambda follows n within a family
    assert default_by("n", [pt(1)]) == []


@pytest.mark.parametrize(
    ("x", "by", "field"),
    [
        ("seed", None, "query.x"),
        ("colour", ["d"], "query.x"),
        ("n", ["colour"], "query.by"),
        ("n", ["n"], "query.by"),  # x itself
        ("n", ["seed"], "query.by"),
        ("n", ["d", "d"], "query.by"),  # twice
    ],
)
def test_check_axes_errors(x: str, by: list[str] | None, field: str) -> None:
    with pytest.raises(SpecError) as info:
        check_axes(x, by)
    assert info.value.field == field
    with pytest.raises(SpecError):
        sweep_exponents(1, [pt(1)], x=x, by=by)
    with pytest.raises(SpecError):
        sweep_theory(1, [pt(1)], x=x, by=by)


def test_check_axes_accepts_the_documented_axes() -> None:
    for x in ("n", "alpha", "d", "weight_decay", "gamma", "noise"):
        check_axes(x, None)
    check_axes("n", ["d", "weight_decay", "gamma", "noise", "link_power"])


# --------------------------------------------------------------------------------------
# theory next to measurement


def test_theory_report_against_predict() -> None:
    d, wd, gamma, noise = 40, 0.05, 1.0, 0.01
    counter = ids()
    points: list[RunPoint] = []
    for n in (40, 80, 160):
        r_se = predict("diagonal", d, n, wd, gamma, noise).excess_risk
        points += [
            pt(next(counter), d=d, n=n, weight_decay=wd, seed=0, excess_risk=1.1 * r_se),
            pt(next(counter), d=d, n=n, weight_decay=wd, seed=1, excess_risk=1.3 * r_se),
        ]
    # one more cell with a single seed, and an unusable run in it
    r_one = predict("diagonal", d, 320, wd, gamma, noise).excess_risk
    points.append(pt(next(counter), d=d, n=320, weight_decay=wd, excess_risk=0.9 * r_one))
    points.append(pt(next(counter), d=d, n=320, weight_decay=wd, seed=1, converged=False))
    rep = sweep_theory(3, points, x="n", by=[])
    assert rep.sweep_id == 3 and rep.note is None  # no quadratic point, no finite-d note
    by_n = {p.n: p for p in rep.points}
    assert sorted(by_n) == [40, 80, 160, 320]
    for n in (40, 80, 160):
        p = by_n[n]
        want = predict("diagonal", d, n, wd, gamma, noise)
        assert p.predicted is not None
        assert p.predicted["excess_risk"] == pytest.approx(want.excess_risk, rel=1e-12)  # 1e-12
        assert p.predicted["df"] == pytest.approx(want.df, rel=1e-12)  # tolerance: 1e-12 rel
        assert p.predicted["tau"] == pytest.approx(want.tau, rel=1e-12)  # tolerance: 1e-12 rel
        assert p.n_seeds == 2 and p.alpha == pytest.approx(n / d, rel=1e-15)  # 1e-15 rel
        # mean = 1.2 R_se -> rel_diff = (mean - R_se)/R_se = 0.2
        assert p.measured_mean == pytest.approx(1.2 * want.excess_risk, rel=1e-12)  # 1e-12
        assert p.rel_diff == pytest.approx(0.2, abs=1e-12)  # tolerance: 1e-12 absolute
        # SE of the mean of {1.1, 1.3} R_se: std (ddof 1) 0.1 sqrt 2 R_se / sqrt 2 = 0.1 R_se
        assert p.measured_se == pytest.approx(0.1 * want.excess_risk, rel=1e-9)  # 1e-9 rel
    one = by_n[320]
    assert one.n_seeds == 1 and one.measured_se is None
    assert one.rel_diff == pytest.approx(-0.1, abs=1e-12)  # tolerance: 1e-12 absolute
    (g,) = rep.groups
    assert g.x_window == (40.0, 320.0) and g.n_points == 4 and g.error is None
    xs = np.array([40.0, 80.0, 160.0, 320.0])
    curve = np.array([predict("diagonal", d, int(n), wd, gamma, noise).excess_risk for n in xs])
    beta_p, _ = fit_power_law(xs, curve)
    assert g.form == "power_law"  # 4 distinct n: the only form with k + 2 of them
    assert g.predicted_exponent == pytest.approx(beta_p, rel=1e-10)  # tolerance: 1e-10 rel
    # one estimator: the measured exponent is the exponents query's, not a refit of means
    (ex,) = sweep_exponents(3, points, x="n", by=[]).groups
    assert g.measured_exponent == ex.exponent and g.measured_ci == ex.exponent_ci  # exact
    assert rep.estimator == ESTIMATOR and "log R" in rep.estimator


def test_theory_quadratic_signed_and_psd() -> None:
    counter = ids()
    signed = [
        pt(next(counter), model="quadratic", d=10, n=n, signed=True, excess_risk=0.1 / n)
        for n in (50, 100, 200)
    ]
    rep = sweep_theory(1, signed, by=[])
    assert len(rep.points) == 3
    for p in rep.points:
        assert p.predicted is None and p.prediction_error and "signed" in p.prediction_error
        assert p.rel_diff is None and p.measured_mean is not None
    (g,) = rep.groups
    assert g.measured_exponent is None and g.error
    assert rep.note and "c/d" in rep.note  # the finite-d note of THEORY.md 5.3
    psd = [pt(next(counter), model="quadratic", d=10, n=200, weight_decay=0.05, excess_risk=0.05)]
    (p,) = sweep_theory(1, psd, by=[]).points
    want = predict("quadratic", 10, 200, 0.05, 1.0, 0.01)
    assert p.predicted is not None and p.prediction_error is None
    assert p.predicted["sigma"] == pytest.approx(want.sigma, rel=1e-12)  # 1e-12 relative
    assert p.predicted["finite_size_note"] == want.finite_size_note
    assert p.alpha == pytest.approx(2.0, rel=1e-15)  # n/d^2; tolerance: 1e-15 relative
    assert p.rel_diff == pytest.approx((0.05 - want.excess_risk) / want.excess_risk, rel=1e-12)


# --------------------------------------------------------------------------------------
# phase diagram

SPEC: dict[str, Any] = {
    "name": "phase",
    "model": "diagonal",
    "teacher": {"gamma": 1.0, "noise": 0.01},
    "grid": {"d": [4000], "n": [100, 200, 400], "seed": [0, 1]},
    "training": {"optimizer": "convex"},
}
POWERS = [-0.25, -0.5, -1.0]


def linked_spec() -> SweepSpec:
    body = {**SPEC, "link": {"weight_decay": {"coef": 0.5, "of": "n", "power": POWERS}}}
    return SweepSpec.model_validate(body)


def se_points(d: int = 4000, ns: tuple[int, ...] = (100, 200, 400)) -> list[RunPoint]:
    """Runs whose excess risk is the SE prediction itself at lambda = 0.5 n^p (2 seeds)."""
    counter = ids()
    out = []
    for p in reversed(POWERS):  # out of order on purpose: families come back sorted
        for n in ns:
            wd = 0.5 * n**p
            r = predict("diagonal", d, n, wd, 1.0, 0.01).excess_risk
            out += [
                pt(next(counter), d=d, n=n, weight_decay=wd, link_power=p, seed=s, excess_risk=r)
                for s in (0, 1)
            ]
    return out


def test_phase_diagram_needs_a_link() -> None:
    spec = SweepSpec.model_validate({**SPEC, "grid": {**SPEC["grid"], "weight_decay": [0.1]}})
    with pytest.raises(SpecError) as info:
        sweep_phase_diagram(1, spec, [pt(1)])
    assert info.value.field == "link"


def test_phase_diagram_on_the_se_itself() -> None:
    diagram = sweep_phase_diagram(4, linked_spec(), se_points(ns=N4), bootstrap=20)
    assert diagram.sweep_id == 4 and diagram.x == "n" and diagram.regime_rule
    assert [f.power for f in diagram.families] == sorted(POWERS)
    want = {
        0.25: (0.25, "bias-dominated", "bias-dominated"),
        0.5: (0.5, "tuned", "tuned"),
        1.0: (0.0, "noise fitting", "noise fitting"),
    }
    for f in diagram.families:
        assert f.decay == -f.power and f.group["link_power"] == f.power
        assert f.error is None and f.n_runs == 8 and f.n_left_out == 0
        assert f.x_window == (100.0, 800.0)
        assert f.measured_exponent is not None and f.se_exponent is not None
        # the measured R is the SE's: same curve, same window (4 n, power law only)
        assert f.measured_form == "power_law" and f.se_form == "power_law"
        assert f.measured_exponent == pytest.approx(f.se_exponent, abs=1e-6)  # 1e-6 absolute
        h_exp, h_regime, regime = want[f.decay]
        assert (f.heuristic_exponent, f.heuristic_regime) == (h_exp, h_regime)  # exact
        assert (f.heuristic_exponent, f.heuristic_regime) == heuristic_exponent(1.0, 0.01, f.decay)
        assert f.regime == regime
        assert f.df_over_n is not None
        want_df = predict("diagonal", 4000, 800, 0.5 * 800**f.power, 1.0, 0.01).df / 800
        assert f.df_over_n == pytest.approx(want_df, rel=1e-12)  # tolerance: 1e-12 relative
        lo, hi = (predict("diagonal", 4000, n, 0.5 * n**f.power, 1.0, 0.01) for n in (100, 800))
        kappa = math.log((hi.zeta / hi.tau) / (lo.zeta / lo.tau)) / math.log(8)  # type: ignore[operator]
        assert f.kappa_slope == pytest.approx(kappa, rel=1e-9)  # tolerance: 1e-9 relative
    # noise fitting: lambda ~ 1/n lets df/n approach 1 (THEORY.md 7.1)
    assert diagram.families[0].df_over_n > 0.5  # type: ignore[operator]


def test_phase_diagram_of_a_growing_weight_decay_is_answered_not_a_500() -> None:
    # lambda = 0.5 n^+0.5 grows with n: no heuristic regime applies (it used to raise)
    counter = ids()
    points = [
        pt(next(counter), d=400, n=n, weight_decay=0.5 * n**0.5, link_power=0.5, seed=s,
           excess_risk=predict("diagonal", 400, n, 0.5 * n**0.5, 1.0, 0.01).excess_risk)
        for n in N4
        for s in (0, 1)
    ]  # fmt: skip
    body = {**SPEC, "link": {"weight_decay": {"coef": 0.5, "of": "n", "power": [0.5]}}}
    diagram = sweep_phase_diagram(1, SweepSpec.model_validate(body), points, bootstrap=0)
    (family,) = diagram.families
    assert family.decay == -0.5 and family.heuristic_exponent is None
    assert family.heuristic_regime == family.regime == "growing weight decay"
    # R grows with n, then stays at 1 (every coefficient thresholded): it never decays
    assert family.measured_exponent is not None and family.measured_exponent <= 1e-9


def test_phase_diagram_compares_like_with_like() -> None:
    # 6 n values: the SE curves are not pure power laws, so the model choice picks broken /
    # plateau forms; the SE exponent must then come from the same form over the same window
    # (before the fix it was the pure power-law slope: 0.71 SE vs 0.54 measured at l = 1/2)
    ns = (100, 200, 400, 800, 1600, 3200)
    diagram = sweep_phase_diagram(1, linked_spec(), se_points(ns=ns), bootstrap=0)
    forms = {f.measured_form for f in diagram.families}
    assert forms - {"power_law"}, forms  # the case this test is about
    for f in diagram.families:
        assert f.se_form == f.measured_form
        assert f.measured_exponent is not None and f.se_exponent is not None
        # tolerance: 1e-6 absolute (measured ~2e-9: the same curve fitted the same way)
        assert f.measured_exponent == pytest.approx(f.se_exponent, abs=1e-6)


def test_phase_diagram_regimes_come_from_the_state_evolution() -> None:
    # d = 50, n up to 800: only the family whose SE learns every coordinate (df/p >= 0.9) is
    # parametric; n > d alone does not make a family parametric (a d = 400 bias path has
    # df/n = 0.005 there)
    diagram = sweep_phase_diagram(1, linked_spec(), se_points(d=50, ns=N4), bootstrap=0)
    regimes = {f.decay: f.regime for f in diagram.families}
    assert regimes == {0.25: "bias-dominated", 0.5: "bias-dominated", 1.0: "parametric"}
    for f in diagram.families:
        se = predict("diagonal", 50, 800, 0.5 * 800**f.power, 1.0, 0.01)
        assert (f.regime == "parametric") == (se.df / 50 >= 0.9)


# --------------------------------------------------------------------------------------
# spectra summary


def sp(run_id: int, kind: str, alpha: float | None, rank: float | None = None) -> SpectrumPoint:
    return SpectrumPoint(
        run_id=run_id,
        kind=kind,
        n_values=50,
        tail_alpha=alpha,
        tail_alpha_ci=None if alpha is None else (alpha - 0.3, alpha + 0.3),
        n_tail=10 if alpha is not None else None,
        rank_exponent=rank,
        rank_points=20 if rank is not None else None,
    )


def test_spectra_summary() -> None:
    points = [
        pt(1, n=100, gamma=2.0, seed=0, excess_risk=0.1),
        pt(2, n=100, gamma=2.0, seed=1, excess_risk=0.3),
        pt(3, n=100, gamma=2.0, seed=2, status="failed", converged=None, excess_risk=None),
        pt(4, n=200, gamma=2.0, seed=0, excess_risk=0.05),
        pt(5, model="quadratic", d=10, n=200, gamma=1.0, excess_risk=0.2),
    ]
    spectra = [
        sp(1, "abs_theta", 1.4, 2.1),
        sp(1, "eig_S", 9.0, 9.0),  # not the diagonal model's main spectrum: ignored
        sp(2, "abs_theta", 1.6, 1.9),
        sp(3, "abs_theta", 50.0),  # a failed run: not in the summary
        sp(4, "abs_theta", None),
        sp(5, "abs_theta", 7.0),  # not the quadratic model's main spectrum: ignored
        sp(5, "eig_S", 2.2, 1.1),
    ]
    summary = sweep_spectra_summary(9, points, spectra)
    assert summary.sweep_id == 9 and summary.note
    cells = {(p.d, p.n): p for p in summary.points}
    assert set(cells) == {(50, 100), (50, 200), (10, 200)}
    a = cells[(50, 100)]
    assert a.kind == "abs_theta" and a.n_runs == 2
    assert a.excess_risk_mean == pytest.approx(0.2, rel=1e-12)  # tolerance: 1e-12 relative
    # SE of the mean of {0.1, 0.3}: std (ddof 1) 0.1 sqrt 2 / sqrt 2 = 0.1
    assert a.excess_risk_se == pytest.approx(0.1, rel=1e-12)  # tolerance: 1e-12 relative
    assert a.tail_alpha_mean == pytest.approx(1.5, rel=1e-12)  # tolerance: 1e-12 relative
    assert a.tail_alpha_se == pytest.approx(0.1, rel=1e-12)  # tolerance: 1e-12 relative
    assert a.rank_exponent_mean == pytest.approx(2.0, rel=1e-12)  # tolerance: 1e-12 relative
    assert a.n_tail_mean == pytest.approx(10.0, rel=1e-15)  # tolerance: 1e-15 relative
    assert a.predicted_alpha_ww == pytest.approx(1.5, rel=1e-15)  # 1 + 1/2; 1e-15 relative
    b = cells[(50, 200)]
    assert b.n_runs == 1 and b.excess_risk_se is None
    assert b.tail_alpha_mean is None and b.rank_exponent_mean is None
    q = cells[(10, 200)]
    assert q.kind == "eig_S"
    assert q.tail_alpha_mean == pytest.approx(2.2, rel=1e-12)  # tolerance: 1e-12 relative
    assert q.tail_alpha_se is None  # one seed
    assert q.predicted_alpha_ww == pytest.approx(2.0, rel=1e-15)  # 1 + 1/1; 1e-15 relative


# --------------------------------------------------------------------------------------
# query cache


def test_query_cache_hits_recomputes_and_evicts() -> None:
    cache = QueryCache(size=2)
    calls: list[str] = []

    def compute(tag: str) -> Any:
        def run() -> str:
            calls.append(tag)
            return f"answer-{tag}-{len(calls)}"

        return run

    key = ("store", 1, 12, 5, ("exponents", "n", None))
    first = cache.get_or_compute(key, compute("a"))
    assert cache.get_or_compute(key, compute("a")) is first  # hit: not recomputed
    assert calls == ["a"] and (cache.hits, cache.misses) == (1, 1)
    # one more ended run: another key, so the answer is computed again
    ended = ("store", 1, 12, 6, ("exponents", "n", None))
    assert cache.get_or_compute(ended, compute("b")) != first
    assert calls == ["a", "b"]
    # LRU: touch `key`, then a third key evicts `ended` (the least recently used)
    cache.get_or_compute(key, compute("a"))
    cache.get_or_compute(("other",), compute("c"))
    assert calls == ["a", "b", "c"]
    cache.get_or_compute(key, compute("a"))
    assert calls == ["a", "b", "c"]  # still cached
    cache.get_or_compute(ended, compute("b"))
    assert calls == ["a", "b", "c", "b"]  # evicted, so recomputed
    cache.clear()
    cache.get_or_compute(key, compute("a"))
    assert calls[-1] == "a" and len(calls) == 5
