"""Scale benchmark: batching, the loop's hardware use, time to the certified minimum, d = 400.

Every figure is a ratio of two things measured in this one run (these machines are shared
and noisy: nothing here is an assertion). It prints a report and ends with one JSON line:

* ``batched_speedup``: runs/s of a 64-run sweep (quadratic, d = 30, n = 1800, lbfgs, 4
  weight decays x 16 seeds) through the real runner on a local Ray, batching on over
  batching off (target >= 4);
* ``loop_to_matmul_peak``: FLOP/s of the batched float32 training loop (16 quadratic nets,
  d = 200, n = 8000, full width; matmul flops counted,
  :func:`workers.networks.flops_per_evaluation`; a batch of 1 step subtracted from one of
  1 + k steps, best of two each, so that copying the data in and the outcomes out is not
  counted) over torch's float32 matmul peak measured here (target >= 0.7);
* ``ratio_median``, ``ratio_p95``: a network run's time to its certified minimum (trained
  alone, lbfgs) over the convex solver's time on the same data, across 16 seeds of quadratic
  d = 30, n = 1800, lambda = 0.03 and 16 of diagonal d = 500, n = 128, lambda = 1e-3 (targets
  <= 2 and <= 5); ``batched_ratio_median``: the same with the 16 seeds trained as one batch
  (the batch's wall time / 16); all on one core (one torch and one BLAS thread);
* ``diagonal_grid_speedup``: the diagonal net's preconditioned L-BFGS against plain L-BFGS
  (the preconditioner switched off) on 20 runs, d = 100-1000, n = 50-3000 (no target);
* ``d200_matmuls``, ``d200_certificate_share``: one quadratic run at d = 200, n = 8,000,
  lambda = 0.01 (float64, lbfgs, one thread) to its certified minimum, in units of one
  (n x d) @ (d x d) float64 matmul timed here on one torch thread (target <= 250), and the
  share of its wall time spent in certificates and support corrections
  (``metrics.timings``; target <= 0.2);
* ``d400_seconds``, ``d400_matmuls``: one quadratic run at d = 400, n = 26,515,
  lambda = 0.0869, gamma = 0.6, noise = 0.25 to its certified minimum, in seconds and in
  units of one (n x d) @ (d x d) float64 matmul timed here (target <= 1000), for ``convex``
  and for the network (``lbfgs``), each in a child process; ``peak_rss_mb`` of each, and
  ``d400_converged``;
* ``memory_copies``: the peak resident memory a d = 400, n = 50,000 convex run adds to its
  process, in copies of its data (target about 3);
* ``gpu_*`` when CUDA is present: the batched float32 loop on the GPU over the GPU's matmul
  peak (target >= 0.5), and runs/s of a 256-run d = 100 sweep trained by the task function
  on the GPU.

Run: ``.venv/bin/python bench/bench_scale.py`` (``--quick``: under 15 minutes on 2 cores;
the network's d = 400 run is then stopped after 5 minutes and reported as not converged);
``--gpu-only``: section 6 alone (``make bench-gpu`` runs it after the CUDA tests: the short
script for a GPU machine).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.config import Settings
from service.orchestration.runner import Runner
from service.results import RunResult
from service.spec import Grid, RunConfig, SweepSpec, TeacherSpec, TrainingSpec
from service.storage import make_store, upgrade_head
from service.storage.base import iter_runs
from workers.networks import flops_per_evaluation
from workers.problems import problem_for
from workers.tasks import run_batch, run_one
from workers.training import Batch, Phase, Run

NUM_CPUS = 2
D400_D, D400_N = 400, 26_515
D400 = {"weight_decay": 0.0869, "gamma": 0.6, "noise": 0.25}


# -- units ------------------------------------------------------------------------------------


def _best(fn: Any, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def torch_matmul_peak(device: torch.device, size: int = 2048, repeats: int = 10) -> float:
    """Best float32 FLOP/s of a square matmul with torch on ``device``."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)

    def mm() -> None:
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()

    return 2.0 * size**3 / _best(mm, repeats)


