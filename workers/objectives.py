"""The convex problems equivalent to the networks, their duality gaps, and the exact excess risk.

Both networks' global minima solve a convex problem (THEORY.md section 1):

* diagonal: the LASSO  P(theta) = (1/2n)||y - X theta||^2 + lam ||theta||_1;
* quadratic, positive second layer: PSD trace-penalised sensing
  P(S) = (1/2n) sum_mu (y_mu - <A_mu, S>)^2 + (lam/2) tr S,  S >= 0,  A_mu = x_mu x_mu' - I;
* quadratic, signed second layer: the same with (lam/2)||S||_* and no PSD constraint.

The relative duality gap (P - D)/P, with the dual point built from the residual
u = c (y - prediction)/n scaled into the dual feasible set, certifies global optimality of
*any* candidate (theta from a*w, S from W' diag(s) W) without solving the convex problem:
P(x) - P(x_opt) <= P(x) - D(u). All arithmetic is float64 numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from workers.teachers import quadratic_form

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Certificate:
    """Primal value, dual value and relative duality gap of a candidate solution."""

    primal: float
    dual: float

    @property
    def gap(self) -> float:
        """(P - D)/max(|P|, tiny): >= 0 up to rounding; 0 at the optimum; inf if infeasible."""
        if self.primal == float("inf"):  # infeasible candidate (inf/inf would give nan)
            return float("inf")
        return max(self.primal - self.dual, 0.0) / max(abs(self.primal), 1e-300)


def _dual_value(r: Array, y: Array, n: int, scale: float) -> float:
    return float(scale * (r @ y) / n - scale**2 * (r @ r) / (2 * n))


def lasso_objective(x: Array, y: Array, theta: Array, lam: float) -> float:
    """(1/2n)||y - X theta||^2 + lam ||theta||_1."""
    r = y - x @ theta
    return float(r @ r / (2 * len(y)) + lam * np.abs(theta).sum())


def lasso_certificate(x: Array, y: Array, theta: Array, lam: float) -> Certificate:
    """Duality gap of the LASSO at theta (dual feasible set ||X'u||_inf <= lam)."""
    n = len(y)
    r = y - x @ theta
    primal = float(r @ r / (2 * n) + lam * np.abs(theta).sum())
    corr = float(np.max(np.abs(x.T @ r))) / n
    if lam == 0.0:
        # Unpenalised least squares: the dual point is the residual projected on null(X').
        coef, *_ = np.linalg.lstsq(x, r, rcond=None)
        r_dual = r - x @ coef
        return Certificate(primal, _dual_value(r_dual, y, n, 1.0))
    scale = 1.0 if corr <= lam else lam / corr
    return Certificate(primal, _dual_value(r, y, n, scale))


def sensing_gradient(x: Array, r: Array) -> Array:
    """A'(r)/n = (1/n) sum_mu r_mu (x_mu x_mu' - I), symmetric (d, d)."""
    n = len(r)
    m = (x.T * r) @ x / n - (r.sum() / n) * np.eye(x.shape[1])
    out: Array = (m + m.T) / 2.0
    return out


def penalty_trace(s: Array, psd: bool) -> float:
    """tr S (psd) or ||S||_* (signed)."""
    ev = np.linalg.eigvalsh(s)
    return float(ev.sum() if psd else np.abs(ev).sum())


def sensing_objective(x: Array, y: Array, s: Array, lam: float, psd: bool) -> float:
    """(1/2n) sum (y - <A, S>)^2 + (lam/2) (tr S | ||S||_*)."""
    r = y - quadratic_form(x, s)
    return float(r @ r / (2 * len(y)) + lam / 2 * penalty_trace(s, psd))


def sensing_certificate(x: Array, y: Array, s: Array, lam: float, psd: bool) -> Certificate:
    """Duality gap of trace-penalised sensing at S.

    Dual feasible set: A'u <= (lam/2) I (psd) or ||A'u||_op <= lam/2 (signed). For the
    PSD problem an S that is not PSD is infeasible and gets P = +inf.
    """
    n = len(y)
    r = y - quadratic_form(x, s)
    ev = np.linalg.eigvalsh((s + s.T) / 2.0)
    if psd and ev[0] < -1e-10 * max(1.0, abs(ev[-1])):
        return Certificate(float("inf"), float("-inf"))
    pen = float(np.clip(ev, 0.0, None).sum() if psd else np.abs(ev).sum())
    primal = float(r @ r / (2 * n) + lam / 2 * pen)
    mev = np.linalg.eigvalsh(sensing_gradient(x, r))
    top = float(mev[-1]) if psd else float(max(abs(mev[0]), abs(mev[-1])))
    half = lam / 2
    if top <= half:
        scale = 1.0
    elif half == 0.0:
        scale = 0.0
    else:
        scale = half / top
    return Certificate(primal, _dual_value(r, y, n, scale))


def diagonal_excess_risk(theta: Array, theta_star: Array) -> float:
    """R = ||theta - theta*||^2 (exact for x ~ N(0, I))."""
    diff = theta - theta_star
    return float(diff @ diff)


def quadratic_excess_risk(s: Array, s_star: Array) -> float:
    """R = E(f_S - f*)^2 = 2||S - S*||_F^2 (Isserlis)."""
    diff = s - s_star
    return float(2.0 * np.sum(diff * diff))
