"""The one function Ray runs: train and measure one configuration (no Ray, no database here).

``run_one(cfg)`` builds the teacher and data from the run's seed, reaches the global minimum
either with the network's own parameters (gd, adam, lbfgs) or with the equivalent convex
problem (convex), certifies it with the convex problem's duality gap, and measures the exact
excess risk, the train loss, optionally the test error on fresh samples, the learning curve
and the spectra of the trained weights with their tail fits.

Honesty rules: a run is ``succeeded`` only when it converged (a stop criterion met *and* the
relative duality gap below :func:`gap_tolerance`); a run that stopped without converging is
``failed`` with the reason and keeps its metrics (``converged: false``) for inspection; a run
that diverged or timed out is ``failed`` with no metrics. ``run_one`` never raises.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from service.errors import RunFailed
from service.results import CurvePoint, RunMetrics, RunResult, Spectrum, StopReason
from service.spec import RunConfig
from workers.certify import gap_tolerance, relative_gap
from workers.convex import solve_lasso, solve_sensing
from workers.data import Dataset, make_problem
from workers.objectives import diagonal_excess_risk, quadratic_excess_risk
from workers.rng import stream
from workers.spectra import diagonal_spectra, quadratic_spectra
from workers.teachers import DiagonalTeacher, Teacher, quadratic_form

Array = NDArray[np.float64]
_TEST_CHUNK = 20_000


@dataclass
class Estimate:
    """A trained solution in float64: theta (diagonal) or S and a factor W (quadratic).

    ``squared_norm`` is ||params||^2 of the network (None for a convex-solver solution).
    """

    theta: Array | None = None
    s: Array | None = None
    w: Array | None = None
    squared_norm: float | None = None


def _predict(cfg: RunConfig, est: Estimate, x: Array) -> Array:
    if cfg.model == "diagonal":
        assert est.theta is not None
        return x @ est.theta
    assert est.s is not None
    return quadratic_form(x, est.s)


def excess_risk(est: Estimate, teacher: Teacher) -> float:
    """Exact excess risk of an estimate (THEORY.md section 1)."""
    if isinstance(teacher, DiagonalTeacher):
        assert est.theta is not None
        return diagonal_excess_risk(est.theta, teacher.theta)
    assert est.s is not None
    return quadratic_excess_risk(est.s, teacher.matrix)


def test_error(
    cfg: RunConfig, est: Estimate, teacher: Teacher, samples: int
) -> tuple[float, float]:
    """Mean and standard error of (f_hat(x) - f*(x))^2 over fresh inputs (``test`` stream)."""
    rng = stream(cfg.seed, "test")
    sq: list[Array] = []
    left = samples
    while left > 0:
        m = min(left, _TEST_CHUNK)
        x = rng.standard_normal((m, cfg.d))
        sq.append((_predict(cfg, est, x) - teacher.predict(x)) ** 2)
        left -= m
    err = np.concatenate(sq)
    return float(err.mean()), float(err.std(ddof=1) / np.sqrt(len(err))) if len(err) > 1 else 0.0


def _support(cfg: RunConfig, est: Estimate) -> tuple[int, float]:
    if cfg.model == "diagonal":
        assert est.theta is not None
        a = np.abs(est.theta)
        return int(np.count_nonzero(a > 1e-10 * max(a.max(initial=0.0), 1e-300))), float(a.sum())
    assert est.s is not None
    ev = np.abs(np.linalg.eigvalsh(est.s))
    top = max(float(ev.max(initial=0.0)), 1e-300)
    return int(np.count_nonzero(ev > 1e-8 * top)), float(ev.sum())


def _factor(s: Array) -> Array:
    """A factor W with W' diag(sign) W = S: rows sqrt(|mu_i|) v_i' (d x d)."""
    ev, vec = np.linalg.eigh(s)
    w: Array = (vec * np.sqrt(np.abs(ev))).T
    return w


def _spectra(cfg: RunConfig, est: Estimate) -> list[Spectrum]:
    rng = stream(cfg.seed, "bootstrap")
    if cfg.model == "diagonal":
        assert est.theta is not None
        return diagonal_spectra(est.theta, rng=rng)
    assert est.s is not None and est.w is not None
    return quadratic_spectra(est.s, est.w, rng=rng)


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


def _solve_convex(cfg: RunConfig, data: Dataset, deadline: float | None) -> _Solved:
    tol = min(cfg.training.tol, 1e-8)
    if cfg.model == "diagonal":
        sol = solve_lasso(
            data.x,
            data.y,
            cfg.weight_decay,
            tol=tol,
            max_iter=cfg.training.max_steps,
            deadline=deadline,
        )
        est = Estimate(theta=sol.solution)
    else:
        psd = cfg.training.second_layer == "positive"
        sol = solve_sensing(
            data.x,
            data.y,
            cfg.weight_decay,
            psd=psd,
            tol=tol,
            max_iter=cfg.training.max_steps,
            deadline=deadline,
        )
        est = Estimate(s=sol.solution, w=_factor(sol.solution))
    if sol.stop_reason == "timeout":
        raise RunFailed(
            f"timed out after {cfg.training.timeout_s} s ({sol.iterations} iterations)", "timeout"
        )
    reason: StopReason = "duality_gap" if sol.stop_reason == "duality_gap" else "max_steps"
    return _Solved(est, sol.objective, sol.residual, sol.iterations, reason, "cpu", [], sol.gap)


def _solve_network(cfg: RunConfig, teacher: Teacher, data: Dataset) -> _Solved:
    from workers.train import train  # imported here: the convex path needs no torch start-up

    curve: list[CurvePoint] = []
    every = cfg.measure.curve_every

    def on_step(step: int, objective: float, model: object) -> None:
        if step % every or (curve and curve[-1].step == step):
            return
        est = _estimate_of(cfg, model)
        resid = data.y - _predict(cfg, est, data.x)
        curve.append(
            CurvePoint(
                step=step,
                train_loss=float(resid @ resid / cfg.n),
                excess_risk=excess_risk(est, teacher),
            )
        )

    certify = certifier(cfg, data)
    out = train(cfg, data, on_step=on_step if every else None, certify=certify)
    if out.stop_reason in ("diverged", "timeout"):
        raise RunFailed(out.error or out.stop_reason, out.stop_reason)
    est = _estimate_of(cfg, out.model)
    return _Solved(
        est,
        out.objective,
        out.grad_norm,
        out.steps,
        out.stop_reason,
        out.device,
        curve,
        # a run stopped by its step budget is not converged whatever the gap: report the
        # free residual-based bound instead of tightening it
        certify.gap(est, tight=out.stop_reason != "max_steps"),
    )


class Certifier:
    """The ``certify`` callback of :func:`workers.train.train`: is this network at the global
    minimum (relative gap to a dual bound of the convex problem within tolerance)?

    It remembers the gap of the last parameters it saw, so that the run's final gap is not
    computed again (a warm-started convex solve) when training stopped on a certificate.
    """

    def __init__(self, cfg: RunConfig, data: Dataset) -> None:
        self.cfg, self.data = cfg, data
        self.tol = gap_tolerance(cfg.training.dtype)
        self._last: tuple[Estimate, float] | None = None

    def __call__(self, model: object) -> bool:
        return self.gap(_estimate_of(self.cfg, model)) <= self.tol

    def gap(self, est: Estimate, *, tight: bool = True) -> float:
        """The relative gap of ``est`` (reused when ``est`` is the last one certified)."""
        if tight and self._last is not None and _same(self._last[0], est):
            return self._last[1]
        value = _gap(self.cfg, est, self.data, tight=tight)
        if tight:
            self._last = (est, value)
        return value


def certifier(cfg: RunConfig, data: Dataset) -> Certifier:
    """The ``certify`` callback for ``cfg`` on ``data``."""
    return Certifier(cfg, data)


def _same(a: Estimate, b: Estimate) -> bool:
    return (
        all(
            (x is None and y is None) or (x is not None and y is not None and np.array_equal(x, y))
            for x, y in ((a.theta, b.theta), (a.s, b.s))
        )
        and a.squared_norm == b.squared_norm
    )


def _estimate_of(cfg: RunConfig, model: object) -> Estimate:
    """The network's solution in float64, with ||params||^2 for its objective."""
    params = [p.detach().cpu().double().numpy() for p in model.parameters()]  # type: ignore[attr-defined]
    sq = float(sum(np.sum(p * p) for p in params))
    if cfg.model == "diagonal":
        theta = np.asarray(model.theta(), dtype=np.float64)  # type: ignore[attr-defined]
        return Estimate(theta=theta, squared_norm=sq)
    s = np.asarray(model.matrix(), dtype=np.float64)  # type: ignore[attr-defined]
    w = model.weight_matrices()["W"].detach().cpu().double().numpy()  # type: ignore[attr-defined]
    return Estimate(s=s, w=w, squared_norm=sq)


