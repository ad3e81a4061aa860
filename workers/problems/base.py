"""What every model provides: the :class:`Problem` interface, and the shapes it works with.

A :class:`Problem` is one run's model, chosen once from ``cfg.model`` by
:func:`workers.problems.problem_for`: its teacher, its network, the convex problem its
global minimum solves (THEORY.md section 1), the exact excess risk, the certificate of a
candidate, what the certificate proves (screening) and the spectra of the trained weights.
Training (:mod:`workers.training`) and the task (:mod:`workers.tasks`) see only this
interface.

Everything lives on the run's device (``device``: the CPU or a GPU, from
``training.device``) as float64 torch tensors: the data, the parameters as named tensors
(``{"a": ..., "w": ...}`` or ``{"W": ...}``), the solutions, the certificate's dual point. The
batched tensor program of a shape is :meth:`Problem.nets`.

A solution is an :class:`Estimate`: the convex variable (theta, shape (d,), for the diagonal
model; S, shape (d, d), for the quadratic one), optionally a factor of it (the quadratic
net's first layer W), and the squared norm of the network's parameters when it comes from a
network (its objective then has the network's penalty, not the convex one).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from service.results import Spectrum
from service.spec import RunConfig, convex_dimension, unique_minimizer
from workers.certificate import Certificate, certificate_tolerance
from workers.convex import ConvexSolution
from workers.data import Dataset, sample
from workers.devices import resolve_device
from workers.face import face_size
from workers.networks import BatchedNets
from workers.rng import stream
from workers.screening import CertifiedSolution

Array = NDArray[np.float64]
Params = dict[str, Tensor]

ConvexSolver = Callable[..., ConvexSolution]
"""``solve(x, y, lam, *, tol, max_iter, start=None, deadline=None, refine=None,
dual_target=None)`` (workers.convex)."""
WARM_SOLVE_ITERATIONS = 300
"""At most this many proximal-gradient iterations to tighten a certificate's dual bound."""
WARM_SOLVE_TOL = 0.5
"""The warm solve stops at this fraction of the certificate's tolerance (its own gap: the
network's primal adds its distance to the minimum)."""
TIGHTEN_BELOW = 1e-3
"""The warm solve is tried only when the free bound's gap is below this: farther away the
candidate itself is not near the minimum, and the solve would not certify it."""
DUAL_TARGET = 0.9
"""The warm solve also stops once its dual bound certifies the network: a gap of this
fraction of the certificate's tolerance against the network's own primal."""
REFINE_EVERY = 20
"""Iterations of the warm solve between its face certificates (workers.face; each costs
about ten iterations)."""
SCREEN_SOLVE_ITERATIONS = 50
"""At most this many proximal-gradient iterations to sharpen an undecided screening."""
SCREEN_SOLVE_TOL = 1e-12
SHARPEN_ABOVE = 1e-9
"""A screening is sharpened only when its sphere came from a relative gap above this."""


class Teacher(Protocol):
    """The target function of a run (host arrays: the data are drawn on the host)."""

    @property
    def target(self) -> Array:
        """The teacher in the space of solutions: theta* (d,) or S* (d, d)."""
        ...

    def predict(self, x: Array) -> Array:
        """f*(x) for every row of ``x`` (shape (n, d)) -> shape (n,)."""
        ...


@dataclass(frozen=True)
class Estimate:
    """A solution in float64 on the run's device (see the module docstring)."""

    solution: Tensor
    """theta, shape (d,), or S, shape (d, d)."""
    factor: Tensor | None = None
    """The quadratic net's W, shape (m, d), with W' diag(s) W = S (None: not known)."""
    squared_norm: float | None = None
    """||params||^2 of the network (None: a solution of the convex solver)."""


