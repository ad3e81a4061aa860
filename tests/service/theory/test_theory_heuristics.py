"""Closed-form exponents of THEORY.md 6 and 7.1 (table 7.2's heuristic column)."""

from __future__ import annotations

import pytest

from service.theory import heuristic_exponent, predicted_alpha_ww

# (gamma, Delta, l, heuristic e, label): the "heuristic e" column of THEORY.md 7.2
TABLE = [
    (0.75, 0.0, 0.25, 0.167, "bias-dominated"),
    (0.75, 0.0, 0.5, 0.333, "bias-dominated"),
    (0.75, 0.0, 0.75, 0.500, "noiseless-recovery"),
    (0.75, 0.0, 1.5, 0.500, "noiseless-recovery"),
    (0.75, 0.01, 0.25, 0.167, "bias-dominated"),
    (0.75, 0.01, 0.5, 0.333, "tuned"),
    (0.75, 0.01, 0.75, 0.0, "noise fitting"),
    (1.0, 0.0, 0.25, 0.250, "bias-dominated"),
    (1.0, 0.0, 0.75, 0.750, "bias-dominated"),
    (1.0, 0.0, 1.0, 1.000, "noiseless-recovery"),
    (1.0, 0.01, 0.5, 0.500, "tuned"),
    (1.0, 0.01, 1.5, 0.0, "noise fitting"),
    (1.5, 0.0, 0.25, 0.333, "bias-dominated"),
    (1.5, 0.0, 1.0, 1.333, "bias-dominated"),
    (1.5, 0.0, 1.5, 2.000, "noiseless-recovery"),
    (1.5, 0.01, 0.5, 0.667, "tuned"),
    (1.5, 0.01, 1.0, 0.0, "noise fitting"),
    (1.0, 0.0, 0.0, 0.0, "plateau"),
    (1.0, 0.01, 0.0, 0.0, "plateau"),
]


@pytest.mark.parametrize(("gamma", "delta", "power", "expected", "label"), TABLE)
def test_heuristic_exponents(
    gamma: float, delta: float, power: float, expected: float, label: str
) -> None:
    e, regime = heuristic_exponent(gamma, delta, power)
    assert e == pytest.approx(expected, abs=5e-4)  # the table is rounded to 3 decimals
    assert regime == label


def test_example_from_the_brief() -> None:
    assert heuristic_exponent(1.0, 0.0, 0.25) == (0.25, "bias-dominated")


@pytest.mark.parametrize(("gamma", "alpha"), [(0.5, 3.0), (0.75, 7 / 3), (1.0, 2.0), (1.5, 5 / 3)])
def test_alpha_ww(gamma: float, alpha: float) -> None:
    assert predicted_alpha_ww(gamma) == pytest.approx(alpha, rel=1e-12)  # THEORY 6, exact


def test_invalid() -> None:
    with pytest.raises(ValueError):
        heuristic_exponent(1.0, 0.0, -0.5)
    with pytest.raises(ValueError):
        heuristic_exponent(0.0, 0.0, 0.5)
    with pytest.raises(ValueError):
        predicted_alpha_ww(-1.0)
