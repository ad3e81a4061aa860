"""The function Ray runs: train and measure the runs of a task (no Ray, no database here).

``run_batch(cfgs, budget)`` makes one :class:`~workers.training.Run` per configuration, draws
its teacher and data from its seed onto its device, reaches the global minimum either with
the network's own parameters (gd, adam, lbfgs: the runs of one shape trained together within
the task's :class:`~workers.training.TaskBudget`, or one at a time with batching off,
:mod:`workers.training`) or with the equivalent convex problem (convex, one run at a time,
on the same device), certifies it with the convex problem's duality gap, and measures the
exact excess risk, the train loss, optionally the test error on fresh samples, the learning
curve and the spectra of the certified minimum with their tail fits. Each run reports where
its time went (``metrics.timings``). ``run_one(cfg)`` is a task of one run.

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
from dataclasses import dataclass, replace

import numpy as np
import torch

from service.errors import RunFailed
from service.results import RunMetrics, RunResult, StopReason
from service.spec import RunConfig
from workers.certificate import CERTIFIED, Certificate
from workers.problems import Estimate, Problem, Teacher, problem_for
from workers.rng import stream
from workers.screening import METHOD as SUPPORT_METHOD
from workers.second_order import (
    RANK_METHOD,
    SecondOrder,
    hessian_min_eig,
    objective_of,
    rank_limited_solution,
)
from workers.training import Run, TaskBudget, TrainOutcome, train

_TEST_CHUNK = 20_000


def test_error(
    problem: Problem, est: Estimate, teacher: Teacher, samples: int
) -> tuple[float, float]:
    """Mean and standard error of (f_hat(x) - f*(x))^2 over fresh inputs (``test`` stream),
    drawn on the host in chunks and evaluated on the run's device."""
    cfg = problem.cfg
    rng = stream(cfg.seed, "test")
    sq: list[torch.Tensor] = []
    left = samples
    while left > 0:
        m = min(left, _TEST_CHUNK)
        x = rng.standard_normal((m, cfg.d))
        want = problem.tensor(teacher.predict(x))
        sq.append((problem.predict(problem.tensor(x), est.solution) - want) ** 2)
        left -= m
    err = torch.cat(sq)
    if err.numel() < 2:
        return float(err.mean()), 0.0
    return float(err.mean()), float(err.std() / np.sqrt(err.numel()))


@dataclass
class _Solved:
    est: Estimate
    objective: float
    grad_norm: float
    steps: int
    stop_reason: StopReason
    device: str
    cert: Certificate
    batch_size: int | None = 1
    corrections: int | None = 0


def _fail(run: Run, exc: BaseException) -> None:
    chash = run.cfg.config_hash()
    if isinstance(exc, RunFailed):
        run.result = RunResult(
            config_hash=chash, status="failed", error=f"{exc.stop_reason}: {exc}"
        )
    else:  # a bug or a resource problem: report it, never crash the worker
        tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
        run.result = RunResult(config_hash=chash, status="failed", error=f"error: {tb}")


def _solve_convex(run: Run) -> _Solved:
    problem, _, data = run.ready
    tr = problem.cfg.training
    limit = run.timeout_s
    deadline = time.monotonic() + limit if limit is not None else None
    t0 = time.perf_counter()
    sol = problem.solve_convex(
        data, tol=min(tr.tol, 1e-8), max_iter=tr.max_steps, deadline=deadline
    )
    run.timings.train += time.perf_counter() - t0
    if sol.stop_reason == "timeout":
        raise RunFailed(
            f"timed out after {limit:g} s ({sol.iterations} iterations; {run.timeout_note()})",
            "timeout",
        )
    reason: StopReason = "duality_gap" if sol.stop_reason == "duality_gap" else "max_steps"
    est = problem.convex_estimate(sol.solution)
    return _Solved(
        est, sol.objective, sol.residual, sol.iterations, reason, str(problem.device),
        sol.certificate,
        batch_size=None, corrections=None,
    )  # fmt: skip


def _network_solved(run: Run, out: TrainOutcome) -> _Solved:
    if out.stop_reason == "timeout":
        raise RunFailed(f"{out.error or 'timed out'} ({run.timeout_note()})", "timeout")
    if out.stop_reason == "diverged":
        raise RunFailed(out.error or out.stop_reason, out.stop_reason)
    problem, _, _ = run.ready
    est = problem.estimate(out.params)
    # a run stopped by its step budget is not converged whatever the gap: report the free
    # residual-based bound instead of tightening it
    cert = run.certificate_of(est, tight=out.stop_reason != "max_steps")
    return _Solved(
        est,
        out.objective,
        out.grad_norm,
        out.steps,
        out.stop_reason,
        out.device,
        cert,
        batch_size=out.batch_size,
        corrections=out.corrections,
    )


