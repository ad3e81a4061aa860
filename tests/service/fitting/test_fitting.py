"""service.fitting: exact recovery, bootstrap coverage, form selection, determinism, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.errors import FitError
from service.fitting import (
    ScalingFit,
    fit_broken,
    fit_plateau,
    fit_power_law,
    fit_scaling,
)

X8 = np.geomspace(1e2, 1e5, 8)
LOG_SPAN = math.log(1e5 / 1e2)


def seeded(x: np.ndarray, n_seeds: int) -> tuple[np.ndarray, np.ndarray]:
    """x repeated for each seed, and the seed labels."""
    return np.repeat(x, n_seeds), np.tile(np.arange(n_seeds), x.size)


def noisy(rng: np.random.Generator, clean: np.ndarray, sigma: float = 0.1) -> np.ndarray:
    """Multiplicative log-normal noise: sigma in log (10 % per point)."""
    return clean * np.exp(sigma * rng.standard_normal(clean.shape))


def broken_truth(x: np.ndarray, xb: float, b1: float, b2: float, c: float = 2.0) -> np.ndarray:
    """Continuous broken power law: c x^-b1 below xb, slope -b2 above."""
    return np.where(x < xb, c * x**-b1, c * xb**-b1 * (x / xb) ** -b2)


# --------------------------------------------------------------------------------------
# exact recovery


@pytest.mark.parametrize("beta", [-0.3, 0.0, 1e-3, 0.05, 0.5, 1.0, 2.5])
@pytest.mark.parametrize("loss", ["huber", "l2"])
def test_power_law_exact(beta: float, loss: str) -> None:
    x = np.geomspace(10, 1e6, 9)
    exponent, prefactor = fit_power_law(x, 3.7 * x**-beta, loss=loss)  # type: ignore[arg-type]
    assert exponent == pytest.approx(beta, abs=1e-8)  # tolerance: 1e-8 absolute
    assert prefactor == pytest.approx(3.7, rel=1e-8)  # tolerance: 1e-8 relative


@pytest.mark.parametrize(
    ("r_inf", "c", "beta"), [(0.01, 5.0, 0.7), (1e-4, 0.3, 0.25), (2.0, 40.0, 1.5)]
)
def test_plateau_exact(r_inf: float, c: float, beta: float) -> None:
    # grid + bounded refinement + log-space polish: measured <= 3e-15 on beta and
    # <= 1e-13 relative on R_inf, C for these cases; asserted at 1e-6
    got_r, got_c, got_beta = fit_plateau(X8, r_inf + c * X8**-beta)
    assert got_beta == pytest.approx(beta, abs=1e-6)  # tolerance: 1e-6 absolute
    assert got_r == pytest.approx(r_inf, rel=1e-6)  # tolerance: 1e-6 relative
    assert got_c == pytest.approx(c, rel=1e-6)  # tolerance: 1e-6 relative


@pytest.mark.parametrize("xb", [10**3.3, float(X8[3])])  # between data points / on a point
def test_broken_exact(xb: float) -> None:
    breaks, exponents, prefactor = fit_broken(X8, broken_truth(X8, xb, 0.4, 1.2), 1)
    # measured: <= 2e-12 on the exponents, <= 1e-11 relative on the break
    assert exponents == pytest.approx([0.4, 1.2], abs=1e-6)  # tolerance: 1e-6 absolute
    assert breaks[0] == pytest.approx(xb, rel=1e-6)  # tolerance: 1e-6 relative in x
    # prefactor is C of the last segment: y = C x^-1.2 above the break
    assert prefactor == pytest.approx(2.0 * xb**-0.4 * xb**1.2, rel=1e-6)  # tol: 1e-6 rel


def test_exact_data_exponents() -> None:
    x, g = seeded(X8, 2)
    pl = fit_scaling(x, 3.0 * x**-0.5, g, bootstrap=0, forms=("power_law",))
    assert pl.exponent == pytest.approx(0.5, abs=1e-8)  # tolerance: 1e-8 absolute
    plat = fit_scaling(x, 0.01 + 5.0 * x**-0.7, g, bootstrap=0, forms=("plateau",))
    assert plat.exponent == pytest.approx(0.7, abs=1e-6)  # tolerance: 1e-6 absolute
    brk = fit_scaling(x, broken_truth(x, 10**3.3, 0.4, 1.2), g, bootstrap=0, max_breaks=1)
    assert [s.exponent for s in brk.segments] == pytest.approx([0.4, 1.2], abs=1e-6)  # 1e-6 abs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_selection_on_data_where_it_is_not_a_tie(seed: int) -> None:
    # On exact data the log residuals are round-off (1e-9) and the criteria tie, so the choice
    # would follow the rounding; 1 % scatter separates them by far more than the margin.
    rng = np.random.default_rng(seed)
    x, g = seeded(X8, 2)
    cases = {
        "power_law": 3.0 * x**-0.5,
        "plateau": 0.01 + 5.0 * x**-0.7,
        "broken_power_law": broken_truth(x, 10**3.3, 0.4, 1.2),
    }
    for form, clean in cases.items():
        fit = fit_scaling(x, noisy(rng, clean, 0.01), g, bootstrap=0)
        assert fit.form == form, fit.candidates
        others = [v for k, v in fit.candidates.items() if not k.startswith(form)]
        own = min(v for k, v in fit.candidates.items() if k.startswith(form))
        if form == "power_law":  # the others fitted must not beat it; the rest could not
            # gain the margin even with a perfect fit, and the fit says it skipped them
            assert not others or min(others) > own
            assert len(others) + len(fit.notes) > 0 and all("not fitted" in n for n in fit.notes)
            continue
        assert min(others) > own + 10  # AICc units: far from a tie
    brk = fit_scaling(x, noisy(rng, cases["broken_power_law"], 0.01), g, bootstrap=0)
    assert len(brk.breaks) == 1
    assert [s.exponent for s in brk.segments] == pytest.approx([0.4, 1.2], abs=0.05)  # 1 % noise


@pytest.mark.parametrize("seed", [0, 1])
def test_forms_that_cannot_gain_the_margin_are_skipped_without_changing_the_choice(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The skip is exact: fitting every form gives the same choice and exponent (1e-12)."""
    from service.fitting import scaling

    rng = np.random.default_rng(seed)
    x, g = seeded(X8, 3)
    data = [3.0 * x**-0.5, 0.01 + 5.0 * x**-0.7, broken_truth(x, 10**3.3, 0.4, 1.2)]
    ys = [noisy(rng, clean, s) for clean in data for s in (0.01, 0.2)]
    skipped = [fit_scaling(x, y, g, bootstrap=0) for y in ys]
    monkeypatch.setattr(scaling, "_hopeless", lambda *a, **k: set())
    for y, fit in zip(ys, skipped, strict=True):
        full = fit_scaling(x, y, g, bootstrap=0)
        assert (full.form, len(full.breaks)) == (fit.form, len(fit.breaks))
        assert full.exponent == pytest.approx(fit.exponent, rel=1e-12)
    assert any(f.notes for f in skipped)  # something was skipped


