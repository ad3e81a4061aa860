"""workers.screening: the certificate decides which coordinates / eigen-directions are zero.

The reference is the convex solver's solution on the same data, solved to a relative gap of
1e-12: its zeros are exact (soft-thresholding), so its support is the minimum's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from service.spec import RunConfig, TeacherSpec, TrainingSpec
from workers.certificate import CERTIFIED
from workers.problems import problem_for
from workers.screening import screen_lasso, screen_sensing
from workers.training import Run, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cfg(model: str, d: int, n: int, lam: float, seed: int = 0, **training: object) -> RunConfig:
    return RunConfig(
        model=model,
        d=d,
        n=n,
        weight_decay=lam,
        seed=seed,
        teacher=TeacherSpec(gamma=1.0, noise=0.01),
        training=TrainingSpec.model_validate({"device": "cpu", **training}),
    )


CASES = [
    # the run of the report (d = 400, n = 200): raw support 45, the convex solution's 7
    ("diagonal", 400, 200, 0.13296, 1),
    ("diagonal", 200, 100, 0.03, 0),
    ("diagonal", 200, 400, 0.01, 2),
    ("quadratic", 20, 400, 0.03, 0),
    ("quadratic", 20, 200, 0.3, 1),
    ("quadratic", 16, 600, 0.003, 3),
]


@pytest.mark.parametrize(("model", "d", "n", "lam", "seed"), CASES)
def test_a_trained_network_reports_the_convex_solutions_support(
    model: str, d: int, n: int, lam: float, seed: int
) -> None:
    cfg = _cfg(model, d, n, lam, seed)
    run = Run(cfg=cfg)
    run.prepare(problem_for(cfg))
    ((_, out),) = list(train([run]))
    problem, _, data = run.ready
    est = problem.estimate(out.params)
    cert = run.certificate_of(est)
    assert cert.gap <= CERTIFIED
    net = problem.certified(data, est, cert)
    sol = problem.solve_convex(data, tol=1e-12, max_iter=200_000)
    exact = problem.certified(data, problem.convex_estimate(sol.solution), sol.certificate)
    # the convex solution's zeros are exact (up to the rounding of an eigen-decomposition of
    # its low-rank S, 1e-16 of the top): screening confirms them, it removes no non-zero
    values = sol.solution.abs() if model == "diagonal" else torch.linalg.eigvalsh(sol.solution)
    assert exact.support == int((values > 1e-12 * values.max()).sum())
    # within 1: a direction at the threshold itself may be left undecided
    assert abs(net.support - exact.support) <= 1
    raw = est.solution.abs() if model == "diagonal" else torch.linalg.eigvalsh(est.solution)
    assert int((raw != 0).sum()) >= net.support  # the residue is gone, nothing is added
    assert net.screened + net.support <= (d if model == "diagonal" else d)
    # the penalty norm of the certified solution is the minimum's within the certificate
    assert net.penalty_norm == pytest.approx(exact.penalty_norm, rel=1e-3)


def test_the_resolution_bounds_the_distance_to_the_minimum() -> None:
    # LASSO: exact bound |certified - theta*|_inf <= |.|_2 <= eps (restricted strong convexity)
    cfg = _cfg("diagonal", 200, 150, 0.02, 4)
    problem = problem_for(cfg)
    _, data = problem.draw()
    ref = problem.solve_convex(data, tol=1e-13, max_iter=400_000)
    rough = problem.solve_convex(data, tol=1e-6, max_iter=400_000)
    out = screen_lasso(data.x, data.y, rough.solution, cfg.weight_decay, [rough.certificate])
    assert out.resolution is not None
    assert float(torch.linalg.norm(out.solution - ref.solution)) <= out.resolution
    big = out.solution.abs() > out.resolution
    assert bool((ref.solution[big] != 0).all())  # above the resolution: non-zero at the minimum


def test_residue_on_the_zeros_of_a_minimum_is_screened() -> None:
    cfg = _cfg("quadratic", 14, 500, 0.1, 2)
    problem = problem_for(cfg)
    _, data = problem.draw()
    sol = problem.solve_convex(data, tol=1e-12, max_iter=200_000)
    ev, vec = np.linalg.eigh(sol.solution)
    rank = int(np.count_nonzero(ev > 1e-12 * ev.max()))  # its zeros: eigh rounding
    assert 0 < rank < 14
    noisy = np.where(
        ev > 1e-12 * ev.max(), ev, 1e-9
    )  # the optimiser's residue on the zero directions
    cand = (vec * noisy) @ vec.T
    out = screen_sensing(data.x, data.y, cand, cfg.weight_decay, True, [sol.certificate])
    assert out.support == rank
    assert out.screened == 14 - rank
    np.testing.assert_allclose(out.values[:rank], np.sort(ev)[::-1][:rank], rtol=1e-9)


def test_lambda_zero_proves_nothing_and_says_the_minimiser_is_not_unique() -> None:
    problem = problem_for(_cfg("diagonal", 50, 30, 0.0))
    unique, why = problem.unique_minimizer()
    assert not unique and why is not None and "not unique" in why
    assert problem_for(_cfg("diagonal", 50, 80, 0.0)).unique_minimizer() == (True, None)
    assert problem_for(_cfg("diagonal", 50, 30, 1e-3)).unique_minimizer() == (True, None)
    assert not problem_for(_cfg("quadratic", 10, 40, 0.0)).unique_minimizer()[0]  # 40 < 55
