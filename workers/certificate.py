"""Certificates of global optimality: the relative duality gap of the convex problems.

Both networks' global minima solve a convex problem (THEORY.md section 1):

* diagonal: the LASSO  ``P(theta) = (1/2n)||y - X theta||^2 + lam ||theta||_1``;
* quadratic, positive second layer: PSD trace-penalised sensing
  ``P(S) = (1/2n) sum_mu (y_mu - <A_mu, S>)^2 + (lam/2) tr S`` over ``S >= 0``, with
  ``A_mu = x_mu x_mu' - I``;
* quadratic, signed second layer: the same with ``(lam/2)||S||_*`` and no PSD constraint.

A :class:`Certificate` holds a primal value P (the network's own objective, or the convex
objective of a candidate) and the value D of a dual-feasible point: ``D <= P* <= P``, so the
relative gap ``(P - D)/P`` bounds the distance to the global minimum from above. The dual
point here is built from the residual ``u = c (y - prediction)/n`` scaled into the dual
feasible set: free, and tight at the optimum. (:meth:`workers.problems.Problem.certificate`
tightens it further with a warm-started convex solve.) All arithmetic is float64 numpy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from workers.operators import quadratic_form, sensing_adjoint

Array = NDArray[np.float64]


CERTIFIED = 1e-6
"""Largest relative gap of a certified global minimum (float64, whatever the training dtype)."""


def certificate_tolerance(dtype: str) -> float:
    """The gap that ends a training phase in ``dtype``: CERTIFIED in float64, 1e-4 (the
    float32 floor) in float32, which a float64 refinement then takes to CERTIFIED."""
    return CERTIFIED if dtype == "float64" else 1e-4


@dataclass(frozen=True)
class Certificate:
    """Primal value, dual value and relative duality gap of a candidate solution."""

    primal: float
    dual: float
    point: Array | None = field(default=None, compare=False, repr=False)
    """The dual-feasible point u with D(u) = dual (the scaled residual; None: not kept).
    Gap-safe screening (:mod:`workers.screening`) centres its sphere on it."""

    @property
    def gap(self) -> float:
        """(P - D)/max(|P|, tiny): >= 0 up to rounding; 0 at the optimum; inf if infeasible."""
        if not np.isfinite(self.primal):  # infeasible candidate (inf/inf would give nan)
            return float("inf")
        return max(self.primal - self.dual, 0.0) / max(abs(self.primal), 1e-300)

    def with_primal(self, primal: float) -> Certificate:
        """The same dual bound for another primal value (the network's own objective)."""
        return Certificate(primal, self.dual, self.point)

    def with_dual(self, dual: float, point: Array | None = None) -> Certificate:
        """The better of this dual bound and ``dual`` (attained at ``point``)."""
        if dual > self.dual:
            return Certificate(self.primal, dual, point)
        return self


def _dual_value(r: Array, y: Array, n: int, scale: float) -> float:
    return float(scale * (r @ y) / n - scale**2 * (r @ r) / (2 * n))


def lasso_certificate(x: Array, y: Array, theta: Array, lam: float) -> Certificate:
    """Duality gap of the LASSO at theta (dual feasible set ``||X'u||_inf <= lam``)."""
    n = len(y)
    r = y - x @ theta
    primal = float(r @ r / (2 * n) + lam * np.abs(theta).sum())
    corr = float(np.max(np.abs(x.T @ r))) / n
    if lam == 0.0:
        # Unpenalised least squares: the dual point is the residual projected on null(X').
        coef, *_ = np.linalg.lstsq(x, r, rcond=None)
        r_dual = r - x @ coef
        return Certificate(primal, _dual_value(r_dual, y, n, 1.0), r_dual)
    scale = 1.0 if corr <= lam else lam / corr
    return Certificate(primal, _dual_value(r, y, n, scale), scale * r)


def sensing_certificate(
    x: Array,
    y: Array,
    s: Array,
    lam: float,
    psd: bool,
    *,
    prediction: Array | None = None,
    adjoint: Callable[[Array], Array] | None = None,
) -> Certificate:
    """Duality gap of trace-penalised sensing at S.

    Dual feasible set: ``A'u <= (lam/2) I`` (psd) or ``||A'u||_op <= lam/2`` (signed). For the
    PSD problem an S that is not PSD is infeasible and gets P = +inf. ``prediction`` (the
    forward map at S) and ``adjoint`` (``r -> A'(r)/n``) let a solver reuse its own.
    """
    n = len(y)
    r = y - (quadratic_form(x, s) if prediction is None else prediction)
    ev = np.linalg.eigvalsh((s + s.T) / 2.0)
    if psd and ev[0] < -1e-10 * max(1.0, abs(ev[-1])):
        return Certificate(float("inf"), float("-inf"))
    pen = float(np.clip(ev, 0.0, None).sum() if psd else np.abs(ev).sum())
    primal = float(r @ r / (2 * n) + lam / 2 * pen)
    mev = np.linalg.eigvalsh(sensing_adjoint(x, r) if adjoint is None else adjoint(r))
    top = float(mev[-1]) if psd else float(max(abs(mev[0]), abs(mev[-1])))
    half = lam / 2
    if top <= half:
        scale = 1.0
    elif half == 0.0:
        scale = 0.0
    else:
        scale = half / top
    return Certificate(primal, _dual_value(r, y, n, scale), scale * r)
