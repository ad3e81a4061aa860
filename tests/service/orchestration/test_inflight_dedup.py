"""In-flight deduplication through the runner (InlineExecutor, a task that counts what it
trains), on each backend: identical sweeps submitted at once, or while the runner trains,
train every configuration once; a cancelled or failed leader hands over to a follower."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from factories import BatchOf
from factories import metrics as run_metrics

from service.config import Settings
from service.orchestration.executor import InlineExecutor
from service.orchestration.runner import Runner
from service.records import RunRecord
from service.results import RunResult
from service.spec import Grid, RunConfig, SweepSpec, TrainingSpec, expand
from service.storage import Store, make_store, upgrade_head
from service.storage.base import iter_runs

COPIES = 8
SEEDS = 6  # the sweep: six runs


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A migrated store on each backend (tests/conftest.py: SQLite and PostgreSQL)."""
    upgrade_head(store_url)
    s = make_store(store_url)
    try:
        yield s
    finally:
        s.close()


class Trainer:
    """A task function that records every configuration it trains (thread-safe);
    ``fail_once`` fails the first training of those seeds; ``hook`` runs before each run."""

    def __init__(
        self, fail_once: set[int] | None = None, hook: Callable[[RunConfig], None] | None = None
    ) -> None:
        self.trained: Counter[str] = Counter()
        self._fail_once = set(fail_once or ())
        self._hook = hook
        self._lock = threading.Lock()

    def __call__(self, cfg: RunConfig) -> RunResult:
        if self._hook is not None:
            self._hook(cfg)
        h = cfg.config_hash()
        with self._lock:
            self.trained[h] += 1
            fail = cfg.seed in self._fail_once and self.trained[h] == 1
        if fail:
            return RunResult(config_hash=h, status="failed", error="diverged: nan loss")
        metrics = run_metrics(1.0 / (1 + cfg.seed), stop_reason="duality_gap", wall_time_s=0.001)
        return RunResult(config_hash=h, status="succeeded", metrics=metrics)


def runner(store: Store, trainer: Trainer) -> Runner:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url="sqlite://",
        max_inflight_runs=4,
        lease_s=5.0,
        max_attempts=3,
        runner_poll_s=0.01,
        pack_below_s=1e-6,  # one run per task
    )
    return Runner(store, InlineExecutor(), BatchOf(trainer), settings=settings, check_every_s=0.0)


def spec(name: str) -> SweepSpec:
    return SweepSpec(
        name=name,
        model="diagonal",
        grid=Grid(d=[5], n=[10], weight_decay=[0.1], seed=list(range(SEEDS))),
        training=TrainingSpec(optimizer="convex"),
    )


def hashes() -> set[str]:
    return {cfg.config_hash() for cfg in expand(spec("x"))}