def float64_matmul_s(n: int, d: int, repeats: int = 5) -> float:
    """Seconds of one (n x d) @ (d x d) float64 matmul (numpy, the convex solver's BLAS)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d))
    s = rng.standard_normal((d, d))
    return _best(lambda: x @ s, repeats)


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch on one thread inside the block (a Ray task's share: one CPU a task)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def torch_float64_matmul_s(n: int, d: int, repeats: int = 5) -> float:
    """Seconds of one (n x d) @ (d x d) float64 matmul in torch on one thread (a Ray task's
    share, as the runs measured against it; numpy's BLAS may use every core)."""
    with one_torch_thread():
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, d, dtype=torch.float64, generator=g)
        s = torch.randn(d, d, dtype=torch.float64, generator=g)
        return _best(lambda: x @ s, repeats)


# -- 1. batched vs one run per task, through the runner on Ray ---------------------------------


def sweep64() -> SweepSpec:
    return SweepSpec(
        model="quadratic",
        teacher=TeacherSpec(gamma=1.0, noise=0.01),
        grid=Grid(d=[30], n=[1800], weight_decay=[0.01, 0.03, 0.1, 0.3], seed=list(range(16))),
        training=TrainingSpec(optimizer="lbfgs", device="cpu"),
    )


def runner_throughput(batching: str, workdir: Path, name: str) -> dict[str, Any]:
    """Runs/s of :func:`sweep64` through the real runner and task function on Ray, on a new
    database ``name`` (an old one would answer from its result cache)."""
    from cli.runtime import task_function
    from workers.executor import RayExecutor

    url = f"sqlite:///{workdir / f'{name}.db'}"
    upgrade_head(url)
    store = make_store(url)
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=url, batching=batching, runner_poll_s=0.02
    )
    executor = RayExecutor(None, skip_init=True)
    runner = Runner(store, executor, task_function(settings), settings=settings)
    sid = store.create_sweep(sweep64(), max_runs=1000).id
    stop = threading.Event()
    thread = threading.Thread(target=runner.run_forever, args=(stop,), daemon=True)
    start = time.perf_counter()
    thread.start()
    try:
        while store.get_sweep(sid).status in ("queued", "running"):
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
    finally:
        stop.set()
        thread.join(timeout=60)
    records = list(iter_runs(store, sid))
    store.close()
    sizes = [r.metrics.batch_size or 0 for r in records if r.metrics is not None]
    return {
        "elapsed_s": elapsed,
        "runs_per_s": len(records) / elapsed,
        "succeeded": sum(r.status == "succeeded" for r in records),
        "tasks": runner.stats.tasks_submitted,
        "max_batch_size": max(sizes, default=0),
    }


# -- 2. the batched loop against the matmul peak ----------------------------------------------


def loop_flops(device: torch.device, runs: int, d: int, n: int, steps: int) -> dict[str, float]:
    """FLOP/s of the training loop (workers.training.Batch) on ``runs`` float32 quadratic nets
    (gd, fixed lr, no certificates)."""
    cfgs = [
        RunConfig(
            model="quadratic",
            d=d,
            n=n,
            weight_decay=1e-2,
            seed=seed,
            training=TrainingSpec(
                optimizer="gd",
                lr=1e-4,
                dtype="float32",
                device=device.type,
                max_steps=steps,
                tol=1e-30,
            ),
        )
        for seed in range(runs)
    ]
    prepared = []
    for cfg in cfgs:
        run = Run(cfg=cfg)
        run.prepare(problem_for(cfg))
        prepared.append(run)
    phase = Phase(torch.float32, 0.0, certify=False)

    def timed(max_steps: int) -> tuple[float, int]:
        """Best wall time of two batches of ``max_steps`` steps (the first one warms torch
        up), and their evaluations."""
        best, evaluations = float("inf"), 0
        for _ in range(2):
            short = []
            for run in prepared:
                cfg = run.cfg.model_copy(
                    update={
                        "training": run.cfg.training.model_copy(update={"max_steps": max_steps})
                    }
                )
                again = Run(cfg=cfg, problem=problem_for(cfg), teacher=run.teacher, data=run.data)
                short.append(again)
            t = time.perf_counter()
            batch = Batch(short, device, len(short), phase)
            batch.prunes = False  # the loop at full width: the flops counted are the ones done
            outcomes = [o for _, o in batch.outcomes()]
            _sync(device)
            best = min(best, time.perf_counter() - t)
            evaluations = sum(o.evaluations for o in outcomes)
        return best, evaluations

    # the loop alone: a batch of 1 step subtracted from one of 1 + steps (copying the data
    # in, the first evaluation and the outcomes out are the same in both)
    wall_1, evals_1 = timed(1)
    wall, evals = timed(1 + steps)
    evaluations = evals - evals_1
    flops = evaluations * flops_per_evaluation("quadratic", n, d, d)
    return {"flops": flops / (wall - wall_1), "wall_s": wall, "evaluations": float(evaluations)}


