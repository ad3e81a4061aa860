"""Query latency on a synthetic 10,000-run sweep on PostgreSQL (printed, never asserted).

A sweep of 10,000 diagonal runs (10 sample sizes x 10 weight decays x 100 seeds) is stored
with synthetic results R = C(lambda) n^-beta(lambda) * noise, then
GET /v1/sweeps/{id}/exponents?x=n&by=weight_decay is timed through the real FastAPI app
(in-process transport): p50 and p95 of the cached answer (the interactive case, target
p95 < 300 ms), and of the uncached one (cache cleared before every request: SQL read of the
indexed columns + 10 fits with 200-replicate bootstraps).

Run: ``.venv/bin/python bench/bench_queries.py [--url postgresql+psycopg://...] [--quick]
[--profile]`` (``--profile``: cProfile of the work of one uncached request -- SQL read and fits --
in the main thread, top 25 by cumulative time).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import secrets
import time
import warnings

import numpy as np
import psycopg
from psycopg import sql

from api.main import create_app
from cli.runtime import freeze_startup_heap
from service.analysis.cache import CACHE
from service.analysis.exponents import sweep_exponents
from service.config import Settings
from service.results import RunMetrics, RunResult
from service.spec import SweepSpec
from service.storage import make_store, upgrade_head
from service.storage.base import iter_runs

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

MAINTENANCE = "postgresql://postgres@127.0.0.1:5432/postgres"


def _result(config_hash: str, risk: float) -> RunResult:
    metrics = RunMetrics(
        excess_risk=risk,
        train_loss=risk,
        objective=risk,
        grad_norm=1e-9,
        converged=True,
        steps=10,
        stop_reason="duality_gap",
        wall_time_s=0.01,
        device="cpu",
        duality_gap=1e-9,
        support=10,
        penalty_norm=1.0,
    )
    return RunResult(config_hash=config_hash, status="succeeded", metrics=metrics)


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p95 in milliseconds."""
    arr = np.array(samples) * 1e3
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 95))


def main() -> None:
    """Build the sweep, time the queries, print p50/p95."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--maintenance-url", default=MAINTENANCE)
    ap.add_argument("--quick", action="store_true", help="1,000 runs, fewer repetitions")
    ap.add_argument("--profile", action="store_true", help="cProfile one uncached request")
    ap.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    args = ap.parse_args()
    seeds = 10 if args.quick else 100
    dbname = f"scalesweep_bench_{secrets.token_hex(4)}"
    with psycopg.connect(args.maintenance_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{dbname}"
    try:
        upgrade_head(url)
        store = make_store(url)
        spec = SweepSpec.model_validate(
            {
                "name": "bench",
                "model": "diagonal",
                "grid": {
                    "d": [100],
                    "n": {"geomspace": [100, 10000], "num": 10},
                    "weight_decay": {"geomspace": [1e-3, 1e-1], "num": 10},
                    "seed": list(range(seeds)),
                },
            }
        )
        t0 = time.perf_counter()
        sweep = store.create_sweep(spec, max_runs=20_000)
        t_insert = time.perf_counter() - t0
        rng = np.random.default_rng(0)
        runs = list(iter_runs(store, sweep.id))
        results = []
        for r in runs:
            c = r.config
            beta = 0.3 + 5 * c.weight_decay
            risk = 2.0 * c.n**-beta * float(np.exp(rng.normal(0, 0.1)))
            results.append((r.id, _result(r.config_hash, risk)))
        t0 = time.perf_counter()
        for i in range(0, len(results), 1000):
            store.record_results(results[i : i + 1000])
        t_record = time.perf_counter() - t0
        # a server holds none of the 10,000 records built above: drop them, so that the
        # collector's full passes during the requests scan what a server's heap holds
        n_runs = len(runs)
        del runs, results
        settings = Settings(_env_file=None, database_url=url)  # type: ignore[call-arg]
        app = create_app(settings, store)
        path = f"/v1/sweeps/{sweep.id}/exponents"
        params = {"x": "n", "by": "weight_decay"}
        with TestClient(app) as client:
            freeze_startup_heap()  # as `scalesweep serve` does before it serves
            cold: list[float] = []
            for _ in range(3 if args.quick else 10):
                CACHE.clear()
                t = time.perf_counter()
                resp = client.get(path, params=params)
                cold.append(time.perf_counter() - t)
                assert resp.status_code == 200, resp.text
            warm: list[float] = []
            for _ in range(50 if args.quick else 200):
                t = time.perf_counter()
                resp = client.get(path, params=params)
                warm.append(time.perf_counter() - t)
            t = time.perf_counter()
            points = store.run_points(sweep.id)
            t_points = time.perf_counter() - t
            if args.profile:  # the work of an uncached request, in this thread
                prof = cProfile.Profile()
                prof.enable()
                sweep_exponents(sweep.id, store.run_points(sweep.id), x="n", by=["weight_decay"])
                prof.disable()
                pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
        report = resp.json()
        print(f"sweep of {n_runs} runs on PostgreSQL ({len(report['groups'])} groups)")
        print(f"  insert the sweep: {t_insert:.2f} s; record {n_runs} results: {t_record:.2f} s")
        print(f"  SQL read of the fitting columns: {t_points * 1e3:.0f} ms, {len(points)} rows")
        p50, p95 = percentiles(warm)
        print(
            f"  exponents, cached answer: p50 {p50:.1f} ms, p95 {p95:.1f} ms ({len(warm)} requests)"
        )
        c50, c95 = percentiles(cold)
        print(
            f"  exponents, cache cleared: p50 {c50:.0f} ms, p95 {c95:.0f} ms ({len(cold)} requests)"
        )
        g = report["groups"][0]
        lam = g["group"]["weight_decay"]
        lo, hi = g["exponent_ci"]
        print(
            f"  e.g. lambda={lam:.3g}: exponent {g['exponent']:.3f} [{lo:.3f}, {hi:.3f}] "
            f"(truth {0.3 + 5 * lam:.3f}), form {g['form']}"
        )
        store.close()
        if args.json:
            figures = {"runs": n_runs, "cached_p50_ms": p50, "cached_p95_ms": p95,
                       "uncached_p50_ms": c50, "uncached_p95_ms": c95}  # fmt: skip
            print(json.dumps(figures))
    finally:
        with psycopg.connect(args.maintenance_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )


if __name__ == "__main__":
    main()
