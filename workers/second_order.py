"""The certificate of a narrow network: second-order stationarity and agreement of restarts.

A quadratic network of width m has the global minimum of the convex problem (PSD trace- or
nuclear-norm-penalised sensing) whenever m is at least the rank of the convex solution
(Burer-Monteiro): the duality gap certifies it, as for every full-width run. Below that rank
the network's problem is the rank-constrained one, ``min_{rank S <= m}``, which is not
convex: no gap closes, and no cheap certificate of a global minimum exists. What a run can
honestly say there, and what this module checks:

1. **Stationarity**: the gradient rule of training (|g| <= sqrt(tol) max(1, |F|)) or a flat
   objective, at a point that no support correction improves (the trainer stops there,
   :mod:`workers.training.scheduler`).
2. **Second order**: the smallest eigenvalue of the objective's Hessian in the network's
   parameters, by Lanczos (``scipy.sparse.linalg.eigsh`` on exact Hessian-vector products,
   torch double backward, float64): at least ``-HESSIAN_TOLERANCE * lam``. The rotations
   ``W -> Q W`` (Q orthogonal within a sign block) leave the objective unchanged and give
   exact zeros, not negative values; a saddle has a direction of curvature of the order of
   lam or of the data (e.g. a dead neuron where the dual matrix has an eigenvalue below
   -lam/2).
3. **Restarts**: K trainings of the same data from independent initialisations (the run's
   ``init`` stream and its variants 1..K-1, :func:`workers.rng.stream`); the lowest objective
   is reported, and it must have been reached by at least two of them (within
   ``RESTART_AGREEMENT`` relative). Below the convex rank the landscape often has several
   minima (measured at d = 20, n = 800, lambda = 0.03, 8 restarts: one objective at m = 3,
   two at m = 5 (6 of 8 restarts at the lower), three at m = 8 (2 of 8), three at m = 12
   (6 of 8)), so agreement of *all* restarts would refuse most widths. A lowest value that
   only one restart found is not reproduced: the run says so (``failed``, its lowest point
   kept for inspection, the spread reported). Reproduced minima do not prove a global
   minimum; they are what the run checked.

The run's ``metrics.certificate`` is then ``second_order`` (with ``hessian_min_eig``,
``restarts``, ``restart_spread``), never a duality gap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

from workers.data import Dataset
from workers.problems.base import Estimate, Params, Problem
from workers.screening import CertifiedSolution

RESTART_AGREEMENT = 1e-5
"""Restarts agree when their objectives are within this relative spread: the stopping rule
leaves F within about tol = 1e-8 relative of its stationary value, so minima that differ by
more are different minima (measured: restarts of one minimum spread 1e-9 to 1e-7)."""
HESSIAN_TOLERANCE = 1e-3
"""A point is second-order stationary when the Hessian's smallest eigenvalue is at least
``-HESSIAN_TOLERANCE * lam`` (curvature is measured in units of the weight decay, which
sets the curvature of every direction the data leave flat)."""
RANK_FLOOR = 1e-6
"""A narrow run's rank counts the eigenvalues of S above this fraction of the largest."""
RANK_METHOD = (
    "eigenvalues of S = W' diag(s) W above 1e-6 of the largest (second-order certificate: "
    "no gap-safe screening, the convex gap does not close below the convex rank)"
)
"""The named estimator of a narrow run's ``support`` (``RunMetrics.support_method``)."""
LANCZOS_TOL = 1e-6
"""Relative accuracy of the shifted Lanczos eigenvalue (about 1e-6 lam absolute)."""
LANCZOS_MAXITER = 3000
DENSE_BELOW = 1200
"""Parameters up to which the Hessian is formed whole (one product per column)."""


def objective_of(problem: Problem, data: Dataset, params: Params) -> float:
    """The network's objective at ``params`` (float64)."""
    return problem.objective(data, problem.estimate(params))


def _solution(problem: Problem, params: Params) -> torch.Tensor:
    """The network's solution as a differentiable function of its parameters: S = W' diag(s) W
    (quadratic) or theta = a * w (diagonal)."""
    if "W" in params:
        w = params["W"]
        s = problem.second_layer()  # type: ignore[attr-defined]
        m = (w.T * s) @ w
        out: torch.Tensor = (m + m.T) / 2.0
        return out
    theta: torch.Tensor = params["a"] * params["w"]
    return theta


def _flat_objective(problem: Problem, data: Dataset, like: Params) -> tuple[list[str], object]:
    """The objective as a function of one flat float64 vector of the parameters."""
    names = sorted(like)
    shapes = [like[k].shape for k in names]
    sizes = [int(np.prod(s)) for s in shapes]
    lam = problem.cfg.weight_decay
    n = problem.cfg.n

    def f(flat: torch.Tensor) -> torch.Tensor:
        parts = torch.split(flat, sizes)
        params = {k: p.view(s) for k, p, s in zip(names, parts, shapes, strict=True)}
        r = data.y - problem.predict(data.x, _solution(problem, params))
        return (r @ r) / (2 * n) + lam / 2 * (flat @ flat)

    return names, f