# -- 3. time to the certified minimum, network over convex -------------------------------------


def ratio_configs() -> list[RunConfig]:
    quad = RunConfig(
        model="quadratic",
        d=30,
        n=1800,
        weight_decay=0.03,
        teacher=TeacherSpec(gamma=1.0, noise=0.01),
        training=TrainingSpec(optimizer="lbfgs", device="cpu"),
    )
    diag = RunConfig(
        model="diagonal",
        d=500,
        n=128,
        weight_decay=1e-3,
        teacher=TeacherSpec(gamma=1.0, noise=0.01),
        training=TrainingSpec(optimizer="lbfgs", device="cpu"),
    )
    return [c.model_copy(update={"seed": s}) for c in (quad, diag) for s in range(16)]


def as_convex(cfg: RunConfig) -> RunConfig:
    return cfg.model_copy(
        update={"training": cfg.training.model_copy(update={"optimizer": "convex"})}
    )


def ratios(cfgs: list[RunConfig]) -> dict[str, Any]:
    """Per run: network alone / convex; per model: the batch of its 16 seeds / 16 / convex.

    Both on one core, as a Ray task runs them (one CPU a task: one torch thread, one BLAS
    thread); torch's default of every core would slow these small runs down and compare a
    two-thread network with a one-thread convex solver."""
    with one_torch_thread():
        return _ratios(cfgs)


def _ratios(cfgs: list[RunConfig]) -> dict[str, Any]:
    run_one(cfgs[0].model_copy(update={"seed": 99}))  # warm-up (torch start-up)
    alone: list[float] = []
    batched: list[float] = []
    rows: list[str] = []
    not_certified = 0
    for model in ("quadratic", "diagonal"):
        group = [c for c in cfgs if c.model == model]
        convex_s = []
        for cfg in group:
            net = run_one(cfg)
            cvx = run_one(as_convex(cfg))
            assert net.metrics is not None and cvx.metrics is not None, (net.error, cvx.error)
            not_certified += not net.metrics.converged
            convex_s.append(cvx.metrics.wall_time_s)
            alone.append(net.metrics.wall_time_s / cvx.metrics.wall_time_s)
            rows.append(
                f"  {model:<9} seed {cfg.seed:>2}: network {net.metrics.wall_time_s:7.3f} s"
                f" ({net.metrics.steps:>5} steps, {net.metrics.corrections} corrections,"
                f" gap {net.metrics.duality_gap:.1e}), convex {cvx.metrics.wall_time_s:6.3f} s,"
                f" ratio {alone[-1]:6.2f}"
            )
        t = time.perf_counter()
        together = run_batch(group)
        per_run = (time.perf_counter() - t) / len(group)
        not_certified += sum(r.metrics is None or not r.metrics.converged for r in together)
        batched.append(per_run / statistics.median(convex_s))
        rows.append(f"  {model}: batch of {len(group)}: {per_run:.3f} s a run, {batched[-1]:.2f}x")
    return {
        "ratio_median": statistics.median(alone),
        "ratio_p95": float(np.percentile(alone, 95)),
        "batched_ratio_median": statistics.median(batched),
        "not_certified": not_certified,
        "rows": rows,
    }


DIAGONAL_GRID = [
    (200, 50, 1e-3), (200, 100, 0.01), (200, 400, 0.003), (200, 1600, 0.001), (500, 128, 1e-3),
    (200, 100, 5e-3), (400, 200, 2.5e-3), (100, 1000, 5e-4), (1000, 500, 1e-3), (300, 3000, 1.7e-4),
]  # fmt: skip
"""(d, n, lambda) of the diagonal grid: n below and above d, lambda 1.7e-4 to 1e-2."""


