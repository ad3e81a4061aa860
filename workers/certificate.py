"""Certificates of global optimality: the relative duality gap of the convex problems, in torch
on the data's device (float64).

Both networks' global minima solve a convex problem (THEORY.md section 1):

* diagonal: the LASSO  ``P(theta) = (1/2n)||y - X theta||^2 + lam ||theta||_1``;
* quadratic, positive second layer: PSD trace-penalised sensing
  ``P(S) = (1/2n) sum_mu (y_mu - <A_mu, S>)^2 + (lam/2) tr S`` over ``S >= 0``, with
  ``A_mu = x_mu x_mu' - I``;
* quadratic, signed second layer: the same with ``(lam/2)||S||_*`` and no PSD constraint.

A :class:`Certificate` holds a primal value P (the network's own objective, or the convex
objective of a candidate) and the value D of a dual-feasible point: ``D <= P* <= P``, so the
relative gap ``(P - D)/P`` bounds the distance to the global minimum from above.

The free dual point is built from the residual ``r = y - prediction`` (the dual optimum *is*
the residual at the minimum). A residual scaled into the feasible set loses to first order
in the constraint's violation, and near the minimum that violation sits in a few
directions (the directions that must still grow or decay): the point is first *projected*
-- one Newton step of the constraint along each violating coordinate (LASSO: ``x_j``) or
eigen-direction (sensing: ``v v'``, ``A(v v') = (X v)^2 - 1``), with the data's own
curvature along it -- and then scaled into the feasible set. Measured at the end of quadratic
runs (d = 60-200): the free gap 2-3 times smaller than the scaled residual's.
(:meth:`workers.problems.Problem.certificate` tightens it further when the free gap misses:
with the minimum on the candidate's face, :mod:`workers.face`, and then a short warm-started
convex solve refined by the faces of its iterates.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from workers.operators import quadratic_form, sensing_adjoint

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
    point: Tensor | None = field(default=None, compare=False, repr=False)
    """The dual-feasible point u with D(u) = dual (the scaled residual; None: not kept).
    Gap-safe screening (:mod:`workers.screening`) centres its sphere on it."""
    upper: float = math.inf
    """The smallest objective of another candidate seen while bounding (a convex solve's
    iterate, a face's minimum): an upper bound on P* that may be below ``primal``. The gap
    stays the candidate's own; screening's sphere uses the smaller of the two."""

    @property
    def gap(self) -> float:
        """(P - D)/max(|P|, tiny): >= 0 up to rounding; 0 at the optimum; inf if infeasible."""
        if not math.isfinite(self.primal):  # infeasible candidate (inf/inf would give nan)
            return float("inf")
        return max(self.primal - self.dual, 0.0) / max(abs(self.primal), 1e-300)

    @property
    def best_primal(self) -> float:
        """The smallest known upper bound on P*: ``min(primal, upper)``."""
        return min(self.primal, self.upper)

    def with_primal(self, primal: float) -> Certificate:
        """The same dual bound for another primal value (the network's own objective)."""
        return Certificate(primal, self.dual, self.point, min(self.upper, self.primal))

    def with_dual(
        self, dual: float, point: Tensor | None = None, upper: float = math.inf
    ) -> Certificate:
        """The better of this dual bound and ``dual`` (attained at ``point``); ``upper``: an
        upper bound on P* from the candidate that gave it."""
        upper = min(self.upper, upper)
        if dual > self.dual:
            return Certificate(self.primal, dual, point, upper)
        return Certificate(self.primal, self.dual, self.point, upper)

    def combined(self, other: Certificate) -> Certificate:
        """This candidate's certificate with the better dual bound and the smaller upper
        bound of ``other`` (another candidate's)."""
        return self.with_dual(other.dual, other.point, other.best_primal)


def dual_value(u: Tensor, y: Tensor) -> float:
    """D(u) = u'y/n - |u|^2/(2n), the dual objective of both problems."""
    n = y.shape[0]
    return float((u @ y) / n - (u @ u) / (2 * n))


def lasso_certificate(x: Tensor, y: Tensor, theta: Tensor, lam: float) -> Certificate:
    """Duality gap of the LASSO at theta (dual feasible set ``||X'u||_inf <= n lam``)."""
    n = y.shape[0]
    r = y - x @ theta
    primal = float((r @ r) / (2 * n) + lam * theta.abs().sum())
    if lam == 0.0:
        # Unpenalised least squares: the dual point is the residual projected on null(X').
        coef = torch.linalg.pinv(x) @ r
        r_dual = r - x @ coef
        return Certificate(primal, dual_value(r_dual, y), r_dual)
    c = (x.T @ r) / n
    viol = c.abs() > lam
    if bool(viol.any()):  # one Newton step of |x_j'u|/n <= lam along each violating column
        xv = x[:, viol]
        excess = c[viol] - lam * torch.sign(c[viol])
        r = r - xv @ (excess * n / (xv * xv).sum(dim=0))
        c = (x.T @ r) / n
    top = float(c.abs().max())
    scale = 1.0 if top <= lam else lam / top
    u = scale * r
    return Certificate(primal, dual_value(u, y), u)


def sensing_certificate(
    x: Tensor,
    y: Tensor,
    s: Tensor,
    lam: float,
    psd: bool,
    *,
    prediction: Tensor | None = None,
    adjoint: Callable[[Tensor], Tensor] | None = None,
) -> Certificate:
    """Duality gap of trace-penalised sensing at S.

    Dual feasible set: ``A'u <= (lam/2) I`` (psd) or ``||A'u||_op <= lam/2`` (signed). For the
    PSD problem an S that is not PSD is infeasible and gets P = +inf. ``prediction`` (the
    forward map at S) and ``adjoint`` (``r -> A'(r)/n``) let a solver reuse its own.
    """
    adj = adjoint if adjoint is not None else (lambda v: sensing_adjoint(x, v))
    n = y.shape[0]
    r = y - (quadratic_form(x, s) if prediction is None else prediction)
    ev = torch.linalg.eigvalsh((s + s.T) / 2.0)
    if psd and float(ev[0]) < -1e-10 * max(1.0, abs(float(ev[-1]))):
        return Certificate(float("inf"), float("-inf"))
    pen = float(ev.clamp_min(0.0).sum() if psd else ev.abs().sum())
    primal = float((r @ r) / (2 * n) + lam / 2 * pen)
    half = lam / 2
    mev, vec = torch.linalg.eigh(adj(r))
    score = mev if psd else mev.abs()
    viol = score > half
    if half > 0.0 and bool(viol.any()):  # one Newton step along each violating v v'
        v = vec[:, viol]
        a = torch.square(x @ v) - 1.0  # A(v v'), (n, k)
        excess = mev[viol] - half * torch.sign(mev[viol])
        r = r - a @ (excess * n / (a * a).sum(dim=0))
        mev = torch.linalg.eigvalsh(adj(r))
    top = float(mev[-1]) if psd else float(mev.abs().max())
    if top <= half:
        scale = 1.0
    elif half == 0.0:
        scale = 0.0
    else:
        scale = half / top
    u = scale * r
    return Certificate(primal, dual_value(u, y), u)
