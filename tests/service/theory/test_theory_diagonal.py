"""Model A state evolution against THEORY.md sections 0, 3, 7.2 and its reference values."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from reference import reference_cases

from service.theory import predict, predicted_spectrum
from service.theory.diagonal import coordinate_moments, solve
from service.theory.point import SEPoint


def _reference(model: str) -> list[dict[str, Any]]:
    return reference_cases(model)


@pytest.mark.parametrize(
    ("d", "n", "lam", "delta"), [(10, 100_000, 1e-3, 1.0), (100, 10**6, 1e-2, 1.0)]
)
def test_no_coordinate_thresholded_is_ols_plus_shrinkage(
    d: int, n: int, lam: float, delta: float
) -> None:
    # gamma = 0.5: the smallest |theta*_k| is >= 40 tau above zeta, so nothing is thresholded
    # and the special case of THEORY.md section 0 holds exactly.
    p = predict("diagonal", d, n, lam, 0.5, delta)
    exact = delta * d / (n - d) + d * lam**2 / (1 - d / n) ** 3
    assert p.excess_risk == pytest.approx(exact, rel=1e-6)  # tolerance 1e-6 (THEORY 0)
    assert p.df == pytest.approx(d, rel=1e-9)  # every coordinate kept
    assert p.zeta == pytest.approx(lam / (1 - d / n), rel=1e-6)  # calibration with df = d


@pytest.mark.parametrize("gamma", [0.75, 1.5])
@pytest.mark.parametrize("delta", [0.0, 0.01])
def test_huge_weight_decay_gives_unit_risk(gamma: float, delta: float) -> None:
    p = predict("diagonal", 1000, 300, 1e6, gamma, delta)
    assert p.excess_risk == pytest.approx(1.0, abs=1e-6)  # everything thresholded: ||theta*||^2
    assert p.df < 1e-6


def test_reference_values() -> None:
    cases = _reference("diag")
    assert len(cases) == 112
    worst = dict.fromkeys(("R_se", "tau", "zeta", "df_se"), 0.0)
    for c in cases:
        s = solve(SEPoint(c["d"], c["n"], c["lam"], c["gamma"], c["Delta"], c["r"]))
        got = {"R_se": s.excess_risk, "tau": s.tau, "zeta": s.zeta, "df_se": s.df}
        for key, value in got.items():
            worst[key] = max(worst[key], abs(value / c[key] - 1.0))
    # tolerance 1e-3 relative on every field (observed <= 5e-13: same equations, same teacher)
    assert max(worst.values()) < 1e-3, worst


def test_closed_forms_against_monte_carlo() -> None:
    rng = np.random.default_rng(1)
    t = np.array([0.0, 0.05, 0.3])
    tau, zeta = 0.1, 0.12
    mse, p = coordinate_moments(t, tau, zeta)
    z = rng.standard_normal((400_000, 1))
    v = t + tau * z
    soft = np.sign(v) * np.maximum(np.abs(v) - zeta, 0.0)
    # 400k samples: Monte-Carlo relative error ~0.3 %; tolerance 2 %
    np.testing.assert_allclose(mse, np.mean((soft - t) ** 2, axis=0), rtol=2e-2)
    np.testing.assert_allclose(p, np.mean(soft != 0, axis=0), rtol=2e-2)


def test_underdetermined_noiseless_small_lambda() -> None:
    # THEORY 3.2: the naive iteration fails here (ends at 0.47); the SE value is 0.084.
    s = solve(SEPoint(1000, 500, 1e-3, 0.75, 0.0))
    assert s.df < 500
    assert 0.05 < s.excess_risk < 0.12  # loose bracket around the correct 0.084
    s = solve(SEPoint(1000, 100, 1e-4, 0.75, 0.0))
    assert s.df < 100 and math.isfinite(s.excess_risk)


def test_zero_weight_decay_limits() -> None:
    # n > d, Delta > 0, lambda = 0: OLS, R = Delta d/(n - d) exactly (tolerance 1e-6).
    p = predict("diagonal", 50, 1000, 0.0, 1.0, 0.1)
    assert p.excess_risk == pytest.approx(0.1 * 50 / 950, rel=1e-6)
    # n < d: the min-l1 interpolation limit, df -> n; continuous with tiny lambda (1e-3 relative)
    lim = predict("diagonal", 1000, 300, 0.0, 1.0, 0.01)
    small = predict("diagonal", 1000, 300, 1e-9, 1.0, 0.01)
    assert lim.df == pytest.approx(300, rel=1e-6)
    assert lim.excess_risk == pytest.approx(small.excess_risk, rel=1e-3)


def test_prediction_fields_and_train_mse() -> None:
    p = predict("diagonal", 1000, 1000, 3e-3, 0.75, 0.01)
    # THEORY 6 check values: tau = 0.00718, zeta = 0.00697, df = 570 (quoted to 3 digits)
    assert p.tau == pytest.approx(0.00718, rel=2e-3)
    assert p.zeta == pytest.approx(0.00697, rel=2e-3)
    assert p.df == pytest.approx(570, abs=1)
    assert p.sigma is None and p.finite_size_note is None and p.draws == 0
    assert p.support == p.df
    assert p.train_mse == pytest.approx((1 - p.df / p.n) ** 2 * (0.01 + p.excess_risk), rel=1e-12)
    assert predict("diagonal", 1000, 1000, 3e-3, 0.75, 0.01) is p  # cached


def test_predicted_spectrum_shape() -> None:
    p = predict("diagonal", 1000, 1000, 3e-3, 0.75, 0.01)
    s = predicted_spectrum(predict("diagonal", 1000, 1000, 3e-3, 0.75, 0.01))
    assert s.shape == (1000,)
    assert np.all(s >= 0) and np.all(np.diff(s) <= 0)
    positive = int(np.sum(s > 0))
    # average of 200 sorted draws: positive up to the largest draw's non-zero count, which
    # exceeds df = E(count) by at most a few std (std <= sqrt(df))
    assert p.df - 1 <= positive <= p.df + 4 * math.sqrt(p.df) + 1
    # top of the profile: theta*_1 - zeta within a few tau (THEORY 6)
    theta1 = solve(SEPoint(1000, 1000, 3e-3, 0.75, 0.01)).values[0]
    assert p.tau is not None
    assert abs(s[0] - (theta1 - p.zeta)) < 3 * p.tau  # tolerance 3 tau
    s[0] = -1.0  # a copy: the cache is untouched
    assert predicted_spectrum(predict("diagonal", 1000, 1000, 3e-3, 0.75, 0.01))[0] > 0


def test_predicted_spectrum_large_d_uses_quantiles() -> None:
    p = predict("diagonal", 200_000, 100_000, 0.5 * 100_000**-0.5, 1.0, 0.01)
    s = predicted_spectrum(predict("diagonal", 200_000, 100_000, 0.5 * 100_000**-0.5, 1.0, 0.01))
    assert s.shape == (200_000,)
    assert np.all(s >= 0) and np.all(np.diff(s) <= 0)
    assert abs(int(np.sum(s > 0)) - p.df) <= 1  # quantiles: count = round(df) (tolerance 1)


W2_CASES = [
    # (family, gamma, Delta, l, n_lo, n_hi, THEORY 7.2 table value)
    ("d=2n", 1.0, 0.0, 0.25, 1e6, 1e7, 0.249),
    ("d=2n", 1.5, 0.0, 0.5, 1e6, 1e7, 0.666),
    ("d=1000", 1.0, 0.01, 1.0, 1e4, 1e5, 1.028),
    ("d=1000", 0.75, 0.0, 0.25, 1e4, 1e5, 0.192),
]


@pytest.mark.parametrize(("family", "gamma", "delta", "power", "lo", "hi", "table"), W2_CASES)
def test_se_slope_in_window_w2(
    family: str, gamma: float, delta: float, power: float, lo: float, hi: float, table: float
) -> None:
    ns = np.geomspace(lo, hi, 5).round().astype(int)
    risks = []
    for n in ns:
        d = 2 * int(n) if family == "d=2n" else 1000
        risks.append(
            predict("diagonal", d, int(n), 0.5 * float(n) ** -power, gamma, delta).excess_risk
        )
    slope = -np.polyfit(np.log(ns), np.log(risks), 1)[0]
    assert slope == pytest.approx(table, abs=0.01)  # tolerance +-0.01 (THEORY 7.2)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        predict("diagonal", 10, 10, -1.0, 1.0, 0.0)
    with pytest.raises(ValueError):
        predict("diagonal", 10, 10, 1.0, 1.0, -0.1)
    with pytest.raises(ValueError):
        predict("cubic", 10, 10, 1.0, 1.0, 0.0)  # type: ignore[arg-type]