def diagonal_grid() -> dict[str, Any]:
    """The diagonal net's preconditioned L-BFGS against plain L-BFGS (the same code with the
    nets' preconditioner switched off) on DIAGONAL_GRID x 2 seeds, runs alone, one core."""
    from workers.networks import DiagonalNets

    cfgs = [
        RunConfig(
            model="diagonal", d=d, n=n, weight_decay=lam, seed=seed,
            teacher=TeacherSpec(gamma=1.0, noise=0.1),
            training=TrainingSpec(optimizer="lbfgs", device="cpu", max_steps=6000),
        )
        for d, n, lam in DIAGONAL_GRID
        for seed in (0, 1)
    ]  # fmt: skip
    out: dict[str, Any] = {}
    try:
        with one_torch_thread():
            for name, on in (("plain", False), ("preconditioned", True)):
                DiagonalNets.preconditioned = on
                results = [run_one(c) for c in cfgs]
                out[f"seconds_{name}"] = sum(r.metrics.wall_time_s for r in results if r.metrics)
                out[f"steps_{name}"] = [r.metrics.steps if r.metrics else None for r in results]
                out[f"certified_{name}"] = sum(r.status == "succeeded" for r in results)
    finally:
        DiagonalNets.preconditioned = True
    return out


# -- 4. d = 400, each run in its own process ---------------------------------------------------


def d200_run() -> dict[str, Any]:
    """The d = 200, n = 8,000 quadratic run (lambda = 0.01, float64, lbfgs, one thread, no
    spectrum) to its certified minimum: wall time, steps and where the time went."""
    cfg = RunConfig(
        model="quadratic", d=200, n=8000, weight_decay=0.01, seed=0,
        teacher=TeacherSpec(gamma=1.0, noise=0.01),
        training=TrainingSpec(optimizer="lbfgs", dtype="float64", device="cpu"),
        measure={"spectrum": False},
    )  # fmt: skip
    with one_torch_thread():
        t = time.perf_counter()
        res = run_one(cfg)
        wall = time.perf_counter() - t
    m = res.metrics
    timings = (m.timings if m is not None else None) or {}
    return {"seconds": wall, "status": res.status, "steps": m.steps if m else 0,
            "timings": timings}  # fmt: skip


def d400_config(optimizer: str, n: int, timeout_s: float) -> RunConfig:
    return RunConfig(
        model="quadratic",
        d=D400_D,
        n=n,
        weight_decay=D400["weight_decay"],
        teacher=TeacherSpec(gamma=D400["gamma"], noise=D400["noise"]),
        training=TrainingSpec(
            optimizer=optimizer, device="cpu", max_steps=100_000, timeout_s=timeout_s
        ),
    )


def _status_kb(field: str) -> int:
    """A memory figure of this process from /proc/self/status, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak_kb() -> int:
    """Reset this process's peak RSS to its current RSS and return that (KiB).

    ru_maxrss cannot be used: Linux carries the parent's peak across fork and exec, so a
    child of a large process would report the parent's peak. Writing 5 to clear_refs resets
    VmHWM (Linux >= 4.0); without it the peak since exec is the best there is."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return _status_kb("VmRSS")


def child(optimizer: str, n: int, timeout_s: float) -> None:
    """Run one d = 400 run here and print its figures as JSON (the parent's child process)."""
    cfg = d400_config(optimizer, n, timeout_s)
    base = _reset_peak_kb()  # after the imports
    t = time.perf_counter()
    res = run_one(cfg)
    wall = time.perf_counter() - t
    peak = _status_kb("VmHWM")
    m = res.metrics
    print(
        json.dumps(
            {
                "status": res.status,
                "error": res.error,
                "seconds": wall,
                "steps": m.steps if m else None,
                "gap": m.duality_gap if m else None,
                "converged": bool(m and m.converged),
                "excess_risk": m.excess_risk if m else None,
                "peak_rss_mb": peak / 1024,
                "added_rss_mb": (peak - base) / 1024,
                "data_mb": 8 * cfg.n * (cfg.d + 1) / 2**20,
            }
        )
    )


def in_child(optimizer: str, n: int, timeout_s: float) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", optimizer, str(n), str(timeout_s)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"child {optimizer} failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# -- 5. GPU ----------------------------------------------------------------------------------


PUBLISHED = [
    {"weight_decay": 0.086851, "gamma": 0.6, "noise": 0.25, "seed": 7},
    {"weight_decay": 0.008685, "gamma": 1.25, "noise": 0.05, "seed": 7},
]
"""The two published d = 400, n = 26,515 points (../shared/GPU.md)."""


