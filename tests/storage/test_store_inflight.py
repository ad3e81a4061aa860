"""In-flight deduplication on each backend: a configuration queued or running in one sweep of a
team is trained once; the team's other sweeps follow its leader and get its result, a failed,
lost, cancelled or deleted leader hands over to a follower. And ids are never reused."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

from factories import all_runs
from sqlalchemy import func, select

from service.records import Claim, RunRecord
from service.results import RunResult
from service.spec import SweepSpec
from service.storage import Store
from service.storage.tables import Run, RunLeader

SpecFactory = Callable[..., SweepSpec]  # fixtures of tests/storage/conftest.py
ResultFactory = Callable[..., RunResult]

MAX_RUNS = 100
N_CONFIGS = 8  # make_spec(): d=[4], n=[8, 16], weight_decay=[0.01, 0.1], seed=[0, 1]


def _claim_all(store: Store, runner: str = "r") -> list[Claim]:
    return store.claim_runs(runner, limit=1000, lease_s=60)


def _succeed(store: Store, make_result: ResultFactory, claims: list[Claim]) -> None:
    results = [
        (c.run_id, make_result(c.config.config_hash(), excess_risk=c.run_id / 1000)) for c in claims
    ]
    assert store.record_results(results) == len(claims)


def _leaders(store: Store) -> dict[str, int]:
    with store._engine.connect() as conn:
        rows = conn.execute(select(RunLeader.config_hash, RunLeader.run_id)).tuples().all()
    return dict(rows)


def _by_hash(runs: list[RunRecord]) -> dict[str, RunRecord]:
    return {r.config_hash: r for r in runs}


def _assert_copies(store: Store, copy: RunRecord, source: RunRecord) -> None:
    """``copy`` holds ``source``'s result, as reuse of a finished run does."""
    assert (copy.status, copy.reused_from, copy.attempts) == ("succeeded", source.id, 0)
    assert copy.metrics == source.metrics and copy.metrics is not None
    assert store.get_run(copy.id).curve == store.get_run(source.id).curve
    assert store.get_spectra(copy.id) == store.get_spectra(source.id)


def test_identical_sweeps_submitted_at_once_train_each_configuration_once(
    store: Store, make_spec: SpecFactory, make_result: ResultFactory
) -> None:
    barrier = threading.Barrier(8)
    ids: list[int] = []
    errors: list[BaseException] = []

    def submit(i: int) -> None:
        try:
            barrier.wait()
            ids.append(store.create_sweep(make_spec(name=f"copy {i}"), max_runs=MAX_RUNS).id)
        except BaseException as e:  # noqa: BLE001 - asserted below
            errors.append(e)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(ids) == 8

    leaders = _leaders(store)
    assert len(leaders) == N_CONFIGS  # one leader per configuration, never two
    for sid in ids:
        assert store.get_sweep(sid).counts["queued"] == N_CONFIGS
    claims = _claim_all(store)
    assert sorted(c.run_id for c in claims) == sorted(leaders.values())
    for sid in ids:  # every sweep shows its runs running, followers included
        sweep = store.get_sweep(sid)
        assert (sweep.status, sweep.counts["running"]) == ("running", N_CONFIGS)

    _succeed(store, make_result, claims)
    assert _claim_all(store) == []  # nothing left to train
    assert _leaders(store) == {}
    trained = {c.config.config_hash(): store.get_run(c.run_id) for c in claims}
    for sid in ids:
        sweep = store.get_sweep(sid)
        assert sweep.status == "succeeded" and sweep.counts["succeeded"] == N_CONFIGS
        assert sweep.finished_at is not None
        for run in all_runs(store, sid):
            source = trained[run.config_hash]
            if run.id != source.id:
                _assert_copies(store, run, source)
    with store._engine.connect() as conn:  # no follower left behind
        assert conn.execute(select(func.count()).where(Run.follows.is_not(None))).scalar() == 0


