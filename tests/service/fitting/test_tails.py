"""Power-law fits of spectra (service/fitting/tails.py; THEORY.md section 6, PEERS.md 5.1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from service.errors import FitError
from service.fitting.tails import _bootstrap_alphas, _fit_sorted, fit_rank, fit_tail


def pareto(alpha: float, n: int, xmin: float, seed: int) -> np.ndarray:
    """n samples of the density p(x) = (alpha-1)/xmin (x/xmin)^-alpha, x >= xmin."""
    rng = np.random.default_rng(seed)
    return (rng.pareto(alpha - 1.0, n) + 1.0) * xmin


def reference_tail_fit(values: np.ndarray, min_tail: int = 10) -> tuple[float, float, int, float]:
    """Clauset et al. by the book: one candidate at a time, KS statistic from scipy."""
    x = np.sort(values[values > 0])
    best = (math.nan, math.nan, 0, math.inf)
    for xmin in np.unique(x):
        tail = x[x >= xmin]
        s = float(np.sum(np.log(tail / xmin)))
        if tail.size < min_tail or s == 0.0:
            continue
        alpha = 1.0 + tail.size / s
        ks = stats.kstest(tail, lambda t, a=alpha, m=xmin: 1.0 - (t / m) ** (1.0 - a)).statistic
        if ks < best[3]:
            best = (alpha, float(xmin), int(tail.size), float(ks))
    return best


# ------------------------------------------------------------------------------------------------
# fit_tail


@pytest.mark.parametrize("alpha", [1.67, 2.0, 2.33, 3.0])
def test_fit_tail_recovers_pareto_exponent(alpha: float) -> None:
    x = pareto(alpha, 2000, xmin=0.5, seed=0)
    fit = fit_tail(x, rng=np.random.default_rng(1))
    # 5%: the MLE has relative sd ~ (alpha-1)/(alpha sqrt(n_tail)) <= 1.6% at n_tail >= 1000;
    # over 100 seeds (no bootstrap) the largest error was 3.1/3.9/4.5/5.2% and only one of the
    # 400 fits exceeded 5%
    assert fit.alpha == pytest.approx(alpha, rel=0.05)
    lo, hi = fit.alpha_ci
    assert lo < alpha < hi  # 95% percentile bootstrap interval covers the truth (fixed seed)
    assert lo < fit.alpha < hi  # the point estimate lies inside its own interval
    assert fit.n_bootstrap == 200  # every replicate could be fitted
    assert 10 <= fit.n_tail <= 2000
    assert fit.n_tail == int(np.count_nonzero(x >= fit.xmin))  # n_tail counts values >= xmin
    assert fit.xmin >= 0.5  # xmin is one of the samples
    assert fit.sigma == pytest.approx((fit.alpha - 1) / math.sqrt(fit.n_tail), rel=1e-12)


def test_fit_tail_finds_xmin_above_a_uniform_body() -> None:
    rng = np.random.default_rng(0)
    tail = (rng.pareto(1.0, 2000) + 1.0) * 1.0  # alpha = 2 above xmin = 1
    body = rng.uniform(0.0, 1.0, 1000)  # a non-power-law bulk below the tail
    fit = fit_tail(np.concatenate([body, tail]), rng=np.random.default_rng(1), n_bootstrap=20)
    # [0.95, 1.3]: this seed gives 1.005; over 60 seeds the 5-95% range was [0.97, 1.70] (KS can
    # move xmin up into the tail, never below the edge of the body); a fit that ignored the body
    # would put xmin near 0 and alpha near 1
    assert 0.95 <= fit.xmin <= 1.3
    assert fit.alpha == pytest.approx(2.0, rel=0.05)  # 5%, as in the pure Pareto test
    assert fit.n_tail >= 1500  # most of the 2000 tail samples are used


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_tail_matches_reference_implementation_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # rounding creates many ties, the case the vectorised KS bookkeeping must get right
    x = np.round(np.concatenate([rng.uniform(0, 1, 100), (rng.pareto(1.2, 300) + 1.0)]), 1)
    got = _fit_sorted(np.sort(x[x > 0]), 10, None)  # the internal fit takes positive values
    ref = reference_tail_fit(x)
    assert got is not None
    assert got[1] == ref[1]  # same xmin (exact: both pick among the data values)
    assert got[2] == ref[2]  # same n_tail (exact)
    assert got[0] == pytest.approx(ref[0], rel=1e-12)  # alpha: summation order only
    assert got[3] == pytest.approx(ref[3], rel=1e-9, abs=1e-12)  # KS: exp vs power rounding


def test_ks_distance_is_scipys_statistic_at_the_chosen_xmin() -> None:
    x = pareto(2.5, 500, xmin=2.0, seed=3)
    fit = fit_tail(x, rng=np.random.default_rng(0), n_bootstrap=0)
    tail = x[x >= fit.xmin]
    ks = stats.kstest(tail, lambda t: 1.0 - (t / fit.xmin) ** (1.0 - fit.alpha)).statistic
    assert fit.ks_distance == pytest.approx(ks, rel=1e-9)  # same statistic, rounding only


def test_fit_tail_refuses_nine_points_and_accepts_ten() -> None:
    x = pareto(2.0, 10, xmin=1.0, seed=4)
    with pytest.raises(FitError, match=r"fit: 9 positive, at least 10"):
        fit_tail(x[:9], rng=np.random.default_rng(0))
    fit = fit_tail(x, rng=np.random.default_rng(0), n_bootstrap=50)
    assert fit.n_tail == 10  # with min_tail=10 the only candidate is the smallest value
    assert fit.xmin == x.min()


def test_fit_tail_drops_non_positive_and_tiny_values() -> None:
    x = pareto(2.0, 300, xmin=1.0, seed=5)
    padded = np.concatenate([x, np.zeros(50), -x[:20], np.full(30, 1e-13 * x.max())])
    a = fit_tail(x, rng=np.random.default_rng(7), n_bootstrap=30)
    b = fit_tail(padded, rng=np.random.default_rng(7), n_bootstrap=30)
    assert a == b  # identical: the padding is removed before fitting and resampling
    with pytest.raises(FitError, match=r"fit: 9 positive, at least 10 needed \(of 60 values"):
        fit_tail(np.concatenate([x[:9], np.zeros(51)]), rng=np.random.default_rng(0))


def test_fit_tail_rejects_non_finite_values() -> None:
    x = pareto(2.0, 50, xmin=1.0, seed=6)
    x[3] = np.nan
    with pytest.raises(FitError, match="not finite"):
        fit_tail(x, rng=np.random.default_rng(0))


def test_fit_tail_scale_invariance() -> None:
    x = pareto(2.2, 400, xmin=1.0, seed=8)
    base = fit_tail(x, rng=np.random.default_rng(2), n_bootstrap=40)
    pow2 = fit_tail(x * 2.0**-20, rng=np.random.default_rng(2), n_bootstrap=40)
    # exact: the fit works on x / max(x), which a power of two leaves bit-identical
    assert pow2.alpha == base.alpha
    assert pow2.alpha_ci == base.alpha_ci
    assert pow2.xmin == base.xmin * 2.0**-20
    scaled = fit_tail(x * 1234.5, rng=np.random.default_rng(2), n_bootstrap=40)
    assert scaled.alpha == pytest.approx(base.alpha, rel=1e-10)  # 1e-10: rounding of x*c only
    assert scaled.n_tail == base.n_tail  # same xmin chosen
    assert scaled.alpha_ci == pytest.approx(base.alpha_ci, rel=1e-10)  # same, per replicate


def test_fit_tail_bootstrap_is_reproducible() -> None:
    x = pareto(2.0, 300, xmin=1.0, seed=9)
    a = fit_tail(x, rng=np.random.default_rng(11), n_bootstrap=50)
    b = fit_tail(x, rng=np.random.default_rng(11), n_bootstrap=50)
    c = fit_tail(x, rng=np.random.default_rng(12), n_bootstrap=50)
    assert a.alpha_ci == b.alpha_ci  # exact: same seed, same resamples
    assert a.alpha == c.alpha  # exact: the point estimate does not use the rng
    assert a.alpha_ci != c.alpha_ci  # another seed gives other resamples


def test_fit_tail_without_bootstrap_reports_asymptotic_interval() -> None:
    x = pareto(2.0, 200, xmin=1.0, seed=10)
    fit = fit_tail(x, rng=np.random.default_rng(0), n_bootstrap=0)
    assert fit.n_bootstrap == 0
    half = 1.959963984540054 * fit.sigma
    assert fit.alpha_ci == pytest.approx((fit.alpha - half, fit.alpha + half), rel=1e-12)


def test_fit_tail_candidate_limit() -> None:
    x = pareto(2.0, 1000, xmin=1.0, seed=11)
    full = fit_tail(x, rng=np.random.default_rng(0), n_bootstrap=0)
    same = fit_tail(x, rng=np.random.default_rng(0), n_bootstrap=0, max_candidates=5000)
    assert same == full  # exact: a limit above the number of candidates changes nothing
    coarse = fit_tail(x, rng=np.random.default_rng(0), n_bootstrap=0, max_candidates=50)
    assert coarse.alpha == pytest.approx(2.0, rel=0.1)  # 10%: 50 candidates, n_tail >= 20
    assert coarse.ks_distance >= full.ks_distance  # a subset of candidates cannot do better


def test_fit_tail_all_tail_values_equal() -> None:
    with pytest.raises(FitError, match="all its values equal"):
        fit_tail(np.ones(20), rng=np.random.default_rng(0))


# ------------------------------------------------------------------------------------------------
# fit_rank


@pytest.mark.parametrize("gamma", [0.5, 1.0, 1.5])
@pytest.mark.parametrize("c", [1.0, 3.7e-4])
def test_fit_rank_exact_on_power_law(gamma: float, c: float) -> None:
    k = np.arange(1, 301, dtype=np.float64)
    values = np.random.default_rng(0).permutation(c * k**-gamma)  # any order
    fit = fit_rank(values)
    assert fit.exponent == pytest.approx(gamma, abs=1e-10)  # noise-free: rounding only
    assert fit.prefactor == pytest.approx(c, rel=1e-10)
    assert fit.n_points == 300
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)


def test_fit_rank_default_floor_and_explicit_n_points() -> None:
    k = np.arange(1, 51, dtype=np.float64)
    head = 2.0 * k**-0.8
    values = np.concatenate([head, np.full(10, 1e-10), np.zeros(40), -head[:5]])
    fit = fit_rank(values)
    assert fit.n_points == 50  # 1e-10 < 1e-8 * max is below the floor; zeros, negatives out
    assert fit.exponent == pytest.approx(0.8, abs=1e-10)  # noise-free
    assert fit_rank(values, rel_floor=0.0).n_points == 60  # floor 0: every positive value
    top = fit_rank(values, n_points=20)
    assert top.n_points == 20
    assert top.exponent == pytest.approx(0.8, abs=1e-10)  # noise-free
    with pytest.raises(FitError, match="exceeds the 60 positive values"):
        fit_rank(values, n_points=61)


def test_fit_rank_scale_invariance() -> None:
    values = np.random.default_rng(1).lognormal(size=100)
    base = fit_rank(values)
    assert fit_rank(values * 2.0**30).exponent == base.exponent  # exact: power of two
    scaled = fit_rank(values * 987.6)
    assert scaled.exponent == pytest.approx(base.exponent, rel=1e-10)  # rounding of x*c only
    assert scaled.prefactor == pytest.approx(987.6 * base.prefactor, rel=1e-10)
    assert scaled.r2 == pytest.approx(base.r2, rel=1e-10)


def test_fit_rank_refuses_fewer_than_three_points() -> None:
    with pytest.raises(FitError, match="got 2"):
        fit_rank([3.0, 1.0, 0.0, 0.0])
    with pytest.raises(FitError, match="got 0"):
        fit_rank(np.zeros(5))
    with pytest.raises(FitError, match="got 2"):
        fit_rank([3.0, 2.0, 1.0], n_points=2)
    fit = fit_rank([4.0, 2.0, 1.0])
    assert fit.n_points == 3
    flat = fit_rank(np.full(5, 2.0))
    assert flat.exponent == 0.0 and flat.r2 == 1.0  # exact: a flat profile is a perfect line


# ------------------------------------------------------------------------------------------------
# theory: rank profile lambda_k = C k^-gamma <-> density tail alpha = 1 + 1/gamma


@pytest.mark.parametrize("gamma", [0.5, 0.75, 1.0, 1.5])
def test_tail_alpha_of_a_power_law_rank_profile(gamma: float) -> None:
    K = 200
    lam = 0.3 * np.arange(1, K + 1, dtype=np.float64) ** -gamma  # retained eigenvalues
    fit = fit_tail(lam, rng=np.random.default_rng(0), n_bootstrap=50)
    # Finite size: the tail is the top n = n_tail ranks, for which the MLE is exactly
    # alpha - 1 = n / (gamma (n ln n - ln n!)) = (1/gamma) / (1 - ln(2 pi n)/(2n) + ...);
    # at n = 200 that is 1.8% above 1/gamma, i.e. about +1% on alpha.
    n = fit.n_tail
    exact = 1.0 + n / (gamma * (n * math.log(n) - math.lgamma(n + 1)))
    assert fit.alpha == pytest.approx(exact, rel=1e-12)  # the MLE formula, rounding only
    assert n >= 100  # KS keeps most of the profile, so the bias bound below applies
    # 3%: the finite-size bias ln(2 pi n)/(2n) is <= 3.2% of alpha - 1 for n >= 100, and
    # alpha - 1 < alpha
    assert fit.alpha == pytest.approx(1.0 + 1.0 / gamma, rel=0.03)
    assert fit.alpha > 1.0 + 1.0 / gamma  # the bias is upward
    assert fit_rank(lam).exponent == pytest.approx(gamma, abs=1e-10)  # noise-free


@pytest.mark.parametrize("ties", [False, True])
def test_batched_bootstrap_picks_the_same_fit_as_one_replicate_at_a_time(ties: bool) -> None:
    # fit_tail bootstraps short spectra all at once; each replicate's exponent must be the one
    # _fit_sorted picks (same x_min by minimal KS, same skipped replicates), up to rounding
    rng = np.random.default_rng(7)
    for n in (10, 13, 30, 48):
        values = rng.pareto(1.5, size=n) + 0.01
        if ties:
            values = np.round(values, 1) + 0.1
        x = np.sort(values)
        draws = np.sort(rng.integers(0, n, size=(40, n)), axis=1)
        for min_tail in (2, 5, 10):
            fast, _ = _bootstrap_alphas(x[draws], min_tail)
            for i in range(draws.shape[0]):
                one = _fit_sorted(x[draws[i]], min_tail, None)
                if one is None:
                    assert np.isnan(fast[i])
                else:
                    assert fast[i] == pytest.approx(one[0], rel=1e-12)


# ------------------------------------------------------------------------------------------------
# goodness of fit (Clauset, Shalizi and Newman 2009, section 4.1)


def test_a_pareto_sample_passes_the_goodness_of_fit_test() -> None:
    x = pareto(2.0, 500, xmin=1.0, seed=0)
    fit = fit_tail(x, rng=np.random.default_rng(1), n_bootstrap=20)
    assert fit.p_value is not None and fit.p_value >= 0.1  # measured 0.69 with this seed
    assert fit.n_gof == 100


@pytest.mark.parametrize("kind", ["residue", "uniform"])
def test_tails_that_are_no_power_law_are_no_fit(kind: str) -> None:
    if kind == "residue":  # a run's seven learned values above an optimiser's residue
        top = np.array([0.65, 0.25, 0.17, 0.099, 0.031, 0.0095, 0.0047])
        res = np.geomspace(2e-7, 5e-11, 38) * np.random.default_rng(2).uniform(0.5, 2, 38)
        x = np.concatenate([top, res])
    else:
        x = np.random.default_rng(0).uniform(1.0, 2.0, 500)
    with pytest.raises(FitError, match=r"goodness-of-fit test rejects.*p = 0\.0"):
        fit_tail(x, rng=np.random.default_rng(1), n_bootstrap=20)
    kept = fit_tail(x, rng=np.random.default_rng(1), n_bootstrap=20, reject=False)
    assert kept.p_value is not None and kept.p_value < 0.1  # measured 0.00 for both


def test_the_p_value_is_the_share_of_synthetic_distances_at_least_the_observed() -> None:
    # an exact rank profile is as regular as a sample can be: every synthetic set is rougher
    lam = 0.3 * np.arange(1, 201, dtype=np.float64) ** -1.0
    fit = fit_tail(lam, rng=np.random.default_rng(0), n_bootstrap=0, n_gof=40)
    assert fit.p_value == 1.0 and fit.n_gof == 40
    off = fit_tail(lam, rng=np.random.default_rng(0), n_bootstrap=0, n_gof=0)
    assert off.p_value is None and off.n_gof == 0
