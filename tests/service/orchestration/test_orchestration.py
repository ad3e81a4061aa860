"""The runner loop without Ray: InlineExecutor on a store, stand-in task functions."""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator
from typing import Any

import pytest
from factories import BatchOf
from factories import metrics as run_metrics

from service.config import Settings
from service.errors import StorageError, TaskRaised
from service.orchestration.executor import BatchFn, InlineExecutor, Outcome
from service.orchestration.packing import (
    PackingRules,
    data_bytes,
    estimate_batch_cost_s,
    estimate_cost_s,
    pack,
)
from service.orchestration.runner import Runner
from service.records import Claim
from service.results import RunMetrics, RunResult
from service.spec import Grid, RunConfig, SweepSpec, TrainingSpec
from service.storage import make_store, upgrade_head

# --------------------------------------------------------------------------------------
# fixtures and stand-ins


class Spy:
    """Forwards to a store and remembers the size of every record_results call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.record_calls: list[int] = []
        self.fail_writes = 0

    def record_results(self, results: list[tuple[int, RunResult]]) -> int:
        if self.fail_writes:
            self.fail_writes -= 1
            raise StorageError("database is locked")
        self.record_calls.append(len(results))
        return int(self.inner.record_results(results))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def store(store_url: str) -> Iterator[Spy]:
    """A migrated store on each backend (tests/conftest.py: SQLite, and PostgreSQL if up)."""
    upgrade_head(store_url)
    inner = make_store(store_url)
    try:
        yield Spy(inner)
    finally:
        inner.close()


def settings(**kw: Any) -> Settings:
    base: dict[str, Any] = {
        "database_url": "sqlite://",
        "max_inflight_runs": 4,
        "lease_s": 5.0,
        "max_attempts": 3,
        "runner_poll_s": 0.01,
        "pack_below_s": 1e-6,  # no packing unless a test asks for it
    }
    base.update(kw)
    return Settings(_env_file=None, **base)  # type: ignore[call-arg]


def make_runner(store: Any, executor: Any = None, task: Any = None, **kw: Any) -> Runner:
    opts: dict[str, Any] = {"check_every_s": 0.0}
    for key in ("run_batch", "runner_id", "runner_lease_s", "flush_every_s", "check_every_s"):
        if key in kw:
            opts[key] = kw.pop(key)
    run_batch = opts.pop("run_batch", None) or BatchOf(task or ok_task)
    return Runner(
        store,
        executor if executor is not None else InlineExecutor(),
        run_batch,
        settings=settings(**kw),
        **opts,
    )


def sweep(store: Any, seeds: int = 12, **training: Any) -> int:
    spec = SweepSpec(
        model="diagonal",
        grid=Grid(d=[5], n=[10], weight_decay=[0.1], seed=list(range(seeds))),
        training=TrainingSpec(optimizer="convex", **training),
    )
    return int(store.create_sweep(spec, max_runs=10_000).id)


def metrics(cfg: RunConfig) -> RunMetrics:
    return run_metrics(1.0 / (1 + cfg.seed), stop_reason="duality_gap", wall_time_s=0.001)


def ok_task(cfg: RunConfig) -> RunResult:
    """Succeeds, except seed 3 which fails (a training failure is a result, not an error)."""
    if cfg.seed == 3:
        return RunResult(config_hash=cfg.config_hash(), status="failed", error="diverged: nan loss")
    return RunResult(config_hash=cfg.config_hash(), status="succeeded", metrics=metrics(cfg))


def runs(store: Any, sweep_id: int) -> dict[int, Any]:
    return {r.config.seed: r for r in store.list_runs(sweep_id, limit=1000).items}


# --------------------------------------------------------------------------------------
# end to end on the inline executor


def test_every_run_ends_counts_right_and_results_are_written_in_batches(store: Spy) -> None:
    sid = sweep(store, seeds=24)
    runner = make_runner(store, flush_every_s=60.0)
    stats = runner.run_until_idle(timeout_s=30)

    rec = store.get_sweep(sid)
    assert rec.counts["succeeded"] == 23 and rec.counts["failed"] == 1
    assert rec.status == "succeeded"
    done = runs(store, sid)
    assert done[3].status == "failed" and "diverged: nan loss" in (done[3].error or "")
    assert done[0].metrics is not None and done[0].metrics.excess_risk == 1.0
    assert all(r.attempts == 1 for r in done.values())
    assert sum(store.record_calls) == 24 == stats.recorded
    assert max(store.record_calls) > 1 and len(store.record_calls) < 24
    assert stats.claimed == 24 and stats.lost == 0


def test_tiny_runs_are_packed_several_per_task(store: Spy) -> None:
    calls: list[int] = []

    def batch(cfgs: list[RunConfig]) -> list[RunResult]:
        calls.append(len(cfgs))
        return [ok_task(c) for c in cfgs]

    sid = sweep(store, seeds=40)
    runner = make_runner(store, run_batch=batch, pack_below_s=10.0, max_inflight_runs=8)
    stats = runner.run_until_idle(timeout_s=30)
    assert store.get_sweep(sid).counts["succeeded"] == 39
    assert stats.tasks_submitted < 40 and max(calls) > 1 and sum(calls) == stats.claimed == 40


@pytest.mark.slow
def test_two_thousand_tiny_runs_take_few_tasks_and_few_writes(store: Spy) -> None:
    sid = sweep(store, seeds=2000)
    runner = make_runner(store, run_batch=BatchOf(ok_task), pack_below_s=0.5)
    runner._max_tasks = 16
    stats = runner.run_until_idle(timeout_s=120)
    assert store.get_sweep(sid).counts["succeeded"] == 1999
    per_task = 0.5 // estimate_cost_s(runs(store, sid)[0].config)
    assert stats.tasks_submitted <= 2000 / per_task + 16
    assert stats.write_calls < 50 and max(store.record_calls) > 40


def test_pack_keeps_big_runs_alone_and_devices_apart() -> None:
    tiny = RunConfig(model="diagonal", d=20, n=30, weight_decay=0.1)
    big = RunConfig(model="quadratic", d=200, n=80_000, weight_decay=0.1)
    gpu = tiny.model_copy(update={"training": TrainingSpec(device="cuda")})
    assert estimate_cost_s(tiny) < 0.5 < estimate_cost_s(big)
    claims = [
        Claim(run_id=i, sweep_id=1, config=c, attempt=1)
        for i, c in enumerate([tiny, big, tiny, gpu, tiny, gpu])
    ]
    unbatched = PackingRules(pack_below_s=0.5, batching=False)
    tasks = [[c.run_id for c in t] for t in pack(claims, unbatched)]
    assert sorted(tasks) == [[0, 2, 4], [1], [3, 5]]
    many = [Claim(run_id=i, sweep_id=1, config=tiny, attempt=1) for i in range(100)]
    sizes = [len(t) for t in pack(many, unbatched)]
    assert sum(sizes) == 100 and max(sizes) * estimate_cost_s(tiny) <= 0.5 and len(sizes) < 50


def _claims(cfgs: list[RunConfig]) -> list[Claim]:
    return [Claim(run_id=i, sweep_id=1, config=c, attempt=1) for i, c in enumerate(cfgs)]


def test_batching_packs_the_runs_of_one_shape_together_and_spreads_them() -> None:
    base = RunConfig(
        model="quadratic", d=30, n=1800, weight_decay=0.01, training=TrainingSpec(optimizer="lbfgs")
    )
    sweep64 = [
        base.model_copy(update={"weight_decay": lam, "seed": seed})
        for lam in (0.01, 0.02, 0.03, 0.04)
        for seed in range(16)
    ]
    other = base.model_copy(update={"n": 900})
    convex = base.model_copy(update={"training": TrainingSpec(optimizer="convex")})
    claims = _claims([*sweep64, other, other, convex])
    rules = PackingRules(batch_max_runs=32)
    tasks = pack(claims, rules, spread=2)
    shapes = [{c.config.batch_shape() for c in t} for t in tasks]
    assert all(len(s) == 1 for s in shapes)  # one shape per task
    assert sorted(len(t) for t in tasks) == [1, 2, 32, 32]
    assert sorted(c.run_id for t in tasks for c in t) == list(range(67))  # each run once
    # each half of the sweep holds 8 seeds of every weight decay (runs of one weight decay
    # cost alike: contiguous halves would give one worker all the slow ones)
    for task in (t for t in tasks if len(t) == 32):
        lams = [c.config.weight_decay for c in task]
        assert sorted(lams.count(lam) for lam in set(lams)) == [8, 8, 8, 8]
    # many workers: the 64 runs spread over them, at least 4 runs a task
    assert sorted(len(t) for t in pack(claims[:64], rules, spread=16)) == [4] * 16
    assert len(pack(claims[:64], rules, spread=100)) == 16
    # batching off: every run of this size alone
    assert len(pack(claims, PackingRules(batching=False))) == 67


def test_a_batched_task_stays_within_its_cost_and_memory_budget() -> None:
    big = RunConfig(
        model="quadratic",
        d=100,
        n=20_000,
        weight_decay=0.01,
        training=TrainingSpec(optimizer="lbfgs"),
    )
    claims = _claims([big.model_copy(update={"seed": s}) for s in range(40)])
    rules = PackingRules(batch_budget_s=300.0, task_memory_bytes=200 * 2**20)
    tasks = pack(claims, rules)
    assert sum(len(t) for t in tasks) == 40
    for task in tasks:
        assert len(task) * data_bytes(big) <= rules.task_memory_bytes
        assert estimate_batch_cost_s(big, len(task)) <= rules.batch_budget_s
    assert max(len(t) for t in tasks) > 1


def test_gpu_runs_are_packed_by_the_gpus_memory_and_fill_it() -> None:
    """A GPU shape is packed by the GPU's numbers: 300 small d = 100 runs in two tasks of the
    GPU batch's 256-run limit (not spread over the cluster's CPUs); d = 400, n = 40,000 runs
    a few per task, within the GPU's memory; the share a task asks for is a fraction only
    while its batch fits in that share."""
    from service.resources import batch_bytes, gpu_share, run_bytes

    gpu = TrainingSpec(optimizer="lbfgs", dtype="float32", device="cuda")
    small = RunConfig(model="quadratic", d=100, n=10_000, weight_decay=0.01, training=gpu)
    rules = PackingRules(gpu_memory_bytes=80 * 2**30, gpu_batch_max_runs=256)
    tasks = pack(_claims([small.model_copy(update={"seed": s}) for s in range(300)]), rules,
                 spread=16)  # fmt: skip
    assert sorted(len(t) for t in tasks) == [150, 150]
    big = RunConfig(model="quadratic", d=400, n=40_000, weight_decay=0.01, training=gpu)
    assert 200 * 2**20 < run_bytes(big) < 250 * 2**20  # float64 + float32 data, W, history
    tight = PackingRules(gpu_memory_bytes=2 * 2**30)  # a 2 GiB GPU: a few runs per task
    tasks = pack(_claims([big.model_copy(update={"seed": s}) for s in range(40)]), tight)
    assert len(tasks) >= 5 and all(
        batch_bytes([c.config for c in t]) <= tight.gpu_memory_bytes for t in tasks
    )
    assert gpu_share([small] * 4, 0.5, 80 * 2**30) == 0.5  # a small batch shares the GPU
    assert gpu_share([big] * 300, 0.5, 80 * 2**30) == 1.0  # 63 GB: it takes all of it


def test_executor_errors_are_retried_then_the_run_fails_as_worker_lost(store: Spy) -> None:
    seen: dict[int, int] = {}

    def crashy(cfg: RunConfig) -> RunResult:
        seen[cfg.seed] = seen.get(cfg.seed, 0) + 1
        if cfg.seed == 0 or (cfg.seed == 1 and seen[1] == 1):
            raise RuntimeError("worker crashed")
        return ok_task(cfg)

    sid = sweep(store, seeds=6)
    stats = make_runner(store, task=crashy).run_until_idle(timeout_s=30)
    done = runs(store, sid)
    assert done[0].status == "failed" and done[0].attempts == 3
    assert "worker lost" in (done[0].error or "")
    assert done[1].status == "succeeded" and done[1].attempts == 2
    assert all(done[s].attempts == 1 for s in (2, 4, 5))
    assert seen == {0: 3, 1: 2, 2: 1, 3: 1, 4: 1, 5: 1}
    assert stats.lost == 4
    assert store.get_sweep(sid).counts == {
        "queued": 0,
        "running": 0,
        "succeeded": 4,
        "failed": 2,
        "cancelled": 0,
    }


class Twice(InlineExecutor):
    """Delivers every outcome twice: once at once, once more with the next task."""

    def __init__(self) -> None:
        super().__init__()
        self.echo: list[Outcome] = []

    def completed(self, timeout_s: float) -> list[Outcome]:
        out = super().completed(timeout_s)
        again, self.echo = self.echo, list(out)
        return out + out + again

    def inflight(self) -> int:
        return super().inflight() or len(self.echo)

    def close(self) -> None:
        self.echo.clear()


def test_duplicate_deliveries_are_stored_once(store: Spy) -> None:
    sid = sweep(store, seeds=10)
    stats = make_runner(store, executor=Twice()).run_until_idle(timeout_s=30)
    assert stats.recorded == 10 and stats.ignored == 20
    rec = store.get_sweep(sid)
    assert rec.counts["succeeded"] + rec.counts["failed"] == 10 == rec.n_runs
    assert all(r.attempts == 1 for r in runs(store, sid).values())


def test_a_result_for_another_configuration_is_not_stored(store: Spy) -> None:
    def wrong(cfg: RunConfig) -> RunResult:
        return RunResult(config_hash="0" * 64, status="succeeded", metrics=metrics(cfg))

    sid = sweep(store, seeds=2)
    make_runner(store, task=wrong).run_until_idle(timeout_s=30)
    assert all(
        r.status == "failed" and r.attempts == 3 and r.metrics is None
        for r in runs(store, sid).values()
    )


class Recording(InlineExecutor):
    def __init__(self) -> None:
        super().__init__()
        self.cancelled: list[int] = []

    def cancel(self, run_ids: Collection[int]) -> None:
        self.cancelled.extend(run_ids)
        super().cancel(run_ids)


def test_cancelling_a_sweep_stops_its_runs(store: Spy) -> None:
    sid = sweep(store, seeds=12)
    other = sweep(store, seeds=2)
    ex = Recording()
    runner = make_runner(store, executor=ex, max_inflight_runs=4, flush_every_s=0)
    runner.step()  # claims 4 runs of the first sweep, runs one
    store.cancel_sweep(sid)
    runner.run_until_idle(timeout_s=30)

    done = runs(store, sid)
    assert sum(r.status == "cancelled" for r in done.values()) >= 8
    assert done[0].status == "succeeded"
    assert sorted(ex.cancelled) == [done[1].id, done[2].id, done[3].id]
    assert all(r.status == "cancelled" for s, r in done.items() if s > 0)
    assert store.get_sweep(sid).status == "cancelled"
    assert store.get_sweep(other).counts["succeeded"] == 2


def test_a_failed_write_is_retried_and_nothing_is_lost(store: Spy) -> None:
    sid = sweep(store, seeds=8)
    runner = make_runner(store)
    store.fail_writes = 2
    with pytest.raises(StorageError):
        runner.run_until_idle(timeout_s=30)
    stop = threading.Event()
    t = threading.Thread(target=runner.run_forever, args=(stop,))
    t.start()
    try:
        _wait(lambda: store.get_sweep(sid).status == "succeeded")
    finally:
        stop.set()
        t.join(10)
    assert not t.is_alive()
    assert store.get_sweep(sid).counts["succeeded"] == 7
    assert all(r.attempts == 1 for r in runs(store, sid).values())
    assert store.metrics().lease_holder is None


class Flaky(InlineExecutor):
    """Refuses the first ``fails`` submissions (the cluster is unreachable)."""

    def __init__(self, fails: int) -> None:
        super().__init__()
        self.fails = fails

    def submit(self, fn: BatchFn, batch: Any) -> None:
        if self.fails:
            self.fails -= 1
            raise ConnectionError("ray is down")
        super().submit(fn, batch)


def test_an_executor_outage_does_not_burn_attempts(store: Spy) -> None:
    sid = sweep(store, seeds=6)
    runner = make_runner(store, executor=Flaky(fails=3))
    for _ in range(3):
        with pytest.raises(ConnectionError):
            runner.step()
    runner.run_until_idle(timeout_s=30)
    assert store.get_sweep(sid).counts["succeeded"] == 5
    assert all(r.attempts == 1 for r in runs(store, sid).values())


def test_one_active_runner_the_other_takes_over_when_it_dies(store: Spy) -> None:
    sid = sweep(store, seeds=6)
    first = make_runner(store, runner_id="first", runner_lease_s=0.6, lease_s=0.3, flush_every_s=0)
    second = make_runner(store, runner_id="second", runner_lease_s=0.6, lease_s=0.3)
    first.step()  # holds the lease, claims 4 runs, finishes one; then "dies"
    second.step()
    assert store.metrics().lease_holder == "first" and second.stats.claimed == 0
    second.run_until_idle(timeout_s=30)  # waits out the lease, requeues the 3 orphans
    assert store.metrics().lease_holder == "second"
    rec = store.get_sweep(sid)
    assert rec.counts["succeeded"] + rec.counts["failed"] == 6
    assert sorted(r.attempts for r in runs(store, sid).values()) == [1, 1, 1, 2, 2, 2]


def test_stop_event_hands_back_runs_in_flight_and_releases_the_lease(store: Spy) -> None:
    sid = sweep(store, seeds=6)
    runner = make_runner(store, runner_id="r1", max_inflight_runs=6)
    runner.step()
    assert store.metrics().lease_holder == "r1"
    runner.shutdown(grace_s=0.0)
    assert store.metrics().lease_holder is None
    assert runner.stats.released == 5
    rec = store.get_sweep(sid)
    assert rec.counts["queued"] == 5 and rec.counts["running"] == 0
    # handed back with release_runs: the interrupted claim is not an attempt
    assert sorted(r.attempts for r in runs(store, sid).values()) == [0, 0, 0, 0, 0, 1]
    make_runner(store, runner_id="r2").run_until_idle(timeout_s=30)
    assert store.get_sweep(sid).counts["running"] == 0
    assert all(r.attempts == 1 for r in runs(store, sid).values())


def test_sequential_is_a_batch_function() -> None:
    fn: BatchFn = BatchOf(ok_task)
    cfgs = [RunConfig(model="diagonal", d=3, n=4, weight_decay=0.1, seed=s) for s in range(3)]
    assert [r.config_hash for r in fn(cfgs)] == [c.config_hash() for c in cfgs]


def test_inline_executor_turns_exceptions_into_per_run_errors() -> None:
    def boom(cfgs: list[RunConfig]) -> list[RunResult]:
        raise MemoryError("out of memory")

    ex = InlineExecutor()
    cfg = RunConfig(model="diagonal", d=3, n=4, weight_decay=0.1)
    ex.submit(boom, [(1, cfg), (2, cfg)])
    ex.submit(BatchOf(ok_task), [(3, cfg)])
    ex.cancel([3])
    assert ex.inflight() == 1
    out = ex.completed(0.0)
    assert [i for i, _ in out] == [1, 2]
    assert all(isinstance(e, TaskRaised) and "out of memory" in str(e) for _, e in out)
    assert ex.completed(0.0) == [] and ex.inflight() == 0


def _wait(cond: Any, timeout_s: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def network_sweep(store: Any, seeds: int, d: int = 30, first_seed: int = 0) -> int:
    spec = SweepSpec(
        model="quadratic",
        grid=Grid(
            d=[d],
            n=[1800],
            weight_decay=[0.01, 0.03],
            seed=list(range(first_seed, first_seed + seeds)),
        ),
        training=TrainingSpec(optimizer="lbfgs"),
    )
    return int(store.create_sweep(spec, max_runs=10_000).id)


def test_batched_tasks_store_every_run_exactly_once(store: Spy) -> None:
    calls: list[list[RunConfig]] = []

    def batch(cfgs: list[RunConfig]) -> list[RunResult]:
        calls.append(cfgs)
        return [ok_task(c) for c in cfgs]

    sid = network_sweep(store, seeds=10)
    runner = make_runner(store, executor=Twice(), run_batch=batch, batch_max_runs=8)
    stats = runner.run_until_idle(timeout_s=30)
    assert 1 < max(len(c) for c in calls) <= 8 and sum(len(c) for c in calls) == 20
    assert all(len({c.batch_shape() for c in task}) == 1 for task in calls)
    rec = store.get_sweep(sid)
    assert rec.counts["succeeded"] == 18 and rec.counts["failed"] == 2
    assert stats.recorded == 20 and all(r.attempts == 1 for r in runs(store, sid).values())


def test_cancelling_one_sweep_of_a_shared_batch_keeps_the_others_results(store: Spy) -> None:
    keep = network_sweep(store, seeds=3)
    drop = network_sweep(store, seeds=3, first_seed=10)  # one shape, other configurations
    sizes: list[int] = []

    def batch(cfgs: list[RunConfig]) -> list[RunResult]:
        sizes.append(len(cfgs))
        store.cancel_sweep(drop)  # the cancel arrives while the batch trains
        return [ok_task(c) for c in cfgs]

    runner = make_runner(store, run_batch=batch, batch_max_runs=32, max_inflight_runs=16)
    runner.run_until_idle(timeout_s=30)
    assert sizes == [12]  # both sweeps' runs shared one task
    kept = runs(store, keep)
    assert all(r.status == ("failed" if s == 3 else "succeeded") for s, r in kept.items())
    assert store.get_sweep(keep).counts["succeeded"] + store.get_sweep(keep).counts["failed"] == 6
    dropped = store.get_sweep(drop)
    assert dropped.status == "cancelled" and dropped.counts["cancelled"] == 6
    assert all(r.metrics is None for r in runs(store, drop).values())
