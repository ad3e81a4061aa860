"""How far the exponents query can be trusted, in one run: false breaks, detection, coverage,
latency.

Synthetic sweeps with realistic scatter, fitted by ``service.fitting.fit_scaling`` exactly as
the exponents query fits a group (seeds pooled, bootstrap over seeds, 200 replicates):

* ``false_break_rate``: pure power laws R = C x^-beta (3-20 seeds, 6-12 x values over a
  factor 2^5-2^11, 5-15 % per-run log-normal scatter, beta in [0.2, 2]): how often a broken
  or plateau form is reported (target <= 0.05);
* ``detection_rate``: broken power laws with an exponent ratio in [1.5, 3] (either way) and
  the break inside the middle of the window: how often the broken form is chosen with the
  break within a factor 1.5 of the truth (target >= 0.80);
* ``coverage``: pure power laws with 3-5 seeds: how often the 95 % interval holds beta
  (target >= 0.93); ``coverage_many_seeds`` the same with 30-100 seeds (the cluster-robust
  interval);
* on the examples' own curves: the state-evolution curve of every group of every ``phase`` and
  ``curve`` example at its small scale (the x values and the seeds of the example; 5-15 %
  per-run scatter), ``se_false_plateau_rate`` (a plateau reported where the state evolution
  does not flatten: its risk at 100 times the largest x is below half the risk there),
  ``se_false_break_rate`` (a break reported where the state evolution's local slope varies
  by less than 0.2 over the window) and ``se_coverage`` (the interval holds the state
  evolution's exponent of the reported form over the same x: what the verdicts compare);
  targets <= 0.05, <= 0.05, >= 0.93;
* ``query_p50_ms``, ``query_p95_ms``: the uncached exponents query over a 10,000-run sweep on
  PostgreSQL (``bench/bench_queries.py --json``; target p95 < 300 ms), unless
  ``--no-query``.

Run: ``.venv/bin/python bench/bench_fits.py [--trials 200] [--seed 0] [--no-query]``; the last
line is JSON with every figure.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from service.analysis.exponents import same_form_exponent
from service.analysis.grouping import axis_value
from service.errors import FitError
from service.examples import all_examples
from service.fitting import fit_scaling
from service.records import RunPoint
from service.spec import RunConfig, expand
from service.theory import predict

ROOT = Path(__file__).resolve().parents[1]


def _design(rng: np.random.Generator, seeds: tuple[int, int]) -> tuple[np.ndarray, int, float]:
    n_x = int(rng.integers(6, 13))
    span = float(2.0 ** rng.uniform(5, 11))
    x = np.geomspace(100.0, 100.0 * span, n_x)
    n_seeds = int(rng.integers(seeds[0], seeds[1] + 1))
    scatter = float(rng.uniform(0.05, 0.15))
    return x, n_seeds, scatter


def _observe(
    rng: np.random.Generator, x: np.ndarray, curve: np.ndarray, n_seeds: int, scatter: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs = np.tile(x, n_seeds)
    ys = np.tile(curve, n_seeds) * np.exp(scatter * rng.standard_normal(xs.size))
    seeds = np.repeat(np.arange(n_seeds), x.size)
    return xs, ys, seeds


def pure_trial(rng: np.random.Generator, seeds: tuple[int, int]) -> tuple[str, bool]:
    """(chosen form, interval holds beta) on one pure power law."""
    x, n_seeds, scatter = _design(rng, seeds)
    beta = float(rng.uniform(0.2, 2.0))
    xs, ys, sd = _observe(rng, x, 3.0 * x**-beta, n_seeds, scatter)
    try:
        fit = fit_scaling(xs, ys, sd, bootstrap=200, seed=0)
    except FitError:
        return "error", False
    lo, hi = fit.exponent_ci
    return fit.form, fit.form == "power_law" and lo <= beta <= hi


def broken_trial(rng: np.random.Generator) -> tuple[bool, bool]:
    """(broken form chosen, and its break within a factor 1.5 of the truth)."""
    x, n_seeds, scatter = _design(rng, (3, 20))
    b1 = float(rng.uniform(0.3, 1.0))
    ratio = float(rng.uniform(1.5, 3.0))
    b2 = b1 * ratio if rng.random() < 0.5 else b1 / ratio
    lx = np.log(x)
    t = float(rng.uniform(lx[0] + 0.3 * (lx[-1] - lx[0]), lx[0] + 0.7 * (lx[-1] - lx[0])))
    log_curve = -b1 * np.minimum(lx, t) - b2 * np.maximum(lx - t, 0.0)
    xs, ys, sd = _observe(rng, x, np.exp(log_curve), n_seeds, scatter)
    try:
        fit = fit_scaling(xs, ys, sd, bootstrap=200, seed=0)
    except FitError:
        return False, False
    if fit.form != "broken_power_law" or not fit.breaks:
        return False, False
    nearest = min(fit.breaks, key=lambda b: abs(math.log(b) - t))
    return True, abs(math.log(nearest) - t) <= math.log(1.5)


class SECurve:
    """One group of an example at its small scale: x values, seeds, the state-evolution
    risk there, and what the state evolution says of the form (truth of the trials)."""

    def __init__(self, label: str, cfgs: list[RunConfig], x: str) -> None:
        self.label = label
        self.n_seeds = len({c.seed for c in cfgs})
        cells: dict[float, RunConfig] = {}
        for c in cfgs:
            xv = axis_value(_point(c), x)
            if xv is not None:
                cells.setdefault(xv, c)
        self.x = np.array(sorted(cells))
        self.r = np.array([_se_risk(cells[v]) for v in self.x])
        # the truth: does the state evolution flatten (risk at 100 x the largest x)?
        with_d = len({c.n / c.d for c in cfgs}) == 1 and len({c.d for c in cfgs}) > 1
        far = _far(cells[self.x[-1]], 100.0, with_d)
        self.plateau = _se_risk(far) >= 0.5 * self.r[-1]
        dense = np.geomspace(self.x[0], self.x[-1], 9)
        slopes = -np.diff(np.interp(np.log(dense), np.log(self.x), np.log(self.r)))
        slopes /= np.diff(np.log(dense))
        self.slope_range = float(slopes.max() - slopes.min()) if slopes.size else 0.0

    @property
    def has_break(self) -> bool:
        return self.slope_range >= 0.2


def _point(c: RunConfig) -> RunPoint:
    return RunPoint(
        run_id=0, status="succeeded", converged=True, model=c.model, d=c.d, n=c.n,
        weight_decay=c.weight_decay, gamma=c.teacher.gamma, noise=c.teacher.noise,
        seed=c.seed, link_power=c.link_power, rank=c.teacher.rank, excess_risk=None,
    )  # fmt: skip


def _se_risk(c: RunConfig) -> float:
    return predict(
        c.model, c.d, c.n, c.weight_decay, c.teacher.gamma, c.teacher.noise, c.teacher.rank
    ).excess_risk


def _far(c: RunConfig, factor: float, with_d: bool) -> RunConfig:
    """The same path with factor x more samples (the link applied again; d grown with n
    where the sweep keeps n/d fixed)."""
    lam = c.weight_decay * factor**c.link_power if c.link_power is not None else c.weight_decay
    d = int(c.d * factor) if with_d else c.d
    return c.model_copy(update={"n": int(c.n * factor), "d": d, "weight_decay": lam})


def example_curves() -> list[SECurve]:
    """Every group of every phase / curve example at its small scale."""
    out = []
    for ex in all_examples():
        rule = ex.verdict
        if rule.kind not in ("phase", "curve"):
            continue
        for spec in ex.scales["small"]:
            cfgs = list(expand(spec))
            by = ["link_power"] if rule.kind == "phase" else (rule.by or [])
            groups: dict[tuple[float | None, ...], list[RunConfig]] = {}
            for c in cfgs:
                key = tuple(axis_value(_point(c), a) for a in by)
                groups.setdefault(key, []).append(c)
            for key, members in sorted(groups.items(), key=lambda kv: str(kv[0])):
                label = f"{ex.name}: {spec.name} {dict(zip(by, key, strict=True))}"
                out.append(SECurve(label, members, rule.x))
    return out


def se_trial(rng: np.random.Generator, curve: SECurve) -> tuple[str, bool, bool | None]:
    """(form, false form, interval holds the SE exponent of that form) on one noisy draw."""
    scatter = float(rng.uniform(0.05, 0.15))
    xs, ys, sd = _observe(rng, curve.x, curve.r, curve.n_seeds, scatter)
    try:
        fit = fit_scaling(xs, ys, sd, bootstrap=200, seed=0)
    except FitError:
        return "error", False, None
    false = (fit.form == "plateau" and not curve.plateau) or (
        fit.form == "broken_power_law" and not curve.has_break
    )
    truth = same_form_exponent(fit.form, len(fit.breaks), dict(zip(curve.x, curve.r, strict=True)))
    if truth is None:
        return fit.form, false, None
    lo, hi = fit.exponent_ci
    return fit.form, false, lo <= truth <= hi


def query_latency() -> dict[str, float]:
    """The uncached exponents query's p50/p95 from bench_queries (10,000 runs, PostgreSQL)."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_queries.py"), "--json"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"bench_queries failed: {out.stderr[-2000:]}")
    data: dict[str, float] = json.loads(lines[-1])
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-query", action="store_true")
    ap.add_argument("--se-trials", type=int, default=20, help="noisy draws per example group")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    out: dict[str, Any] = {"trials": args.trials}

    forms: dict[str, int] = {}
    for _ in range(args.trials):
        form, _ = pure_trial(rng, (3, 20))
        forms[form] = forms.get(form, 0) + 1
    false = sum(v for k, v in forms.items() if k not in ("power_law",))
    out["false_break_rate"] = false / args.trials
    print(f"pure power laws ({args.trials}): forms {forms}; false_break_rate ="
          f" {out['false_break_rate']:.3f} (target <= 0.05)")  # fmt: skip

    detected = located = 0
    for _ in range(args.trials):
        d, loc = broken_trial(rng)
        detected += d
        located += loc
    out["detection_rate"] = located / args.trials
    out["broken_chosen_rate"] = detected / args.trials
    print(f"broken power laws ({args.trials}): broken chosen {detected}, break within 1.5x"
          f" {located}: detection_rate = {out['detection_rate']:.3f} (target >= 0.80)")  # fmt: skip

    for key, seeds, what in (
        ("coverage", (3, 5), "3-5 seeds"),
        ("coverage_many_seeds", (30, 100), "30-100 seeds, cluster-robust interval"),
    ):
        covered = sum(pure_trial(rng, seeds)[1] for _ in range(args.trials))
        out[key] = covered / args.trials
        print(f"{what} ({args.trials}): interval holds beta {covered}: coverage ="
              f" {out[key]:.3f} (target >= 0.93)")  # fmt: skip

    curves = example_curves()
    per = max(1, args.se_trials)
    tally: dict[str, int] = {}
    false_plateau = false_break = covered = judged = 0
    for curve in curves:
        for _ in range(per):
            form, false, holds = se_trial(rng, curve)
            tally[form] = tally.get(form, 0) + 1
            false_plateau += false and form == "plateau"
            false_break += false and form == "broken_power_law"
            if holds is not None:
                judged += 1
                covered += holds
    total = per * len(curves)
    out["se_curves"] = len(curves)
    out["se_false_plateau_rate"] = false_plateau / total
    out["se_false_break_rate"] = false_break / total
    out["se_coverage"] = covered / max(judged, 1)
    print(f"examples' state-evolution curves ({len(curves)} groups x {per}): forms {tally};"
          f" se_false_plateau_rate = {out['se_false_plateau_rate']:.3f},"
          f" se_false_break_rate = {out['se_false_break_rate']:.3f} (targets <= 0.05),"
          f" se_coverage = {out['se_coverage']:.3f} of {judged} (target >= 0.93)")  # fmt: skip
    out["fit_seconds"] = time.perf_counter() - started

    if not args.no_query:
        lat = query_latency()
        out["query_p50_ms"] = lat["uncached_p50_ms"]
        out["query_p95_ms"] = lat["uncached_p95_ms"]
        print(f"uncached exponents query, 10,000 runs on PostgreSQL: p50 {out['query_p50_ms']:.0f}"
              f" ms, p95 {out['query_p95_ms']:.0f} ms (target p95 < 300 ms)")  # fmt: skip
    print(json.dumps(out))


if __name__ == "__main__":
    main()
