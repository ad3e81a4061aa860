"""Spectra of the certified minimum and the raw trained weights (workers/spectra.py)."""

from __future__ import annotations

import numpy as np
import pytest

from service.fitting.tails import fit_tail
from service.results import Spectrum
from workers.spectra import diagonal_spectra, make_spectrum, quadratic_spectra


def pareto(alpha: float, n: int, xmin: float, seed: int) -> np.ndarray:
    """n samples of the density p(x) = (alpha-1)/xmin (x/xmin)^-alpha, x >= xmin."""
    rng = np.random.default_rng(seed)
    return (rng.pareto(alpha - 1.0, n) + 1.0) * xmin


# ------------------------------------------------------------------------------------------------
# spectra


def test_quadratic_spectra_values() -> None:
    rng = np.random.default_rng(0)
    d, m = 40, 30
    lam = np.concatenate([0.5 * np.arange(1, 31) ** -1.0, -0.05 * np.arange(1, 6), np.zeros(5)])
    eig, sv = quadratic_spectra(rng.permutation(lam), rng=np.random.default_rng(1), width=m)
    assert (eig.kind, sv.kind) == ("eig_S", "sv_W")
    np.testing.assert_array_equal(eig.values, np.sort(lam)[::-1])  # exact: sorted, zeros kept
    # the first layer at a global minimum is balanced: W'W has the eigenvalues |eig S|
    expect = np.sort(np.sqrt(np.abs(lam)))[::-1][:m]
    np.testing.assert_allclose(sv.values, expect, rtol=1e-15)
    assert len(sv.values) == min(m, d)
    # the tail fit uses only the positive eigenvalues (30 of them)
    assert eig.tail_fit is not None and eig.tail_fit.n_tail <= 30
    ref = fit_tail(np.array(eig.values)[:30], rng=np.random.default_rng(1))
    assert eig.tail_fit == ref  # exact: same values, same rng state
    assert eig.rank_fit is not None and eig.rank_fit.n_points == 30


def test_quadratic_spectra_keep_the_raw_weights_unfitted() -> None:
    rng = np.random.default_rng(5)
    d, m = 12, 12
    w = rng.standard_normal((m, d)) * np.arange(1, d + 1) ** -1.0
    raw_s = w.T @ w
    eig, sv, eig_raw, sv_raw = quadratic_spectra(
        np.linalg.eigvalsh(raw_s), rng=np.random.default_rng(1), raw_s=raw_s, raw_w=w
    )
    assert (eig_raw.kind, sv_raw.kind) == ("eig_S_raw", "sv_W_raw")
    np.testing.assert_allclose(sv_raw.values, np.linalg.svd(w, compute_uv=False), rtol=1e-12)
    np.testing.assert_allclose(eig_raw.values, eig.values, rtol=0, atol=1e-12)
    for raw in (eig_raw, sv_raw):
        assert raw.tail_fit is None and raw.rank_fit is None
        assert raw.tail_fit_error is not None and "not fitted" in raw.tail_fit_error


def test_values_at_or_below_the_resolution_are_not_fitted() -> None:
    values = np.concatenate([0.3 * np.arange(1, 41) ** -1.0, np.full(20, 1e-4)])
    free = make_spectrum("abs_theta", values, rng=np.random.default_rng(0))
    floored = make_spectrum("abs_theta", values, rng=np.random.default_rng(0), resolution=2e-4)
    assert free.rank_fit is not None and free.rank_fit.n_points == 60
    assert floored.rank_fit is not None and floored.rank_fit.n_points == 40
    assert floored.resolution == 2e-4
    assert floored.tail_fit is not None and floored.tail_fit.floor == 2e-4
    assert floored.tail_fit.xmin > 2e-4
    tiny = make_spectrum("abs_theta", values, rng=np.random.default_rng(0), resolution=0.05)
    assert tiny.tail_fit is None and tiny.tail_fit_error is not None
    assert "above the certificate's resolution" in tiny.tail_fit_error


def test_quadratic_spectra_shape_checks() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="1-D"):
        quadratic_spectra(np.zeros((3, 4)), rng=rng)
    with pytest.raises(ValueError, match="square"):
        quadratic_spectra(np.ones(3), rng=rng, raw_s=np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"\(m, d\)"):
        quadratic_spectra(np.ones(3), rng=rng, raw_w=np.zeros((2, 4)))


def test_diagonal_spectra() -> None:
    rng = np.random.default_rng(4)
    theta = np.zeros(300)
    theta[:120] = rng.choice([-1.0, 1.0], 120) * np.arange(1, 121) ** -0.75
    residue = theta + 1e-12 * rng.standard_normal(300)
    spec, raw = diagonal_spectra(rng.permutation(theta), rng=np.random.default_rng(5), raw=residue)
    assert (spec.kind, raw.kind) == ("abs_theta", "abs_theta_raw")
    np.testing.assert_array_equal(spec.values, np.sort(np.abs(theta))[::-1])  # exact
    assert spec.rank_fit is not None
    assert spec.rank_fit.n_points == 120  # exact zeros are left out of the fit
    assert spec.rank_fit.exponent == pytest.approx(0.75, abs=1e-10)  # noise-free
    assert spec.tail_fit is not None and spec.tail_fit.n_tail <= 120
    assert np.count_nonzero(raw.values) == 300 and raw.tail_fit is None


@pytest.mark.parametrize(
    ("values", "tail_msg", "rank_msg"),
    [
        ([], "fit: 0 positive", "got 0"),
        ([0.0, 0.0, 0.0], "fit: 0 positive", "got 0"),
        ([2.0, 1.0], "fit: 2 positive", "got 2"),
        ([5.0, 4.0, 3.0, 2.0, 1.0], "fit: 5 positive", None),
    ],
)
def test_make_spectrum_small_spectra_never_raise(
    values: list[float], tail_msg: str, rank_msg: str | None
) -> None:
    spec = make_spectrum("sv_W", values, rng=np.random.default_rng(0))
    assert spec.values == sorted(values, reverse=True)
    assert spec.tail_fit is None and spec.tail_fit_error is not None
    assert tail_msg in spec.tail_fit_error
    if rank_msg is None:
        assert spec.rank_fit is not None and spec.rank_fit_error is None
    else:
        assert spec.rank_fit is None and spec.rank_fit_error is not None
        assert rank_msg in spec.rank_fit_error


def test_spectrum_round_trips_through_json() -> None:
    spec = make_spectrum("eig_S", pareto(2.0, 100, 1.0, seed=12), rng=np.random.default_rng(0))
    assert spec.tail_fit is not None and spec.rank_fit is not None
    assert spec.values == sorted(spec.values, reverse=True)
    assert Spectrum.model_validate_json(spec.model_dump_json()) == spec  # exact