def test_a_form_the_data_do_not_support_gives_way_and_is_named() -> None:
    from service.fitting.scaling import _choose

    scores = {"power_law": 0.0, "plateau": -50.0, "broken_power_law_1": -40.0}
    params = {"power_law": 2, "plateau": 3, "broken_power_law_1": 4}
    assert _choose(scores, params, "aicc") == "plateau"
    assert _choose(scores, params, "aicc", exclude={"plateau"}) == "broken_power_law_1"
    assert _choose(scores, params, "aicc", exclude={"plateau", "broken_power_law_1"}) == "power_law"
    with pytest.raises(FitError, match="no form the data support"):
        _choose({"plateau": -50.0}, params, "aicc", exclude={"plateau"})


# --------------------------------------------------------------------------------------
# references and invariances


def test_l2_matches_polyfit() -> None:
    rng = np.random.default_rng(3)
    x = np.geomspace(1, 1e4, 12)
    y = noisy(rng, 2.0 * x**-0.8, 0.3)
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    exponent, prefactor = fit_power_law(x, y, loss="l2")
    assert exponent == pytest.approx(-slope, abs=1e-10)  # tolerance: 1e-10 absolute
    assert prefactor == pytest.approx(math.exp(intercept), rel=1e-10)  # tolerance: 1e-10 rel


