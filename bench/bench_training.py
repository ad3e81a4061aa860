"""Training benchmark: ratios measured in one run on this machine (no timed assertions anywhere).

1. Achieved FLOP/s of the quadratic net's training loop (forward + backward, float32) as a
   ratio of torch's float32 matmul peak measured here (target: >= 0.6 for d >= 100).
2. Wall time of ``gd`` / ``lbfgs`` to reach the convex solution's excess risk within 1%, as a
   ratio of the convex solver's own time (target for the product: <= 3x).

Run: ``.venv/bin/python bench/bench_training.py`` (``--quick`` for a smaller version).
"""

from __future__ import annotations

import argparse
import time

import torch

from service.spec import RunConfig, TeacherSpec, TrainingSpec
from workers.networks import TwoLayerNet
from workers.problems import Problem, Teacher, problem_for
from workers.tasks import NetworkCertificate
from workers.train import train


def matmul_peak(size: int = 2048, repeats: int = 10) -> float:
    """Best float32 matmul FLOP/s of torch on this machine (square size x size)."""
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2.0 * size**3 / best


def shape_matmul_flops(n: int, d: int, m: int, repeats: int = 10) -> float:
    """FLOP/s of the loop's own matmul shape, X (n, d) @ W' (d, m): the ceiling of the loop."""
    x = torch.randn(n, d)
    w = torch.randn(m, d)
    x @ w.T
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        x @ w.T
        best = min(best, time.perf_counter() - t)
    return 2.0 * n * d * m / best


def loop_flops(d: int, alpha: float, steps: int) -> tuple[float, float]:
    """FLOP/s of forward+backward of the quadratic net (float32, width d), and seconds/step.

    Counted FLOPs per step: 2 n d m (X W') + 2 n d m (grad W = (r * XW')' X), the matmuls;
    elementwise work is not counted, so the ratio is a lower bound of hardware use.
    """
    cfg = RunConfig(
        model="quadratic",
        d=d,
        n=int(alpha * d * d),
        weight_decay=1e-2,
        training=TrainingSpec(optimizer="gd", dtype="float32", lr=1e-3),
    )
    problem = problem_for(cfg)
    _, data = problem.draw()
    x = torch.as_tensor(data.x, dtype=torch.float32)
    y = torch.as_tensor(data.y, dtype=torch.float32)
    model: TwoLayerNet = problem.build_net(torch.device("cpu"), torch.float32)
    params = list(model.parameters())
    for p in params:
        p.requires_grad_(True)

    def one() -> None:
        obj = model.objective(x, y, cfg.weight_decay)
        grads = torch.autograd.grad(obj, params)
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                p.sub_(1e-3 * g)

    one()
    t = time.perf_counter()
    for _ in range(steps):
        one()
    dt = (time.perf_counter() - t) / steps
    m = cfg.width
    return 4.0 * cfg.n * d * m / dt, dt


class _Watch:
    """on_step callback: first time (net of its own overhead) R stays within 1% of R_convex."""

    def __init__(self, problem: Problem, teacher: Teacher, r_cvx: float) -> None:
        self.problem, self.teacher, self.r_cvx = problem, teacher, r_cvx
        self.start = time.perf_counter()
        self.overhead = 0.0
        self.hit: float | None = None

    def __call__(self, step: int, objective: float, net: TwoLayerNet) -> None:
        t0 = time.perf_counter()
        r = self.problem.excess_risk(self.problem.estimate(net).solution, self.teacher)
        if abs(r - self.r_cvx) > 0.01 * self.r_cvx:
            self.hit = None
        elif self.hit is None:
            self.hit = t0 - self.start - self.overhead
        self.overhead += time.perf_counter() - t0


def time_to_target(cfg: RunConfig) -> dict[str, float]:
    """Seconds for convex, and for the network optimizers to reach R_convex within 1%."""
    problem = problem_for(cfg)
    teacher, data = problem.draw()
    t = time.perf_counter()
    sol = problem.solve_convex(data, tol=1e-10, max_iter=100_000)
    r_cvx = problem.excess_risk(sol.solution, teacher)
    out = {"convex_s": time.perf_counter() - t, "R_convex": r_cvx}
    for opt in ("lbfgs", "gd"):
        run = problem_for(
            cfg.model_copy(update={"training": cfg.training.model_copy(update={"optimizer": opt})})
        )
        watch = _Watch(run, teacher, r_cvx)
        res = train(run, data, on_step=watch, certificate=NetworkCertificate(run, data))
        out[f"{opt}_s"] = watch.hit if watch.hit is not None else float("nan")
        out[f"{opt}_steps"] = float(res.steps)
    return out


def main() -> None:
    """Print the ratios."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    peak = matmul_peak(1024 if args.quick else 2048)
    print(
        f"torch float32 matmul peak: {peak / 1e9:.1f} GFLOP/s ({torch.get_num_threads()} threads)"
    )
    print("\n1. training loop FLOP/s (quadratic net, float32, forward+backward)")
    print(
        f"{'d':>5} {'n':>7} {'s/step':>9} {'GFLOP/s':>9} {'ratio to peak':>14}"
        f" {'same-shape matmul / peak':>25}"
    )
    for d, alpha in [(100, 2.0)] if args.quick else [(100, 2.0), (200, 1.0), (300, 0.5)]:
        flops, dt = loop_flops(d, alpha, 5 if args.quick else 20)
        n = int(alpha * d * d)
        ceiling = shape_matmul_flops(n, d, d)
        print(
            f"{d:>5} {n:>7} {dt:>9.4f} {flops / 1e9:>9.1f} {flops / peak:>14.2f}"
            f" {ceiling / peak:>25.2f}"
        )
    print("\n2. time to reach the convex solution's excess risk within 1% (float64)")
    teacher = TeacherSpec(gamma=1.0, noise=0.01)
    cases = [
        RunConfig(model="diagonal", d=1000, n=500, weight_decay=1e-2, teacher=teacher),
        RunConfig(model="quadratic", d=30, n=1800, weight_decay=3e-2, teacher=teacher),
    ]
    if args.quick:
        cases = cases[:1]
    time_to_target(cases[0].model_copy(update={"d": 50, "n": 40}))  # warm-up (torch start-up)
    for cfg in cases:
        r = time_to_target(cfg)
        print(f"{cfg.model} d={cfg.d} n={cfg.n} lambda={cfg.weight_decay:g}:")
        print(f"  convex {r['convex_s']:.3f} s (R = {r['R_convex']:.5g})")
        for opt in ("lbfgs", "gd"):
            ratio = r[f"{opt}_s"] / r["convex_s"]
            print(
                f"  {opt:<6} {r[f'{opt}_s']:.3f} s to R within 1%: {ratio:.1f}x convex "
                f"({r[f'{opt}_steps']:.0f} steps in all)"
            )


if __name__ == "__main__":
    main()