def hessian_min_eig(problem: Problem, data: Dataset, params: Params) -> float:
    """The smallest eigenvalue of the objective's Hessian at ``params`` (module doc, 2.)."""
    names, f = _flat_objective(problem, data, params)
    x0 = torch.cat([params[k].detach().reshape(-1).to(torch.float64) for k in names])
    x = x0.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(x), x, create_graph=True)  # type: ignore[operator]

    def hvp(v: np.ndarray) -> np.ndarray:
        vt = torch.as_tensor(np.ascontiguousarray(v).reshape(-1), dtype=x.dtype, device=x.device)
        (out,) = torch.autograd.grad(grad, x, grad_outputs=vt, retain_graph=True)
        return out.detach().cpu().numpy()

    size = x.numel()
    if size <= DENSE_BELOW:  # small: the whole Hessian, column by column, exactly
        cols = np.stack([hvp(e) for e in np.eye(size)])
        return float(np.linalg.eigvalsh((cols + cols.T) / 2.0).min())
    # Lanczos on H + c I, c = lam: the rotations' zero eigenvalues become c, a value ARPACK
    # can resolve to a relative tolerance (at 0 it would chase 1e-16 and not converge)
    shift = max(problem.cfg.weight_decay, 1e-12)
    op = LinearOperator((size, size), matvec=lambda v: hvp(v) + shift * v, dtype=np.float64)
    v0 = np.random.default_rng(0).standard_normal(size)  # a fixed start: the same answer
    try:
        vals = eigsh(op, k=1, which="SA", tol=LANCZOS_TOL, maxiter=LANCZOS_MAXITER, v0=v0)[0]
    except ArpackNoConvergence as exc:  # the best estimate Lanczos reached
        vals = exc.eigenvalues if len(exc.eigenvalues) else np.array([math.nan])
    return float(np.min(vals)) - shift


@dataclass(frozen=True)
class SecondOrder:
    """The second-order certificate of a narrow run (module docstring)."""

    objectives: tuple[float, ...]
    """The objective each restart reached (index 0: the run's own training)."""
    best: int
    """The restart with the lowest objective (the reported point)."""
    hessian_min_eig: float
    lam: float

    @property
    def spread(self) -> float:
        """(max - min) / |min| of the restarts' objectives."""
        lo, hi = min(self.objectives), max(self.objectives)
        return (hi - lo) / max(abs(lo), 1e-300)

    @property
    def second_order(self) -> bool:
        """The Hessian's smallest eigenvalue is at least ``-HESSIAN_TOLERANCE * lam``."""
        return self.hessian_min_eig >= -HESSIAN_TOLERANCE * self.lam

    @property
    def at_best(self) -> int:
        """Restarts whose objective is within :data:`RESTART_AGREEMENT` of the lowest."""
        lo = min(self.objectives)
        return sum(1 for f in self.objectives if f - lo <= RESTART_AGREEMENT * max(abs(lo), 1e-300))

    @property
    def agree(self) -> bool:
        """The lowest objective was reached by at least two restarts (by the one run when
        only one was asked for): the reported point is reproducible."""
        return self.at_best >= min(2, len(self.objectives))

    @property
    def holds(self) -> bool:
        """Second-order stationary and the restarts agree."""
        return self.second_order and self.agree

    def verdict(self) -> str | None:
        """Why the certificate does not hold (None when it holds)."""
        k = len(self.objectives)
        if not self.second_order:
            return (
                "not a second-order stationary point: the Hessian's smallest eigenvalue is "
                f"{self.hessian_min_eig:.3g} (needs >= {-HESSIAN_TOLERANCE * self.lam:.3g})"
            )
        if not self.agree:
            return (
                f"the {k} restarts disagree: only one reached the lowest objective (spread "
                f"{self.spread:.3g} relative; agreement: two within {RESTART_AGREEMENT:g}); "
                "the lowest is reported"
            )
        return None


def rank_limited_solution(est: Estimate, gap: float) -> CertifiedSolution:
    """What a narrow run reports instead of a screened solution: the network's own S, its
    eigenvalues (by value, decreasing) and its rank by :data:`RANK_METHOD`; nothing is
    proven zero (``screened`` 0) and the resolution is the rank floor."""
    ev = torch.linalg.eigvalsh(est.solution).flip(0).cpu().numpy()
    order = np.argsort(-np.abs(ev), kind="stable")
    values = np.abs(ev)[order]
    top = float(values[0]) if values.size else 0.0
    floor = RANK_FLOOR * top
    support = int(np.count_nonzero(values > floor)) if top > 0 else 0
    return CertifiedSolution(
        solution=est.solution,
        values=values,
        support=support,
        penalty_norm=float(np.abs(ev).sum()),
        screened=0,
        resolution=floor if top > 0 else None,
        gap=gap,
        eigenvalues=ev,
    )