def test_scaling_y_keeps_exponent() -> None:
    rng = np.random.default_rng(4)
    x, g = seeded(X8, 3)
    y = noisy(rng, 2.0 * x**-0.6)
    for loss in ("huber", "l2"):
        e1, c1 = fit_power_law(x, y, loss=loss)  # type: ignore[arg-type]
        e2, c2 = fit_power_law(x, 1e3 * y, loss=loss)  # type: ignore[arg-type]
        assert e2 == pytest.approx(e1, abs=1e-9)  # tolerance: 1e-9 absolute
        assert c2 == pytest.approx(1e3 * c1, rel=1e-9)  # tolerance: 1e-9 relative
    a = fit_scaling(x, y, g, bootstrap=50)
    b = fit_scaling(x, 7.0 * y, g, bootstrap=50)
    assert a.form == b.form
    assert b.exponent == pytest.approx(a.exponent, abs=1e-8)  # tolerance: 1e-8 absolute
    assert b.exponent_ci == pytest.approx(a.exponent_ci, abs=1e-8)  # tolerance: 1e-8 absolute


# --------------------------------------------------------------------------------------
# noisy data: coverage of the bootstrap interval, and the selection rule


def test_bootstrap_coverage() -> None:
    # 200 datasets (8 x, 5 seeds, 10 % log-normal noise), power-law form, 100 bootstrap
    # replicates over seeds each (fewer than the default 200 to keep the runtime down;
    # the form is fixed here for the same reason: with the default selection the measured
    # coverage is 92.5 %, see the module docstring of service.fitting.scaling).
    rng = np.random.default_rng(2026)
    x, g = seeded(X8, 5)
    clean = 3.0 * x**-0.6
    ys = noisy(rng, np.broadcast_to(clean, (200, clean.size)))
    hits = 0
    for i, y in enumerate(ys):
        fit = fit_scaling(x, y, g, forms=("power_law",), bootstrap=100, seed=i)
        lo, hi = fit.exponent_ci
        hits += lo <= 0.6 <= hi
    # measured 189 / 200 (94.5 %); required 90 %-99 % (180-198 of 200)
    assert 180 <= hits <= 198, hits


def test_power_law_selected_on_power_law_data() -> None:
    rng = np.random.default_rng(2027)
    x, g = seeded(X8, 5)
    clean = 3.0 * x**-0.6
    picks = [fit_scaling(x, noisy(rng, clean), g, bootstrap=0).form for _ in range(100)]
    # measured 91 / 100 with this generator seed (94 % and 91 % with two others; the rest
    # split between plateau and broken); required >= 85 of 100 pure power-law datasets
    assert picks.count("power_law") >= 85, picks.count("power_law")


def test_plateau_found() -> None:
    # R = R_inf + C x^-1 with C x^-1 = R_inf at x* = 10^3.5 (the middle of the sweep)
    rng = np.random.default_rng(7)
    x, g = seeded(X8, 5)
    x_star, r_inf = 10**3.5, 1e-3
    clean = r_inf + r_inf * x_star * x**-1.0
    n, found, errs = 20, 0, []
    for _ in range(n):
        fit = fit_scaling(x, noisy(rng, clean), g, bootstrap=0)
        if fit.form == "plateau":
            found += 1
            assert fit.plateau is not None
            x_hat = (fit.prefactor / fit.plateau) ** (1 / fit.exponent)
            errs.append(abs(math.log(x_hat / x_star)) / LOG_SPAN)
    # measured over 100 replicates: plateau 92 %, broken power law 8 % (AICc);
    # required: plateau in >= 16 of these 20
    assert found >= 16, found
    # tolerance: crossover within 10 % of the sweep's span in log x, every replicate
    # (measured: median 0.7 %, max 3.8 % over 100 replicates)
    assert max(errs) <= 0.10, errs


def test_break_found() -> None:
    rng = np.random.default_rng(8)
    x, g = seeded(X8, 5)
    xb = 10**3.3
    clean = broken_truth(x, xb, 0.3, 1.2)
    n, found, errs = 20, 0, []
    for _ in range(n):
        fit = fit_scaling(x, noisy(rng, clean), g, bootstrap=0)
        if fit.form == "broken_power_law":
            found += 1
            # measured over 100 replicates: one break 95 %, two breaks 5 %
            errs.append(min(abs(math.log(b / xb)) for b in fit.breaks) / LOG_SPAN)
            assert fit.exponent == pytest.approx(1.2, abs=0.15)  # tolerance: 0.15 absolute
    assert found >= 19, found  # broken form chosen in >= 95 % (measured 100 / 100)
    # tolerance: nearest break within 10 % of the sweep's span in log x, every replicate
    # (measured: median 0.8 %, max 4.6 % over 100 replicates)
    assert max(errs) <= 0.10, errs


