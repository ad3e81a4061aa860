"""The cost of a width sweep at paper size, per run, measured in one run.

One quadratic configuration of the paper's width study (d = 400, n = 8,000, gamma = 1,
Delta = 0.25, lambda = 0.0354 / (n/d^2) = 0.708 ... chosen by ``--lam``) trained by the task
function at widths 1 ... 400 on this machine's CPU (float64, one thread: a Ray task's share)
and, with ``--device cuda``, on a GPU. For every width it prints the wall time, the steps,
the certificate it got (``duality_gap`` where the width holds the convex minimum's rank,
``second_order`` below it), the restarts and the seconds they took, the Hessian check, the
excess risk, and the ratio of the run's time to the full-width run's. It ends with one JSON
line. Nothing is asserted.

Run: ``.venv/bin/python bench/bench_width.py [--quick] [--device cpu|cuda] [--restarts K]
[--n N] [--lam L] [--widths M ...]`` (``--quick``: widths 1, 10, 100, 400 and n = 4,000).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch

from service.spec import RunConfig, TeacherSpec, TrainingSpec
from workers.tasks import run_batch
from workers.training import TaskBudget

WIDTHS = (1, 2, 5, 10, 20, 50, 100, 200, 400)
QUICK_WIDTHS = (1, 10, 100, 400)


def one(d: int, n: int, lam: float, width: int, device: str, restarts: int) -> dict[str, Any]:
    cfg = RunConfig(
        model="quadratic", d=d, n=n, weight_decay=lam, seed=0,
        teacher=TeacherSpec(gamma=1.0, noise=0.25),
        training=TrainingSpec(width=width, device=device, restarts=restarts),  # type: ignore[arg-type]
        measure={"spectrum": False},
    )  # fmt: skip
    t = time.perf_counter()
    (res,) = run_batch([cfg], TaskBudget(width_restarts=restarts))
    wall = time.perf_counter() - t
    m = res.metrics
    return {
        "width": width,
        "seconds": wall,
        "status": res.status,
        "certificate": m.certificate if m else None,
        "steps": m.steps if m else None,
        "restarts": m.restarts if m else None,
        "restarts_at_best": m.restarts_at_best if m else None,
        "restart_seconds": (m.timings or {}).get("restarts", 0.0) if m else None,
        "hessian_min_eig": m.hessian_min_eig if m else None,
        "gap": m.duality_gap if m else None,
        "excess_risk": m.excess_risk if m else None,
        "rank": m.support if m else None,
        "error": res.error,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--restarts", type=int, default=5)
    ap.add_argument("--d", type=int, default=400)
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--lam", type=float, default=None)
    ap.add_argument("--widths", type=int, nargs="+", default=None, help="instead of the set")
    args = ap.parse_args()
    torch.set_num_threads(1)
    d = args.d
    n = args.n or (4000 if args.quick else 8000)
    lam = args.lam if args.lam is not None else 0.0354 / (n / d**2)
    widths = [w for w in args.widths or (QUICK_WIDTHS if args.quick else WIDTHS) if w <= d]
    print(f"quadratic d = {d}, n = {n}, lambda = {lam:.4g}, gamma 1, Delta 0.25, {args.device},"
          f" restarts {args.restarts}")  # fmt: skip
    rows = []
    for w in sorted(widths):  # each printed as measured, narrow first
        r = one(d, n, lam, w, args.device, args.restarts)
        rows.append(r)
        print(
            f"  width {r['width']:4d}: {r['seconds']:7.1f} s, "
            f"{r['status']}, {r['certificate']}, steps {r['steps']}, rank {r['rank']}, "
            f"restarts {r['restarts']} ({r['restarts_at_best']} at the lowest, "
            f"{r['restart_seconds'] or 0.0:.1f} s), Hessian min {r['hessian_min_eig']}, "
            f"R {r['excess_risk']:.4g}" + (f"; {r['error']}" if r["error"] else ""),
            flush=True,
        )
    last = rows[-1]
    print(f"  time / width {last['width']}'s: " + ", ".join(
        f"{r['width']}: {r['seconds'] / last['seconds']:.2f}" for r in rows))  # fmt: skip
    print(json.dumps({"d": d, "n": n, "lam": lam, "device": args.device, "rows": rows}))


if __name__ == "__main__":
    main()
