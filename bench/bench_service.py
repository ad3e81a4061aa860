"""Service benchmark: scalesweep end-to-end throughput vs Ray Tune, measured in one run.

1. scalesweep: a sweep of 2,000 tiny runs (diagonal net, d = 10, n = 100, ``gd`` capped at
   ``training.max_steps`` = 5, spectrum measured with its bootstrap tail fit) is POSTed over
   HTTP to a real server (uvicorn on 127.0.0.1, free port, in a thread of this process) with
   the real runner thread, a real local Ray (``ray.init(num_cpus=2)``) and a SQLite file
   database in a temporary directory; timed from the POST until GET /v1/sweeps/{id} says the
   sweep is finished. Runs stopped by their step budget are ``failed`` ("did not converge")
   by design; every run is still trained, certified, measured and stored, which is checked
   (and the status counts printed) after the clock stops.
2. Ray Tune: ``ray.tune.Tuner`` with its default settings (only ``storage_path`` moved to the
   temporary directory, and ``verbose=0``: no progress tables) runs a function trainable that
   calls the same ``workers.tasks.run_one`` on the first 100 of those configurations
   (``tune.grid_search`` over an index), on a fresh local Ray (``ray.init(num_cpus=2)``),
   timed around ``Tuner.fit()``.
3. The ratio of the two throughputs.

Both parts start from a cold Ray (its workers import torch once, about 2 s each), and
``ray.init`` itself is outside both clocks. One BLAS thread per process, as in the tests.
``--profile`` also prints the runner's time in its store and executor calls.

Run: ``.venv/bin/python bench/bench_service.py`` (``--quick``: 200 runs / 20 trials).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

from api.main import create_app
from cli.runtime import serving
from service.client import Client
from service.config import Settings
from service.orchestration.runner import Runner
from service.records import SweepRecord
from service.spec import RunConfig, SweepSpec, expand
from service.storage import make_store, upgrade_head
from service.storage.base import iter_runs
from workers.executor import RayExecutor
from workers.tasks import run_batch, run_one

NUM_CPUS = 2
MAX_STEPS = 5


def sweep_spec(n_runs: int) -> dict[str, Any]:
    """A diagonal-net sweep of ``n_runs`` tiny runs: 20 weight decays x n_runs/20 seeds."""
    n_decays = 20
    if n_runs % n_decays:
        raise ValueError(f"n_runs must be a multiple of {n_decays}, got {n_runs}")
    return {
        "name": f"bench: {n_runs} tiny diagonal runs",
        "model": "diagonal",
        "teacher": {"gamma": 1.0, "noise": 0.01},
        "grid": {
            "d": [10],
            "n": [100],
            "weight_decay": {"geomspace": [1e-3, 1e-1], "num": n_decays},
            "seed": list(range(n_runs // n_decays)),
        },
        "training": {"optimizer": "gd", "max_steps": MAX_STEPS},
        "measure": {"spectrum": True},
    }


class Timers:
    """Wall time and calls spent in selected methods of the store and executor (``--profile``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def wrap(self, obj: Any, name: str) -> None:
        inner = getattr(obj, name)
        key = f"{type(obj).__name__}.{name}"

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - t
                self.calls[key] = self.calls.get(key, 0) + 1

        setattr(obj, name, timed)

    def report(self) -> str:
        rows = sorted(self.seconds.items(), key=lambda kv: -kv[1])
        return "\n".join(f"  {k:<32} {v:8.3f} s  {self.calls[k]:6d} calls" for k, v in rows)


RUNNER_STORE_METHODS = (
    "acquire_runner_lease",
    "claim_runs",
    "renew_leases",
    "record_results",
    "requeue_expired",
    "cancelled_run_ids",
)


def bench_scalesweep(
    spec: dict[str, Any], workdir: Path, poll_s: float = 0.05, timers: Timers | None = None
) -> dict[str, Any]:
    """Submit ``spec`` over HTTP to a real server + runner + Ray; time it until it finishes."""
    url = f"sqlite:///{workdir / 'bench.db'}"
    settings = Settings(database_url=url, ray_address=None)
    upgrade_head(url)
    store = make_store(url)
    ray.init(address="local", num_cpus=NUM_CPUS, include_dashboard=False, log_to_driver=False)
    executor = RayExecutor(None, skip_init=True)
    if timers is not None:
        for name in RUNNER_STORE_METHODS:
            timers.wrap(store, name)
        for name in ("submit", "completed"):
            timers.wrap(executor, name)
    runner = Runner(store, executor, run_batch, settings=settings)
    stop = threading.Event()
    runner_thread = threading.Thread(target=runner.run_forever, args=(stop,), daemon=True)
    runner_thread.start()
    app = create_app(settings, store)
    try:
        with serving(app) as base, Client(base, token="unused", timeout=120.0) as client:
            start = time.perf_counter()
            submitted = client.submit(spec)
            submit_s = time.perf_counter() - start
            final: SweepRecord = client.get_sweep(submitted.id)
            timeline: list[tuple[float, int]] = []
            while final.status in ("queued", "running"):
                time.sleep(poll_s)
                final = client.get_sweep(submitted.id)
                done = final.counts["succeeded"] + final.counts["failed"]
                if not timeline or timeline[-1][1] != done:
                    timeline.append((time.perf_counter() - start, done))
            elapsed = time.perf_counter() - start
    finally:
        stop.set()
        runner_thread.join(timeout=60)
        executor.close()
    # after the clock: was every run computed and stored?
    records = list(iter_runs(store, submitted.id))
    with_metrics = sum(1 for r in records if r.metrics is not None)
    sample = [r.id for r in records[:: max(1, len(records) // 20)]]
    with_spectrum = sum(1 for run_id in sample if store.get_spectra(run_id))
    store.close()
    ray.shutdown()
    return {
        "n_runs": submitted.n_runs,
        "elapsed_s": elapsed,
        "submit_s": submit_s,
        "counts": dict(final.counts),
        "status": final.status,
        "with_metrics": with_metrics,
        "spectrum_sample": (with_spectrum, len(sample)),
        "timeline": timeline,
        "errors": sorted({(r.error or "").split(" after ")[0] for r in records if r.error}),
    }


def _tune_trainable(cfgs: list[RunConfig]) -> Callable[[dict[str, Any]], None]:
    from ray import tune

    def trainable(config: dict[str, Any]) -> None:
        res = run_one(cfgs[int(config["index"])])
        metrics = res.metrics
        tune.report(
            {
                "ok": res.config_hash == cfgs[int(config["index"])].config_hash(),
                "status": res.status,
                "excess_risk": metrics.excess_risk if metrics is not None else float("nan"),
                "spectra": len(res.spectra),
            }
        )

    return trainable


def bench_tune(cfgs: list[RunConfig], workdir: Path) -> dict[str, Any]:
    """The same run_one on ``cfgs`` as Ray Tune trials (default Tuner settings)."""
    from ray import tune

    ray.init(address="local", num_cpus=NUM_CPUS, include_dashboard=False, log_to_driver=False)
    try:
        tuner = tune.Tuner(
            _tune_trainable(cfgs),
            param_space={"index": tune.grid_search(list(range(len(cfgs))))},
            run_config=tune.RunConfig(storage_path=str(workdir / "tune"), name="bench", verbose=0),
        )
        start = time.perf_counter()
        results = tuner.fit()
        elapsed = time.perf_counter() - start
        errors = len(results.errors)
        ok = 0
        for i in range(len(results)):
            metrics = results[i].metrics or {}
            ok += int(bool(metrics.get("ok")) and int(metrics.get("spectra", 0)) > 0)
    finally:
        ray.shutdown()
    return {"n_trials": len(cfgs), "elapsed_s": elapsed, "errors": errors, "ok": ok}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 runs / 20 trials")
    parser.add_argument("--runs", type=int, help="scalesweep runs (multiple of 20)")
    parser.add_argument("--trials", type=int, help="Ray Tune trials (<= runs)")
    parser.add_argument("--skip-tune", action="store_true", help="measure scalesweep only")
    parser.add_argument(
        "--profile", action="store_true", help="time the runner's store and executor calls"
    )
    args = parser.parse_args(argv)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")  # before ray.init: the Ray workers inherit it
    n_runs = args.runs or (200 if args.quick else 2000)
    n_trials = min(n_runs, args.trials or (20 if args.quick else 100))
    logging.basicConfig(level=logging.WARNING)
    spec = sweep_spec(n_runs)
    cfgs = list(expand(SweepSpec.model_validate(spec)))[:n_trials]

    print(
        f"workload: {n_runs} runs, diagonal net d=10 n=100, optimizer gd, max_steps={MAX_STEPS}, "
        "float64, spectrum + 200-replicate bootstrap tail fit, duality-gap certificate; "
        f"Ray num_cpus={NUM_CPUS}, OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}, "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="scalesweep-bench-") as tmp:
        timers = Timers() if args.profile else None
        ss = bench_scalesweep(spec, Path(tmp), timers=timers)
        ss_rate = ss["n_runs"] / ss["elapsed_s"]
        stored = ss["with_metrics"] == ss["n_runs"]
        print(
            f"scalesweep: {ss['n_runs']} runs in {ss['elapsed_s']:.2f} s "
            f"(POST {ss['submit_s'] * 1e3:.0f} ms) = {ss_rate:.1f} runs/s; "
            f"sweep {ss['status']}, counts {ss['counts']}; "
            f"{ss['with_metrics']}/{ss['n_runs']} stored with metrics, "
            f"spectra on {ss['spectrum_sample'][0]}/{ss['spectrum_sample'][1]} sampled runs"
            + ("" if stored else "  <-- NOT EVERY RUN WAS STORED"),
            flush=True,
        )
        if ss["errors"]:
            print(f"  run errors (prefixes): {ss['errors']}")
        if timers is not None:
            print("runner time in store/executor calls (includes waits):\n" + timers.report())
            marks = " ".join(f"{t:.1f}s:{n}" for t, n in ss["timeline"])
            print(f"runs finished over time: {marks}")
        if args.skip_tune:
            return 0 if stored else 1
        tu = bench_tune(cfgs, Path(tmp))
    tu_rate = tu["n_trials"] / tu["elapsed_s"]
    print(
        f"Ray Tune:   {tu['n_trials']} trials in {tu['elapsed_s']:.2f} s = {tu_rate:.2f} "
        f"trials/s ({tu['ok']} ok, {tu['errors']} errored)",
        flush=True,
    )
    print(f"ratio: scalesweep / Ray Tune throughput = {ss_rate / tu_rate:.1f}x")
    if n_runs >= 2000:
        print(f"target: scalesweep >= 100 runs/s: {'met' if ss_rate >= 100 else 'NOT met'}")
    else:  # a short sweep is dominated by the workers' cold start (torch import, about 2 s)
        print("target (>= 100 runs/s) applies to the 2,000-run sweep, not to --quick")
    return 0 if stored and tu["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
