"""workers.problems: how a Problem certifies an estimate -- the free dual bound, then the
minimum on the estimate's face, then a warm convex solve that stops as soon as it has
decided -- and how the certified solution reuses what the certificate solved.

The cases are small quadratic problems (d = 16, n = 600, lambda = 0.3: the minimum has rank 6)
whose minimum S* the convex solver gives to a relative gap of 1e-13; estimates are S* rotated
by exp(eps K), K a fixed antisymmetric matrix: the wrong face of a network near its minimum.
"""

from __future__ import annotations

import pytest
import torch

import workers.problems.base as base
from service.spec import RunConfig, TeacherSpec, TrainingSpec
from workers.certificate import CERTIFIED, Certificate
from workers.convex import ConvexSolution
from workers.data import Dataset
from workers.problems import Problem, problem_for

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _problem() -> tuple[Problem, Dataset, ConvexSolution]:
    cfg = RunConfig(
        model="quadratic", d=16, n=600, weight_decay=0.3, seed=0,
        teacher=TeacherSpec(gamma=1.0, noise=0.01),
        training=TrainingSpec.model_validate({"device": "cpu"}),
    )  # fmt: skip
    problem = problem_for(cfg)
    _, data = problem.draw()
    return problem, data, problem.solve_convex(data, tol=1e-13, max_iter=200_000)


def _rotated(s: torch.Tensor, eps: float) -> torch.Tensor:
    k = torch.randn(16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    r = torch.linalg.matrix_exp(eps * (k - k.T))
    return r @ s @ r.T


@pytest.mark.parametrize(
    ("eps", "certified", "solve_stop"),
    [
        (3e-5, True, "duality_gap"),  # 1e-7 above P*: the solve's dual bound certifies it
        (1e-4, False, "primal_target"),  # 1.1e-6 above: an iterate below P - 1e-6 P ends it
        (1e-3, False, None),  # 1.1e-4 above: the face's own minimum proves it, no solve
    ],
)
def test_the_warm_solve_stops_once_it_has_decided(
    monkeypatch: pytest.MonkeyPatch, eps: float, certified: bool, solve_stop: str | None
) -> None:
    problem, data, exact = _problem()
    assert exact.certificate is not None
    p_star = exact.certificate.primal
    monkeypatch.setattr(base, "TIGHTEN_BELOW", 1.0)  # the free gaps here reach 8e-3
    solves: list[ConvexSolution] = []
    solve = problem.solve_convex

    def spied(*args: object, **kw: object) -> ConvexSolution:
        solves.append(solve(*args, **kw))  # type: ignore[arg-type]
        return solves[-1]

    monkeypatch.setattr(problem, "solve_convex", spied)
    est = problem.convex_estimate(_rotated(exact.solution, eps))
    cert = problem.certificate(data, est)
    excess = (cert.primal - p_star) / p_star
    assert (cert.gap <= CERTIFIED) == certified == (excess <= CERTIFIED)
    assert cert.dual <= p_star * (1 + 1e-12)  # a valid bound whatever stopped the solve
    assert [s.stop_reason for s in solves] == ([solve_stop] if solve_stop else [])
    if solve_stop == "primal_target":
        assert solves[0].iterations <= 5


def test_the_certified_solution_reuses_the_face_its_certificate_solved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    problem, data, exact = _problem()
    rough = _rotated(exact.solution, 3e-5)
    est = problem.convex_estimate(rough)
    cert = problem.certificate(data, est)
    folded = problem._folded_face
    assert folded is not None and folded[2] is not None
    assert folded[2].dual <= cert.dual  # the face's bound is in the certificate
    calls: list[torch.Tensor] = []
    solve = problem.face_certificate

    def counted(d: Dataset, s: torch.Tensor) -> Certificate | None:
        calls.append(s)
        return solve(d, s)

    monkeypatch.setattr(problem, "face_certificate", counted)
    # the same face (the same solution, recomputed): the certificate's own face, not solved
    assert problem._face_of_certified(data, est.solution.clone(), rough.clone()) is folded[2]
    assert calls == []
    # a smaller face (a direction of the face zeroed by the screening): solved anew
    ev, vec = torch.linalg.eigh(rough)
    ev[-problem.face_size(rough)] = 0.0
    smaller = (vec * ev) @ vec.T
    assert problem.face_size(smaller) == problem.face_size(rough) - 1
    problem._face_of_certified(data, est.solution, smaller)
    assert len(calls) == 1
    # another estimate: solved anew
    problem._face_of_certified(data, rough * (1 + 1e-9), rough)
    assert len(calls) == 2
