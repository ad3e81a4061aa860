"""The theory package's teachers equal the workers' (THEORY.md section 1); compressed teacher."""

from __future__ import annotations

import numpy as np
import pytest

from service.theory import diagonal, teachers
from workers import teachers as worker_teachers


@pytest.mark.parametrize("gamma", [0.5, 0.75, 1.0, 1.5])
@pytest.mark.parametrize(("d", "rank"), [(1, None), (40, None), (1000, None), (1000, 37)])
def test_teacher_vectors_equal_the_workers(d: int, rank: int | None, gamma: float) -> None:
    a = teachers.diagonal_coefficients(d, gamma, rank)
    b = worker_teachers.diagonal_coefficients(d, gamma, rank)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-15)  # tolerance 1e-15: same formula
    q = teachers.quadratic_eigenvalues(d, gamma, rank)
    w = worker_teachers.quadratic_eigenvalues(d, gamma, rank)
    np.testing.assert_allclose(q, w, rtol=0, atol=1e-15)  # tolerance 1e-15
    assert abs(float(np.sum(a**2)) - 1.0) < 1e-12  # unit norm, rounding only
    assert abs(2.0 * float(np.sum(q**2)) - 1.0) < 1e-12  # 2 sum lam^2 = 1, rounding only


def test_invalid_teacher_arguments() -> None:
    with pytest.raises(ValueError):
        teachers.diagonal_coefficients(10, 1.0, 11)
    with pytest.raises(ValueError):
        teachers.quadratic_eigenvalues(10, -1.0)


@pytest.mark.parametrize("s", [0.5, 1.0, 1.5, 3.0])
def test_power_sum_matches_direct_sum(s: float) -> None:
    a = np.array([1000.0, 4001.0, 12345.0])
    b = np.array([1000.0, 4005.0, 200000.0])
    direct = [float(np.sum(np.arange(lo, hi + 1) ** -s)) for lo, hi in zip(a, b, strict=True)]
    # tolerance 1e-12 relative: Euler-Maclaurin truncation ~a^-6, plus summation rounding
    np.testing.assert_allclose(teachers.power_sum(s, a, b), direct, rtol=1e-12)


@pytest.mark.parametrize(("d", "rank"), [(30_000, None), (10**9, None), (50_000, 100)])
@pytest.mark.parametrize("gamma", [0.5, 1.0])
def test_compressed_teacher_is_normalised(d: int, rank: int | None, gamma: float) -> None:
    values, weights = teachers.compressed_diagonal(d, gamma, rank)
    assert float(np.sum(weights)) == d  # multiplicities are exact integers
    assert abs(float(np.dot(weights, values**2)) - 1.0) < 1e-12  # unit norm (rounding)
    assert np.all(np.diff(values) <= 0)
    if d <= 50_000:
        exact = teachers.diagonal_coefficients(d, gamma, rank)
        r = d if rank is None else rank
        # head kept exactly (c from the exact finite sum): 1e-12 relative
        k = min(r, teachers.EXACT_HEAD)
        np.testing.assert_allclose(values[:k], exact[:k], rtol=1e-12)


@pytest.mark.parametrize("gamma", [0.5, 0.75, 1.5])
@pytest.mark.parametrize(
    ("n", "lam", "delta"), [(10_000, 1e-3, 0.01), (2_000, 1e-4, 0.0), (40_000, 1e-2, 0.0)]
)
def test_compressed_teacher_solve_matches_exact(
    gamma: float, n: int, lam: float, delta: float
) -> None:
    d = 20_000
    a = diagonal.solve(d, n, lam, gamma, delta, exact=True)
    b = diagonal.solve(d, n, lam, gamma, delta, exact=False)
    # 1e-6 relative: the 0.1 % bins only err at second order (observed <= 4e-8)
    assert b.excess_risk == pytest.approx(a.excess_risk, rel=1e-6)
    assert b.df == pytest.approx(a.df, rel=1e-6)
    assert b.values.size < d / 3
