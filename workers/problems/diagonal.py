"""The diagonal network and its LASSO (THEORY.md 1.A): ``f(x) = sum_i a_i w_i x_i``.

Teacher ``theta*_k = c k^-gamma`` (k <= rank) with random signs and ``||theta*|| = 1``; the
global minimum of the network's objective is the LASSO ``(1/2n)||y - X theta||^2 +
lam ||theta||_1`` at ``theta = a * w``; ``R = ||theta - theta*||^2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from service.results import Spectrum
from service.teachers import diagonal_coefficients
from workers.certificate import Certificate, lasso_certificate
from workers.convex import solve_lasso
from workers.corrections import diagonal_correction
from workers.data import Dataset
from workers.face import lasso_face_certificate
from workers.networks import DiagonalNets, init_values
from workers.problems.base import Array, ConvexSolver, Estimate, Params, Problem, Teacher
from workers.rng import stream
from workers.screening import CertifiedSolution, screen_lasso
from workers.spectra import diagonal_spectra


@dataclass(frozen=True)
class DiagonalTeacher:
    """theta* (shape (d,))."""

    theta: Array

    @property
    def target(self) -> Array:
        """theta*."""
        return self.theta

    def predict(self, x: Array) -> Array:
        """f*(x) = theta* . x for x of shape (n, d)."""
        out: Array = x @ self.theta
        return out


class DiagonalProblem(Problem):
    """The diagonal model of one run."""

    def teacher(self, rng: np.random.Generator) -> DiagonalTeacher:
        cfg = self.cfg
        mags = diagonal_coefficients(cfg.d, cfg.teacher.gamma, cfg.teacher.rank)
        signs = rng.choice(np.array([-1.0, 1.0]), size=cfg.d)
        return DiagonalTeacher(theta=mags * signs)

    def nets(self, device: torch.device, dtype: torch.dtype) -> DiagonalNets:
        return DiagonalNets(self.cfg.d, device=device, dtype=dtype)

    def init_params(self, restart: int = 0) -> Params:
        rng, scale, d = (
            stream(self.cfg.seed, "init", restart),
            self.cfg.training.init_scale,
            self.cfg.d,
        )
        a = init_values(rng, scale, (d,))  # a first, then w: part of the reproducibility contract
        return {"a": self.tensor(a), "w": self.tensor(init_values(rng, scale, (d,)))}

    def estimate(self, params: Params) -> Estimate:
        a, w = params["a"], params["w"]
        return Estimate(solution=a * w, squared_norm=float(a @ a + w @ w))

    def correct(self, data: Dataset, params: Params) -> Params | None:
        lam = self.cfg.weight_decay
        moved = diagonal_correction(data.x, data.y, lam, params["a"], params["w"])
        return None if moved is None else {"a": moved[0], "w": moved[1]}

    def predict(self, x: Tensor, solution: Tensor) -> Tensor:
        return x @ solution

    def excess_risk(self, solution: Tensor, teacher: Teacher) -> float:
        diff = solution - self.target_of(teacher)
        return float(diff @ diff)

    def screen(
        self, data: Dataset, solution: Tensor, certs: Sequence[Certificate]
    ) -> CertifiedSolution:
        return screen_lasso(data.x, data.y, solution, self.cfg.weight_decay, certs)

    def dual_certificate(self, data: Dataset, solution: Tensor) -> Certificate:
        return lasso_certificate(data.x, data.y, solution, self.cfg.weight_decay)

    def face_certificate(self, data: Dataset, solution: Tensor) -> Certificate | None:
        return lasso_face_certificate(data.x, data.y, solution, self.cfg.weight_decay)

    def convex_solver(self) -> ConvexSolver:
        return solve_lasso

    def convex_estimate(self, solution: Tensor) -> Estimate:
        return Estimate(solution=solution)

    def spectra(
        self, est: Estimate, certified: CertifiedSolution, rng: np.random.Generator
    ) -> list[Spectrum]:
        network = est.squared_norm is not None  # raw values: a network's own weights
        raw = est.solution.cpu().numpy() if network else None
        return diagonal_spectra(
            certified.solution.cpu().numpy(), rng=rng, resolution=certified.resolution, raw=raw
        )