def submit_at_once(store: Store, copies: int = COPIES) -> list[int]:
    """``copies`` identical sweeps, each created by its own thread, all released at once."""
    barrier = threading.Barrier(copies)
    ids: list[int] = []
    errors: list[BaseException] = []

    def submit(i: int) -> None:
        try:
            barrier.wait()
            ids.append(store.create_sweep(spec(f"copy {i}"), max_runs=100).id)
        except BaseException as e:  # noqa: BLE001 - asserted below
            errors.append(e)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(copies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return sorted(ids)


def runs(store: Store, sweep_id: int) -> list[RunRecord]:
    return list(iter_runs(store, sweep_id))


def assert_every_sweep_has_every_result(store: Store, ids: list[int]) -> None:
    """Every sweep succeeded with all its runs' results; a copy names the run that trained."""
    for sid in ids:
        sweep = store.get_sweep(sid)
        assert (sweep.status, sweep.counts["succeeded"], sweep.n_runs) == (
            "succeeded",
            SEEDS,
            SEEDS,
        )
        for run in runs(store, sid):
            assert run.metrics is not None
            assert run.metrics.excess_risk == 1.0 / (1 + run.config.seed)
            if run.reused_from is not None:
                source = store.get_run(run.reused_from)
                assert (source.status, source.reused_from) == ("succeeded", None)
                assert (source.config_hash, source.metrics) == (run.config_hash, run.metrics)


def test_identical_sweeps_submitted_at_once_train_each_configuration_once(store: Store) -> None:
    ids = submit_at_once(store)
    trainer = Trainer()
    stats = runner(store, trainer).run_until_idle(timeout_s=60)
    assert trainer.trained == Counter(dict.fromkeys(hashes(), 1))
    assert stats.claimed == stats.recorded == SEEDS
    assert_every_sweep_has_every_result(store, ids)


def test_sweeps_submitted_while_the_runner_trains_train_each_configuration_once(
    store: Store,
) -> None:
    trainer = Trainer(hook=lambda cfg: time.sleep(0.005))  # runs overlap the submissions
    r = runner(store, trainer)
    stop = threading.Event()
    loop = threading.Thread(target=r.run_forever, args=(stop,), kwargs={"grace_s": 5.0})
    loop.start()
    try:
        ids = submit_at_once(store) + submit_at_once(store)
        deadline = time.monotonic() + 60
        while any(store.get_sweep(sid).status != "succeeded" for sid in ids):
            assert time.monotonic() < deadline, "the sweeps did not finish"
            time.sleep(0.02)
    finally:
        stop.set()
        loop.join(30)
    assert not loop.is_alive()
    assert trainer.trained == Counter(dict.fromkeys(hashes(), 1))
    assert_every_sweep_has_every_result(store, ids)


def test_a_cancelled_leader_hands_over_and_its_follower_trains(store: Store) -> None:
    first, second, third = (store.create_sweep(spec(n), max_runs=100).id for n in "abc")

    def cancel_first(cfg: RunConfig) -> None:
        if store.get_sweep(first).status != "cancelled":
            store.cancel_sweep(first)  # arrives while the first sweep's runs train

    trainer = Trainer(hook=cancel_first)
    runner(store, trainer).run_until_idle(timeout_s=60)
    cancelled = store.get_sweep(first)
    assert (cancelled.status, cancelled.counts["cancelled"]) == ("cancelled", SEEDS)
    assert all(r.metrics is None for r in runs(store, first))
    # the second sweep took the lead and trained everything; the third reused it
    assert all(r.reused_from is None for r in runs(store, second))
    assert_every_sweep_has_every_result(store, [second, third])
    assert set(trainer.trained) == hashes()
    assert max(trainer.trained.values()) <= 2  # at most the cancelled attempt, then the heir
    assert sum(trainer.trained.values()) == SEEDS + 1  # one run was training at the cancel


def test_a_failed_leader_hands_over_and_its_follower_trains(store: Store) -> None:
    """Failed runs are never reused: the next sweep trains that configuration itself."""
    first, second, third = (store.create_sweep(spec(n), max_runs=100).id for n in "abc")
    trainer = Trainer(fail_once={2})
    runner(store, trainer).run_until_idle(timeout_s=60)
    expected: dict[str, int] = dict.fromkeys(hashes(), 1)
    failing = next(cfg.config_hash() for cfg in expand(spec("x")) if cfg.seed == 2)
    expected[failing] = 2
    assert trainer.trained == Counter(expected)
    by_seed = {r.config.seed: r for r in runs(store, first)}
    assert by_seed[2].status == "failed" and by_seed[2].error == "diverged: nan loss"
    done = store.get_sweep(first)
    assert (done.status, done.counts["succeeded"], done.counts["failed"]) == (
        "succeeded",
        SEEDS - 1,
        1,
    )
    assert_every_sweep_has_every_result(store, [second, third])
    heir = next(r for r in runs(store, second) if r.config.seed == 2)
    assert heir.reused_from is None and heir.attempts == 1
    assert next(r for r in runs(store, third) if r.config.seed == 2).reused_from == heir.id
