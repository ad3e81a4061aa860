"""run_one: the task a worker runs, end to end on small configurations."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from service.spec import MeasureSpec, RunConfig, TeacherSpec, TrainingSpec
from workers.problems import problem_for
from workers.tasks import run_batch, run_one
from workers.training import TaskBudget


def _cfg(model: str = "diagonal", **kw: object) -> RunConfig:
    base: dict[str, object] = {
        "model": model,
        "d": 40 if model == "diagonal" else 8,
        "n": 60 if model == "diagonal" else 128,
        "weight_decay": 1e-2,
        "teacher": TeacherSpec(gamma=1.0, noise=0.01),
        "training": TrainingSpec(optimizer="lbfgs"),
    }
    base.update(kw)
    return RunConfig.model_validate(base)


@pytest.mark.parametrize("model", ["diagonal", "quadratic"])
@pytest.mark.parametrize("optimizer", ["lbfgs", "convex"])
def test_run_one_succeeds_and_is_certified(model: str, optimizer: str) -> None:
    cfg = _cfg(model, training=TrainingSpec(optimizer=optimizer))
    res = run_one(cfg)
    assert res.status == "succeeded", res.error
    m = res.metrics
    assert m is not None and m.converged
    assert m.duality_gap <= 1e-6  # the certificate behind `converged` (float64)
    assert np.isfinite([m.excess_risk, m.train_loss, m.objective, m.grad_norm]).all()
    assert res.config_hash == cfg.config_hash()
    kinds = {s.kind for s in res.spectra}
    certified = {"abs_theta"} if model == "diagonal" else {"eig_S", "sv_W"}
    # a network also keeps its raw trained values; a convex solution has no other values
    raw = {f"{k}_raw" for k in certified} if optimizer != "convex" else set()
    assert kinds == certified | raw
    assert m.support_method is not None and "gap-safe" in m.support_method
    assert m.screened is not None and m.support + m.screened <= cfg.d
    assert m.unique_minimizer is True
    # the certified spectrum's zeros are exact: its non-zeros are the support
    main = next(s for s in res.spectra if s.kind in ("eig_S", "abs_theta"))
    assert sum(v != 0.0 for v in main.values) == m.support


@pytest.mark.parametrize("model", ["diagonal", "quadratic"])
def test_exact_excess_risk_matches_monte_carlo_test_error(model: str) -> None:
    cfg = _cfg(
        model, training=TrainingSpec(optimizer="convex"), measure=MeasureSpec(test_samples=100_000)
    )
    res = run_one(cfg)
    m = res.metrics
    assert m is not None and m.test_error is not None and m.test_error_se is not None
    # 1e5 fresh samples: the exact risk lies within 3 standard errors of the Monte-Carlo mean
    assert abs(m.test_error - m.excess_risk) <= 3 * m.test_error_se, (m.test_error, m.excess_risk)


@pytest.mark.parametrize("model", ["diagonal", "quadratic"])
def test_same_seed_identical_different_seed_different(model: str) -> None:
    a = run_one(_cfg(model, seed=5))
    b = run_one(_cfg(model, seed=5))
    c = run_one(_cfg(model, seed=6))
    assert a.metrics is not None and b.metrics is not None and c.metrics is not None
    # bit-identical on CPU, times aside
    assert a.metrics.model_dump(exclude={"wall_time_s", "timings"}) == b.metrics.model_dump(
        exclude={"wall_time_s", "timings"}
    )
    assert a.spectra == b.spectra
    assert a.metrics.excess_risk != c.metrics.excess_risk
    t5, d5 = problem_for(_cfg(model, seed=5)).draw()
    t6, d6 = problem_for(_cfg(model, seed=6)).draw()
    assert not torch.equal(d5.x, d6.x) and not torch.equal(d5.y, d6.y)
    assert not np.array_equal(t5.target, t6.target)


def test_divergent_gd_fails_with_a_message_not_a_nan() -> None:
    cfg = _cfg("quadratic", training=TrainingSpec(optimizer="gd", lr=1e3, max_steps=200))
    res = run_one(cfg)
    assert res.status == "failed"
    assert res.metrics is None
    assert res.error is not None and "diverged" in res.error


def test_unconverged_run_is_failed_and_keeps_its_metrics() -> None:
    cfg = _cfg("quadratic", training=TrainingSpec(optimizer="gd", max_steps=3))
    res = run_one(cfg)
    assert res.status == "failed"
    assert res.error is not None and "did not converge" in res.error
    assert res.metrics is not None and not res.metrics.converged
    assert res.metrics.stop_reason == "max_steps"


def test_timeout_is_a_failure_with_that_reason() -> None:
    cfg = _cfg(
        "quadratic",
        d=30,
        n=1800,
        training=TrainingSpec(optimizer="gd", max_steps=10**6, tol=1e-15, timeout_s=0.2),
    )
    res = run_one(cfg)
    assert res.status == "failed" and res.metrics is None
    assert res.error is not None and res.error.startswith("timeout")


@pytest.mark.parametrize("optimizer", ["gd", "convex"])
def test_the_deployments_time_limit_stops_a_run_without_its_own(optimizer: str) -> None:
    """SCALESWEEP_RUN_TIME_LIMIT_S (the task budget's run_time_limit_s) applies to a run
    that sets no training.timeout_s; the run's own timeout_s wins over it."""
    training = TrainingSpec(optimizer=optimizer, max_steps=10**6, tol=1e-15)  # type: ignore[arg-type]
    cfg = _cfg("quadratic", d=30, n=1800, training=training)
    (res,) = run_batch([cfg], TaskBudget(run_time_limit_s=1e-9))
    assert res.status == "failed" and res.error is not None
    assert res.error.startswith("timeout") and "SCALESWEEP_RUN_TIME_LIMIT_S" in res.error
    own = cfg.model_copy(update={"training": training.model_copy(update={"timeout_s": 1e-9})})
    (res,) = run_batch([own], TaskBudget(run_time_limit_s=3600.0))
    assert res.error is not None and "training.timeout_s = 1e-09 s" in res.error


def test_learning_curve_is_recorded() -> None:
    res = run_one(_cfg("diagonal", measure=MeasureSpec(curve_every=5)))
    assert res.curve and res.curve[0].step == 0
    assert all(p.step % 5 == 0 for p in res.curve)
    steps = [p.step for p in res.curve]
    assert steps == sorted(set(steps))
    assert res.curve[-1].excess_risk <= res.curve[0].excess_risk


def test_run_batch_keeps_order() -> None:
    cfgs = [_cfg("diagonal", seed=s, training=TrainingSpec(optimizer="convex")) for s in range(3)]
    out = run_batch(cfgs)
    assert [r.config_hash for r in out] == [c.config_hash() for c in cfgs]


def test_final_gap_is_not_recomputed_after_a_certified_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from workers.problems import Problem
    from workers.training import Run

    gaps: list[bool] = []
    asked: list[int] = []
    real_certificate, real_ask = Problem.certificate, Run.certificate

    def counting_certificate(self: Problem, *args: Any, tight: bool = True) -> Any:
        gaps.append(tight)
        return real_certificate(self, *args, tight=tight)

    def counting_ask(self: Run, params: Any, *, tight: bool = True) -> Any:
        asked.append(1)
        return real_ask(self, params, tight=tight)

    monkeypatch.setattr(Problem, "certificate", counting_certificate)
    monkeypatch.setattr(Run, "certificate", counting_ask)
    res = run_one(_cfg("quadratic"))
    assert res.status == "succeeded" and res.metrics is not None
    assert res.metrics.stop_reason in ("gradient", "objective")
    # one tight gap per certificate training asked for; none more for the reported value
    assert len(asked) >= 1 and gaps.count(True) == len(asked)


def test_every_run_says_where_its_time_went() -> None:
    for cfg in (_cfg("quadratic"), _cfg("diagonal", training=TrainingSpec(optimizer="convex"))):
        res = run_one(cfg.model_copy(update={"measure": MeasureSpec(spectrum=True)}))
        assert res.metrics is not None and res.metrics.timings is not None
        t = res.metrics.timings
        assert set(t) == {"data", "train", "certificate", "corrections", "spectra"}
        assert all(v >= 0.0 for v in t.values()) and t["train"] > 0 and t["certificate"] > 0
        assert t["spectra"] > 0  # the spectra were computed and fitted
        assert sum(t.values()) <= res.metrics.wall_time_s * 1.01  # parts of the run's time