def test_a_sweep_whose_configurations_are_running_elsewhere_is_running(
    store: Store, make_spec: SpecFactory, make_result: ResultFactory
) -> None:
    first = store.create_sweep(make_spec(name="first"), max_runs=MAX_RUNS)
    claims = store.claim_runs("r", limit=3, lease_s=60)
    later = store.create_sweep(make_spec(name="later", seed=[0, 1, 2]), max_runs=MAX_RUNS)
    assert later.status == "running"  # three of its runs wait on running leaders
    assert (later.counts["running"], later.counts["queued"]) == (3, 9)
    # the runner trains first's five other configurations and later's four new ones
    rest = _claim_all(store)
    assert len(rest) == 9 and {c.sweep_id for c in rest} == {first.id, later.id}
    assert sum(c.sweep_id == later.id for c in rest) == 4
    _succeed(store, make_result, claims)
    assert store.get_sweep(later.id).counts["succeeded"] == 3
    assert store.get_sweep(later.id).status == "running"
    _succeed(store, make_result, rest)
    done = store.get_sweep(later.id)
    assert (done.status, done.counts["succeeded"]) == ("succeeded", 12)
    assert store.get_sweep(first.id).status == "succeeded"


def test_followers_show_their_leaders_status_through_requeues_and_releases(
    store: Store, make_spec: SpecFactory, make_result: ResultFactory
) -> None:
    store.create_sweep(make_spec(name="a"), max_runs=MAX_RUNS)
    b = store.create_sweep(make_spec(name="b"), max_runs=MAX_RUNS)
    lost = store.claim_runs("r1", limit=2, lease_s=-1)  # leases expired at once
    kept = store.claim_runs("r2", limit=2, lease_s=60)
    counts = store.get_sweep(b.id).counts
    assert (counts["queued"], counts["running"]) == (4, 4)
    assert store.requeue_expired(max_attempts=3) == 2
    assert store.release_runs("r2", [c.run_id for c in kept]) == 2
    b_runs = store.get_sweep(b.id)
    assert (b_runs.status, b_runs.counts["queued"], b_runs.counts["running"]) == ("running", 8, 0)
    again = _claim_all(store)
    assert {c.run_id for c in lost + kept} <= {c.run_id for c in again}
    assert len(again) == N_CONFIGS
    _succeed(store, make_result, again)
    assert store.get_sweep(b.id).counts["succeeded"] == N_CONFIGS


def test_a_cancelled_leader_hands_over_and_a_follower_trains(
    store: Store, make_spec: SpecFactory, make_result: ResultFactory
) -> None:
    a = store.create_sweep(make_spec(name="a"), max_runs=MAX_RUNS)
    b = store.create_sweep(make_spec(name="b"), max_runs=MAX_RUNS)
    c = store.create_sweep(make_spec(name="c"), max_runs=MAX_RUNS)
    running = store.claim_runs("r", limit=3, lease_s=60)
    assert {x.sweep_id for x in running} == {a.id}

    store.cancel_sweep(a.id)
    assert store.cancelled_run_ids([x.run_id for x in running]) == sorted(
        x.run_id for x in running
    )  # the runner stops them
    b_runs = _by_hash(all_runs(store, b.id))
    assert _leaders(store) == {h: r.id for h, r in b_runs.items()}  # b leads everything now
    assert store.get_sweep(b.id).counts["queued"] == N_CONFIGS  # handed over: queued again
    # a late result of a cancelled leader is ignored and reaches no follower
    late = running[0]
    assert store.record_results([(late.run_id, make_result(late.config.config_hash()))]) == 0

    claims = _claim_all(store)
    assert sorted(x.run_id for x in claims) == sorted(r.id for r in b_runs.values())
    _succeed(store, make_result, claims)
    for run in all_runs(store, c.id):
        _assert_copies(store, run, store.get_run(b_runs[run.config_hash].id))
    assert store.get_sweep(a.id).status == "cancelled"
    assert store.get_sweep(a.id).counts["cancelled"] == N_CONFIGS
    assert store.get_sweep(b.id).status == store.get_sweep(c.id).status == "succeeded"


