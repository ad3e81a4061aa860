"""workers.training.batching through run_batch: a batch of mixed runs gives what each run gives
alone; float32 runs are refined to a float64 certificate; an out-of-memory error shrinks the
batch."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from service.results import RunResult
from service.spec import RunConfig, TeacherSpec, TrainingSpec
from workers.tasks import run_batch, run_one
from workers.training import batching, scheduler

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cfg(lam: float, seed: int, **training: Any) -> RunConfig:
    base: dict[str, Any] = {"optimizer": "lbfgs", "device": "cpu", "tol": 1e-20}
    return RunConfig(
        model="quadratic",
        d=8,
        n=160,
        weight_decay=lam,
        seed=seed,
        teacher=TeacherSpec(gamma=1.0, noise=0.01),
        training=TrainingSpec(**(base | training)),
    )


MIXED = [
    _cfg(0.01, 0),
    _cfg(0.03, 1),
    _cfg(0.1, 2),
    _cfg(0.03, 3, init_scale=1e200),  # overflows at once: diverges
    _cfg(0.01, 4, max_steps=3),  # stops early: does not converge
    _cfg(0.3, 5),
]


def _check_same(alone: RunResult, batched: RunResult) -> None:
    assert batched.status == alone.status and batched.config_hash == alone.config_hash
    if alone.metrics is None:
        assert batched.metrics is None and batched.error == alone.error
        return
    a, b = alone.metrics, batched.metrics
    assert b is not None
    # float64, both at their certified minimum: excess risk within 1e-6 relative
    assert b.excess_risk == pytest.approx(a.excess_risk, rel=1e-6)
    if a.converged:
        assert a.duality_gap <= 1e-6 and b.duality_gap <= 1e-6


def test_a_mixed_batch_gives_each_run_what_it_gets_alone() -> None:
    batched = run_batch(MIXED)
    assert [r.status for r in batched] == [
        "succeeded", "succeeded", "succeeded", "failed", "failed", "succeeded",
    ]  # fmt: skip
    assert batched[3].metrics is None and "diverged" in (batched[3].error or "")
    assert batched[4].metrics is not None and not batched[4].metrics.converged
    assert all(r.metrics is None or r.metrics.batch_size == len(MIXED) for r in batched)
    # batching off (SCALESWEEP_BATCHING=off): the same task, every run alone
    unbatched = run_batch(MIXED, batching.TaskBudget(batched=False))
    for alone, together in zip(unbatched, batched, strict=True):
        assert alone.metrics is None or alone.metrics.batch_size == 1
        _check_same(alone, together)


def test_a_mixed_diagonal_batch_with_and_without_weight_decay_gives_what_each_gets_alone() -> None:
    """The preconditioned nets (diagonal): lam = 0 slots keep plain L-BFGS in the batch."""
    cfgs = [
        _cfg(lam, seed).model_copy(update={"model": "diagonal", "d": 20, "n": 60})
        for seed, lam in enumerate((0.0, 0.01, 0.0, 0.1))
    ]
    batched = run_batch(cfgs)
    assert [r.status for r in batched] == ["succeeded"] * 4
    for alone, together in zip(
        run_batch(cfgs, batching.TaskBudget(batched=False)), batched, strict=True
    ):
        _check_same(alone, together)


def test_slots_follow_the_task_memory_and_batching_off_is_one_slot() -> None:
    from workers.problems import problem_for

    problem = problem_for(_cfg(0.01, 0).model_copy(update={"n": 20_000, "d": 40}))
    cpu = torch.device("cpu")
    roomy = batching.slots_for(problem, 64, cpu, batching.TaskBudget(memory_mb=8192))
    tight = batching.slots_for(problem, 64, cpu, batching.TaskBudget(memory_mb=300))
    assert roomy == 64 and 1 <= tight < roomy
    assert batching.slots_for(problem, 64, cpu, batching.TaskBudget(batched=False)) == 1


def test_slots_refill_as_runs_finish(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batching, "slots_for", lambda problem, n_runs, device, budget: 2)
    refilled = run_batch(MIXED)  # six runs through two slots
    assert all(r.metrics is None or r.metrics.batch_size == 2 for r in refilled)
    for cfg, result in zip(MIXED, refilled, strict=True):
        _check_same(run_one(cfg), result)


def test_float32_runs_are_refined_to_a_float64_certificate() -> None:
    cfgs = [_cfg(0.03, seed, dtype="float32", tol=1e-8) for seed in range(3)]
    for result in run_batch(cfgs):
        assert result.status == "succeeded" and result.metrics is not None
        assert result.metrics.duality_gap <= 1e-6  # the float64 certificate, not float32's


def test_an_out_of_memory_error_halves_the_slots_and_loses_no_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = scheduler.Batch
    seen: list[int] = []

    class Tight(real):  # type: ignore[misc,valid-type]
        def __init__(self, runs: Any, device: Any, slots: int, phase: Any) -> None:
            seen.append(slots)
            if slots > 1:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            super().__init__(runs, device, slots, phase)

    monkeypatch.setattr(batching, "Batch", Tight)
    cfgs = [_cfg(0.03, seed) for seed in range(4)]
    results = run_batch(cfgs)
    assert seen[:3] == [4, 2, 1]
    assert [r.status for r in results] == ["succeeded"] * 4
    for cfg, result in zip(cfgs, results, strict=True):
        _check_same(run_one(cfg), result)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_mixed_float32_batch_on_cuda_reaches_each_runs_float64_minimum() -> None:
    """The GPU path as the paper-scale sweeps use it: float32 (TF32) batches on CUDA, refined
    in float64 there; each run against the same run trained alone in float64 on the CPU: same
    status, objective within 1e-6 relative (both certified within a 1e-6 relative gap of the
    same minimum), excess risk within 1e-2 (as network against convex elsewhere: a 1e-6 gap
    bounds the objective, not the solution, that tightly)."""
    cfgs = [_cfg(lam, seed, dtype="float32", device="cuda", tol=1e-8) for lam, seed in
            [(0.01, 0), (0.03, 1), (0.1, 2), (0.3, 3)]]  # fmt: skip
    cfgs.append(_cfg(0.03, 4, dtype="float32", device="cuda", init_scale=1e200))  # diverges
    gpu = run_batch(cfgs)
    assert [r.status for r in gpu] == ["succeeded"] * 4 + ["failed"]
    for cfg, result in zip(cfgs[:4], gpu[:4], strict=True):
        m = result.metrics
        assert m is not None and m.device.startswith("cuda") and m.batch_size == 5
        assert m.duality_gap <= 1e-6
        cpu_cfg = cfg.model_copy(
            update={
                "training": cfg.training.model_copy(update={"device": "cpu", "dtype": "float64"})
            }
        )
        alone = run_one(cpu_cfg)
        assert alone.metrics is not None and alone.status == "succeeded"
        assert m.objective == pytest.approx(alone.metrics.objective, rel=1e-6)
        assert m.excess_risk == pytest.approx(alone.metrics.excess_risk, rel=1e-2)
