"""Closed-form exponents of THEORY.md sections 6 and 7.1, and the finite-d note of 5.3."""

from __future__ import annotations

import math

from service.theory.finite_size import (
    NOISE_FITTING_DF,
    WIDTH_EXCESS,
    WIDTH_MEASURED_D,
    finite_size_excess,
    in_noise_fitting,
    narrow_below_convex_rank,
    width_rule_measured,
)

#: Relative tolerance for "power == 1/2" and "power >= gamma".
_TOL = 1e-9


def heuristic_exponent(gamma: float, noise: float, power: float) -> tuple[float, str]:
    """Heuristic decay exponent ``e`` of ``R ∝ n^-e`` for ``lambda = lambda0 n^-power``, ``d ∝ n``.

    THEORY.md 7.1 (valid for ``gamma > 1/2``, asymptotically in n):

    ========================  ===================================  ==========================
    regime label              condition                            exponent e
    ========================  ===================================  ==========================
    ``plateau``               ``power = 0``                        0
    ``bias-dominated``        ``0 < power < gamma`` (Delta = 0),   ``power (2 gamma - 1)/gamma``
                              ``0 < power < 1/2`` (Delta > 0)
    ``noiseless-recovery``    Delta = 0, ``power >= gamma``        ``2 gamma - 1``
    ``tuned``                 Delta > 0, ``power = 1/2``           ``(2 gamma - 1)/(2 gamma)``
    ``noise fitting``         Delta > 0, ``power > 1/2``           0 (R -> noise floor)
    ========================  ===================================  ==========================

    Parameters
    ----------
    gamma : float
        Teacher decay exponent (> 0).
    noise : float
        Label-noise variance Delta (>= 0).
    power : float
        The exponent l of ``lambda = lambda0 n^-l`` (>= 0).

    Returns
    -------
    (float, str)
        The exponent and the regime label.
    """
    if not (math.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma must be finite and > 0, got {gamma}")
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be finite and >= 0, got {noise}")
    if not (math.isfinite(power) and power >= 0):
        raise ValueError(f"power must be finite and >= 0, got {power}")
    if power == 0:
        return 0.0, "plateau"
    bias = power * (2.0 * gamma - 1.0) / gamma
    if noise == 0:
        if power >= gamma * (1.0 - _TOL):
            return 2.0 * gamma - 1.0, "noiseless-recovery"
        return bias, "bias-dominated"
    if math.isclose(power, 0.5, rel_tol=_TOL):
        return (2.0 * gamma - 1.0) / (2.0 * gamma), "tuned"
    if power > 0.5:
        return 0.0, "noise fitting"
    return bias, "bias-dominated"


def predicted_alpha_ww(gamma: float) -> float:
    """Heavy-tail (WeightWatchers) exponent: ``1 + 1/gamma`` (THEORY.md 6)."""
    if not (math.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma must be finite and > 0, got {gamma}")
    return 1.0 + 1.0 / gamma


def finite_size_note(
    d: int, rank: float, noise: float, df: float, n: int, risk: float, width: int | None = None
) -> str:
    """Which finite-d correction of THEORY.md 5.3 applies to the network's ``x x' - I`` data.

    Thresholding when some eigenvalue is predicted thresholded (``rank < d - 1/2``); otherwise
    variance-dominated when the OLS-like variance ``Delta df/(n - df)`` is at least half of R, and
    pure trace bias else. A finite ``width`` m < d (the rank-constrained minimum) has its own
    measured excess (``bench/bench_width_theory.py``).
    """
    if width is not None:
        return _width_note(d, n, df, width)
    variance = noise * df / (n - df) if n > df else math.inf
    if rank < d - 0.5:
        label, lo, hi = "thresholding", 3, 5
    elif variance >= 0.5 * risk:
        label, lo, hi = "variance-dominated", 2, 3
    else:
        label, lo, hi = "pure trace bias", 5, 6
    return (
        f"x x'-I data: expect R_sim/R_SE ≈ 1 + c/d with c≈{lo}-{hi} ({label}; "
        f"+{100.0 * lo / d:.1f}-{100.0 * hi / d:.1f}% at d={d}); GOE sensing agrees with the SE"
    )


def _width_note(d: int, n: int, df: float, width: int) -> str:
    """The measured excess of :mod:`service.theory.finite_size` that applies to a narrow
    network (m < d) at (d, n): none in noise fitting, :data:`WIDTH_EXCESS` below
    n = d(d+1)/2, else the convex rule (narrow widths measured closer to the SE than that)."""
    where = f"x x'-I data at width m={width}"
    if in_noise_fitting(df, n):
        return f"{where}: noise fitting (df/n >= {NOISE_FITTING_DF:g}), no measured rule holds"
    if not width_rule_measured(d, n, width):
        return (
            f"{where}, n < d(d+1)/2: no measured rule at d = {d} (the narrow-width excess is "
            f"measured up to d = {WIDTH_MEASURED_D} only)"
        )
    if narrow_below_convex_rank(d, n, width):
        return (
            f"{where}, n < d(d+1)/2: expect R_sim/R_SE - 1 up to +{WIDTH_EXCESS:.0%} (measured at "
            f"d = 20-{WIDTH_MEASURED_D}; GOE sensing agrees with the SE)"
        )
    rule = finite_size_excess("quadratic", d, n)
    return (
        f"{where}: expect 0 <= R_sim/R_SE - 1 <= {rule:.1%} (the convex rule; narrow widths "
        "measured +0-7 % at d = 20-40)"
    )
