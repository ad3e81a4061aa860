"""workers.lanczos: the top eigenvalue of a symmetric PSD operator, against a dense eigensolver."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from workers.lanczos import top_eigenvalue
from workers.operators import Sensing
from workers.screening import SAFETY, sensing_lipschitz

F64 = torch.float64


def _wishart(n: int, p: int, seed: int) -> Tensor:
    """X'X/n of Gaussian data: a Marchenko-Pastur spectrum, a continuum up to its edge (the
    case where power iteration is slow)."""
    x = torch.as_tensor(np.random.default_rng(seed).standard_normal((n, p)))
    return x.T @ x / n


def test_the_estimate_is_a_lower_bound_within_its_tolerance_of_the_top_eigenvalue() -> None:
    """Within 1e-3 relative of the dense eigensolver's top eigenvalue at rtol = 1e-4, never
    above it (to 1e-12 relative), and in fewer applications than power iteration needs for
    the same 1e-3 from the same start."""
    q = _wishart(600, 400, seed=1)
    top = float(torch.linalg.eigvalsh(q)[-1])
    calls = 0

    def apply(v: Tensor) -> Tensor:
        nonlocal calls
        calls += 1
        return q @ v

    v0 = torch.ones(400, dtype=F64)
    est = top_eigenvalue(apply, v0, rtol=1e-4)
    assert est <= top * (1 + 1e-12)
    assert abs(est - top) <= 1e-3 * top
    lanczos_calls = calls
    v, power_calls = v0 / torch.linalg.vector_norm(v0), 0
    while float(v @ q @ v) < top * (1 - 1e-3) and power_calls < 10_000:
        w = q @ v
        v = w / torch.linalg.vector_norm(w)
        power_calls += 1
    assert lanczos_calls < power_calls, (lanczos_calls, power_calls)


def test_an_exhausted_krylov_space_gives_its_exact_top_and_a_zero_operator_zero() -> None:
    """A rank-2 operator: the Krylov space of a generic start ends after 2 steps, with the
    exact top eigenvalue (1e-12 relative); the zero operator gives 0.0."""
    rng = np.random.default_rng(2)
    u = torch.as_tensor(rng.standard_normal((50, 2)))
    q = u @ torch.diag(torch.tensor([3.0, 1.0], dtype=F64)) @ u.T
    top = float(torch.linalg.eigvalsh(q)[-1])
    v0 = torch.as_tensor(rng.standard_normal(50))
    assert abs(top_eigenvalue(lambda v: q @ v, v0) - top) <= 1e-12 * top
    assert top_eigenvalue(lambda v: torch.zeros_like(v), v0) == 0.0


def test_the_sensing_lipschitz_estimate_bounds_the_explicit_operator() -> None:
    """For A_mu = x x' - I at d = 6, n = 40 (Q formed explicitly on the d x d matrices): the
    estimate lies between the top eigenvalue and SAFETY times it (1e-9 relative)."""
    d, n = 6, 40
    x = torch.as_tensor(np.random.default_rng(3).standard_normal((n, d)))
    rows = torch.stack([(torch.outer(r, r) - torch.eye(d, dtype=F64)).reshape(-1) for r in x])
    top = float(torch.linalg.eigvalsh(rows.T @ rows / n)[-1])
    est = sensing_lipschitz(Sensing(x))
    assert top * (1 - 1e-9) <= est <= SAFETY * top * (1 + 1e-9)