class Problem(ABC):
    """One run's model (see the module docstring)."""

    def __init__(self, cfg: RunConfig, device: torch.device | None = None) -> None:
        self.cfg = cfg
        self.device = device if device is not None else resolve_device(cfg.training.device)
        self._target: Tensor | None = None
        self._folded_face: tuple[Dataset, Tensor, Certificate | None] | None = None
        """The last estimate whose face :meth:`certificate` solved, with that face's
        certificate (:meth:`certified` reuses it)."""

    def tensor(self, values: Array) -> Tensor:
        """Host values as float64 on the run's device."""
        return torch.as_tensor(np.asarray(values, dtype=np.float64)).to(self.device)

    # -- the model ----------------------------------------------------------------------

    @abstractmethod
    def teacher(self, rng: np.random.Generator) -> Teacher:
        """The teacher, drawn from ``rng`` (the run's ``teacher`` stream)."""

    @abstractmethod
    def nets(self, device: torch.device, dtype: torch.dtype) -> BatchedNets:
        """The batched networks of this run's shape (model, d, width, second layer)."""

    @abstractmethod
    def init_params(self, restart: int = 0) -> Params:
        """The initial parameters, i.i.d. N(0, init_scale^2) from the run's ``init`` stream
        (``restart`` > 0: its restart-th independent variant, :func:`workers.rng.stream`)."""

    @property
    def width_limited(self) -> bool:
        """Whether the network may be too narrow for the convex problem's minimum (fewer rows
        of a sign than d): its minimum is then certified by the duality gap only when the
        convex solution's rank fits, and otherwise by second-order stationarity and
        restarts (:mod:`workers.second_order`)."""
        return False

    @abstractmethod
    def estimate(self, params: Params) -> Estimate:
        """The solution of the network with these parameters, with ||params||^2."""

    @abstractmethod
    def correct(self, data: Dataset, params: Params) -> Params | None:
        """Parameters moved along the near-threshold directions the certificate names
        (:mod:`workers.corrections`), or None when no such move lowers the objective."""

    @abstractmethod
    def predict(self, x: Tensor, solution: Tensor) -> Tensor:
        """The prediction of a solution for every row of ``x`` -> shape (n,)."""

    @abstractmethod
    def excess_risk(self, solution: Tensor, teacher: Teacher) -> float:
        """Exact excess risk E(f - f*)^2 of a solution (THEORY.md section 1)."""

    @abstractmethod
    def screen(
        self, data: Dataset, solution: Tensor, certs: Sequence[Certificate]
    ) -> CertifiedSolution:
        """Gap-safe screening of a candidate with the best of these certificates
        (:mod:`workers.screening`)."""

    @abstractmethod
    def dual_certificate(self, data: Dataset, solution: Tensor) -> Certificate:
        """The residual-based certificate of the convex problem at a solution."""

    @abstractmethod
    def face_certificate(self, data: Dataset, solution: Tensor) -> Certificate | None:
        """The certificate of the convex problem's minimum on the face ``solution`` names
        (its support and signs, its leading eigenvectors; :mod:`workers.face`), or None when
        it has none to solve."""

    def face_size(self, solution: Tensor) -> int:
        """How many coordinates or eigen-directions span the face ``solution`` names
        (:func:`workers.face.face_size`)."""
        return face_size(solution)

    @abstractmethod
    def convex_solver(self) -> ConvexSolver:
        """The solver of the equivalent convex problem (workers.convex)."""

    @abstractmethod
    def convex_estimate(self, solution: Tensor) -> Estimate:
        """An :class:`Estimate` of a convex solver's solution (a factor added where needed)."""

    @abstractmethod
    def spectra(
        self, est: Estimate, certified: CertifiedSolution, rng: np.random.Generator
    ) -> list[Spectrum]:
        """The spectra of the certified minimum with their tail and rank fits, and the raw
        ones of the trained weights (:mod:`workers.spectra`)."""

    # -- shared ---------------------------------------------------------------------------

    def target_of(self, teacher: Teacher) -> Tensor:
        """The teacher's target on the device (copied once)."""
        if self._target is None:
            self._target = self.tensor(teacher.target)
        return self._target

    def unique_minimizer(self) -> tuple[bool, str | None]:
        """Whether the objective has one minimiser (:func:`service.spec.unique_minimizer`),
        and why not when it has many: with lam = 0 and fewer samples than parameters the
        certificate (a gap of 0) holds for every interpolating solution, and which one training
        finds -- hence its risk -- is the optimiser's implicit bias, not the objective's."""
        cfg = self.cfg
        if unique_minimizer(cfg.model, cfg.d, cfg.n, cfg.weight_decay):
            return True, None
        p = convex_dimension(cfg.model, cfg.d)
        return False, (
            f"not unique: weight_decay = 0 and n = {cfg.n} < {p} parameters of the convex "
            "problem, so every interpolating solution is a global minimum; the risk reflects "
            "the optimiser's implicit bias, not the objective (left out of fits unless asked)"
        )

    def shape(self) -> tuple[object, ...]:
        """What runs must share to train in one batch (:meth:`RunConfig.batch_shape`)."""
        return self.cfg.batch_shape()

    def draw(self) -> tuple[Teacher, Dataset]:
        """The teacher (``teacher`` stream) and the training set (``train`` stream), the data
        copied to the run's device once (:mod:`workers.data`)."""
        cfg = self.cfg
        teacher = self.teacher(stream(cfg.seed, "teacher"))
        data = sample(teacher, cfg.n, cfg.d, cfg.teacher.noise, stream(cfg.seed, "train"))
        return teacher, Dataset(data.x.to(self.device), data.y.to(self.device))

    def solve_convex(
        self, data: Dataset, *, tol: float, max_iter: int, **kw: Any
    ) -> ConvexSolution:
        """The equivalent convex problem solved to a relative gap ``tol`` (``start``: a warm
        start; ``deadline``: a time.monotonic() value), on the data's device."""
        solve = self.convex_solver()
        return solve(data.x, data.y, self.cfg.weight_decay, tol=tol, max_iter=max_iter, **kw)

    def objective(self, data: Dataset, est: Estimate) -> float:
        """The network's objective (1/2n)||y - f||^2 + (lam/2)||params||^2 of an estimate
        from a network; the convex objective for an estimate from the convex solver."""
        if est.squared_norm is None:
            return self.dual_certificate(data, est.solution).primal
        r = data.y - self.predict(data.x, est.solution)
        return float(r @ r) / (2 * self.cfg.n) + self.cfg.weight_decay / 2 * est.squared_norm

    def certified(self, data: Dataset, est: Estimate, cert: Certificate) -> CertifiedSolution:
        """What the certificate ``cert`` of ``est`` proves about the minimum: the estimate with
        every coordinate / eigen-direction proven zero set to zero, its support and the
        resolution of its values (:mod:`workers.screening`).

        When some kept value is within the resolution of zero (a near-threshold direction the
        sphere could not decide) and the sphere came from a gap a better dual point could
        shrink, the minimum on the certified solution's face supplies one
        (:meth:`face_certificate`; where there is no face to solve, a short warm-started
        convex solve from the certified solution), and the test is run again. Measured on
        the d = 200, n = 8,000 quadratic run: the short solve (50 iterations, 1.5 s) ended at
        a gap of 2e-5, looser than the certificate it was to sharpen; the face's bound is
        the face's exact minimum. The estimate itself stays the network's."""
        out = self.screen(data, est.solution, [cert])
        if not self._sharpen(out):
            return out
        better = self._face_of_certified(data, est.solution, out.solution)
        if better is None:  # no face to solve: a short solve from the certified solution
            better = self.solve_convex(
                data, tol=SCREEN_SOLVE_TOL, max_iter=SCREEN_SOLVE_ITERATIONS, start=out.solution
            ).certificate
        if better.dual <= cert.dual and better.best_primal >= cert.best_primal:
            return out  # no better dual point nor upper bound: the same sphere, the same test
        return self.screen(data, est.solution, [cert, better])

    def _face_of_certified(
        self, data: Dataset, estimate: Tensor, certified: Tensor
    ) -> Certificate | None:
        """The face certificate of a certified solution: the one :meth:`certificate` already
        solved when the certified solution names the same face as that estimate (the
        screening zeroed no direction of it; measured on the d = 200, n = 8,000 quadratic
        run: the final face solve repeated the last check's, 0.15-0.2 s), else solved."""
        folded = self._folded_face
        if (
            folded is not None
            and folded[0] is data
            and torch.equal(folded[1], estimate)
            and self.face_size(certified) == self.face_size(estimate)
        ):
            return folded[2]
        return self.face_certificate(data, certified)

    def _sharpen(self, out: CertifiedSolution) -> bool:
        """Whether a screening is worth sharpening (:meth:`certified`)."""
        return bool(out.ambiguous) and self.cfg.weight_decay > 0 and out.sphere_gap > SHARPEN_ABOVE

    def certificate(self, data: Dataset, est: Estimate, *, tight: bool = True) -> Certificate:
        """Primal: the estimate's objective (:meth:`objective`); dual: the residual-based
        bound, and (``tight``) when that one is loose, the bound of the minimum on the
        estimate's face (:meth:`face_certificate`) and then, if still loose, a warm-started
        convex solve's, itself sharpened by the faces of its iterates.

        The warm solve starts at the estimate itself, so it is short whenever the estimate
        is close to the minimum; it never replaces the estimate (the primal stays its own),
        and it stops once its dual bound certifies the estimate's primal, or once an upper
        bound on the minimum (an iterate's objective, a face's minimum) proves that no dual
        bound can: the estimate is then farther than the tolerance from the minimum (measured,
        d = 200, n = 12,000, lambda = 0.005: a check whose estimate was 1.23e-6 above the
        minimum ran the solve 60 iterations, 2.5 s, to end uncertified).
        """
        cheap = self.dual_certificate(data, est.solution)
        cert = cheap.with_primal(self.objective(data, est))
        floor = certificate_tolerance("float64")
        if not (tight and floor < cert.gap < TIGHTEN_BELOW):
            return cert
        face = self.face_certificate(data, est.solution)
        self._folded_face = (data, est.solution.clone(), face)
        if face is not None:
            cert = cert.combined(face)
        uncertifiable = cert.primal - floor * abs(cert.primal)  # P* below it: no D can do
        if cert.gap > floor and cert.best_primal >= uncertifiable:
            sol = self.solve_convex(
                data,
                tol=WARM_SOLVE_TOL * floor,
                max_iter=WARM_SOLVE_ITERATIONS,
                start=est.solution,
                refine=lambda s: self.face_certificate(data, s),
                refine_every=REFINE_EVERY,
                dual_target=cert.primal - DUAL_TARGET * floor * abs(cert.primal),
                primal_target=uncertifiable,
            )
            cert = cert.combined(sol.certificate)
        return cert
