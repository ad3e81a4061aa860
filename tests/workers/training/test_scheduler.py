"""workers.training.scheduler: batched training reaches the global minimum of each network's
objective (through workers.training.train, the pipeline's entry).

Run with ``pytest -s`` to see steps, seconds and gaps of every training run.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pytest
import torch

from service.spec import MeasureSpec, RunConfig, TeacherSpec, TrainingSpec
from workers.certificate import Certificate
from workers.data import Dataset
from workers.devices import resolve_device
from workers.problems import Problem, problem_for
from workers.problems.base import Params
from workers.training import Batch, Phase, Run, TrainOutcome, scheduler, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


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


def _run(cfg: RunConfig) -> Run:
    run = Run(cfg=cfg)
    run.prepare(problem_for(cfg))
    return run


def _train(cfg: RunConfig, *, certified: bool = False) -> tuple[Problem, Dataset, TrainOutcome]:
    run = _run(cfg)
    ((_, out),) = list(train([run], certify=certified))
    problem, _, data = run.ready
    return problem, data, out


def _batch(runs: list[Run], slots: int) -> Batch:
    return Batch(runs, torch.device("cpu"), slots, Phase(torch.float64, 1e-6, certify=False))


def _certificate(problem: Problem, out: TrainOutcome, data: Dataset) -> Certificate:
    """The residual-based certificate at the trained weights (convex primal at theta / S)."""
    return problem.dual_certificate(data, problem.estimate(out.params).solution)


def _objective(problem: Problem, data: Dataset, params: Params) -> float:
    return problem.objective(data, problem.estimate(params))


# --------------------------------------------------------------------------------------
# reproducibility, failure modes, bookkeeping


@pytest.mark.parametrize("optimizer", ["lbfgs", "gd", "adam"])
def test_same_config_is_bit_identical(optimizer: str) -> None:
    cfg = _cfg("quadratic", 6, 60, 1e-2, optimizer=optimizer, max_steps=30)
    _, _, a = _train(cfg)
    _, _, b = _train(cfg)
    assert a.steps == b.steps and a.stop_reason == b.stop_reason
    assert a.objective == b.objective  # bit-identical on CPU
    assert torch.equal(a.params["W"], b.params["W"])
    _, _, c = _train(_cfg("quadratic", 6, 60, 1e-2, seed=1, optimizer=optimizer, max_steps=30))
    assert not torch.equal(a.params["W"], c.params["W"])


@pytest.mark.parametrize("model", ["diagonal", "quadratic"])
def test_far_too_large_lr_diverges_cleanly_and_alone(model: str) -> None:
    bad = _cfg(model, 8, 80, 1e-2, optimizer="gd", lr=1e3, max_steps=500)
    fine = _cfg(model, 8, 80, 1e-2, seed=1, optimizer="gd", lr=1e-3, max_steps=50)
    runs = [_run(bad), _run(fine)]
    out, ok = (o for _, o in sorted(train(runs, certify=False), key=lambda io: io[0]))
    assert out.stop_reason == "diverged" and out.batch_size == 2  # one batch: the same shape
    assert out.error is not None and "step" in out.error and "1e+03" in out.error
    # metrics are those of the last finite iterate, never NaN
    assert math.isfinite(out.objective) and math.isfinite(out.train_loss)
    assert all(bool(torch.isfinite(v).all()) for v in out.params.values())
    # the restored parameters really have the reported objective (float64 rounding: 1e-12)
    problem, _, data = runs[0].ready
    objective = _objective(problem, data, out.params)
    assert objective == pytest.approx(out.objective, rel=1e-12)
    assert ok.stop_reason == "max_steps" and ok.steps == 50  # its neighbour went on


def test_max_steps_timeout_and_refusals() -> None:
    _, data, out = _train(_cfg("diagonal", 10, 20, 1e-2, optimizer="lbfgs", max_steps=3))
    assert (out.stop_reason, out.steps, out.error) == ("max_steps", 3, None)
    _, _, slow = _train(_cfg("diagonal", 10, 20, 1e-2, timeout_s=1e-9))
    assert slow.stop_reason == "timeout" and slow.error is not None and "timeout" in slow.error
    with pytest.raises(ValueError, match="convex"):
        _batch([_run(_cfg("diagonal", 10, 20, 1e-2, optimizer="convex"))], 1)
    with pytest.raises(ValueError, match="one shape"):
        _batch([_run(_cfg("diagonal", 10, 20, 1e-2)), _run(_cfg("diagonal", 11, 20, 1e-2))], 2)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            resolve_device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")


def test_learning_curve_and_metrics() -> None:
    cfg = _cfg("quadratic", 6, 60, 1e-2, optimizer="gd", max_steps=25)
    cfg = cfg.model_copy(update={"measure": MeasureSpec(curve_every=1)})
    run = _run(cfg)
    ((_, out),) = list(train([run], certify=False))
    problem, _, data = run.ready
    assert out.stop_reason == "max_steps" and out.steps == 25
    assert [p.step for p in run.curve] == list(range(26))
    assert run.curve[-1].train_loss == pytest.approx(out.train_loss, rel=1e-12)
    est = problem.estimate(out.params)
    r = data.y - problem.predict(data.x, est.solution)
    # train_loss is the plain MSE; float64 rounding only: 1e-12 relative
    assert out.train_loss == pytest.approx(float(r @ r) / len(data.y), rel=1e-12)
    assert out.device == "cpu" and out.wall_time_s > 0 and out.evaluations >= 26


def test_adam_and_float32_make_progress() -> None:
    _, data, out = _train(_cfg("diagonal", 20, 40, 1e-2, optimizer="adam", max_steps=300))
    assert out.stop_reason in ("gradient", "objective", "max_steps")
    # loose sanity bound: the objective fell at least 5-fold from its initial value
    assert out.objective < 0.2 * float(data.y @ data.y) / (2 * len(data.y))
    f32 = _cfg("quadratic", 8, 128, 1e-2, dtype="float32", tol=1e-20, max_steps=500)
    problem, data32, out32 = _train(f32)
    assert out32.stop_reason in ("gradient", "objective")
    # float32 training: duality gap at the float32 floor (measured 2e-5): 1e-4 relative
    assert _certificate(problem, out32, data32).gap < 1e-4


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
    problem, data, out = _train(cfg)
    cert = _certificate(problem, out, data)
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
    problem, data, out = _train(cfg)
    cert = _certificate(problem, out, data)
    print(f"\ngd: {out.steps} steps, {out.wall_time_s:.2f} s, gap {cert.gap:.2e}")
    assert cert.gap <= 1e-6  # relative duality gap: 1e-6


def test_default_tol_gradient_rule() -> None:
    _, _, out = _train(_cfg("quadratic", 10, 200, 1e-2))  # tol 1e-8: |g| <= 1e-4 max(1, |F|)
    assert out.stop_reason == "gradient" and out.grad_norm <= 1e-4


# --------------------------------------------------------------------------------------
# the slow cases of the paper-scale issue: near-threshold directions (workers.corrections)


@pytest.mark.parametrize("seed", range(6))
def test_the_d30_sweep_reaches_its_certified_minimum_in_a_predictable_number_of_steps(
    seed: int,
) -> None:
    # seed 0 took 3,912 L-BFGS steps before support corrections (seeds 1-5: 107-142)
    cfg = _cfg("quadratic", 30, 1800, 0.03, seed=seed, gamma=1.0, max_steps=1000)
    cfg = cfg.model_copy(update={"teacher": TeacherSpec(gamma=1.0, noise=0.01)})
    problem, data, out = _train(cfg, certified=True)
    cert = problem.certificate(data, problem.estimate(out.params))
    print(f"\nseed {seed}: {out.steps} steps, {out.corrections} corrections, gap {cert.gap:.1e}")
    assert out.stop_reason == "gradient" and cert.gap <= 1e-6
    assert out.steps <= 300  # measured 91-133 before the preconditioner


@pytest.mark.parametrize("seed", range(4))
def test_a_diagonal_net_with_n_much_below_d_is_certified_in_a_predictable_number_of_steps(
    seed: int,
) -> None:
    # d = 500, n = 128, lambda = 1e-3 stopped uncertified after 20,000 steps before the
    # support corrections, and took 1,203-2,454 steps on these seeds with them before the
    # preconditioner (workers.networks.DiagonalNets.precondition): 372-396 since
    cfg = _cfg("diagonal", 500, 128, 1e-3, seed=seed, max_steps=1000)
    cfg = cfg.model_copy(update={"teacher": TeacherSpec(gamma=1.0, noise=0.01)})
    problem, data, out = _train(cfg, certified=True)
    cert = problem.certificate(data, problem.estimate(out.params))
    print(f"\ndiagonal: {out.steps} steps, {out.corrections} corrections, gap {cert.gap:.1e}")
    assert out.stop_reason == "gradient" and cert.gap <= 1e-6


# --------------------------------------------------------------------------------------
# agreement with the convex solver (workers.convex)

CONVEX_CASES = {
    "diag-d50-n40-lam1e-2": _cfg("diagonal", 50, 40, 1e-2, max_steps=600),
    "diag-d200-n150-lam1e-3": _cfg("diagonal", 200, 150, 1e-3, max_steps=2000),
    "quad-d10-a2-lam1e-2": _cfg("quadratic", 10, 200, 1e-2, max_steps=1000),
    "quad-d20-a1-lam3e-3": _cfg("quadratic", 20, 400, 3e-3, max_steps=1000),
    "quad-signed-d10-a2-lam1e-2": _cfg("quadratic", 10, 200, 1e-2, signed=True, max_steps=3000),
}


@pytest.mark.parametrize("case", list(CONVEX_CASES))
def test_network_matches_convex_solver(case: str) -> None:
    cfg = CONVEX_CASES[case].model_copy(  # tol 1e-20: stop at |g| <= 1e-10 max(1, |F|)
        update={"training": CONVEX_CASES[case].training.model_copy(update={"tol": 1e-20})}
    )
    problem, data, out = _train(cfg, certified=True)
    teacher, _ = problem.draw()
    t0 = time.perf_counter()
    sol = problem.solve_convex(data, tol=1e-10, max_iter=100_000)
    cvx_s = time.perf_counter() - t0
    net = problem.estimate(out.params).solution
    r_net = problem.excess_risk(net, teacher)
    r_cvx = problem.excess_risk(sol.solution, teacher)
    p_net = problem.dual_certificate(data, net).primal  # the convex objective at theta / S
    print(
        f"\n{case}: net {out.steps} steps {out.wall_time_s:.2f} s R {r_net:.6e} "
        f"F {out.objective:.12e} | convex {sol.iterations} it {cvx_s:.2f} s R {r_cvx:.6e} "
        f"F {sol.objective:.12e} | dR {r_net / r_cvx - 1:+.1e}"
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
    problem, data, out_cpu = _train(cpu)
    _, _, out_gpu = _train(gpu)
    assert out_gpu.device.startswith("cuda")
    # both certified (relative duality gap 1e-8) and the same optimum (1e-9 relative)
    assert _certificate(problem, out_gpu, data).gap <= 1e-8
    assert out_gpu.objective == pytest.approx(out_cpu.objective, rel=1e-9)


@pytest.mark.parametrize("model", ["diagonal", "quadratic"])
def test_a_subset_of_slots_is_evaluated_alone_and_counted_alone(model: str) -> None:
    """What a line search that backtracks for one slot evaluates: that slot's rows (gathered),
    equal to the same rows of a whole-batch evaluation (1e-12 relative), counted for it only."""
    d, n = (20, 30) if model == "diagonal" else (5, 40)
    batch = _batch([_run(_cfg(model, d, n, 0.05, seed=s)) for s in range(4)], 4)
    before = [s.evaluations for s in batch.slots if s is not None]
    trial = batch.p + 0.01 * torch.randn_like(batch.p, dtype=batch.p.dtype)
    mask, (f, mse, g) = batch._evaluate(trial, [2])
    whole = batch.nets.evaluate(trial, batch.x, batch.y, batch.lam)
    assert mask.tolist() == [False, False, True, False]
    for part, full in zip((f, mse, g), whole, strict=True):
        torch.testing.assert_close(part[2], full[2], rtol=1e-12, atol=0.0)
    after = [s.evaluations for s in batch.slots if s is not None]
    assert [a - b for a, b in zip(after, before, strict=True)] == [0, 0, 1, 0]


def test_the_preconditioner_applies_to_penalised_slots_only() -> None:
    """In a batch mixing lam = 0 with lam > 0, a lam = 0 slot keeps L-BFGS's plain H0 (as it
    has alone: a preconditioner of lam = 0 would be singular); the others get the nets'."""
    runs = [_run(_cfg("diagonal", 20, 30, lam, seed=s)) for s, lam in enumerate((0.0, 0.05))]
    batch = _batch(runs, 2)
    h0 = batch._h0()
    assert h0 is not None and batch.curvature is not None
    v = torch.randn(2, batch.nets.n_params, dtype=batch.p.dtype)
    out = h0(v)
    torch.testing.assert_close(out[0], v[0], rtol=0.0, atol=0.0)
    lam = torch.where(batch.lam > 0, batch.lam, torch.ones_like(batch.lam))
    want = batch.nets.preconditioner(batch.p, lam, batch.curvature)(v)
    torch.testing.assert_close(out[1], want[1], rtol=1e-12, atol=0.0)
    # all slots unpenalised: no preconditioner at all
    assert _batch(runs[:1], 1)._h0() is None