def _result(run: Run, solved: _Solved, second: SecondOrder | None = None) -> RunResult:
    """Metrics, spectra and status of a solved run (the honesty rules of the module doc);
    ``second``: the second-order certificate of a narrow run whose gap stays open."""
    cfg = run.cfg
    problem, teacher, data = run.ready
    est = solved.est
    gap = solved.cert.gap
    stopped = solved.stop_reason in ("gradient", "objective", "duality_gap")
    by_gap = gap <= CERTIFIED
    converged = stopped and (by_gap or (second is not None and second.holds))
    resid = data.y - problem.predict(data.x, est.solution)
    t0 = time.perf_counter()
    narrow = second is not None and not by_gap  # the gap proves nothing about this point
    if narrow:
        certified = rank_limited_solution(est, gap)
    else:
        certified = problem.certified(data, est, solved.cert)
    run.timings.certificate += time.perf_counter() - t0
    unique, minimizer_note = problem.unique_minimizer()
    terr, terr_se = (None, None)
    if cfg.measure.test_samples:
        terr, terr_se = test_error(problem, est, teacher, cfg.measure.test_samples)
    spectra = []
    if cfg.measure.spectrum:
        t0 = time.perf_counter()
        spectra = problem.spectra(est, certified, stream(cfg.seed, "bootstrap"))
        run.timings.spectra += time.perf_counter() - t0
    metrics = RunMetrics(
        excess_risk=problem.excess_risk(est.solution, teacher),
        train_loss=float(resid @ resid) / cfg.n,
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
        support_method=RANK_METHOD if narrow else SUPPORT_METHOD,
        screened=certified.screened,
        resolution=certified.resolution,
        unique_minimizer=unique,
        minimizer_note=minimizer_note,
        batch_size=solved.batch_size,
        corrections=solved.corrections,
        certificate="duality_gap" if by_gap or second is None else "second_order",
        hessian_min_eig=None if by_gap or second is None else second.hessian_min_eig,
        restarts=None if by_gap or second is None else len(second.objectives),
        restarts_at_best=None if by_gap or second is None else second.at_best,
        restart_spread=None if by_gap or second is None else second.spread,
        timings=run.timings.as_dict(),
    )
    error = None
    if stopped and not by_gap and second is not None:
        error = None if second.holds else f"width {cfg.width}: {second.verdict()}"
    elif not converged:
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
        curve=run.curve,
    )


def _train_networks(runs: list[Run], budget: TaskBudget) -> None:
    """Every network run of the task, batched by shape (workers.training); a run's result
    is made as soon as it finishes, so a later failure of the batch keeps it. A narrow run
    whose gap stays open waits for its restarts (:func:`_certify_narrow`)."""
    narrow: list[tuple[Run, _Solved]] = []
    try:
        for i, outcome in train(runs, budget):
            run = runs[i]
            run.outcome = outcome
            try:
                solved = _network_solved(run, outcome)
                if _needs_second_order(run, solved):
                    narrow.append((run, solved))
                    continue
                run.result = _result(run, solved)
            except Exception as exc:
                _fail(run, exc)
        if narrow:
            _certify_narrow(narrow, budget)
    except Exception as exc:  # the batch broke: every run it did not finish fails with it
        for run in runs:
            if run.result is None:
                _fail(run, exc)


def _needs_second_order(run: Run, solved: _Solved) -> bool:
    """A stationary narrow network whose duality gap stays open (workers.second_order)."""
    return (
        run.ready[0].width_limited
        and solved.stop_reason in ("gradient", "objective")
        and solved.cert.gap > CERTIFIED
    )


def _certify_narrow(narrow: list[tuple[Run, _Solved]], budget: TaskBudget) -> None:
    """Train each narrow run's restarts (all of them batched), keep the lowest objective,
    check its Hessian and make the result with the second-order certificate."""
    restarts: list[Run] = []
    owner: list[int] = []
    for j, (run, _) in enumerate(narrow):
        problem, teacher, data = run.ready
        k = run.cfg.training.restarts or budget.width_restarts
        for r in range(1, k):
            restarts.append(
                Run(cfg=run.cfg, problem=problem, teacher=teacher, data=data,
                    start=problem.init_params(r), time_limit_s=run.time_limit_s)
            )  # fmt: skip
            owner.append(j)
    outcomes: dict[int, TrainOutcome] = dict(train(restarts, budget)) if restarts else {}
    for j, (run, solved) in enumerate(narrow):
        try:
            problem, _, data = run.ready
            assert run.outcome is not None
            tried = [(run, run.outcome)] + [
                (restarts[i], outcomes[i]) for i in range(len(restarts)) if owner[i] == j
            ]
            for other, _ in tried[1:]:
                run.timings.restarts += other.timings.train + other.timings.certificate
                run.timings.restarts += other.timings.corrections
            objectives = [objective_of(problem, data, out.params) for _, out in tried]
            best = min(range(len(tried)), key=lambda i: objectives[i])
            if best != 0:
                solved = _network_solved(run, tried[best][1])
                if solved.cert.gap <= CERTIFIED:  # a restart reached the convex minimum
                    run.result = _result(run, solved)
                    continue
            t0 = time.perf_counter()
            min_eig = hessian_min_eig(problem, data, tried[best][1].params)
            run.timings.certificate += time.perf_counter() - t0
            second = SecondOrder(tuple(objectives), best, min_eig, run.cfg.weight_decay)
            run.result = _result(run, solved, second)
        except Exception as exc:
            _fail(run, exc)


def run_batch(
    cfgs: list[RunConfig], budget: TaskBudget | None = None, *, gpu_share: float | None = None
) -> list[RunResult]:
    """The task Ray runs: one or several runs, results in order (see the module doc);
    ``gpu_share``: the share of its GPU the task holds (the Ray executor's)."""
    budget = budget or TaskBudget()
    if gpu_share is not None:
        budget = replace(budget, gpu_share=gpu_share)
    runs = [Run(cfg=cfg, time_limit_s=budget.run_time_limit_s) for cfg in cfgs]
    networks: list[Run] = []
    for run in runs:
        try:
            run.prepare(problem_for(run.cfg))
        except Exception as exc:
            _fail(run, exc)
            continue
        if run.cfg.training.optimizer != "convex":
            networks.append(run)
            continue
        try:
            run.result = _result(run, _solve_convex(run))
        except Exception as exc:
            _fail(run, exc)
    if networks:
        _train_networks(networks, budget)
    return [r.result for r in runs if r.result is not None]


def run_one(cfg: RunConfig) -> RunResult:
    """Train and measure one run; never raises (a failure is a ``failed`` RunResult)."""
    return run_batch([cfg])[0]
