"""The fitted curve and exponent band of a group (service.analysis.curves)."""

from __future__ import annotations

import numpy as np
import pytest

from service.analysis.curves import fitted_curve
from service.analysis.reports import GroupFit
from service.fitting import Segment

COMMON = {"group": {}, "n_points": 6, "n_runs": 18, "n_left_out": 0, "n_failed": 0,
          "n_unconverged": 0, "n_pending": 0}  # fmt: skip


def test_power_law_curve_band_turns_about_the_geometric_middle() -> None:
    fit = GroupFit(
        **COMMON,
        form="power_law",
        exponent=1.0,
        exponent_ci=(0.8, 1.2),
        prefactor=2.0,
        segments=[Segment(x_from=10.0, x_to=1000.0, exponent=1.0)],
    )
    curve = fitted_curve(fit)
    x = np.array([p.x for p in curve])
    assert x[0] == pytest.approx(10.0) and x[-1] == pytest.approx(1000.0)
    np.testing.assert_allclose([p.fit for p in curve], 2.0 / x, rtol=1e-12)
    lo, hi = np.array([p.lo for p in curve]), np.array([p.hi for p in curve])
    assert np.all(lo <= np.array([p.fit for p in curve]) * (1 + 1e-12))
    assert np.all(hi >= lo)
    # at the ends the band is 100^0.2 ~ 2.5 times wide, in the middle (x = 100) it closes
    assert hi[0] / lo[0] == pytest.approx(10 ** (0.2 * 2), rel=1e-9)
    middle = np.argmin(np.abs(np.log(x / 100.0)))
    assert hi[middle] / lo[middle] < 1.2


def test_plateau_and_broken_forms_are_continuous_and_follow_their_segments() -> None:
    plateau = GroupFit(
        **COMMON,
        form="plateau",
        exponent=1.0,
        exponent_ci=(0.9, 1.1),
        prefactor=1.0,
        plateau=0.05,
        segments=[Segment(x_from=1.0, x_to=100.0, exponent=1.0)],
    )
    ys = [p.fit for p in fitted_curve(plateau)]
    assert ys[0] == pytest.approx(1.05) and ys[-1] == pytest.approx(0.06)
    broken = GroupFit(
        **COMMON,
        form="broken_power_law",
        exponent=2.0,
        exponent_ci=(1.8, 2.2),
        prefactor=100.0,  # R = 100 x^-2 for x >= 10, so R(10) = 1
        breaks=[10.0],
        segments=[
            Segment(x_from=1.0, x_to=10.0, exponent=0.5),
            Segment(x_from=10.0, x_to=100.0, exponent=2.0),
        ],
    )
    curve = fitted_curve(broken, points=41)
    x = np.array([p.x for p in curve])
    y = np.array([p.fit for p in curve])
    expected = np.where(x >= 10.0, 100.0 / x**2, (x / 10.0) ** -0.5)
    np.testing.assert_allclose(y, expected, rtol=1e-9)
    before = x < 10.0
    np.testing.assert_allclose([p.lo for p in curve if p.x < 10.0], y[before], rtol=1e-9)


def test_no_fit_no_curve() -> None:
    assert fitted_curve(GroupFit(**COMMON, error="too few points")) == []
