"""Narrow quadratic networks: the convex certificate where the width holds the convex
minimum's rank, the second-order certificate (stationarity, the Hessian's smallest
eigenvalue, reproduced restarts) below it, checked against a global optimum found by brute
force at tiny d."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

import workers.tasks as tasks
from service.spec import RunConfig, TeacherSpec, TrainingSpec
from workers.problems import problem_for
from workers.second_order import (
    RANK_METHOD,
    RESTART_AGREEMENT,
    SecondOrder,
    hessian_min_eig,
    objective_of,
)
from workers.tasks import run_batch
from workers.training import TaskBudget


def _cfg(d: int, n: int, lam: float, width: int, **training: Any) -> RunConfig:
    return RunConfig(
        model="quadratic", d=d, n=n, weight_decay=lam, seed=0,
        teacher=TeacherSpec(gamma=1.0, noise=0.01),
        training=TrainingSpec(width=width, **training),
    )  # fmt: skip


def test_the_gap_certifies_a_width_that_holds_the_convex_rank_and_not_below() -> None:
    full = run_batch([_cfg(12, 600, 0.3, 12)])[0]
    assert full.status == "succeeded" and full.metrics is not None
    rank = full.metrics.support  # the convex minimum's rank on these data
    assert 2 < rank < 12
    wide = run_batch([_cfg(12, 600, 0.3, rank + 1)])[0]  # Burer-Monteiro: the global minimum
    assert wide.metrics is not None and wide.metrics.certificate == "duality_gap"
    assert wide.metrics.duality_gap <= 1e-6 and wide.metrics.support == rank
    assert wide.metrics.objective == pytest.approx(full.metrics.objective, rel=1e-6)
    narrow = run_batch([_cfg(12, 600, 0.3, rank - 1)], TaskBudget(width_restarts=3))[0]
    m = narrow.metrics
    assert m is not None and m.certificate == "second_order" and m.duality_gap > 1e-3
    assert narrow.status == "succeeded" and m.converged, narrow.error
    assert m.restarts == 3 and m.restarts_at_best is not None and m.restarts_at_best >= 2
    assert m.hessian_min_eig is not None and m.hessian_min_eig >= -1e-3 * 0.3
    assert m.support <= rank - 1 and m.support_method == RANK_METHOD
    assert m.objective > full.metrics.objective  # the rank constraint binds: a higher minimum
    assert [s.kind for s in narrow.spectra][:1] == ["eig_S"]


def _brute_force_rank_one(x: np.ndarray, y: np.ndarray, lam: float) -> float:
    """min over w in R^2 of (1/2n)|y - ((x.w)^2 - |w|^2)|^2 + (lam/2)|w|^2: a 161 x 161 grid
    of w, then L-BFGS from the best 20 grid points (d = 2: nothing is missed)."""
    n = y.size

    def f(w: np.ndarray) -> float:
        r = y - ((x @ w) ** 2 - w @ w)
        return float(r @ r / (2 * n) + lam / 2 * (w @ w))

    axis = np.linspace(-2.0, 2.0, 161)
    grid = np.array([[a, b] for a in axis for b in axis])
    values = np.array([f(w) for w in grid])
    starts = grid[np.argsort(values)[:20]]
    return min(float(minimize(f, w0, method="L-BFGS-B", tol=1e-14).fun) for w0 in starts)


def test_a_single_neuron_reaches_the_brute_force_global_minimum() -> None:
    cfg = _cfg(2, 200, 0.05, 1, restarts=4)
    result = run_batch([cfg])[0]
    problem = problem_for(cfg)
    _, data = problem.draw()
    best = _brute_force_rank_one(data.x.numpy(), data.y.numpy(), 0.05)
    m = result.metrics
    assert m is not None and result.status == "succeeded", result.error
    assert m.certificate in ("duality_gap", "second_order")
    assert m.objective == pytest.approx(best, rel=1e-7)  # tolerance: the stopping rule's


def test_hessian_min_eig_matches_a_finite_difference_hessian_and_sees_a_saddle() -> None:
    cfg = _cfg(4, 120, 0.05, 2)
    problem = problem_for(cfg)
    _, data = problem.draw()
    rng = np.random.default_rng(3)
    w = torch.tensor(rng.standard_normal((2, 4)) * 0.3)
    lanczos = hessian_min_eig(problem, data, {"W": w})
    flat = w.reshape(-1).numpy()
    h, size = 1e-4, flat.size

    def f(v: np.ndarray) -> float:
        return objective_of(problem, data, {"W": torch.tensor(v.reshape(2, 4))})

    hess = np.zeros((size, size))
    for i in range(size):
        for j in range(size):
            e_i, e_j = np.eye(size)[i] * h, np.eye(size)[j] * h
            hess[i, j] = (
                f(flat + e_i + e_j)
                - f(flat + e_i - e_j)
                - f(flat - e_i + e_j)
                + f(flat - e_i - e_j)
            ) / (4 * h * h)
    assert lanczos == pytest.approx(np.linalg.eigvalsh((hess + hess.T) / 2).min(), abs=1e-5)
    # W = 0 is a stationary point; along the top eigenvector of A'(y)/n the curvature is
    # lam - 2 mu_max < 0: a saddle, which the check must see
    assert hessian_min_eig(problem, data, {"W": torch.zeros(2, 4, dtype=torch.float64)}) < -0.01


def test_second_order_verdicts() -> None:
    same = SecondOrder((1.0, 1.0 + 1e-9, 1.2), best=0, hessian_min_eig=-1e-9, lam=0.1)
    assert same.holds and same.at_best == 2 and same.spread == pytest.approx(0.2)
    lone = SecondOrder((1.0, 1.0 + 10 * RESTART_AGREEMENT, 1.2), 0, 0.0, 0.1)
    assert not lone.holds and "restarts disagree" in str(lone.verdict())
    saddle = SecondOrder((1.0, 1.0), 0, -0.01, 0.1)
    assert not saddle.holds and "not a second-order stationary point" in str(saddle.verdict())
    assert SecondOrder((1.0,), 0, 0.0, 0.1).holds  # one run asked for: nothing to reproduce


def test_disagreeing_restarts_fail_the_run_and_keep_the_lowest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = tasks.objective_of
    calls: list[float] = []

    def shifted(problem: Any, data: Any, params: Any) -> float:
        calls.append(1.0)
        return real(problem, data, params) * (1.0 + 0.01 * (len(calls) - 1))  # all differ

    monkeypatch.setattr(tasks, "objective_of", shifted)
    result = run_batch([_cfg(12, 600, 0.3, 2, restarts=3)])[0]
    assert result.status == "failed" and result.metrics is not None
    assert result.error is not None and "the 3 restarts disagree" in result.error
    assert result.metrics.certificate == "second_order" and not result.metrics.converged
    assert result.metrics.restart_spread == pytest.approx(0.02, rel=1e-3)


@pytest.mark.parametrize(
    ("width", "second_layer", "kind"),
    [(1, "positive", "second_order"), (15, "positive", "duality_gap"),
     (3, "signed", None), (30, "signed", "duality_gap")],
)  # fmt: skip
def test_single_neurons_signed_layers_and_widths_above_d_are_handled(
    width: int, second_layer: str, kind: str | None
) -> None:
    cfg = _cfg(10, 500, 0.05, width, second_layer=second_layer, restarts=2)
    result = run_batch([cfg])[0]
    m = result.metrics
    assert m is not None, result.error
    assert m.support <= width
    if kind is not None:
        assert m.certificate == kind
    assert result.status == ("succeeded" if m.converged else "failed")
