"""State-evolution theory for the diagonal and quadratic networks (THEORY.md), numpy/scipy only.

* :func:`predict` -- excess risk, effective noise, threshold, df, support, train MSE;
* :func:`predicted_spectrum` -- predicted sorted weight spectrum;
* :func:`heuristic_exponent`, :func:`predicted_alpha_ww` -- closed-form exponents
  (THEORY.md 6, 7.1).
"""

from service.teachers import diagonal_coefficients, quadratic_eigenvalues
from service.theory.heuristics import heuristic_exponent, predicted_alpha_ww
from service.theory.prediction import Model, Prediction, predict, predicted_spectrum

__all__ = [
    "Model",
    "Prediction",
    "diagonal_coefficients",
    "heuristic_exponent",
    "predict",
    "predicted_alpha_ww",
    "predicted_spectrum",
    "quadratic_eigenvalues",
]
