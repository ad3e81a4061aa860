"""Fuzz the HTTP API with schemathesis against its own OpenAPI document.

A real uvicorn server on 127.0.0.1 (a free port) serves ``create_app`` on a fresh SQLite
database seeded with finished sweeps (hand-built results: power laws, spectra with fits, a
failed run, a linked sweep for the phase diagram, a cancelled sweep), so GET routes answer
real data. Schemathesis loads ``/openapi.json`` from the server and generates requests for
every operation, valid (positive) and invalid (negative) ones; about half of the requests
to routes with a ``{sweep_id}`` / ``{run_id}`` use ids that exist. Every response is checked
with: no 5xx, documented status code, content type, headers, and the response schema.

The event stream is fuzzed first, while every sweep has ended (the stream of a running
sweep stays open by design); the other operations follow, POSTs included.

Run: ``.venv/bin/python bench/fuzz_api.py [--requests 1000] [--seed 0]``; prints the number
of requests, the 5xx count and the schema violations, and exits 1 when there is any.
``tests/api/test_fuzz.py`` runs the same harness with a small budget.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import shutil
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.main import create_app
from cli.runtime import serving
from service.config import Settings
from service.results import RankFit, RunMetrics, RunResult, Spectrum, TailFit
from service.spec import SweepSpec
from service.storage import Store, make_store, upgrade_head

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EVENTS_PATH = "/v1/sweeps/{sweep_id}/events"
MAX_RUNS = 200
REQUEST_TIMEOUT_S = 20.0


# --------------------------------------------------------------------------------------
# Seed data


def _metrics(risk: float, wall_time_s: float) -> RunMetrics:
    return RunMetrics(
        excess_risk=risk,
        train_loss=0.01,
        objective=0.02,
        grad_norm=1e-9,
        converged=True,
        steps=10,
        stop_reason="gradient",
        wall_time_s=wall_time_s,
        device="cpu",
        duality_gap=1e-10,
        support=3,
        penalty_norm=1.0,
    )


def _spectrum() -> Spectrum:
    values = [0.5**k for k in range(12)]
    tail = TailFit(
        alpha=2.0, xmin=0.01, n_tail=8, ks_distance=0.05, sigma=0.2,
        alpha_ci=(1.0, 3.0), n_bootstrap=50,
    )  # fmt: skip
    ranks = RankFit(exponent=1.0, prefactor=1.0, n_points=6, r2=0.99)
    return Spectrum(kind="abs_theta", values=values, tail_fit=tail, rank_fit=ranks)


def _finish(store: Store, sweep_id: int, *, fail_every: int = 0) -> None:
    """Record a power-law result R = 5 n^-1 (1 + seed / 10) for every run of the sweep."""
    runs = store.list_runs(sweep_id, limit=1000).items
    results: list[tuple[int, RunResult]] = []
    for i, run in enumerate(runs):
        h = run.config_hash
        if fail_every and i % fail_every == fail_every - 1:
            results.append((run.id, RunResult(config_hash=h, status="failed", error="diverged")))
            continue
        risk = 5.0 / run.config.n * (1 + run.config.seed / 10)
        metrics = _metrics(risk, 0.01 * (1 + i))
        spectra = [_spectrum()] if i % 2 == 0 else []
        results.append(
            (run.id, RunResult(config_hash=h, status="succeeded", metrics=metrics, spectra=spectra))
        )
    store.record_results(results)


SEED_SPECS: list[dict[str, Any]] = [
    {
        "name": "fuzz: diagonal",
        "model": "diagonal",
        "teacher": {"gamma": 1.0, "noise": 0.01},
        "grid": {"d": [8], "n": [16, 32, 64], "weight_decay": [0.01, 0.1], "seed": [0, 1]},
        "training": {"optimizer": "convex", "max_steps": 500},
    },
    {
        "name": "fuzz: quadratic",
        "model": "quadratic",
        "teacher": {"gamma": 1.0, "noise": 0.01},
        "grid": {"d": [6], "alpha": [0.5, 1, 2], "weight_decay": [0.01], "seed": [0, 1]},
        "training": {"optimizer": "convex", "max_steps": 500},
    },
    {
        "name": "fuzz: linked",
        "model": "diagonal",
        "teacher": {"gamma": 1.0, "noise": 0.01},
        "grid": {"d": [8], "n": [16, 32, 64], "seed": [0, 1]},
        "link": {"weight_decay": {"coef": 0.5, "of": "n", "power": [-1.0, -0.5]}},
        "training": {"optimizer": "convex", "max_steps": 500},
    },
    {
        "name": "fuzz: cancelled",
        "model": "diagonal",
        "grid": {"d": [4], "n": [8, 16], "weight_decay": [0.1], "seed": [0]},
    },
]


EXTEND_GRIDS: list[dict[str, Any]] = [
    {"grid": {"seed": [2, 3]}},
    {"grid": {"n": [128]}},
    {"grid": {"gamma": [1.5]}},
    {"grid": {"noise": [0.0, 0.1]}},
]


DELETABLE = 8
"""Extra sweeps seeded for DELETE /v1/sweeps/{id} to remove."""


@dataclass(frozen=True)
class Seeded:
    """Ids that exist in the seeded store."""

    sweep_ids: list[int]
    run_ids: list[int]
    deletable_ids: list[int]
    """Sweeps DELETE may remove (the others stay, so every other route keeps real data)."""


def seed_store(store: Store) -> Seeded:
    """Three finished sweeps (one with failed runs, one linked) and a cancelled one."""
    sweep_ids: list[int] = []
    for i, body in enumerate(SEED_SPECS):
        sid = store.create_sweep(SweepSpec.model_validate(body), max_runs=MAX_RUNS).id
        sweep_ids.append(sid)
        if body["name"].endswith("cancelled"):
            store.cancel_sweep(sid)
        else:
            _finish(store, sid, fail_every=5 if i == 1 else 0)
    run_ids = [r.id for sid in sweep_ids for r in store.list_runs(sid, limit=1000).items]
    deletable = [
        store.create_sweep(
            SweepSpec.model_validate({**SEED_SPECS[0], "name": f"deletable {k}"}), max_runs=MAX_RUNS
        ).id
        for k in range(DELETABLE)
    ]
    return Seeded(sweep_ids, run_ids, deletable)


# --------------------------------------------------------------------------------------
# The server


@contextlib.contextmanager
def live_server(settings: Settings, store: Store) -> Iterator[str]:
    """create_app(settings, store) under uvicorn on 127.0.0.1 in a thread; yields its URL."""
    with serving(create_app(settings, store, events_poll_s=0.01)) as url:
        yield url


@contextlib.contextmanager
def seeded_server() -> Iterator[tuple[str, Seeded]]:
    """A migrated temporary SQLite database, seeded, served; removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="scalesweep-fuzz-"))
    try:
        url = f"sqlite:///{tmp / 'fuzz.db'}"
        upgrade_head(url)
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=url,
            max_runs_per_sweep=MAX_RUNS,
            submissions_per_minute=1_000_000,  # POSTs reach validation, not only the 429
        )
        store = make_store(url)
        try:
            seeded = seed_store(store)
            with live_server(settings, store) as base_url:
                yield base_url, seeded
        finally:
            store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------
