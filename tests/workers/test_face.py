"""workers.face: the minimum on a candidate's face gives a dual bound that is always valid and,
when the face is right, far tighter than the candidate's own residual.

The reference P* is the convex solver's objective at a relative gap of 1e-12. Validity
(a dual bound below P*) is checked to 1e-12 relative (rounding of the objectives); tightness
against the free bound of the same candidate.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor

from workers.certificate import Certificate, lasso_certificate, sensing_certificate
from workers.convex import solve_lasso, solve_sensing
from workers.face import face_size, lasso_face_certificate, sensing_face_certificate
from workers.operators import Sensing

ROUNDING = 1e-12


def _lasso_data(seed: int = 0, n: int = 120, d: int = 60) -> tuple[Tensor, Tensor]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    theta = np.zeros(d)
    theta[:6] = rng.choice([-1.0, 1.0], 6) * rng.uniform(0.5, 2.0, 6)
    y = x @ theta + 0.3 * rng.standard_normal(n)
    return torch.as_tensor(x), torch.as_tensor(y)


def _sensing_data(seed: int = 0, n: int = 600, d: int = 16) -> tuple[Tensor, Tensor]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    u = rng.standard_normal((d, 3))
    s = u @ u.T / d
    y = np.einsum("ni,ij,nj->n", x, s, x) - np.trace(s) + 0.1 * rng.standard_normal(n)
    return torch.as_tensor(x), torch.as_tensor(y)


def test_the_lasso_face_of_a_near_candidate_certifies_it_far_tighter_than_its_residual() -> None:
    x, y = _lasso_data()
    lam = 0.1
    exact = solve_lasso(x, y, lam, tol=1e-12)
    near = solve_lasso(x, y, lam, tol=1e-3)  # the right support, values off
    free = lasso_certificate(x, y, near.solution, lam)
    face = lasso_face_certificate(x, y, near.solution, lam)
    assert face is not None
    assert face.dual <= exact.objective * (1 + ROUNDING)
    # the face's minimum is the minimum: its bound is as tight as the exact solve's
    assert (exact.objective - face.dual) / exact.objective < 1e-9
    assert face.dual > free.dual
    assert face.best_primal <= near.objective


def test_a_wrong_lasso_face_still_gives_a_valid_bound() -> None:
    x, y = _lasso_data(seed=1)
    lam = 0.1
    exact = solve_lasso(x, y, lam, tol=1e-12)
    wrong = exact.solution.clone()
    wrong[-5:] = 0.3  # five coordinates outside the support, one sign flipped inside
    wrong[0] = -wrong[0]
    face = lasso_face_certificate(x, y, wrong, lam)
    assert face is not None
    assert face.dual <= exact.objective * (1 + ROUNDING)


@pytest.mark.parametrize("psd", [True, False])
def test_the_sensing_face_of_a_near_candidate_certifies_it_far_tighter(psd: bool) -> None:
    x, y = _sensing_data()
    lam = 0.05
    op = Sensing(x)
    exact = solve_sensing(x, y, lam, psd=psd, tol=1e-12, op=op)
    near = solve_sensing(x, y, lam, psd=psd, tol=1e-4, op=op)
    free = sensing_certificate(x, y, near.solution, lam, psd, adjoint=op.adjoint)
    face = sensing_face_certificate(x, y, near.solution, lam, psd, adjoint=op.adjoint)
    assert face is not None
    assert face.dual <= exact.objective * (1 + ROUNDING)
    assert (near.objective - face.dual) < (near.objective - free.dual) / 10
    if psd:  # (the nuclear norm's face keeps each direction's sign: measured 3.6e-7 here)
        assert (exact.objective - face.dual) / exact.objective < 1e-8


def test_a_wrong_sensing_face_still_gives_a_valid_bound() -> None:
    x, y = _sensing_data(seed=2)
    lam = 0.05
    op = Sensing(x)
    exact = solve_sensing(x, y, lam, tol=1e-12, op=op)
    rng = np.random.default_rng(3)
    extra = torch.as_tensor(rng.standard_normal((x.shape[1], 4)))
    wrong = exact.solution + 0.05 * extra @ extra.T  # four directions too many
    face = sensing_face_certificate(x, y, wrong, lam, True, adjoint=op.adjoint)
    assert face is not None
    assert face.dual <= exact.objective * (1 + ROUNDING)


def test_no_face_to_solve_gives_none() -> None:
    x, y = _lasso_data()
    assert lasso_face_certificate(x, y, torch.zeros(x.shape[1], dtype=x.dtype), 0.1) is None
    assert lasso_face_certificate(x, y, torch.ones(x.shape[1], dtype=x.dtype), 0.0) is None
    xs, ys = _sensing_data()
    op = Sensing(xs)
    zero = torch.zeros(xs.shape[1], xs.shape[1], dtype=xs.dtype)
    assert sensing_face_certificate(xs, ys, zero, 0.05, True, adjoint=op.adjoint) is None
    # a face of rank above d/2 is no cheaper than the full solver: not solved
    full = torch.eye(xs.shape[1], dtype=xs.dtype)
    assert sensing_face_certificate(xs, ys, full, 0.05, True, adjoint=op.adjoint) is None


def test_a_solve_refined_by_faces_stops_at_its_dual_target_sooner() -> None:
    x, y = _sensing_data(seed=4)
    lam = 0.05
    op = Sensing(x)
    exact = solve_sensing(x, y, lam, tol=1e-12, op=op)
    start = solve_sensing(x, y, lam, tol=1e-2, op=op).solution
    target = exact.objective * (1 - 1e-10)

    def refine(s: Tensor) -> Certificate | None:
        return sensing_face_certificate(x, y, s, lam, True, adjoint=op.adjoint)

    plain = solve_sensing(x, y, lam, tol=1e-14, max_iter=2000, start=start, op=op,
                          dual_target=target)  # fmt: skip
    refined = solve_sensing(x, y, lam, tol=1e-14, max_iter=2000, start=start, op=op,
                            refine=refine, refine_every=10, dual_target=target)  # fmt: skip
    for sol in (plain, refined):
        assert sol.stop_reason == "duality_gap"
        assert sol.certificate is not None and sol.certificate.dual >= target
        assert sol.certificate.dual <= exact.objective * (1 + ROUNDING)
    assert refined.iterations < plain.iterations


def test_the_face_size_counts_what_spans_the_face() -> None:
    theta = torch.tensor([2.0, -1e-3, 1e-7, 0.0, -3.0], dtype=torch.float64)
    assert face_size(theta) == 3  # 2, -3 and -1e-3 are above 1e-6 of the largest; 1e-7 is not
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64, generator=gen))
    ev = torch.tensor([4.0, 1.0, 1e-4, 1e-8, 0.0, -2.0], dtype=torch.float64)
    s = (q * ev) @ q.T
    assert face_size(s) == 3  # PSD: the negative eigenvalue is not on the face
    assert face_size(s, psd=False) == 4  # nuclear norm: |-2| is
    assert face_size(torch.zeros(4, 4, dtype=torch.float64)) == 0
