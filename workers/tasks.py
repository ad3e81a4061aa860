"""The one function Ray runs: train and measure one configuration (no Ray, no database here).

``run_one(cfg)`` builds the teacher and data from the run's seed, reaches the global minimum
either with the network's own parameters (gd, adam, lbfgs) or with the equivalent convex
problem (convex), certifies it with the convex problem's duality gap, and measures the exact
excess risk, the train loss, optionally the test error on fresh samples, the learning curve
and the spectra of the trained weights with their tail fits.

Honesty rules: a run is ``succeeded`` only when it converged (a stop criterion met *and* the
relative duality gap below :func:`~workers.certificate.certificate_tolerance`); a run that
stopped without converging is ``failed`` with the reason and keeps its metrics
(``converged: false``) for inspection; a run that diverged or timed out is ``failed`` with no
metrics. ``run_one`` never raises.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from service.errors import RunFailed
from service.results import CurvePoint, RunMetrics, RunResult, StopReason
from service.spec import RunConfig
from workers.certificate import Certificate, certificate_tolerance
from workers.data import Dataset
from workers.networks import TwoLayerNet
from workers.problems import Estimate, Problem, Teacher, problem_for
from workers.rng import stream

Array = NDArray[np.float64]
_TEST_CHUNK = 20_000


def test_error(
    problem: Problem, est: Estimate, teacher: Teacher, samples: int
) -> tuple[float, float]:
    """Mean and standard error of (f_hat(x) - f*(x))^2 over fresh inputs (``test`` stream)."""
    cfg = problem.cfg
    rng = stream(cfg.seed, "test")
    sq: list[Array] = []
    left = samples
    while left > 0:
        m = min(left, _TEST_CHUNK)
        x = rng.standard_normal((m, cfg.d))
        sq.append((problem.predict(x, est.solution) - teacher.predict(x)) ** 2)
        left -= m
    err = np.concatenate(sq)
    return float(err.mean()), float(err.std(ddof=1) / np.sqrt(len(err))) if len(err) > 1 else 0.0


@dataclass
class _Solved:
    est: Estimate
    objective: float
    grad_norm: float
    steps: int
    stop_reason: StopReason
    device: str
    curve: list[CurvePoint]
    gap: float


def _solve_convex(problem: Problem, data: Dataset, deadline: float | None) -> _Solved:
    tr = problem.cfg.training
    sol = problem.solve_convex(
        data, tol=min(tr.tol, 1e-8), max_iter=tr.max_steps, deadline=deadline
    )
    if sol.stop_reason == "timeout":
        raise RunFailed(
            f"timed out after {tr.timeout_s} s ({sol.iterations} iterations)", "timeout"
        )
    reason: StopReason = "duality_gap" if sol.stop_reason == "duality_gap" else "max_steps"
    est = problem.convex_estimate(sol.solution)
    return _Solved(est, sol.objective, sol.residual, sol.iterations, reason, "cpu", [], sol.gap)


class NetworkCertificate:
    """The network's certificate, remembered for the last parameters it was asked about, so
    that the run's final gap is not computed again (a warm-started convex solve) when
    training stopped on a certificate."""

    def __init__(self, problem: Problem, data: Dataset) -> None:
        self.problem, self.data = problem, data
        self._last: tuple[Estimate, Certificate] | None = None

    def __call__(self, net: TwoLayerNet) -> Certificate:
        return self.of(self.problem.estimate(net))

    def of(self, est: Estimate, *, tight: bool = True) -> Certificate:
        """The certificate of ``est`` (reused when ``est`` is the last one asked about)."""
        if tight and self._last is not None and _same(self._last[0], est):
            return self._last[1]
        cert = self.problem.certificate(self.data, est, tight=tight)
        if tight:
            self._last = (est, cert)
        return cert


def _same(a: Estimate, b: Estimate) -> bool:
    return np.array_equal(a.solution, b.solution) and a.squared_norm == b.squared_norm


def _solve_network(problem: Problem, teacher: Teacher, data: Dataset) -> _Solved:
    from workers.train import train  # imported here: the convex path needs no torch start-up

    curve: list[CurvePoint] = []
    every = problem.cfg.measure.curve_every

    def on_step(step: int, objective: float, net: TwoLayerNet) -> None:
        if step % every or (curve and curve[-1].step == step):
            return
        est = problem.estimate(net)
        resid = data.y - problem.predict(data.x, est.solution)
        curve.append(
            CurvePoint(
                step=step,
                train_loss=float(resid @ resid / problem.cfg.n),
                excess_risk=problem.excess_risk(est.solution, teacher),
            )
        )

    certificate = NetworkCertificate(problem, data)
    out = train(problem, data, on_step=on_step if every else None, certificate=certificate)
    if out.stop_reason in ("diverged", "timeout"):
        raise RunFailed(out.error or out.stop_reason, out.stop_reason)
    est = problem.estimate(out.model)
    # a run stopped by its step budget is not converged whatever the gap: report the free
    # residual-based bound instead of tightening it
    gap = certificate.of(est, tight=out.stop_reason != "max_steps").gap
    return _Solved(
        est, out.objective, out.grad_norm, out.steps, out.stop_reason, out.device, curve, gap
    )


def _result(
    problem: Problem, teacher: Teacher, data: Dataset, solved: _Solved, start: float
) -> RunResult:
    """Metrics, spectra and status of a solved run (the honesty rules of the module doc)."""
    cfg = problem.cfg
    est = solved.est
    tol = certificate_tolerance(cfg.training.dtype)
    converged = solved.stop_reason in ("gradient", "objective", "duality_gap") and solved.gap <= tol
    resid = data.y - problem.predict(data.x, est.solution)
    support, pen = problem.support(est.solution)
    terr, terr_se = (None, None)
    if cfg.measure.test_samples:
        terr, terr_se = test_error(problem, est, teacher, cfg.measure.test_samples)
    metrics = RunMetrics(
        excess_risk=problem.excess_risk(est.solution, teacher),
        train_loss=float(resid @ resid / cfg.n),
        objective=solved.objective,
        grad_norm=solved.grad_norm,
        converged=converged,
        steps=solved.steps,
        stop_reason=solved.stop_reason,
        wall_time_s=time.perf_counter() - start,
        device=solved.device,
        test_error=terr,
        test_error_se=terr_se,
        duality_gap=solved.gap,
        support=support,
        penalty_norm=pen,
    )
    spectra = problem.spectra(est, stream(cfg.seed, "bootstrap")) if cfg.measure.spectrum else []
    error = None
    if not converged:
        error = (
            f"did not converge: stopped on {solved.stop_reason} after {solved.steps} "
            f"steps with relative duality gap {solved.gap:.3g} (needs <= {tol:g})"
        )
    return RunResult(
        config_hash=cfg.config_hash(),
        status="succeeded" if converged else "failed",
        error=error,
        metrics=metrics,
        spectra=spectra,
        curve=solved.curve,
    )


def run_one(cfg: RunConfig) -> RunResult:
    """Train and measure one run; never raises (a failure is a ``failed`` RunResult)."""
    start = time.perf_counter()
    chash = cfg.config_hash()
    try:
        problem = problem_for(cfg)
        teacher, data = problem.draw()
        if cfg.training.optimizer == "convex":
            timeout = cfg.training.timeout_s
            deadline = time.monotonic() + timeout if timeout is not None else None
            solved = _solve_convex(problem, data, deadline)
        else:
            solved = _solve_network(problem, teacher, data)
        return _result(problem, teacher, data, solved, start)
    except RunFailed as exc:
        return RunResult(config_hash=chash, status="failed", error=f"{exc.stop_reason}: {exc}")
    except Exception as exc:  # a bug or a resource problem: report it, never crash the worker
        tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return RunResult(config_hash=chash, status="failed", error=f"error: {tb}")


def run_batch(cfgs: list[RunConfig]) -> list[RunResult]:
    """The task Ray runs: one or several runs (packing), in order."""
    return [run_one(cfg) for cfg in cfgs]