def test_holdout_selection() -> None:
    rng = np.random.default_rng(9)
    x, g = seeded(X8, 5)
    y = noisy(rng, broken_truth(x, 10**3.3, 0.3, 1.2))
    fit = fit_scaling(x, y, g, bootstrap=0, selection="holdout")
    assert fit.selection.startswith("held-out RMSLE")
    assert fit.form == "broken_power_law"
    few = fit_scaling(X8[:5], 2.0 * X8[:5] ** -0.5, bootstrap=0, selection="holdout")
    assert few.selection.startswith("aicc")


# --------------------------------------------------------------------------------------
# determinism, fallbacks and errors


def test_deterministic() -> None:
    rng = np.random.default_rng(10)
    x, g = seeded(X8, 4)
    y = noisy(rng, 0.01 + 5.0 * x**-0.7)
    a, b = fit_scaling(x, y, g, bootstrap=60), fit_scaling(x, y, g, bootstrap=60)
    assert a.form == "plateau"
    assert a.model_dump() == b.model_dump()
    assert a.bootstrap == 60 and a.bootstrap_seed == 0
    assert fit_scaling(x, y, g, bootstrap=60, seed=1).exponent_ci != a.exponent_ci


def test_report_fields_and_fallbacks() -> None:
    rng = np.random.default_rng(11)
    y = noisy(rng, 3.0 * X8**-0.4)
    one_seed = fit_scaling(X8, y, bootstrap=100)
    assert isinstance(one_seed, ScalingFit)
    assert "over points" in one_seed.ci_method
    assert one_seed.n_points == 8 and one_seed.n_observations == 8
    assert set(one_seed.candidates) >= {"power_law", "plateau", "broken_power_law_1"}
    assert len(one_seed.segments) == len(one_seed.breaks) + 1
    none = fit_scaling(X8, y, bootstrap=0)
    assert none.ci_method.startswith("asymptotic") and none.bootstrap == 0
    lo, hi = none.exponent_ci
    assert all(math.isfinite(v) for v in (lo, hi)) and lo < none.exponent < hi
    exact = fit_scaling(X8[:4], 2.0 * X8[:4] ** -0.5, bootstrap=0)  # 4 points, zero residual
    assert exact.form == "power_law"
    assert all(math.isfinite(v) for v in exact.exponent_ci)
    with pytest.raises(FitError, match="too few distinct x to fit: 3"):
        fit_scaling(X8[:3], 2.0 * X8[:3] ** -0.5, bootstrap=0)


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([1.0, 2.0, 2.0, 1.0], [1.0, 0.5, 0.6, 1.1]),  # 2 distinct x
        ([1.0, 2.0, 3.0], [1.0, 0.5, 0.3]),  # 3 distinct x: a power law needs 4
        ([1.0, 2.0, 3.0], [1.0, 0.0, 0.3]),  # zero y
        ([1.0, 2.0, 3.0], [1.0, -0.5, 0.3]),  # negative y
        ([1.0, 2.0, 3.0], [1.0, float("nan"), 0.3]),  # non-finite y
        ([0.0, 2.0, 3.0], [1.0, 0.5, 0.3]),  # x <= 0
        ([1.0, 2.0, 3.0], [1.0, 0.5]),  # shapes differ
    ],
)
def test_fit_errors(x: list[float], y: list[float]) -> None:
    with pytest.raises(FitError):
        fit_scaling(x, y)


def test_bad_arguments() -> None:
    with pytest.raises(FitError):
        fit_scaling(X8, X8**-0.5, groups=[0, 1])
    with pytest.raises(FitError):
        fit_scaling(X8, X8**-0.5, forms=("exponential",))
    with pytest.raises(FitError):
        fit_scaling(X8, X8**-0.5, selection="bic")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# fast paths agree with the reference computations


def _huber_cost(design: np.ndarray, v: np.ndarray, coef: np.ndarray, scale: float) -> float:
    a = np.abs(v - design @ coef)
    return float(np.sum(np.where(a <= scale, 0.5 * a * a, scale * a - 0.5 * scale * scale)))


