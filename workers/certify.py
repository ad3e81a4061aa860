"""Certificates of global optimality for trained networks.

The network's objective F(params) is bounded below by the optimum of the equivalent convex
problem (THEORY.md section 1), and any dual-feasible point of that problem gives a lower
bound D <= P* <= F. So ``(F - D)/F`` bounds the network's relative distance to the global
minimum, from above. Two dual points are used:

* the residual of the network itself, scaled into the dual feasible set
  (:mod:`workers.objectives`): free, but loose while coordinates / eigen-directions near the
  threshold are still growing from the small initialisation;
* the dual point of a short accelerated proximal-gradient solve of the convex problem,
  warm-started at the network's own solution (theta = a*w or S = W' diag(s) W): tight
  whenever the network is close to optimal, and cheap, since it starts there.

The certificate never replaces training: the primal value F is always the network's.
"""

from __future__ import annotations

import numpy as np

from service.spec import RunConfig
from workers.convex import solve_lasso, solve_sensing
from workers.data import Dataset
from workers.objectives import (
    Array,
    lasso_certificate,
    sensing_certificate,
)
from workers.teachers import quadratic_form

WARM_SOLVE_ITERATIONS = 300
"""At most this many proximal-gradient iterations to tighten the dual bound."""


def gap_tolerance(dtype: str) -> float:
    """Largest relative gap that counts as the global minimum for a given training dtype."""
    return 1e-6 if dtype == "float64" else 1e-4


def network_objective(
    cfg: RunConfig, data: Dataset, prediction_of: Array, squared_norm: float
) -> float:
    """F = (1/2n)||y - f||^2 + (lam/2)||params||^2 in float64."""
    r = data.y - prediction_of
    return float(r @ r / (2 * cfg.n) + cfg.weight_decay / 2 * squared_norm)


def relative_gap(
    cfg: RunConfig,
    data: Dataset,
    *,
    theta: Array | None = None,
    s: Array | None = None,
    squared_norm: float | None = None,
    tight: bool = True,
    tol: float | None = None,
) -> float:
    """Relative gap (F - D)/F of a candidate solution.

    Parameters
    ----------
    theta, s : the candidate (theta for the diagonal model, S for the quadratic model).
    squared_norm : ||params||^2 of the network (None: the candidate comes from the convex
        solver, and F is the convex objective, |theta|_1-form or trace-form).
    tight : also tighten the dual bound with a warm-started convex solve.
    tol : relative gap at which the warm solve stops (default: 1% of the float64 tolerance).
    """
    lam = cfg.weight_decay
    psd = cfg.training.second_layer == "positive"
    if cfg.model == "diagonal":
        assert theta is not None
        cheap = lasso_certificate(data.x, data.y, theta, lam)
        pred = data.x @ theta
    else:
        assert s is not None
        cheap = sensing_certificate(data.x, data.y, s, lam, psd)
        pred = quadratic_form(data.x, s)
    f = cheap.primal if squared_norm is None else network_objective(cfg, data, pred, squared_norm)
    best_dual = cheap.dual
    if tight and _gap(f, best_dual) > gap_tolerance("float64"):
        stop = tol if tol is not None else 1e-2 * gap_tolerance("float64")
        if cfg.model == "diagonal":
            sol = solve_lasso(
                data.x, data.y, lam, tol=stop, max_iter=WARM_SOLVE_ITERATIONS, x0=theta
            )
        else:
            sol = solve_sensing(
                data.x, data.y, lam, psd=psd, tol=stop, max_iter=WARM_SOLVE_ITERATIONS, s0=s
            )
        dual = sol.objective - sol.gap * abs(sol.objective)
        best_dual = max(best_dual, dual)
    return _gap(f, best_dual)


def _gap(primal: float, dual: float) -> float:
    if not np.isfinite(primal):
        return float("inf")
    return max(primal - dual, 0.0) / max(abs(primal), 1e-300)