def test_a_cancelled_follower_leaves_its_leader_alone(
    store: Store, make_spec: SpecFactory, make_result: ResultFactory
) -> None:
    a = store.create_sweep(make_spec(name="a"), max_runs=MAX_RUNS)
    b = store.create_sweep(make_spec(name="b"), max_runs=MAX_RUNS)
    store.cancel_sweep(b.id)
    assert {r.status for r in all_runs(store, b.id)} == {"cancelled"}
    claims = _claim_all(store)
    assert {x.sweep_id for x in claims} == {a.id} and len(claims) == N_CONFIGS
    _succeed(store, make_result, claims)
    assert store.get_sweep(b.id).counts["cancelled"] == N_CONFIGS  # no result after a cancel
    assert store.get_sweep(a.id).status == "succeeded"


def test_a_deleted_leader_hands_over_and_a_follower_trains(
    store: Store, make_spec: SpecFactory, make_result: ResultFactory
) -> None:
    a = store.create_sweep(make_spec(name="a"), max_runs=MAX_RUNS)
    b = store.create_sweep(make_spec(name="b"), max_runs=MAX_RUNS)
    running = store.claim_runs("r", limit=2, lease_s=60)
    assert store.delete_sweep(a.id) == N_CONFIGS
    assert store.cancelled_run_ids([x.run_id for x in running]) == sorted(x.run_id for x in running)
    b_runs = _by_hash(all_runs(store, b.id))
    assert _leaders(store) == {h: r.id for h, r in b_runs.items()}
    claims = _claim_all(store)
    assert sorted(x.run_id for x in claims) == sorted(r.id for r in b_runs.values())
    _succeed(store, make_result, claims)
    done = store.get_sweep(b.id)
    assert (done.status, done.counts["succeeded"]) == ("succeeded", N_CONFIGS)
    assert all(r.reused_from is None for r in all_runs(store, b.id))  # b trained them


def test_a_failed_leader_hands_over_and_its_follower_trains(
    store: Store, make_spec: SpecFactory, make_result: ResultFactory
) -> None:
    """Failed runs are never reused (the cache's rule): a follower trains the configuration."""
    a = store.create_sweep(make_spec(name="a"), max_runs=MAX_RUNS)
    b = store.create_sweep(make_spec(name="b"), max_runs=MAX_RUNS)
    c = store.create_sweep(make_spec(name="c"), max_runs=MAX_RUNS)
    claims = _claim_all(store)
    failed, ok = claims[0], claims[1:]
    failure = make_result(failed.config.config_hash(), status="failed")
    assert store.record_results([(failed.run_id, failure)]) == 1
    _succeed(store, make_result, ok)

    h = failed.config.config_hash()
    heir = _by_hash(all_runs(store, b.id))[h]  # the oldest follower
    assert (heir.status, heir.reused_from, heir.metrics) == ("queued", None, None)
    assert _leaders(store) == {h: heir.id}
    assert _by_hash(all_runs(store, c.id))[h].status == "queued"
    assert store.get_sweep(b.id).counts["succeeded"] == N_CONFIGS - 1
    assert store.get_sweep(b.id).status == "running"

    retry = _claim_all(store)
    assert [x.run_id for x in retry] == [heir.id]
    _succeed(store, make_result, retry)
    assert store.get_run(failed.run_id).status == "failed"
    assert store.get_sweep(a.id).counts["failed"] == 1
    for sweep in (b, c):
        done = store.get_sweep(sweep.id)
        assert (done.status, done.counts["succeeded"]) == ("succeeded", N_CONFIGS)
    _assert_copies(store, _by_hash(all_runs(store, c.id))[h], store.get_run(heir.id))


def test_a_leader_lost_after_its_retries_hands_over(
    store: Store, make_spec: SpecFactory, make_result: ResultFactory
) -> None:
    store.create_sweep(make_spec(name="a", n=[8], weight_decay=[0.1], seed=[0]), max_runs=10)
    b = store.create_sweep(make_spec(name="b", n=[8], weight_decay=[0.1], seed=[0]), max_runs=10)
    lost = store.claim_runs("r", limit=1, lease_s=-1)
    assert store.requeue_expired(max_attempts=1) == 1
    assert store.get_run(lost[0].run_id).error == "worker lost after 1 attempts"
    retry = _claim_all(store)
    assert [x.sweep_id for x in retry] == [b.id]
    _succeed(store, make_result, retry)
    assert store.get_sweep(b.id).status == "succeeded"