# --------------------------------------------------------------------------------------
# pruning: a batch of quadratic nets computes on the rows its nets need


def _certified_batch(runs: list[Run], slots: int, prunes: bool) -> Batch:
    batch = Batch(runs, torch.device("cpu"), slots, Phase(torch.float64, 1e-6))
    batch.prunes = batch.prunes and prunes
    return batch


def test_a_pruned_batch_narrows_and_reaches_the_same_certified_minimum(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two d = 60 runs (minima of rank well below 60), pruned at every check whatever the
    cost of an evaluation: the batch narrows, each run is certified (gap <= 1e-6) at the
    objective of the unpruned batch (both within 1e-6 of the minimum: 3e-6 relative), and its
    parameters come back with the net's own 60 rows."""
    monkeypatch.setattr(scheduler, "PRUNE_MIN_FLOPS", 0.0)
    cfgs = [_cfg("quadratic", 60, 2400, 0.03, seed=s) for s in range(2)]
    outcomes = {}
    for prunes in (True, False):
        runs = [_run(c) for c in cfgs]
        batch = _certified_batch(runs, 2, prunes)
        outs = dict(batch.outcomes())
        widths = batch.nets.width
        outcomes[prunes] = outs
        for i, run in enumerate(runs):
            assert outs[i].stop_reason == "gradient"
            assert outs[i].params["W"].shape == (60, 60)
            assert run.certificate(outs[i].params).gap <= 1e-6
        assert (widths < 60) == prunes
    for i in range(2):
        assert outcomes[True][i].objective == pytest.approx(outcomes[False][i].objective, rel=3e-6)


def test_signed_nets_narrow_nets_and_adam_do_not_prune() -> None:
    """Rotations leave F unchanged only with a positive second layer; a narrow net is
    certified by its own rules (workers.second_order); Adam's moments would move zero rows."""
    assert _certified_batch([_run(_cfg("quadratic", 6, 40, 0.05))], 1, True).prunes
    for cfg in (
        _cfg("quadratic", 6, 40, 0.05, signed=True),
        _cfg("quadratic", 6, 40, 0.05, width=3),
        _cfg("quadratic", 6, 40, 0.05, optimizer="adam"),
        _cfg("diagonal", 6, 40, 0.05),
    ):
        assert not _certified_batch([_run(cfg)], 1, True).prunes


def test_a_growth_correction_in_a_batch_without_a_spare_row_widens_it() -> None:
    """A net started at rank 2 on a problem whose minimum has more, in a batch narrowed to
    those 2 rows: the refused certificate's growth correction puts its direction in the net's
    first zero row, and the batch widens to that row and SPARE_ROWS more; at the net's full
    width the same correction leaves the batch's nets as they are."""
    run = _run(_cfg("quadratic", 8, 400, 0.01))
    w = torch.zeros(8, 8, dtype=torch.float64)
    w[:2] = torch.as_tensor(np.random.default_rng(0).normal(size=(2, 8)))
    run.start = {"W": w}
    batch = _certified_batch([run], 1, True)
    batch._resize(2)
    slot = batch.slots[0]
    assert slot is not None and batch.nets.width == 2
    ok, _ = batch.certify(0, slot)
    assert not ok and slot.corrections == 1
    assert batch.nets.width == 3 + scheduler.SPARE_ROWS
    grown = batch.params(0)["W"]
    assert bool(grown[2].ne(0.0).any()) and bool(grown[3:].eq(0.0).all())
    # a batch still at the net's full width has nothing to widen: its nets stay as they are
    full = _certified_batch([_run(_cfg("quadratic", 8, 400, 0.01))], 1, True)  # no zero row
    nets = full.nets
    full_slot = full.slots[0]
    assert full_slot is not None
    ok, _ = full.certify(0, full_slot)
    assert not ok and full_slot.corrections == 1 and full.nets is nets
