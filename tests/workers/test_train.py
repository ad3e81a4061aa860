"""workers.train: the networks reach the global minimum of their objective, certified.

Run with ``pytest -s`` to see steps, seconds and gaps of every training run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from service.spec import RunConfig, TeacherSpec, TrainingSpec
from workers.certificate import Certificate
from workers.data import Dataset
from workers.networks import QuadraticNet, TwoLayerNet
from workers.problems import Problem, problem_for
from workers.train import TrainOutcome, resolve_device, train


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Tiny problems: intra-op threads only add contention on a shared machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _cfg(
    model: str,
    d: int,
    n: int,
    lam: float,
    *,
    seed: int = 0,
    gamma: float = 1.0,
    signed: bool = False,
    **training: Any,
) -> RunConfig:
    training.setdefault("device", "cpu")
    if signed:
        training["second_layer"] = "signed"
    return RunConfig(
        model=model,
        d=d,
        n=n,
        weight_decay=lam,
        seed=seed,
        teacher=TeacherSpec(gamma=gamma, signed=signed),
        training=TrainingSpec.model_validate(training),
    )


def _params(model: TwoLayerNet) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _data(cfg: RunConfig) -> tuple[Problem, Dataset]:
    problem = problem_for(cfg)
    return problem, problem.draw()[1]


def _train(cfg: RunConfig, **kw: Any) -> tuple[Problem, Dataset, TrainOutcome]:
    problem, data = _data(cfg)
    return problem, data, train(problem_for(problem), data, **kw)


def _certificate(problem: Problem, out: TrainOutcome, data: Dataset) -> Certificate:
    """The residual-based certificate at the trained weights (convex primal at theta / S)."""
    return problem.dual_certificate(data, problem.estimate(out.model).solution)


# --------------------------------------------------------------------------------------
# reproducibility, failure modes, bookkeeping


@pytest.mark.parametrize("optimizer", ["lbfgs", "gd", "adam"])
def test_same_config_is_bit_identical(optimizer: str) -> None:
    cfg = _cfg("quadratic", 6, 60, 1e-2, optimizer=optimizer, max_steps=30)
    _, data = _data(cfg)
    a = train(problem_for(cfg), data)
    b = train(problem_for(cfg), data)
    assert a.steps == b.steps and a.stop_reason == b.stop_reason
    assert a.objective == b.objective  # bit-identical on CPU
    for pa, pb in zip(_params(a.model), _params(b.model), strict=True):
        assert torch.equal(pa, pb)
    other = _cfg("quadratic", 6, 60, 1e-2, seed=1, optimizer=optimizer, max_steps=30)
    c = train(problem_for(other), data)  # same data, different init stream
    assert not torch.equal(_params(a.model)[0], _params(c.model)[0])


@pytest.mark.parametrize("model", ["diagonal", "quadratic"])
def test_far_too_large_lr_diverges_cleanly(model: str) -> None:
    cfg = _cfg(model, 8, 80, 1e-2, optimizer="gd", lr=1e3, max_steps=500)
    _, data = _data(cfg)
    out = train(problem_for(cfg), data)  # must not raise
    assert out.stop_reason == "diverged"
    assert out.error is not None and "step" in out.error and "lr 1e+03" in out.error
    # metrics are those of the last finite iterate, never NaN
    assert math.isfinite(out.objective) and math.isfinite(out.train_loss)
    assert math.isfinite(out.grad_norm)
    assert all(bool(torch.isfinite(p).all()) for p in out.model.parameters())
    # the restored parameters really have the reported objective (float64 rounding: 1e-12)
    x, y = torch.as_tensor(data.x), torch.as_tensor(data.y)
    obj = float(out.model.objective(x, y, cfg.weight_decay).detach())
    assert obj == pytest.approx(out.objective, rel=1e-12)


def test_max_steps_timeout_and_refusals() -> None:
    cfg = _cfg("diagonal", 10, 20, 1e-2, optimizer="lbfgs", max_steps=3)
    _, data = _data(cfg)
    out = train(problem_for(cfg), data)
    assert (out.stop_reason, out.steps, out.error) == ("max_steps", 3, None)
    slow = _cfg("diagonal", 10, 20, 1e-2, timeout_s=1e-9)
    out = train(problem_for(slow), data)
    assert out.stop_reason == "timeout" and out.error is not None and "timeout" in out.error
    with pytest.raises(ValueError, match="convex"):
        train(problem_for(_cfg("diagonal", 10, 20, 1e-2, optimizer="convex")), data)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            resolve_device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")


def test_curve_callback_and_metrics() -> None:
    cfg = _cfg("quadratic", 6, 60, 1e-2, optimizer="gd", max_steps=25)
    _, data = _data(cfg)
    seen: list[tuple[int, float]] = []
    out = train(problem_for(cfg), data, on_step=lambda k, f, m: seen.append((k, f)))
    assert out.stop_reason == "max_steps" and out.steps == 25
    assert [k for k, _ in seen] == list(range(26))
    assert out.objective == seen[-1][1]
    # Armijo steps never increase F beyond rounding (8 eps |F| slack)
    assert all(b <= a * (1 + 1e-14) for (_, a), (_, b) in zip(seen, seen[1:], strict=False))
    assert isinstance(out.model, QuadraticNet)
    s = out.model.matrix()
    x, y = data.x, data.y
    r = y - (np.einsum("ij,jk,ik->i", x, s, x) - np.trace(s))
    # train_loss is the plain MSE; float64 rounding only: 1e-12 relative
    assert out.train_loss == pytest.approx(float(r @ r) / len(y), rel=1e-12)
    assert out.device == "cpu" and out.wall_time_s > 0


def test_adam_and_float32_make_progress() -> None:
    cfg = _cfg("diagonal", 20, 40, 1e-2, optimizer="adam", max_steps=300)
    _, data = _data(cfg)
    out = train(problem_for(cfg), data)
    assert out.stop_reason in ("gradient", "objective", "max_steps")
    # loose sanity bound: the objective fell at least 5-fold from its initial value
    assert out.objective < 0.2 * float(data.y @ data.y) / (2 * len(data.y))
    f32 = _cfg("quadratic", 8, 128, 1e-2, dtype="float32", tol=1e-20, max_steps=500)
    _, data32 = _data(f32)
    out32 = train(problem_for(f32), data32)
    assert out32.model.W.dtype == torch.float32
    assert out32.stop_reason in ("gradient", "objective")
    # float32 training: duality gap at the float32 floor (measured 2e-5): 1e-4 relative
    assert _certificate(problem_for(f32), out32, data32).gap < 1e-4


# --------------------------------------------------------------------------------------
# global minimum, certified by the duality gap of the convex problem

GLOBAL_CASES = {
    "diag-d50-n40-lam1e-2": _cfg("diagonal", 50, 40, 1e-2, max_steps=2000),
    "quad-d10-a2-lam1e-2": _cfg("quadratic", 10, 200, 1e-2, max_steps=1000),
    "quad-d10-a2-lam1e-3": _cfg("quadratic", 10, 200, 1e-3, max_steps=1000),
    "quad-signed-d10-a2-lam1e-2": _cfg("quadratic", 10, 200, 1e-2, signed=True, max_steps=3000),
}


@pytest.mark.parametrize("case", list(GLOBAL_CASES))
def test_lbfgs_reaches_certified_global_minimum(case: str) -> None:
    cfg = GLOBAL_CASES[case].model_copy(
        update={"training": GLOBAL_CASES[case].training.model_copy(update={"tol": 1e-24})}
    )
    _, data = _data(cfg)
    out = train(problem_for(cfg), data)
    cert = _certificate(problem_for(cfg), out, data)
    print(
        f"\n{case}: lbfgs {out.steps} steps, {out.evaluations} evals, {out.wall_time_s:.2f} s, "
        f"stop {out.stop_reason}, |g| {out.grad_norm:.1e}, gap {cert.gap:.2e}"
    )
    assert out.stop_reason in ("gradient", "objective", "max_steps")
    # relative duality gap (P - D)/P of the equivalent convex problem: 1e-8
    assert cert.gap <= 1e-8
    # network objective equals the convex objective at theta / S (penalty AM-GM tight): 1e-9 rel
    assert cert.primal == pytest.approx(out.objective, rel=1e-9)


def test_gd_backtracking_reaches_certified_minimum() -> None:
    cfg = _cfg("quadratic", 10, 200, 3e-2, optimizer="gd", tol=1e-24, max_steps=3000)
    _, data = _data(cfg)
    out = train(problem_for(cfg), data)
    cert = _certificate(problem_for(cfg), out, data)
    print(
        f"\ngd quad-d10-a2-lam3e-2: {out.steps} steps, {out.evaluations} evals, "
        f"{out.wall_time_s:.2f} s, stop {out.stop_reason}, gap {cert.gap:.2e}"
    )
    # relative duality gap: 1e-6
    assert cert.gap <= 1e-6


def test_default_tol_gradient_rule() -> None:
    cfg = _cfg("quadratic", 10, 200, 1e-2)  # tol 1e-8: |g| <= 1e-4 max(1, |F|)
    _, data = _data(cfg)
    out = train(problem_for(cfg), data)
    assert out.stop_reason == "gradient" and out.grad_norm <= 1e-4


# --------------------------------------------------------------------------------------
# agreement with the convex solver (workers.convex)

CONVEX_CASES = {
    "diag-d50-n40-lam1e-2": _cfg("diagonal", 50, 40, 1e-2, max_steps=600),
    "diag-d200-n150-lam1e-3": _cfg("diagonal", 200, 150, 1e-3, max_steps=1000),
    "quad-d10-a2-lam1e-2": _cfg("quadratic", 10, 200, 1e-2, max_steps=1000),
    "quad-d20-a1-lam3e-3": _cfg("quadratic", 20, 400, 3e-3, max_steps=1000),
    "quad-signed-d10-a2-lam1e-2": _cfg("quadratic", 10, 200, 1e-2, signed=True, max_steps=3000),
}


@pytest.mark.parametrize("case", list(CONVEX_CASES))
def test_network_matches_convex_solver(case: str) -> None:
    cfg = CONVEX_CASES[case].model_copy(  # tol 1e-20: stop at |g| <= 1e-10 max(1, |F|)
        update={"training": CONVEX_CASES[case].training.model_copy(update={"tol": 1e-20})}
    )
    problem = problem_for(cfg)
    teacher, data = problem.draw()
    out = train(problem, data)
    t0 = time.perf_counter()
    sol = problem.solve_convex(data, tol=1e-10, max_iter=100_000)
    net = problem.estimate(out.model).solution
    r_net = problem.excess_risk(net, teacher)
    r_cvx = problem.excess_risk(sol.solution, teacher)
    p_net = problem.dual_certificate(data, net).primal  # the convex objective at theta / S
    support = problem.support(sol.solution)[0]
    cvx_s = time.perf_counter() - t0
    gap = _certificate(problem_for(cfg), out, data).gap
    print(
        f"\n{case}: net lbfgs {out.steps} steps {out.wall_time_s:.2f} s gap {gap:.1e} "
        f"R {r_net:.6e} F {out.objective:.12e} | convex {sol.iterations} it {cvx_s:.2f} s "
        f"gap {sol.gap:.1e} R {r_cvx:.6e} F {sol.objective:.12e} | support {support} "
        f"| dR {r_net / r_cvx - 1:+.1e} dF {out.objective / sol.objective - 1:+.1e}"
    )
    # excess risk of the trained network vs the convex solution: 1% relative
    assert r_net == pytest.approx(r_cvx, rel=1e-2)
    # optimal objective value: 1e-6 relative (network objective, and convex P at its theta/S)
    assert out.objective == pytest.approx(sol.objective, rel=1e-6)
    assert p_net == pytest.approx(sol.objective, rel=1e-6)


@pytest.mark.gpu
def test_cuda_training_matches_cpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    cpu = GLOBAL_CASES["quad-d10-a2-lam1e-2"]
    cpu = cpu.model_copy(update={"training": cpu.training.model_copy(update={"tol": 1e-24})})
    gpu = cpu.model_copy(update={"training": cpu.training.model_copy(update={"device": "cuda"})})
    _, data = _data(cpu)
    out_cpu, out_gpu = train(problem_for(cpu), data), train(problem_for(gpu), data)
    assert out_gpu.device.startswith("cuda")
    # both certified (relative duality gap 1e-8) and the same optimum (1e-9 relative)
    assert _certificate(problem_for(gpu), out_gpu, data).gap <= 1e-8
    assert out_gpu.objective == pytest.approx(out_cpu.objective, rel=1e-9)
