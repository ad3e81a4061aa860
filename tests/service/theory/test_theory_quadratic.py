"""Model B Monte-Carlo state evolution against THEORY.md sections 0, 4, 5.3 and its references."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from numerics import symmetric_divergence
from reference import PATH, reference_cases

from service.theory import predict, predicted_spectrum
from service.theory.point import SEPoint
from service.theory.quadratic import _eig, _risk_df, default_draws, goe_draws, solve


def _reference(d: int) -> list[dict[str, Any]]:
    return [c for c in reference_cases("quad") if c["d"] == d and "rank_se" in c]


def test_goe_draws_normalisation() -> None:
    g = goe_draws(30, 400, seed=3)
    assert np.allclose(g, np.swapaxes(g, 1, 2))
    # every draw rescaled to ||G||_F^2 = d(d+1) exactly (rounding only)
    np.testing.assert_allclose(np.sum(g * g, axis=(1, 2)), 30 * 31, rtol=1e-12)
    diag = np.diagonal(g, axis1=1, axis2=2)
    off = g[:, np.triu_indices(30, 1)[0], np.triu_indices(30, 1)[1]]
    # variance 2 on the diagonal, 1 off it (THEORY pitfall 8.2); 12 000 diagonal samples: 5 %
    assert np.var(diag) == pytest.approx(2.0, rel=0.05)
    assert np.var(off) == pytest.approx(1.0, rel=0.02)


@pytest.mark.parametrize(
    ("d", "n", "lam", "delta"), [(10, 10**6, 1e-3, 1.0), (10, 2000, 0.01, 0.0)]
)
@pytest.mark.parametrize("draws", [1, 5])
def test_no_eigenvalue_thresholded_is_exact(
    d: int, n: int, lam: float, delta: float, draws: int
) -> None:
    # gamma = 0.5: the smallest teacher eigenvalue (0.13) is far above the noise edge and zeta,
    # so eta(Y) = Y - zeta I for every draw. With ||G||^2 normalised and the antithetic partner
    # cancelling tr G, R does not depend on the draws: THEORY 0's formula holds exactly.
    big_d = d * (d + 1) / 2
    p = predict("quadratic", d, n, lam, 0.5, delta, draws=draws)
    exact = delta * big_d / (n - big_d) + d * lam**2 / (8 * (1 - big_d / n) ** 3)
    assert p.excess_risk == pytest.approx(exact, rel=1e-6)  # tolerance 1e-6 (THEORY 0)
    assert p.df == pytest.approx(big_d, rel=1e-9)
    assert p.support == d
    assert p.zeta == pytest.approx(lam / (4 * (1 - big_d / n)), rel=1e-6)


@pytest.mark.parametrize("delta", [0.0, 0.01])
def test_huge_weight_decay_gives_unit_risk(delta: float) -> None:
    p = predict("quadratic", 20, 400, 1e6, 1.0, delta)
    assert p.excess_risk == pytest.approx(1.0, abs=1e-6)  # all thresholded: 2||S*||^2 = 1
    assert p.support == 0 and p.df == 0


def test_divergence_matches_finite_differences() -> None:
    # df of one draw against central differences of eta over an orthonormal basis of Sym(d)
    d, zeta = 6, 0.05
    lam = np.linspace(0.3, 0.0, d)
    g = goe_draws(d, 1, seed=4)[0]
    y = np.diag(lam) + 0.05 * g

    def eta(m: np.ndarray) -> np.ndarray:
        mu, v = np.linalg.eigh(m)
        out: np.ndarray = (v * np.maximum(mu - zeta, 0.0)) @ v.T
        return out

    fd = symmetric_divergence(eta, y, h=1e-6)
    mu = np.sort(np.linalg.eigvalsh(y))[::-1]
    p = int(np.sum(mu > zeta))
    dk = (
        p
        + p * (p - 1) / 2
        + sum((mu[a] - zeta) / (mu[a] - mu[b]) for a in range(p) for b in range(p, d))
    )
    assert dk == pytest.approx(fd, rel=1e-6)  # finite differences, h = 1e-6
    e_ = _eig(lam, g[None], np.array([0.0]), 0.05)  # zero trace: the partner is the same draw
    assert _risk_df(e_, zeta, float(np.sum(lam**2)))[1] == pytest.approx(dk, rel=1e-9)


# d = 40 subset (every third case of the reference, K = 200 as in the reference): covers the
# variance-dominated, thresholding, trace-bias and df/n -> 1 regimes.
D40 = [(i, c) for i, c in enumerate(_reference(40) if PATH.is_file() else []) if i % 3 == 0]
D80 = _reference(80) if PATH.is_file() else []


def _check_case(c: dict[str, Any], draws: int) -> None:
    p = predict("quadratic", c["d"], c["n"], c["lam"], c["gamma"], c["Delta"], draws=draws)
    # tolerance 3 %: both our K = 200 (d=40) / 60 (d=80) solve and the reference carry Monte-Carlo
    # error (THEORY 4.3: per-draw 2/d to 6/d, so <= 1 % per solve and <= 1.4 % for the
    # difference in the df/n -> 1 corner; the reference also runs ~0.3-0.7 % high where our value
    # is exact, see test_no_eigenvalue_thresholded_is_exact). Observed: -0.7 % .. +1.2 %.
    assert p.excess_risk == pytest.approx(c["R_se"], rel=0.03), c
    assert abs(p.support - c["rank_se"]) <= 1.5  # predicted rank +-1.5
    if "zeta" in c:
        assert p.zeta == pytest.approx(c["zeta"], rel=0.03)  # same Monte-Carlo error
        assert p.df == pytest.approx(c["df_se"], rel=0.01)  # df is much less noisy than R


@pytest.mark.slow
@pytest.mark.parametrize(("i", "case"), D40, ids=[str(i) for i, _ in D40])
def test_reference_values_d40(i: int, case: dict[str, Any]) -> None:
    _check_case(case, draws=200)


@pytest.mark.slow
@pytest.mark.parametrize("case", D80[::2], ids=[str(i) for i in range(len(D80[::2]))])
def test_reference_values_d80(case: dict[str, Any]) -> None:
    _check_case(case, draws=60)


def test_default_draws_and_corner_resolve() -> None:
    assert default_draws(40) == 25 and default_draws(80) == 7 and default_draws(1000) == 1
    assert default_draws(40, sensitive=True) == 225
    p = predict("quadratic", 40, 800, 0.003, 1.0, 0.0)  # df/n ~ 0.9: re-solved with K = 225
    assert p.draws == 225
    q = predict("quadratic", 40, 1600, 0.3, 1.0, 0.01)
    assert q.draws == 25


def test_prediction_fields_and_spectrum() -> None:
    d, n, lam = 40, 1600, 0.1
    p = predict("quadratic", d, n, lam, 1.0, 0.01)
    assert p.tau is None and p.sigma is not None and p.sigma > 0
    assert p.train_mse == pytest.approx((1 - p.df / n) ** 2 * (0.01 + p.excess_risk), rel=1e-12)
    assert p.finite_size_note is not None and "c≈3-5" in p.finite_size_note  # thresholding
    s = predicted_spectrum(predict("quadratic", d, n, lam, 1.0, 0.01))
    assert s.shape == (d,)
    assert np.all(s >= 0) and np.all(np.diff(s) <= 0)
    positive = int(np.sum(s > 0))
    # average of sorted draws: positive up to the largest rank over the 2K draws (rank +- few)
    assert p.support - 1 <= positive <= p.support + 4
    # top outlier: lam_1 + d sigma^2/lam_1 - zeta (THEORY 4.5), tolerance 2 %
    lam1 = 1.0 / math.sqrt(2 * float(np.sum(np.arange(1, d + 1) ** -2.0)))
    assert s[0] == pytest.approx(lam1 + d * p.sigma**2 / lam1 - p.zeta, rel=0.02)


@pytest.mark.slow
def test_d1000_against_section_7_3() -> None:
    # THEORY 7.3 (d = 1000, K = 1, lambda = 1.4 (alpha d)^-l): gamma = 1, Delta = 0, l = 1/2,
    # alpha = 0.1 has df/n = 0.08 and rank 18 (both quoted to 2 digits).
    d, alpha = 1000, 0.1
    n = int(alpha * d * d)
    p = predict("quadratic", d, n, 1.4 * (alpha * d) ** -0.5, 1.0, 0.0)
    assert p.draws == 1
    assert p.df / n == pytest.approx(0.08, abs=0.005)  # table rounding
    assert abs(p.support - 18) <= 1.5  # predicted rank +-1.5


@pytest.mark.parametrize(
    ("alpha", "lam", "delta", "label"),
    [(2.0, 0.001, 0.01, "c≈2-3"), (1.0, 0.1, 0.01, "c≈3-5"), (2.0, 0.01, 0.0, "c≈5-6")],
)
def test_finite_size_note_regimes(alpha: float, lam: float, delta: float, label: str) -> None:
    # THEORY 5.3's three study cases: variance-dominated, thresholding, pure trace bias
    p = predict("quadratic", 40, int(alpha * 1600), lam, 1.0, delta)
    assert p.finite_size_note is not None and label in p.finite_size_note


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        predict("quadratic", 10, 100, 0.0, 1.0, 0.0)  # needs weight_decay > 0
    with pytest.raises(ValueError):
        predict("quadratic", 10, 100, 0.1, 1.0, 0.0, rank=11)
    with pytest.raises(ValueError):
        solve(SEPoint(10, 100, 0.1, 1.0, 0.0), draws=0)