def _emit(out: dict[str, float], key: str, value: float, note: str = "") -> None:
    """Record a figure and print it at once (a GPU session may end at any moment)."""
    out[key] = value
    print(json.dumps({key: value}) + (f"  # {note}" if note else ""), flush=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _gpu_run(cfg: RunConfig) -> tuple[float, RunResult]:
    device = torch.device(cfg.training.device)
    _sync(device)
    t = time.perf_counter()
    result = run_one(cfg)
    _sync(device)
    return time.perf_counter() - t, result


def gpu_figures(quick: bool, budget_s: float = 150.0) -> dict[str, float]:
    """The GPU figures of issue 16, each printed as soon as it is measured, within about
    ``budget_s`` (the later ones are skipped, and say so, when it runs out)."""
    started = time.perf_counter()
    out: dict[str, float] = {}
    cuda = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    peak = torch_matmul_peak(cuda, 8192, 10)
    _emit(out, "gpu_matmul_peak_tflops", peak / 1e12, "float32 matmul, TF32 allowed")
    loop = loop_flops(cuda, 64, 200, 20_000, 20 if quick else 50)
    _emit(out, "gpu_loop_to_matmul_peak", loop["flops"] / peak, "target >= 0.5")
    run_one(_published(PUBLISHED[0], "float32"))  # warm-up: CUDA context, kernels, caches
    for i, point in enumerate(PUBLISHED, start=1):
        if time.perf_counter() - started > budget_s:
            print(f"# published point {i}: skipped (time budget)", flush=True)
            continue
        wall, res = _gpu_run(_published(point, "float32"))
        m = res.metrics
        _emit(out, f"gpu_published{i}_seconds", wall, "target <= 2 s (point 1)")
        _emit(out, f"gpu_published{i}_certified", float(res.status == "succeeded"))
        if m is not None:
            _emit(out, f"gpu_published{i}_excess_risk", m.excess_risk, f"steps {m.steps}")
            _emit(out, f"gpu_published{i}_certificate_share",
                  (m.timings or {}).get("certificate", 0.0) / max(m.wall_time_s, 1e-9))  # fmt: skip
    if time.perf_counter() - started < budget_s:
        _emit(out, "gpu_step_ms_n40000", 1e3 * step_seconds(cuda, 400, 40_000),
              "a step of a 2-seed batch, d = 400, target <= 10 ms")  # fmt: skip
    if time.perf_counter() - started < budget_s:
        sweep = [
            RunConfig(
                model="quadratic", d=100, n=10_000, weight_decay=lam, seed=seed,
                training=TrainingSpec(optimizer="lbfgs", dtype="float32", device="cuda"),
                measure={"spectrum": False},
            )
            for lam in (0.01, 0.03, 0.1, 0.3)
            for seed in range(64)
        ]  # fmt: skip
        t = time.perf_counter()
        results = run_batch(sweep)
        wall = time.perf_counter() - t
        _emit(out, "gpu_sweep256_runs_per_s", len(sweep) / wall, "target >= 20")
        _emit(out, "gpu_sweep256_succeeded", float(sum(r.status == "succeeded" for r in results)))
    if "gpu_published1_seconds" in out:
        minutes = quadratic_neff_paper_minutes(out["gpu_published1_seconds"])
        _emit(out, "gpu_quadratic_neff_paper_minutes_estimate", minutes, "target <= 30")
    return out


def _published(point: dict[str, float], dtype: str) -> RunConfig:
    return RunConfig(
        model="quadratic",
        d=D400_D,
        n=D400_N,
        weight_decay=point["weight_decay"],
        seed=int(point["seed"]),
        teacher=TeacherSpec(gamma=point["gamma"], noise=point["noise"]),
        training=TrainingSpec(optimizer="lbfgs", dtype=dtype, device="cuda"),
        measure={"spectrum": False},
    )


def step_seconds(device: torch.device, d: int, n: int, steps: int = 20) -> float:
    """Wall seconds of one training step of a 2-seed float32 batch (quadratic-neff's path,
    lambda = 0.0354/alpha), no certificates: a batch of 1 step subtracted from one of
    1 + steps."""
    alpha = n / d**2
    cfgs = [
        RunConfig(
            model="quadratic", d=d, n=n, weight_decay=0.0353553 / alpha, seed=seed,
            teacher=TeacherSpec(gamma=1.0, noise=0.25),
            training=TrainingSpec(optimizer="lbfgs", dtype="float32", device=device.type,
                                  tol=1e-30),
        )
        for seed in range(2)
    ]  # fmt: skip
    runs = []
    for cfg in cfgs:
        run = Run(cfg=cfg)
        run.prepare(problem_for(cfg))
        runs.append(run)
    phase = Phase(torch.float32, 0.0, certify=False)

    def timed(k: int) -> float:
        again = []
        for run in runs:
            cfg = run.cfg.model_copy(
                update={"training": run.cfg.training.model_copy(update={"max_steps": k})}
            )
            again.append(Run(cfg=cfg, problem=problem_for(cfg), teacher=run.teacher, data=run.data))
        _sync(device)
        t = time.perf_counter()
        for _ in Batch(again, device, 2, phase).outcomes():
            pass
        _sync(device)
        return time.perf_counter() - t

    timed(2)  # warm-up
    return max(timed(1 + steps) - timed(1), 0.0) / steps


def quadratic_neff_paper_minutes(published_s: float) -> float:
    """An estimate of ``reproduce quadratic-neff --scale paper`` on one GPU from the measured
    published point: each run's time scaled by its evaluation flops (n d^2) against that
    point's, runs one after the other (batches share the GPU's time)."""
    from service.examples import find_example
    from service.spec import expand

    unit = D400_N * D400_D**2
    total = 0.0
    for spec in find_example("quadratic-neff").scales["paper"]:
        for cfg in expand(spec):
            total += published_s * cfg.n * cfg.d**2 / unit
    return total / 60.0


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", nargs=3, metavar=("OPTIMIZER", "N", "TIMEOUT_S"))
    ap.add_argument(
        "--gpu-only",
        action="store_true",
        help="only the GPU figures (section 6); exit 1 without CUDA",
    )
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), float(args.child[2]))
        return
    if args.gpu_only:
        if not torch.cuda.is_available():
            sys.exit("bench_scale --gpu-only: CUDA is not available here")
        print(json.dumps(gpu_figures(args.quick), sort_keys=True), flush=True)
        return
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    out: dict[str, Any] = {}
    cpu = torch.device("cpu")

    print(f"== units ({torch.get_num_threads()} torch threads)")
    peak = torch_matmul_peak(cpu, 1024 if args.quick else 2048)
    unit = float64_matmul_s(D400_N, D400_D)
    print(f"torch float32 matmul peak {peak / 1e9:.1f} GFLOP/s")
    print(f"one ({D400_N} x {D400_D}) @ ({D400_D} x {D400_D}) float64 matmul: {unit:.3f} s")

    print("\n== 1. batched vs one run per task (64-run sweep, local Ray, 2 CPUs)")
    import ray

    from workers.executor import start_local_ray

    ray_dir = start_local_ray(NUM_CPUS)  # quiet, its files in a temporary folder, as serve's
    try:
        with tempfile.TemporaryDirectory(prefix="scalesweep-bench-") as tmp:
            runner_throughput("on", Path(tmp), "warm-up")  # the workers import torch once
            off = runner_throughput("off", Path(tmp), "off")
            on = runner_throughput("on", Path(tmp), "on")
    finally:
        ray.shutdown()
        shutil.rmtree(ray_dir, ignore_errors=True)
    for name, r in (("off", off), ("on", on)):
        print(
            f"batching {name:<3}: {r['elapsed_s']:6.1f} s, {r['runs_per_s']:5.2f} runs/s,"
            f" {r['tasks']} tasks, largest batch {r['max_batch_size']},"
            f" {r['succeeded']}/64 succeeded"
        )
    out["batched_speedup"] = on["runs_per_s"] / off["runs_per_s"]
    print(f"batched_speedup = {out['batched_speedup']:.2f} (target >= 4)")

    print("\n== 2. the batched float32 loop (16 quadratic nets, d = 200, n = 8000)")
    loop = loop_flops(cpu, 16, 200, 8000, 10 if args.quick else 30)
    out["loop_to_matmul_peak"] = loop["flops"] / peak
    print(
        f"{loop['flops'] / 1e9:.1f} GFLOP/s over {loop['evaluations']:.0f} evaluations:"
        f" loop_to_matmul_peak = {out['loop_to_matmul_peak']:.2f} (target >= 0.7)"
    )

    print("\n== 3. time to the certified minimum: network (lbfgs) / convex")
    r = ratios(ratio_configs())
    print("\n".join(r.pop("rows")))
    out.update(r)
    print(
        f"ratio_median = {out['ratio_median']:.2f} (target <= 2), ratio_p95 ="
        f" {out['ratio_p95']:.2f} (target <= 5), batched_ratio_median ="
        f" {out['batched_ratio_median']:.2f}, not certified: {out['not_certified']}"
    )
    grid = diagonal_grid()
    out["diagonal_grid_speedup"] = grid["seconds_plain"] / grid["seconds_preconditioned"]
    for name in ("plain", "preconditioned"):
        print(
            f"diagonal grid, {name:<14}: {grid[f'seconds_{name}']:5.1f} s,"
            f" {grid[f'certified_{name}']}/{len(grid[f'steps_{name}'])} certified,"
            f" steps {grid[f'steps_{name}']}"
        )
    print(f"diagonal_grid_speedup = {out['diagonal_grid_speedup']:.2f} (preconditioned L-BFGS)")

    print("\n== 3b. one run at d = 200, n = 8,000 (float64, lbfgs, one thread)")
    unit200 = torch_float64_matmul_s(8000, 200)  # one thread, as the run
    one = d200_run()
    share = one["timings"].get("certificate", 0.0) + one["timings"].get("corrections", 0.0)
    out["d200_matmuls"] = one["seconds"] / unit200
    out["d200_certificate_share"] = share / one["seconds"]
    print(
        f"{one['status']} in {one['seconds']:.1f} s, {one['steps']} steps ="
        f" {out['d200_matmuls']:.0f} matmuls of {unit200 * 1e3:.1f} ms (target <= 250);"
        f" certificate + corrections {out['d200_certificate_share']:.2f} of it (target <= 0.2);"
        f" timings {json.dumps({k: round(v, 2) for k, v in one['timings'].items()})}"
    )

    print("\n== 4. d = 400, n = 26,515 (each run in its own process, 2 BLAS threads)")
    os.environ["OPENBLAS_NUM_THREADS"] = str(NUM_CPUS)
    for optimizer, timeout in (("convex", 1800.0), ("lbfgs", 300.0 if args.quick else 3000.0)):
        res = in_child(optimizer, D400_N, timeout)
        key = "convex" if optimizer == "convex" else "network"
        out[f"d400_seconds_{key}"] = res["seconds"]
        out[f"d400_matmuls_{key}"] = res["seconds"] / unit
        out[f"d400_converged_{key}"] = res["converged"]
        out[f"peak_rss_mb_{key}"] = res["peak_rss_mb"]
        print(
            f"{optimizer:<7} {res['status']:<9} {res['seconds']:7.1f} s ="
            f" {res['seconds'] / unit:6.0f} matmuls (target <= 1000), {res['steps']} steps,"
            f" gap {res['gap']}, peak RSS {res['peak_rss_mb']:.0f} MB"
            + (f"; {res['error']}" if res["error"] else "")
        )
    out["d400_seconds"] = out["d400_seconds_convex"]
    out["d400_matmuls"] = out["d400_matmuls_convex"]
    out["peak_rss_mb"] = out["peak_rss_mb_convex"]

    print("\n== 5. memory: a convex run at d = 400, n = 50,000")
    mem = in_child("convex", 50_000, 600.0 if args.quick else 1800.0)
    out["memory_copies"] = mem["added_rss_mb"] / mem["data_mb"]
    print(
        f"data {mem['data_mb']:.0f} MB; the run added {mem['added_rss_mb']:.0f} MB to its process"
        f" (peak {mem['peak_rss_mb']:.0f} MB): memory_copies = {out['memory_copies']:.2f}"
        f" (target about 3); {mem['status']} in {mem['seconds']:.0f} s"
    )

    if torch.cuda.is_available():
        print("\n== 6. GPU")
        out.update(gpu_figures(args.quick))
        print({k: v for k, v in out.items() if k.startswith("gpu_")})
    else:
        print("\n== 6. GPU: CUDA is not available here; no gpu_* figures")
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