# Fuzzing


@dataclass
class Report:
    """What a fuzzing session saw."""

    requests: int = 0
    server_errors: int = 0
    violations: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    op_statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    per_operation: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def summary(self) -> str:
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
        ops = "\n".join(
            f"  {v:5d}  {k}  ("
            + ", ".join(f"{c}: {m}" for (o, c), m in sorted(self.op_statuses.items()) if o == k)
            + ")"
            for k, v in sorted(self.per_operation.items())
        )
        lines = [
            f"requests made:     {self.requests}",
            f"5xx responses:     {self.server_errors}",
            f"schema violations: {len(self.violations)}",
            f"status codes:      {codes}",
            f"time:              {self.seconds:.1f} s "
            f"({self.requests / max(self.seconds, 1e-9):.0f} requests/s)",
            "per operation:",
            ops,
        ]
        lines += [f"VIOLATION: {v}" for v in self.violations[:50]]
        return "\n".join(lines)


def _strategy(op: Any, mode: schemathesis.GenerationMode, seeded: Seeded) -> st.SearchStrategy[Any]:
    """Cases for one operation; half of them with an id that exists, where the path has one."""
    strategies = [op.as_strategy(generation_mode=mode)]
    names = {p.name for p in op.path_parameters}
    if "sweep_id" in names:
        pool = seeded.deletable_ids if op.method.upper() == "DELETE" else seeded.sweep_ids
        ids = st.sampled_from(pool)
        strategies.append(
            ids.flatmap(lambda i: op.as_strategy(mode, path_parameters={"sweep_id": i}))
        )
    if op.method.upper() == "POST" and op.path == "/v1/sweeps":  # some valid specs: 201s too
        bodies = st.sampled_from(SEED_SPECS[:3])
        strategies.append(bodies.flatmap(lambda b: op.as_strategy(mode, body=b)))
    if op.path == "/v1/sweeps/{sweep_id}/extend":  # valid grids to add, on real sweeps
        grids = st.sampled_from(EXTEND_GRIDS)
        strategies.append(
            st.tuples(st.sampled_from(seeded.sweep_ids), grids).flatmap(
                lambda p: op.as_strategy(mode, path_parameters={"sweep_id": p[0]}, body=p[1])
            )
        )
    if "run_id" in names:
        ids = st.sampled_from(seeded.run_ids)
        strategies.append(
            ids.flatmap(lambda i: op.as_strategy(mode, path_parameters={"run_id": i}))
        )
    return st.one_of(*strategies)