def test_recompute_trains_its_own_and_may_lead(
    store: Store, make_spec: SpecFactory, make_result: ResultFactory
) -> None:
    a = store.create_sweep(make_spec(name="a"), max_runs=MAX_RUNS)
    fresh = store.create_sweep(make_spec(name="fresh", recompute=True), max_runs=MAX_RUNS)
    assert fresh.counts["queued"] == N_CONFIGS
    claims = _claim_all(store)
    assert Counter(x.sweep_id for x in claims) == {a.id: N_CONFIGS, fresh.id: N_CONFIGS}
    _succeed(store, make_result, claims)
    assert all(r.reused_from is None for r in all_runs(store, fresh.id))

    # with no leader in the way, a recompute sweep leads, and a later sweep follows it
    lead = store.create_sweep(make_spec(name="lead", seed=[7], recompute=True), max_runs=10)
    follow = store.create_sweep(make_spec(name="follow", seed=[7]), max_runs=10)
    claims = _claim_all(store)
    assert {x.sweep_id for x in claims} == {lead.id} and len(claims) == 4
    _succeed(store, make_result, claims)
    mine = _by_hash(all_runs(store, lead.id))
    for run in all_runs(store, follow.id):
        _assert_copies(store, run, mine[run.config_hash])


def test_only_sweeps_of_one_team_follow_each_other(
    store: Store, make_spec: SpecFactory, make_result: ResultFactory
) -> None:
    a = store.create_sweep(make_spec(name="a"), max_runs=MAX_RUNS, team="a")
    b = store.create_sweep(make_spec(name="b"), max_runs=MAX_RUNS, team="b")
    none = store.create_sweep(make_spec(name="no team"), max_runs=MAX_RUNS)
    a2 = store.create_sweep(make_spec(name="a again"), max_runs=MAX_RUNS, team="a")
    claims = _claim_all(store)
    assert Counter(x.sweep_id for x in claims) == {a.id: 8, b.id: 8, none.id: 8}
    _succeed(store, make_result, claims)
    a_runs = {r.id for r in all_runs(store, a.id)}
    assert {r.reused_from for r in all_runs(store, a2.id)} == a_runs
    assert all(r.reused_from is None for r in all_runs(store, b.id) + all_runs(store, none.id))


def test_a_follower_given_its_own_result_keeps_it_exactly_once(
    store: Store, make_spec: SpecFactory, make_result: ResultFactory
) -> None:
    store.create_sweep(make_spec(name="a"), max_runs=MAX_RUNS)
    b = store.create_sweep(make_spec(name="b"), max_runs=MAX_RUNS)
    follower = all_runs(store, b.id)[0]
    own = make_result(follower.config_hash, excess_risk=0.5)
    assert store.record_results([(follower.id, own)]) == 1
    claims = _claim_all(store)
    _succeed(store, make_result, claims)
    run = store.get_run(follower.id)
    assert run.reused_from is None and run.metrics is not None
    assert run.metrics.excess_risk == 0.5  # not overwritten by its former leader's result
    assert len(run.curve) == 3 and len(store.get_spectra(run.id)) == 1  # stored once
    assert store.get_sweep(b.id).counts["succeeded"] == N_CONFIGS


def test_ids_of_deleted_sweeps_and_runs_are_never_reused(
    store: Store, make_spec: SpecFactory
) -> None:
    store.create_sweep(make_spec(name="kept"), max_runs=MAX_RUNS)
    newest = store.create_sweep(make_spec(name="deleted", seed=[5]), max_runs=MAX_RUNS)
    newest_runs = [r.id for r in all_runs(store, newest.id)]
    store.delete_sweep(newest.id)
    again = store.create_sweep(make_spec(name="next", seed=[6]), max_runs=MAX_RUNS)
    assert again.id > newest.id
    assert min(r.id for r in all_runs(store, again.id)) > max(newest_runs)