def _gap(cfg: RunConfig, est: Estimate, data: Dataset, *, tight: bool = True) -> float:
    """Relative gap of the network's objective to a dual bound of the convex problem."""
    return relative_gap(
        cfg, data, theta=est.theta, s=est.s, squared_norm=est.squared_norm, tight=tight
    )


def run_one(cfg: RunConfig) -> RunResult:
    """Train and measure one run; never raises (a failure is a ``failed`` RunResult)."""
    start = time.perf_counter()
    chash = cfg.config_hash()
    try:
        teacher, data = make_problem(cfg)
        deadline = (
            time.monotonic() + cfg.training.timeout_s
            if cfg.training.timeout_s is not None
            else None
        )
        if cfg.training.optimizer == "convex":
            solved = _solve_convex(cfg, data, deadline)
        else:
            solved = _solve_network(cfg, teacher, data)
        est = solved.est
        gap = solved.gap
        converged = solved.stop_reason in (
            "gradient",
            "objective",
            "duality_gap",
        ) and gap <= gap_tolerance(cfg.training.dtype)
        resid = data.y - _predict(cfg, est, data.x)
        support, pen = _support(cfg, est)
        terr, terr_se = (None, None)
        if cfg.measure.test_samples:
            terr, terr_se = test_error(cfg, est, teacher, cfg.measure.test_samples)
        metrics = RunMetrics(
            excess_risk=excess_risk(est, teacher),
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
            duality_gap=gap,
            support=support,
            penalty_norm=pen,
        )
        spectra = _spectra(cfg, est) if cfg.measure.spectrum else []
        if not converged:
            return RunResult(
                config_hash=chash,
                status="failed",
                error=(
                    f"did not converge: stopped on {solved.stop_reason} after {solved.steps} "
                    f"steps with relative duality gap {gap:.3g} "
                    f"(needs <= {gap_tolerance(cfg.training.dtype):g})"
                ),
                metrics=metrics,
                spectra=spectra,
                curve=solved.curve,
            )
        return RunResult(
            config_hash=chash,
            status="succeeded",
            metrics=metrics,
            spectra=spectra,
            curve=solved.curve,
        )
    except RunFailed as exc:
        return RunResult(config_hash=chash, status="failed", error=f"{exc.stop_reason}: {exc}")
    except Exception as exc:  # a bug or a resource problem: report it, never crash the worker
        tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return RunResult(config_hash=chash, status="failed", error=f"error: {tb}")


def run_batch(cfgs: list[RunConfig]) -> list[RunResult]:
    """Several small runs in one task (packing), in order."""
    return [run_one(cfg) for cfg in cfgs]
