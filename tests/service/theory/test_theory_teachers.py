"""The teacher formulas (service.teachers, THEORY.md section 1) and the compressed teacher."""

from __future__ import annotations

import numpy as np
import pytest

from service import teachers
from service.spec import RunConfig, TeacherSpec
from service.theory import compressed_teacher, diagonal
from service.theory.point import SEPoint
from workers.problems import problem_for


@pytest.mark.parametrize("gamma", [0.5, 0.75, 1.0, 1.5])
@pytest.mark.parametrize(("d", "rank"), [(1, None), (40, None), (1000, None), (1000, 37)])
def test_teacher_spectra_are_normalised_power_laws(d: int, rank: int | None, gamma: float) -> None:
    a = teachers.diagonal_coefficients(d, gamma, rank)
    q = teachers.quadratic_eigenvalues(d, gamma, rank)
    r = d if rank is None else rank
    k = np.arange(1, r + 1)
    # the power law itself, up to the normalising constant: 1e-12 relative
    np.testing.assert_allclose(a[:r] / a[0], k**-gamma, rtol=1e-12)
    np.testing.assert_allclose(q[:r] / q[0], k**-gamma, rtol=1e-12)
    assert not a[r:].any() and not q[r:].any()
    assert abs(float(np.sum(a**2)) - 1.0) < 1e-12  # unit norm, rounding only
    assert abs(2.0 * float(np.sum(q**2)) - 1.0) < 1e-12  # 2 sum lam^2 = 1, rounding only
    signed = teachers.quadratic_eigenvalues(d, gamma, rank, signed=True)
    np.testing.assert_array_equal(np.abs(signed), q)
    assert np.all(signed[1:r:2] <= 0) and np.all(signed[0:r:2] >= 0)


@pytest.mark.parametrize("model", ["diagonal", "quadratic"])
def test_the_workers_teachers_have_the_shared_spectrum(model: str) -> None:
    cfg = RunConfig(model=model, d=30, n=10, weight_decay=0.1, teacher=TeacherSpec(gamma=0.8))
    teacher, _ = problem_for(cfg).draw()
    if model == "diagonal":
        spectrum = np.sort(np.abs(teacher.target))[::-1]
        expected = teachers.diagonal_coefficients(30, 0.8)
    else:
        spectrum = np.sort(np.linalg.eigvalsh(teacher.target))[::-1]
        expected = teachers.quadratic_eigenvalues(30, 0.8)
    np.testing.assert_allclose(spectrum, expected, rtol=0, atol=1e-14)  # eigh rounding only


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
    np.testing.assert_allclose(compressed_teacher.power_sum(s, a, b), direct, rtol=1e-12)


@pytest.mark.parametrize(("d", "rank"), [(30_000, None), (10**9, None), (50_000, 100)])
@pytest.mark.parametrize("gamma", [0.5, 1.0])
def test_compressed_teacher_is_normalised(d: int, rank: int | None, gamma: float) -> None:
    values, weights = compressed_teacher.compressed_diagonal(d, gamma, rank)
    assert float(np.sum(weights)) == d  # multiplicities are exact integers
    assert abs(float(np.dot(weights, values**2)) - 1.0) < 1e-12  # unit norm (rounding)
    assert np.all(np.diff(values) <= 0)
    if d <= 50_000:
        exact = teachers.diagonal_coefficients(d, gamma, rank)
        r = d if rank is None else rank
        # head kept exactly (c from the exact finite sum): 1e-12 relative
        k = min(r, compressed_teacher.EXACT_HEAD)
        np.testing.assert_allclose(values[:k], exact[:k], rtol=1e-12)


@pytest.mark.parametrize("gamma", [0.5, 0.75, 1.5])
@pytest.mark.parametrize(
    ("n", "lam", "delta"), [(10_000, 1e-3, 0.01), (2_000, 1e-4, 0.0), (40_000, 1e-2, 0.0)]
)
def test_compressed_teacher_solve_matches_exact(
    gamma: float, n: int, lam: float, delta: float
) -> None:
    d = 20_000
    a = diagonal.solve(SEPoint(d, n, lam, gamma, delta), exact=True)
    b = diagonal.solve(SEPoint(d, n, lam, gamma, delta), exact=False)
    # 1e-6 relative: the 0.1 % bins only err at second order (observed <= 4e-8)
    assert b.excess_risk == pytest.approx(a.excess_risk, rel=1e-6)
    assert b.df == pytest.approx(a.df, rel=1e-6)
    assert b.values.size < d / 3
