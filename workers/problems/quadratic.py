"""The quadratic network and its trace-penalised matrix sensing (THEORY.md 1.B).

``f_W(x) = sum_j s_j [(w_j.x)^2 - |w_j|^2] = <x x' - I, S>`` with ``S = W' diag(s) W``;
teacher ``S* = U diag(lam) U'``, U Haar, ``lam_k = c k^-gamma`` (k <= rank), ``2||S*||_F^2 = 1``
(signed: alternating signs, with a signed second layer). For width ``m >= rank(S_opt)`` the
network's global minimum is the convex problem's: PSD trace-penalised sensing (positive
second layer) or nuclear-norm sensing (signed); ``R = 2||S - S*||_F^2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import Tensor

from service.results import Spectrum
from service.spec import RunConfig
from service.teachers import haar_orthogonal, quadratic_eigenvalues
from workers.certificate import Certificate, sensing_certificate
from workers.convex import ConvexSolution, solve_sensing
from workers.corrections import quadratic_correction
from workers.data import Dataset
from workers.face import face_size, sensing_face_certificate
from workers.networks import QuadraticNets, init_values
from workers.operators import quadratic_form
from workers.problems.base import Array, ConvexSolver, Estimate, Params, Problem, Teacher
from workers.rng import stream
from workers.screening import CertifiedSolution, screen_sensing, sensing_lipschitz
from workers.spectra import quadratic_spectra


@dataclass(frozen=True)
class QuadraticTeacher:
    """S* = U diag(eigenvalues) U' (shape (d, d))."""

    eigenvalues: Array
    matrix: Array

    @property
    def target(self) -> Array:
        """S*."""
        return self.matrix

    def predict(self, x: Array) -> Array:
        """f*(x) = x'S*x - tr S* for x of shape (n, d) (host, float64)."""
        out: Array = np.einsum("ij,ij->i", x @ self.matrix, x) - np.trace(self.matrix)
        return out


def factor_of(s: Tensor) -> Tensor:
    """A factor W with W' diag(sign) W = S: rows sqrt(|mu_i|) v_i' (d x d)."""
    ev, vec = torch.linalg.eigh(s)
    out: Tensor = (vec * torch.sqrt(ev.abs())).T
    return out


class QuadraticProblem(Problem):
    """The quadratic model of one run."""

    def __init__(self, cfg: RunConfig, device: torch.device | None = None) -> None:
        super().__init__(cfg, device)
        self._lipschitz: dict[int, float] = {}

    @property
    def psd(self) -> bool:
        """A positive second layer: S is PSD (trace penalty); signed: nuclear norm."""
        return self.cfg.training.second_layer == "positive"

    def teacher(self, rng: np.random.Generator) -> QuadraticTeacher:
        cfg = self.cfg
        t = cfg.teacher
        lam = quadratic_eigenvalues(cfg.d, t.gamma, t.rank, t.signed)
        u = haar_orthogonal(cfg.d, rng)
        s = (u * lam) @ u.T
        return QuadraticTeacher(eigenvalues=lam, matrix=(s + s.T) / 2.0)

    def nets(self, device: torch.device, dtype: torch.dtype) -> QuadraticNets:
        c = self.cfg
        return QuadraticNets(c.d, c.width, c.training.second_layer, device=device, dtype=dtype)

    def init_params(self, restart: int = 0) -> Params:
        c = self.cfg
        w = init_values(stream(c.seed, "init", restart), c.training.init_scale, (c.width, c.d))
        return {"W": self.tensor(w)}

    @property
    def width_limited(self) -> bool:
        """Fewer rows of a sign than d: ``m < d`` (positive second layer), or fewer than d
        positive or negative rows (signed, ``ceil(m/2)`` positive)."""
        m, d = self.cfg.width, self.cfg.d
        if self.psd:
            return m < d
        positive = (m + 1) // 2
        return positive < d or m - positive < d

    def second_layer(self) -> Tensor:
        """s: +1 for every row (positive), or +1 on the first ceil(m/2) rows and -1 after."""
        s = torch.ones(self.cfg.width, dtype=torch.float64, device=self.device)
        if not self.psd:
            s[(self.cfg.width + 1) // 2 :] = -1.0
        return s

    def estimate(self, params: Params) -> Estimate:
        w = params["W"]
        m = (w.T * self.second_layer()) @ w
        return Estimate(solution=(m + m.T) / 2.0, factor=w, squared_norm=float((w * w).sum()))

    def correct(self, data: Dataset, params: Params) -> Params | None:
        lam = self.cfg.weight_decay
        moved = quadratic_correction(
            data.x, data.y, lam, params["W"], self.second_layer(), data.sensing.adjoint
        )
        return None if moved is None else {"W": moved}

    def predict(self, x: Tensor, solution: Tensor) -> Tensor:
        return quadratic_form(x, solution)

    def excess_risk(self, solution: Tensor, teacher: Teacher) -> float:
        diff = solution - self.target_of(teacher)
        return float(2.0 * (diff * diff).sum())

    def screen(
        self, data: Dataset, solution: Tensor, certs: Sequence[Certificate]
    ) -> CertifiedSolution:
        lam = self.cfg.weight_decay
        return screen_sensing(
            data.x, data.y, solution, lam, self.psd, certs,
            lipschitz=self.lipschitz(data), op=data.sensing,
        )  # fmt: skip

    def solve_convex(
        self, data: Dataset, *, tol: float, max_iter: int, **kw: Any
    ) -> ConvexSolution:
        """As :meth:`Problem.solve_convex`, with the data's sensing operator and Lipschitz
        estimate kept across the run's solves."""
        kw.setdefault("lipschitz", self.lipschitz(data))
        kw.setdefault("op", data.sensing)
        return super().solve_convex(data, tol=tol, max_iter=max_iter, **kw)

    def lipschitz(self, data: Dataset) -> float:
        """An upper estimate of the top eigenvalue of Q = A'A/n on these data (once)."""
        key = id(data)
        if key not in self._lipschitz:
            self._lipschitz[key] = sensing_lipschitz(data.sensing)
        return self._lipschitz[key]

    def dual_certificate(self, data: Dataset, solution: Tensor) -> Certificate:
        return sensing_certificate(
            data.x, data.y, solution, self.cfg.weight_decay, self.psd,
            adjoint=data.sensing.adjoint,
        )  # fmt: skip

    def face_size(self, solution: Tensor) -> int:
        return face_size(solution, self.psd)

    def face_certificate(self, data: Dataset, solution: Tensor) -> Certificate | None:
        return sensing_face_certificate(
            data.x, data.y, solution, self.cfg.weight_decay, self.psd,
            adjoint=data.sensing.adjoint,
        )  # fmt: skip

    def convex_solver(self) -> ConvexSolver:
        return partial(solve_sensing, psd=self.psd)

    def convex_estimate(self, solution: Tensor) -> Estimate:
        return Estimate(solution=solution, factor=factor_of(solution))

    def spectra(
        self, est: Estimate, certified: CertifiedSolution, rng: np.random.Generator
    ) -> list[Spectrum]:
        network = est.squared_norm is not None  # raw values: a network's own weights
        assert certified.eigenvalues is not None  # screen_sensing gives them
        return quadratic_spectra(
            certified.eigenvalues,
            rng=rng,
            resolution=certified.resolution,
            width=self.cfg.width,
            raw_s=est.solution.cpu().numpy() if network else None,
            raw_w=est.factor.cpu().numpy() if network and est.factor is not None else None,
        )
