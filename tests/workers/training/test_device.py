"""Training stays on the run's device: every tensor of a training step lives there, and only
a handful of values per step reach the host (counted by wrapping the tensor methods that
copy to it); the same run on the CPU and on CUDA (when there is one) reaches the same
minimum."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import torch

from service.spec import RunConfig, TeacherSpec, TrainingSpec
from workers.problems import problem_for
from workers.tasks import run_one
from workers.training import Batch, Phase, Run, train

TRANSFERS = ("item", "cpu", "tolist", "numpy", "__float__", "__bool__", "__int__")
"""Tensor methods that hand a value to the host (on a GPU: a device-to-host copy)."""
PER_STEP = 12
"""At most this many host transfers per training step (measured 6-8: the slots' F, mse and
|g| in one copy, the line search's acceptances, L-BFGS's bookkeeping)."""
PER_CERTIFICATE = 200
"""... plus this many per certificate (the gap, the dual point's scale, the screening; a
CPU certificate also reads its data through numpy for a symmetric update, zero-copy)."""


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cfg(model: str, d: int, n: int, lam: float, device: str = "cpu", **kw: Any) -> RunConfig:
    return RunConfig(
        model=model,
        d=d,
        n=n,
        weight_decay=lam,
        seed=0,
        teacher=TeacherSpec(gamma=1.0, noise=0.01),
        training=TrainingSpec(device=device, **kw),
    )


def _counting(monkeypatch: pytest.MonkeyPatch, counts: Counter[str]) -> Callable[[], None]:
    for name in TRANSFERS:
        real = getattr(torch.Tensor, name)

        def wrapped(self: torch.Tensor, *a: Any, _n: str = name, _r: Any = real, **k: Any) -> Any:
            counts[_n] += 1
            return _r(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, wrapped)
    return monkeypatch.undo


@pytest.mark.parametrize(
    ("model", "d", "n", "lam"), [("quadratic", 20, 800, 0.03), ("diagonal", 200, 100, 0.01)]
)
def test_host_transfers_per_step_are_bounded(
    monkeypatch: pytest.MonkeyPatch, model: str, d: int, n: int, lam: float
) -> None:
    cfg = _cfg(model, d, n, lam)
    run = Run(cfg=cfg)
    run.prepare(problem_for(cfg))
    asked: list[int] = []
    real = Run.certificate_of

    def counting(self: Run, est: Any, *, tight: bool = True) -> Any:
        asked.append(1)
        return real(self, est, tight=tight)

    monkeypatch.setattr(Run, "certificate_of", counting)
    counts: Counter[str] = Counter()
    undo = _counting(monkeypatch, counts)
    try:
        ((_, out),) = list(train([run]))
    finally:
        undo()
    total = sum(counts.values())
    print(f"\n{model}: {out.steps} steps, {len(asked)} certificates, transfers {dict(counts)}")
    assert out.stop_reason in ("gradient", "objective") and out.steps > 10
    assert total <= PER_STEP * out.steps + PER_CERTIFICATE * len(asked), dict(counts)


def test_every_tensor_of_a_step_lives_on_the_runs_device() -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = _cfg("quadratic", 8, 200, 0.03, device=device.type)
    runs = []
    for seed in range(2):
        run = Run(cfg=cfg.model_copy(update={"seed": seed}))
        run.prepare(problem_for(run.cfg))
        runs.append(run)
    _, _, data = runs[0].ready
    assert data.x.device.type == device.type and data.y.device.type == device.type
    batch = Batch(runs, device, 2, Phase(torch.float64, 1e-6))
    tensors = {
        name: value
        for name, value in [*vars(batch).items(), *vars(batch.opt).items()]
        if isinstance(value, torch.Tensor)
    }
    assert {"x", "y", "lam", "p", "g", "f", "s", "sy"} <= set(tensors)
    for name, value in tensors.items():
        assert value.device.type == device.type, name
    outcomes = dict(batch.outcomes())
    for out in outcomes.values():
        assert all(v.device.type == device.type for v in out.params.values())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(
    ("model", "d", "n", "lam"), [("quadratic", 12, 400, 0.03), ("diagonal", 100, 60, 0.01)]
)
def test_the_same_run_on_cpu_and_cuda_reaches_the_same_minimum(
    model: str, d: int, n: int, lam: float
) -> None:
    cpu = run_one(_cfg(model, d, n, lam, device="cpu"))
    gpu = run_one(_cfg(model, d, n, lam, device="cuda"))
    assert cpu.metrics is not None and gpu.metrics is not None
    assert gpu.metrics.device.startswith("cuda")
    assert gpu.status == cpu.status == "succeeded"
    # both certified within 1e-6 of the same minimum: objectives within 1e-6 relative
    assert gpu.metrics.objective == pytest.approx(cpu.metrics.objective, rel=1e-6)
    assert gpu.metrics.support == cpu.metrics.support
