"""Store contract, runner side: exactly-once results, claims under leases, the runner lease."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from factories import all_runs
from sqlalchemy import select

from service.results import RunResult
from service.spec import SweepSpec
from service.storage import Store
from service.storage.tables import AttemptRow

SpecFactory = Callable[..., SweepSpec]  # fixtures of tests/storage/conftest.py
ResultFactory = Callable[..., RunResult]


def _attempts(store: Store, run_id: int) -> list[tuple[int, str, str | None]]:
    with store._engine.connect() as conn:
        rows = conn.execute(
            select(AttemptRow.attempt, AttemptRow.runner_id, AttemptRow.outcome)
            .where(AttemptRow.run_id == run_id)
            .order_by(AttemptRow.attempt)
        )
        return [(r.attempt, r.runner_id, r.outcome) for r in rows]


def test_every_result_twice_out_of_order_is_stored_once(
    store: Store, make_spec: SpecFactory, make_result: ResultFactory
) -> None:
    sweep = store.create_sweep(make_spec(seed=[0, 1, 2]), max_runs=100)  # 12 runs
    claims = store.claim_runs("r1", limit=100, lease_s=60)
    assert len(claims) == 12
    results = [
        (c.run_id, make_result(c.config.config_hash(), excess_risk=c.run_id / 100)) for c in claims
    ]
    deliveries = results * 2
    random.Random(0).shuffle(deliveries)
    stored = store.record_results(deliveries[:15]) + store.record_results(deliveries[15:])
    assert stored == 12
    assert store.record_results(results) == 0  # late duplicates: ignored
    done = store.get_sweep(sweep.id)
    assert done.counts["succeeded"] == 12
    assert done.status == "succeeded"
    assert done.finished_at is not None
    for c in claims:
        run = store.get_run(c.run_id)
        assert run.metrics is not None
        assert run.metrics.excess_risk == c.run_id / 100
        assert len(run.curve) == 3  # not duplicated
        spectra = store.get_spectra(c.run_id)
        assert [s.kind for s in spectra] == ["abs_theta"]
        assert spectra[0] == make_result(c.config.config_hash()).spectra[0]
        assert _attempts(store, c.run_id) == [(1, "r1", "succeeded")]


def test_result_with_a_wrong_hash_or_unknown_run_is_ignored(
    store: Store, make_spec: SpecFactory, make_result: ResultFactory
) -> None:
    store.create_sweep(make_spec(), max_runs=100)
    claim = store.claim_runs("r1", limit=1, lease_s=60)[0]
    assert store.record_results([(claim.run_id, make_result("0" * 64))]) == 0
    assert store.record_results([(10_000, make_result(claim.config.config_hash()))]) == 0
    assert store.get_run(claim.run_id).status == "running"


def test_failed_result_and_non_finite_metrics(
    store: Store, make_spec: SpecFactory, make_result: ResultFactory
) -> None:
    store.create_sweep(make_spec(), max_runs=100)
    a, b = store.claim_runs("r1", limit=2, lease_s=60)
    failed = make_result(a.config.config_hash(), status="failed")
    diverged = make_result(b.config.config_hash(), excess_risk=float("inf"))
    assert store.record_results([(a.run_id, failed), (b.run_id, diverged)]) == 2
    run_a = store.get_run(a.run_id)
    assert (run_a.status, run_a.error, run_a.metrics) == ("failed", "diverged", None)
    assert _attempts(store, a.run_id) == [(1, "r1", "failed")]
    run_b = store.get_run(b.run_id)
    assert run_b.metrics is not None
    assert run_b.metrics.excess_risk == float("inf")


def test_claim_lease_requeue_and_retry_budget(
    store: Store, make_spec: SpecFactory, make_result: ResultFactory
) -> None:
    sweep = store.create_sweep(make_spec(), max_runs=100)  # 8 runs
    first = store.claim_runs("r1", limit=3, lease_s=60)
    assert [c.attempt for c in first] == [1, 1, 1]
    assert [store.get_run(c.run_id).index for c in first] == [0, 1, 2]  # expansion order
    assert store.get_sweep(sweep.id).status == "running"
    assert store.requeue_expired(max_attempts=3) == 0  # leases still valid

    lost = store.claim_runs("r2", limit=1, lease_s=-1)  # already expired
    assert store.requeue_expired(max_attempts=3) == 1
    run = store.get_run(lost[0].run_id)
    assert (run.status, run.attempts) == ("queued", 1)
    for attempt in (2, 3):
        again = store.claim_runs("r2", limit=1, lease_s=-1)
        assert [(c.run_id, c.attempt) for c in again] == [(lost[0].run_id, attempt)]
        assert store.requeue_expired(max_attempts=3) == 1
    run = store.get_run(lost[0].run_id)
    assert run.status == "failed"
    assert run.error == "worker lost after 3 attempts"
    assert _attempts(store, run.id) == [(1, "r2", "lost"), (2, "r2", "lost"), (3, "r2", "lost")]
    # a result arriving after the run was given up is ignored
    assert store.record_results([(run.id, make_result(run.config_hash))]) == 0

    # renewing keeps a short lease alive
    short = store.claim_runs("r3", limit=1, lease_s=0.2)
    store.renew_leases("r3", [short[0].run_id], lease_s=60)
    store.renew_leases("intruder", [short[0].run_id], lease_s=-1)  # not its lease: no effect
    time.sleep(0.3)
    assert store.requeue_expired(max_attempts=3) == 0

    rest = store.claim_runs("r1", limit=100, lease_s=60)
    everything = first + short + rest
    assert len(everything) == 7
    store.record_results([(c.run_id, make_result(c.config.config_hash())) for c in everything])
    done = store.get_sweep(sweep.id)
    assert done.status == "succeeded"
    assert (done.counts["succeeded"], done.counts["failed"]) == (7, 1)


def test_release_runs_hands_back_claims_without_spending_an_attempt(
    store: Store, make_spec: SpecFactory, make_result: ResultFactory
) -> None:
    sweep = store.create_sweep(make_spec(), max_runs=100)  # 8 runs
    mine = store.claim_runs("r1", limit=3, lease_s=60)
    other = store.claim_runs("r2", limit=1, lease_s=60)
    done = mine[2]
    assert store.record_results([(done.run_id, make_result(done.config.config_hash()))]) == 1
    ids = [c.run_id for c in mine]

    # only r1's runs still running are released: not r2's, not the finished one, not unknown ids
    assert store.release_runs("r1", [*ids, other[0].run_id, 10**9]) == 2
    for claim in mine[:2]:
        run = store.get_run(claim.run_id)
        assert (run.status, run.attempts) == ("queued", 0)
        assert _attempts(store, run.id) == []
    assert store.get_run(other[0].run_id).status == "running"
    assert store.get_run(done.run_id).status == "succeeded"
    assert store.release_runs("r1", ids) == 0  # idempotent
    assert store.release_runs("r1", []) == 0
    assert store.requeue_expired(max_attempts=1) == 0  # nothing expired, nothing lost

    # a released run is claimed again as attempt 1, and its lease is a fresh one
    again = store.claim_runs("r3", limit=8, lease_s=60)
    assert {c.run_id for c in again} >= set(ids[:2])
    assert all(c.attempt == 1 for c in again if c.run_id in ids)
    assert _attempts(store, ids[0]) == [(1, "r3", None)]
    store.record_results([(c.run_id, make_result(c.config.config_hash())) for c in again])
    store.record_results([(c.run_id, make_result(c.config.config_hash())) for c in other])
    rec = store.get_sweep(sweep.id)
    assert rec.status == "succeeded" and rec.counts["succeeded"] == 8


def test_runner_lease_is_exclusive_until_it_expires(store: Store) -> None:
    assert store.metrics().lease_holder is None
    assert store.acquire_runner_lease("a", ttl_s=0.5)
    assert store.metrics().lease_holder == "a"
    assert not store.acquire_runner_lease("b", ttl_s=10)
    assert store.acquire_runner_lease("a", ttl_s=0.5)  # renew
    store.release_runner_lease("b")  # not b's: no effect
    assert store.metrics().lease_holder == "a"
    time.sleep(0.6)
    assert store.metrics().lease_holder is None
    assert store.acquire_runner_lease("b", ttl_s=10)
    assert not store.acquire_runner_lease("a", ttl_s=10)
    store.release_runner_lease("b")
    assert store.metrics().lease_holder is None
    assert store.acquire_runner_lease("a", ttl_s=10)


def test_concurrent_writers_store_each_result_once(
    store: Store, make_spec: SpecFactory, make_result: ResultFactory
) -> None:
    """8 writers deliver overlapping result batches at once: no duplicate, no 'locked' error."""
    sweep = store.create_sweep(make_spec(seed=list(range(10))), max_runs=100)  # 40 runs
    claims = store.claim_runs("r1", limit=100, lease_s=60)
    results: list[tuple[int, RunResult]] = [
        (c.run_id, make_result(c.config.config_hash())) for c in claims
    ]
    counts: list[int] = []
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        mine = random.Random(seed).sample(results, 20)
        try:
            for i in range(0, 20, 5):
                counts.append(store.record_results(mine[i : i + 5]))
        except BaseException as e:  # noqa: BLE001 - asserted below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    stored_ids = {r.id for r in all_runs(store, sweep.id) if r.status == "succeeded"}
    assert sum(counts) == len(stored_ids)
    missing = [r for r in results if r[0] not in stored_ids]
    assert store.record_results(missing) == len(missing)
    assert store.get_sweep(sweep.id).counts["succeeded"] == 40
    assert all(len(store.get_spectra(c.run_id)) == 1 for c in claims)
