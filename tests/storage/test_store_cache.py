"""The team-shared cache: a succeeded run with the same config_hash is reused, unless recompute."""

from __future__ import annotations

from collections.abc import Callable

from factories import all_runs

from service.results import RunResult
from service.spec import SweepSpec
from service.storage import Store

SpecFactory = Callable[..., SweepSpec]  # fixtures of tests/storage/conftest.py
ResultFactory = Callable[..., RunResult]

MAX_RUNS = 10_000


def _finish(store: Store, make_result: ResultFactory, *, fail_first: bool = False) -> None:
    claims = store.claim_runs("r", limit=1000, lease_s=60)
    results = [
        (c.run_id, make_result(c.config.config_hash(), excess_risk=c.run_id)) for c in claims
    ]
    if fail_first:
        results[0] = (
            claims[0].run_id,
            make_result(claims[0].config.config_hash(), status="failed"),
        )
    store.record_results(results)


def test_finished_runs_are_reused_across_sweeps(
    store: Store, make_spec: SpecFactory, make_result: ResultFactory
) -> None:
    a = store.create_sweep(make_spec(name="a"), max_runs=100)
    _finish(store, make_result, fail_first=True)
    originals = {r.config_hash: r for r in all_runs(store, a.id)}

    b = store.create_sweep(make_spec(name="b", seed=[0, 1, 2]), max_runs=100)  # 12 runs, 8 known
    assert b.counts["succeeded"] == 7  # the failed one is not reused
    assert b.counts["queued"] == 5
    assert b.status == "queued"
    for run in all_runs(store, b.id):
        src = originals.get(run.config_hash)
        if src is not None and src.status == "succeeded":
            assert run.status == "succeeded"
            assert run.reused_from == src.id
            assert run.metrics == src.metrics
            assert run.attempts == 0
            assert store.get_run(run.id).curve == store.get_run(src.id).curve
            assert store.get_spectra(run.id) == store.get_spectra(src.id)
        else:
            assert (run.status, run.reused_from, run.metrics) == ("queued", None, None)

    # a copy of a copy points at the run that computed the result
    c = store.create_sweep(make_spec(name="c"), max_runs=100)
    reused = [r for r in all_runs(store, c.id) if r.reused_from is not None]
    assert {r.reused_from for r in reused} <= {r.id for r in originals.values()}
    assert len(reused) == 7


def test_fully_cached_sweep_is_finished_at_once(
    store: Store, make_spec: SpecFactory, make_result: ResultFactory
) -> None:
    store.create_sweep(make_spec(name="a"), max_runs=100)
    _finish(store, make_result)
    again = store.create_sweep(make_spec(name="again"), max_runs=100)
    assert again.status == "succeeded"
    assert again.counts["succeeded"] == 8
    assert again.finished_at is not None
    assert store.claim_runs("r", limit=100, lease_s=60) == []


def test_recompute_ignores_the_cache(
    store: Store, make_spec: SpecFactory, make_result: ResultFactory
) -> None:
    store.create_sweep(make_spec(name="a"), max_runs=100)
    _finish(store, make_result)
    fresh = store.create_sweep(make_spec(name="fresh", recompute=True), max_runs=100)
    assert fresh.counts["queued"] == 8
    assert all(r.reused_from is None for r in all_runs(store, fresh.id))
    extended = store.extend_sweep(
        fresh.id, {"seed": [2]}, max_runs=MAX_RUNS
    )  # recompute applies to extensions too
    assert extended.counts["queued"] == 12


def test_extend_reuses_runs_of_other_sweeps(
    store: Store, make_spec: SpecFactory, make_result: ResultFactory
) -> None:
    store.create_sweep(make_spec(name="seeds 0-3", seed=[0, 1, 2, 3]), max_runs=100)
    _finish(store, make_result)
    small = store.create_sweep(make_spec(name="small", seed=[0], n=[8]), max_runs=100)
    assert small.status == "succeeded"
    grown = store.extend_sweep(small.id, {"seed": [1, 2]}, max_runs=MAX_RUNS)
    assert grown.n_runs == 6
    assert grown.counts["succeeded"] == 6
    assert grown.status == "succeeded"


def test_the_cache_is_shared_only_inside_a_team(
    store: Store, make_spec: SpecFactory, make_result: ResultFactory
) -> None:
    a = store.create_sweep(make_spec(name="a"), max_runs=100, team="a")
    _finish(store, make_result)
    team_a = {r.id for r in all_runs(store, a.id)}
    # another team, and the pool of runs without a team, compute their own
    b = store.create_sweep(make_spec(name="b"), max_runs=100, team="b")
    none = store.create_sweep(make_spec(name="no team"), max_runs=100)
    assert b.counts["queued"] == 8 and none.counts["queued"] == 8
    assert all(r.reused_from is None for r in all_runs(store, b.id) + all_runs(store, none.id))
    # the same team reuses, and reused_from names one of its own runs
    a2 = store.create_sweep(make_spec(name="a again"), max_runs=100, team="a")
    assert a2.status == "succeeded" and a2.counts["succeeded"] == 8
    assert {r.reused_from for r in all_runs(store, a2.id)} == team_a
    # extensions reuse within the sweep's own team too
    _finish(store, make_result)  # b and the team-less sweep finish
    b2 = store.create_sweep(make_spec(name="b small", seed=[0]), max_runs=100, team="b")
    grown = store.extend_sweep(b2.id, {"seed": [1]}, max_runs=MAX_RUNS)
    assert grown.counts["succeeded"] == 8
    runs_b = {r.id for r in all_runs(store, b.id)}
    assert {r.reused_from for r in all_runs(store, b2.id)} <= runs_b
