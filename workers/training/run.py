"""One run, from the task function down: the record every stage reads and writes.

A :class:`Run` is made by the task (:mod:`workers.tasks`) from a configuration, prepared
(problem, teacher, data on the device), trained (:mod:`workers.training`) -- which reads its
problem, data, start and limits and writes its :class:`~workers.training.state.TrainOutcome`
-- and finished into a :class:`~service.results.RunResult`. Its certificate and its support
corrections go through the run (:meth:`certificate`, :meth:`correct`), so that the run keeps
where its time went (:class:`Timings`) and does not compute the same certificate twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from service.results import CurvePoint, RunResult
from service.spec import RunConfig
from workers.certificate import CERTIFIED, Certificate
from workers.data import Dataset
from workers.problems import Estimate, Problem, Teacher
from workers.problems.base import Params
from workers.training.state import TrainOutcome

FREE_ENOUGH = CERTIFIED
"""A free certificate this tight is as good as a tight one (it is kept for the end)."""


@dataclass
class Timings:
    """Seconds a run spent per phase (``metrics.timings``)."""

    data: float = 0.0
    """Drawing the teacher and the data, and copying them to the device."""
    train: float = 0.0
    """The training loop while the run held a slot, its certificates and corrections apart."""
    certificate: float = 0.0
    """Certificates: the free bound, warm solves, the final screening."""
    corrections: float = 0.0
    """Support corrections (workers.corrections)."""
    spectra: float = 0.0
    """Eigen-decompositions and fits of the spectra."""
    restarts: float = 0.0
    """A narrow network's restarts (their training, certificates and corrections)."""

    def as_dict(self) -> dict[str, float]:
        out = {
            "data": self.data,
            "train": self.train,
            "certificate": self.certificate,
            "corrections": self.corrections,
            "spectra": self.spectra,
        }
        if self.restarts:
            out["restarts"] = self.restarts
        return out


@dataclass
class Run:
    """A run of a task while it is worked on (see the module docstring)."""

    cfg: RunConfig
    started: float = field(default_factory=time.perf_counter)
    problem: Problem | None = None
    teacher: Teacher | None = None
    data: Dataset | None = None
    curve: list[CurvePoint] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)
    start: Params | None = None
    """Parameters to start from (None: the run's init stream); a refinement's float32 ones."""
    steps_done: int = 0
    """Steps of earlier phases (the refinement's budget is what is left)."""
    time_used: float = 0.0
    """Wall seconds of earlier phases."""
    time_limit_s: float | None = None
    """The deployment's per-run time limit (``SCALESWEEP_RUN_TIME_LIMIT_S``), for a run whose
    configuration sets no ``training.timeout_s``."""
    outcome: TrainOutcome | None = None
    result: RunResult | None = None
    _last: tuple[Estimate, Certificate] | None = field(default=None, repr=False)

    @property
    def timeout_s(self) -> float | None:
        """The run's wall-time limit: its ``training.timeout_s``, else the deployment's."""
        own = self.cfg.training.timeout_s
        return own if own is not None else self.time_limit_s

    def timeout_note(self) -> str:
        """Which limit :attr:`timeout_s` is, for the failure message."""
        if self.cfg.training.timeout_s is not None:
            return f"training.timeout_s = {self.cfg.training.timeout_s:g} s"
        return f"the per-run time limit {self.time_limit_s:g} s (SCALESWEEP_RUN_TIME_LIMIT_S)"

    def prepare(self, problem: Problem) -> None:
        """The problem, teacher and data (timed as ``data``)."""
        t0 = time.perf_counter()
        self.problem = problem
        self.teacher, self.data = problem.draw()
        self.timings.data += time.perf_counter() - t0

    @property
    def ready(self) -> tuple[Problem, Teacher, Dataset]:
        """(problem, teacher, data) of a prepared run."""
        assert self.problem is not None and self.teacher is not None and self.data is not None
        return self.problem, self.teacher, self.data

    def certificate(self, params: Params, *, tight: bool = True) -> Certificate:
        """The certificate of a network's parameters (timed); ``tight=False``: the free bound
        only, no warm solve."""
        problem, _, _ = self.ready
        return self.certificate_of(problem.estimate(params), tight=tight)

    def certificate_of(self, est: Estimate, *, tight: bool = True) -> Certificate:
        """The certificate of ``est``, remembered for the last one asked about (the run's
        final gap is then not computed again when training stopped on a certificate)."""
        if self._last is not None and _same(self._last[0], est):
            if tight or self._last[1].gap <= FREE_ENOUGH:
                return self._last[1]
        problem, _, data = self.ready
        t0 = time.perf_counter()
        cert = problem.certificate(data, est, tight=tight)
        self.timings.certificate += time.perf_counter() - t0
        if tight or cert.gap <= FREE_ENOUGH:
            self._last = (est, cert)
        return cert

    def correct(self, params: Params) -> Params | None:
        """A support correction of the parameters (timed), or None."""
        problem, _, data = self.ready
        t0 = time.perf_counter()
        moved = problem.correct(data, params)
        self.timings.corrections += time.perf_counter() - t0
        return moved

    def observe(self, step: int, params: Params) -> None:
        """Add a point of the learning curve (train loss, excess risk) at ``step``."""
        if self.curve and self.curve[-1].step == step:
            return
        problem, teacher, data = self.ready
        est = problem.estimate(params)
        resid = data.y - problem.predict(data.x, est.solution)
        self.curve.append(
            CurvePoint(
                step=step,
                train_loss=float(resid @ resid) / problem.cfg.n,
                excess_risk=problem.excess_risk(est.solution, teacher),
            )
        )


def _same(a: Estimate, b: Estimate) -> bool:
    return a.squared_norm == b.squared_norm and bool(torch.equal(a.solution, b.solution))