def test_huber_newton_matches_least_squares() -> None:
    """Active-set Newton lands on scipy's least_squares(loss="huber") optimum."""
    from service.fitting import forms

    rng = np.random.default_rng(11)
    checked = 0
    for _ in range(300):
        m, p = int(rng.integers(10, 300)), int(rng.integers(2, 5))
        u = rng.normal(size=m)
        design = np.column_stack(
            [np.ones(m), u] + [np.maximum(0.0, u - k) for k in np.linspace(-0.5, 0.5, p - 2)]
        )
        v = design @ rng.normal(size=p) + 0.1 * rng.standard_t(2, size=m)
        coef = np.linalg.lstsq(design, v, rcond=None)[0]
        scale = forms.huber_scale(v - design @ coef)
        fast = forms._huber_newton(design, v, coef, scale)
        ref = forms._huber_scipy(design, v, coef, scale)
        if fast is None:
            continue
        checked += 1
        # same convex optimum: the cost agrees to round-off and Newton is never worse
        assert _huber_cost(design, v, fast, scale) <= _huber_cost(design, v, ref, scale) + 1e-12
        assert fast == pytest.approx(ref, rel=1e-6, abs=1e-6)
    assert checked > 250


def test_power_law_exponents_vectorised_matches_form() -> None:
    from service.fitting import forms

    rng = np.random.default_rng(12)
    xs, ys = [], []
    for i in range(300):
        m = 100 if i % 2 else int(rng.integers(3, 200))
        x = (
            np.repeat(np.geomspace(10, 1e4, 10), m // 10 + 1)[:m]
            if i % 3
            else rng.uniform(1, 1e3, m)
        )
        xs.append(x)
        ys.append(2 * x ** -rng.uniform(0, 2) * np.exp(0.1 * rng.standard_t(2, size=m)))
    for loss in ("huber", "l2"):
        fast = forms.power_law_exponents(xs, ys, loss)
        ref = np.array(
            [forms.power_law_form(x, y, loss).exponent for x, y in zip(xs, ys, strict=True)]
        )
        ok = np.isfinite(fast)
        assert ok.mean() > 0.95
        np.testing.assert_allclose(fast[ok], ref[ok], rtol=0, atol=1e-12)


def test_break_profile_matches_rss_batch() -> None:
    """The closed-form one-break profile is the pooled least-squares RSS."""
    from service.fitting import forms

    rng = np.random.default_rng(13)
    x = np.repeat(np.geomspace(100, 1e5, 9), 7)
    u = np.log(x)
    uc = u - u.mean()
    v = -0.5 * uc - 0.4 * np.maximum(0, uc - 0.3) + rng.normal(0, 0.1, uc.size)
    pooled = forms._Pooled.of(uc, v)
    # pooled RSS = RSS on every observation
    t = np.array([-0.9, 0.3])
    design = forms._hinge(uc, t)
    resid = v - design @ np.linalg.lstsq(design, v, rcond=None)[0]
    assert forms._rss_batch(pooled, t[None, :])[0] == pytest.approx(resid @ resid, rel=1e-12)
    lo, hi = pooled.uc[3], pooled.uc[6]
    f = forms._break_profile(pooled, t, 1, lo, hi)
    for tj in np.linspace(lo, hi, 25):
        tt = t.copy()
        tt[1] = tj
        assert f(tj) == pytest.approx(forms._rss_batch(pooled, tt[None, :])[0], rel=1e-11)


def test_many_seeds_use_the_cluster_robust_interval_of_the_bootstraps_width() -> None:
    # 40 seeds: the sandwich interval (no refits) and the seed bootstrap's agree in width
    # (tolerance: a factor 1.3 either way, on this fixed dataset) and both hold the truth
    rng = np.random.default_rng(7)
    x = np.geomspace(100.0, 1e4, 8)
    xs, seeds = np.tile(x, 40), np.repeat(np.arange(40), x.size)
    ys = 2.0 * xs**-0.7 * np.exp(0.1 * rng.standard_normal(xs.size))
    fit = fit_scaling(xs, ys, seeds, bootstrap=200, seed=0)
    assert fit.form == "power_law" and fit.ci_method.startswith("cluster-robust sandwich over 40")
    assert fit.bootstrap == 0
    lo, hi = fit.exponent_ci
    assert lo < 0.7 < hi
    from service.fitting import scaling

    boot = scaling._replicate_fits(
        xs, ys, [np.flatnonzero(seeds == g) for g in range(40)], 2,
        lambda a, b, loss: scaling.power_law_form(a, b, loss), True,
        bootstrap=200, seed=0, loss="huber",
    )  # fmt: skip
    b_lo, b_hi = np.percentile([e for e, _ in boot], [2.5, 97.5])
    assert 1 / 1.3 < (hi - lo) / (b_hi - b_lo) < 1.3


def test_the_plateau_projection_is_scipys_nnls_for_every_exponent() -> None:
    from scipy.optimize import nnls

    from service.fitting.forms import _plateau_projection

    rng = np.random.default_rng(3)
    betas = np.geomspace(1e-3, 12.0, 9)
    for trial in range(60):  # plateau data, pure power laws and noise: every NNLS branch
        x = np.geomspace(10.0, 1e5, int(rng.integers(10, 120)))
        beta0 = rng.uniform(0.1, 2.0)
        clean = [0.05 + x**-beta0, x**-beta0, np.ones_like(x)][trial % 3]
        y = clean * np.exp(0.2 * rng.standard_normal(x.size))
        u = np.log(x)
        uc, inv_y = u - u.mean(), 1.0 / y
        r, c, rss = _plateau_projection(uc, inv_y, betas)
        for k, b in enumerate(betas):
            (r0, c0), norm = nnls(
                np.column_stack([inv_y, np.exp(-b * uc) * inv_y]), np.ones_like(y)
            )
            # tolerance: round-off of the 2x2 normal equations (1e-9 relative)
            assert rss[k] == pytest.approx(norm**2, rel=1e-9, abs=1e-12)
            assert (r[k], c[k]) == pytest.approx((r0, c0), rel=1e-6, abs=1e-9)


# --------------------------------------------------------------------------------------
# forms the data do not support (few x, a curve that does not flatten, R_inf near 0)


def test_four_x_values_are_no_plateau() -> None:
    # the README's quadratic sweep: 4 distinct x, 3 seeds; its 1e-3 group was fitted as a
    # plateau with beta 2.80 [2.46, 4.06] and a prefactor of 2.6e5
    rng = np.random.default_rng(3)
    x, g = seeded(np.array([0.5, 1.0, 2.0, 4.0]), 3)
    y = noisy(rng, 0.002 + 0.01 * x**-1.9)
    fit = fit_scaling(x, y, g, bootstrap=50)
    assert fit.form == "power_law"
    assert "plateau not tried: 3 parameters need 5 distinct x, there are 4" in fit.notes


def test_a_curve_bending_towards_a_slower_power_law_is_no_plateau() -> None:
    # the state evolution of plateau-crossover's l = 1/2 path (d = 1000, gamma = 1, Delta =
    # 0.01, lambda = 0.3 n^-1/2): R -> 0, its local slope falls from 1.10 to 0.59
    n = np.array([100.0, 200.0, 400.0, 800.0, 1600.0])
    se = np.array([0.12745, 0.05955, 0.03167, 0.01906, 0.01232])
    x, g = seeded(n, 4)
    rng = np.random.default_rng(0)
    picks = [fit_scaling(x, noisy(rng, np.repeat(se, 4), 0.05), g, bootstrap=0).form
             for _ in range(20)]  # fmt: skip
    assert "plateau" not in picks, picks
    exact = fit_scaling(x, np.repeat(se, 4), g, bootstrap=0)
    assert any("do not flatten" in note for note in exact.notes) or exact.form != "plateau"


def test_a_plateau_needs_r_inf_off_zero_and_an_approach_off_the_bounds() -> None:
    from service.fitting.scaling import _plateau_replicates

    good = [(1.0 + 0.01 * i, 1e-3 * (1 + 0.01 * i)) for i in range(100)]
    assert _plateau_replicates(good) is None
    # 3 % of the replicates without a plateau (NNLS puts R_inf at exactly 0)
    no_floor = good[:97] + [(1.0, 0.0)] * 3
    why = _plateau_replicates(no_floor)
    assert why is not None and "R_inf's 95 % interval includes 0" in why
    # 3 % of the replicates with the approach at the search bound (beta = 12)
    unresolved = good[:97] + [(12.0, 1e-3)] * 3
    why = _plateau_replicates(unresolved)
    assert why is not None and "not resolved" in why
    assert _plateau_replicates([]) is not None
