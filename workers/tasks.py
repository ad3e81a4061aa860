"""The function Ray runs: train and measure the runs of a task (no Ray, no database here).

``run_batch(cfgs, budget)`` builds each run's teacher and data from its seed, reaches the global
minimum either with the network's own parameters (gd, adam, lbfgs: the runs of one shape
trained together within the task's :class:`~workers.batching.TaskBudget`, or one at a time
with batching off, :mod:`workers.batching`) or with the equivalent convex problem (convex, one
run at a time), certifies it with the convex problem's duality gap, and measures the exact
excess risk, the train loss, optionally the test error on fresh samples, the learning curve
and the spectra of the trained weights with their tail fits. ``run_one(cfg)`` is a task of
one run.

Honesty rules: a run is ``succeeded`` only when it converged (a stop criterion met *and* the
relative duality gap below :data:`~workers.certificate.CERTIFIED`, in float64 whatever the
training dtype); a run that stopped without converging is ``failed`` with the reason and
keeps its metrics (``converged: false``) for inspection; a run that diverged or timed out is
``failed`` with no metrics. ``run_batch`` never raises: a failure is a ``failed`` result of the
runs it hit.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from service.errors import RunFailed
from service.results import CurvePoint, RunMetrics, RunResult, StopReason
from service.spec import RunConfig
from workers.batching import RunTraining, TaskBudget, train_runs
from workers.certificate import CERTIFIED, Certificate
from workers.data import Dataset
from workers.problems import Estimate, Problem, Teacher, problem_for
from workers.rng import stream
from workers.screening import METHOD as SUPPORT_METHOD
from workers.train import Params, TrainOutcome

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
    cert: Certificate
    batch_size: int = 1
    corrections: int = 0


class NetworkCertificate:
    """A run's certificate hook: the certificate of a network's parameters, remembered for the
    last parameters asked about, so that the run's final gap is not computed again (a
    warm-started convex solve) when training stopped on a certificate."""

    def __init__(self, problem: Problem, data: Dataset) -> None:
        self.problem, self.data = problem, data
        self._last: tuple[Estimate, Certificate] | None = None

    def __call__(self, params: Params) -> Certificate:
        return self.of(self.problem.estimate(params))

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


@dataclass
class _Run:
    """A run of the task while it is worked on."""

    cfg: RunConfig
    started: float
    problem: Problem | None = None
    teacher: Teacher | None = None
    data: Dataset | None = None
    certificate: NetworkCertificate | None = None
    curve: list[CurvePoint] = field(default_factory=list)
    result: RunResult | None = None

    def fail(self, exc: BaseException) -> None:
        chash = self.cfg.config_hash()
        if isinstance(exc, RunFailed):
            self.result = RunResult(
                config_hash=chash, status="failed", error=f"{exc.stop_reason}: {exc}"
            )
        else:  # a bug or a resource problem: report it, never crash the worker
            tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
            self.result = RunResult(config_hash=chash, status="failed", error=f"error: {tb}")


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
    dual = sol.objective - sol.gap * abs(sol.objective)
    cert = Certificate(sol.objective, dual, sol.dual_point)
    return _Solved(est, sol.objective, sol.residual, sol.iterations, reason, "cpu", [], cert)


def _curve_hook(run: _Run) -> tuple[Callable[[int, float, Params], None] | None, int]:
    """The on_step hook that records the learning curve (and how often)."""
    every = run.cfg.measure.curve_every
    problem, teacher, data = run.problem, run.teacher, run.data
    assert problem is not None and teacher is not None and data is not None

    def on_step(step: int, objective: float, params: Params) -> None:
        if run.curve and run.curve[-1].step == step:
            return
        est = problem.estimate(params)
        resid = data.y - problem.predict(data.x, est.solution)
        run.curve.append(
            CurvePoint(
                step=step,
                train_loss=float(resid @ resid / problem.cfg.n),
                excess_risk=problem.excess_risk(est.solution, teacher),
            )
        )

    return (on_step if every else None), every


def _network_solved(run: _Run, out: TrainOutcome) -> _Solved:
    if out.stop_reason in ("diverged", "timeout"):
        raise RunFailed(out.error or out.stop_reason, out.stop_reason)
    assert run.problem is not None and run.certificate is not None
    est = run.problem.estimate(out.params)
    # a run stopped by its step budget is not converged whatever the gap: report the free
    # residual-based bound instead of tightening it
    cert = run.certificate.of(est, tight=out.stop_reason != "max_steps")
    return _Solved(
        est,
        out.objective,
        out.grad_norm,
        out.steps,
        out.stop_reason,
        out.device,
        run.curve,
        cert,
        batch_size=out.batch_size,
        corrections=out.corrections,
    )


def _result(run: _Run, solved: _Solved) -> RunResult:
    """Metrics, spectra and status of a solved run (the honesty rules of the module doc)."""
    cfg, problem, teacher, data = run.cfg, run.problem, run.teacher, run.data
    assert problem is not None and teacher is not None and data is not None
    est = solved.est
    gap = solved.cert.gap
    converged = solved.stop_reason in ("gradient", "objective", "duality_gap") and gap <= CERTIFIED
    resid = data.y - problem.predict(data.x, est.solution)
    certified = problem.certified(data, est, solved.cert)
    unique, minimizer_note = problem.unique_minimizer()
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
        wall_time_s=time.perf_counter() - run.started,
        device=solved.device,
        test_error=terr,
        test_error_se=terr_se,
        duality_gap=gap,
        support=certified.support,
        penalty_norm=certified.penalty_norm,
        support_method=SUPPORT_METHOD,
        screened=certified.screened,
        resolution=certified.resolution,
        unique_minimizer=unique,
        minimizer_note=minimizer_note,
        batch_size=solved.batch_size,
        corrections=solved.corrections,
    )
    rng = stream(cfg.seed, "bootstrap")
    spectra = problem.spectra(est, certified, rng) if cfg.measure.spectrum else []
    error = None
    if not converged:
        error = (
            f"did not converge: stopped on {solved.stop_reason} after {solved.steps} "
            f"steps with relative duality gap {gap:.3g} (needs <= {CERTIFIED:g})"
        )
    return RunResult(
        config_hash=cfg.config_hash(),
        status="succeeded" if converged else "failed",
        error=error,
        metrics=metrics,
        spectra=spectra,
        curve=solved.curve,
    )


def _prepare(run: _Run) -> None:
    run.problem = problem_for(run.cfg)
    run.teacher, run.data = run.problem.draw()
    run.certificate = NetworkCertificate(run.problem, run.data)


def _train_networks(runs: list[_Run], budget: TaskBudget) -> None:
    """Every network run of the task, batched by shape (workers.batching)."""
    hooks = []
    for run in runs:
        assert run.problem is not None and run.data is not None and run.certificate is not None
        on_step, every = _curve_hook(run)
        hooks.append(RunTraining(run.problem, run.data, run.certificate, on_step, every))

    def done(i: int, out: TrainOutcome) -> None:
        try:
            runs[i].result = _result(runs[i], _network_solved(runs[i], out))
        except Exception as exc:
            runs[i].fail(exc)

    try:
        train_runs(hooks, done, budget)
    except Exception as exc:  # the batch broke: every run it did not finish fails with it
        for run in runs:
            if run.result is None:
                run.fail(exc)


def run_batch(cfgs: list[RunConfig], budget: TaskBudget | None = None) -> list[RunResult]:
    """The task Ray runs: one or several runs, results in order (see the module doc)."""
    budget = budget or TaskBudget()
    runs = [_Run(cfg=cfg, started=time.perf_counter()) for cfg in cfgs]
    networks: list[_Run] = []
    for run in runs:
        try:
            _prepare(run)
        except Exception as exc:
            run.fail(exc)
            continue
        if run.cfg.training.optimizer != "convex":
            networks.append(run)
            continue
        timeout = run.cfg.training.timeout_s
        deadline = time.monotonic() + timeout if timeout is not None else None
        assert run.problem is not None and run.data is not None
        try:
            run.result = _result(run, _solve_convex(run.problem, run.data, deadline))
        except Exception as exc:
            run.fail(exc)
    if networks:
        _train_networks(networks, budget)
    return [r.result for r in runs if r.result is not None]


def run_one(cfg: RunConfig) -> RunResult:
    """Train and measure one run; never raises (a failure is a ``failed`` RunResult)."""
    return run_batch([cfg])[0]