def _fuzz_operation(
    op: Any,
    base_url: str,
    seeded: Seeded,
    report: Report,
    *,
    examples: int,
    seed: int,
    mode: schemathesis.GenerationMode,
) -> None:
    label = f"{op.method.upper()} {op.path}"

    def exercise(case: Any) -> None:
        response = case.call(base_url=base_url, timeout=REQUEST_TIMEOUT_S)
        report.requests += 1
        report.per_operation[label] += 1
        report.statuses[response.status_code] += 1
        report.op_statuses[label, response.status_code] += 1
        if response.status_code >= 500:
            report.server_errors += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (Exception, BaseExceptionGroup) as exc:  # Failure, or FailureGroup of several
            text = " ".join(str(exc).split())[:600]
            report.violations.append(
                f"{label} [{mode.value}] -> {response.status_code}: {text}\n"
                f"    reproduce: {case.as_curl_command()}"
            )

    test: Callable[[], None] = hypothesis.seed(seed)(
        hypothesis.settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            verbosity=hypothesis.Verbosity.quiet,
        )(given(_strategy(op, mode, seeded))(exercise))
    )
    try:
        test()
    except hypothesis.errors.Unsatisfiable:
        pass  # nothing to make invalid (e.g. GET /healthz has no parameters): no negative cases


def fuzz(base_url: str, seeded: Seeded, *, budget: int, seed: int = 0) -> Report:
    """About ``budget`` requests over every operation: the event stream first, then the rest.

    Each round gives every operation an equal share of what is left of the budget, per
    generation mode (hypothesis stops early on small input spaces, e.g. GET /healthz), until
    ``budget`` requests were made.
    """
    started = time.perf_counter()
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    ops: list[Any] = []
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            raise RuntimeError(f"the OpenAPI document has an invalid operation: {result.err()}")
        ops.append(result.ok())
    ops.sort(key=lambda op: (op.path != EVENTS_PATH, op.path, op.method))
    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
    report = Report()
    round_ = 0
    while report.requests < budget:
        # each round spreads what is left of the budget over every operation and mode
        per_op = max(1, math.ceil((budget - report.requests) / (2 * len(ops))))
        for op in ops:
            if op.path == EVENTS_PATH and round_ > 0:
                continue  # the first round's POSTs queued sweeps whose streams stay open
            for mode in modes:
                _fuzz_operation(
                    op, base_url, seeded, report, examples=per_op, seed=seed + round_, mode=mode
                )
        round_ += 1
    report.seconds = time.perf_counter() - started
    return report


def run(budget: int, seed: int = 0) -> Report:
    """Seed a database, serve it, fuzz it."""
    with seeded_server() as (base_url, seeded):
        return fuzz(base_url, seeded, budget=budget, seed=seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="at least this many")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = run(args.requests, args.seed)
    print(report.summary())
    return 1 if report.server_errors or report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
