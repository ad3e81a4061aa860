"""Store contract, API side: sweeps and runs, limits, pagination, filters, 404s, cancel, extend."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from typing import Any

import pytest
from factories import all_runs

from service.errors import ConflictError, LimitError, RunNotFound, SpecError, SweepNotFound
from service.results import RunResult
from service.spec import SweepSpec
from service.storage import Store

SpecFactory = Callable[..., SweepSpec]  # fixtures of tests/storage/conftest.py
ResultFactory = Callable[..., RunResult]

MAX_RUNS = 10_000


def test_create_get_list_round_trip(store: Store, make_spec: SpecFactory) -> None:
    spec = make_spec(name="round trip", weight_decay={"geomspace": [1e-3, 1e-1], "num": 3})
    created = store.create_sweep(spec, max_runs=100)
    assert created.n_runs == 12
    assert created.status == "queued"
    assert created.counts == {
        "queued": 12,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "cancelled": 0,
    }
    got = store.get_sweep(created.id)
    assert got == created
    assert got.spec == spec  # the spec survives the JSON column unchanged
    assert got.created_at.tzinfo is not None
    assert got.created_at.utcoffset() == UTC.utcoffset(None)
    assert store.list_sweeps().items == [got]
    runs = all_runs(store, created.id)
    assert [r.index for r in runs] == list(range(12))
    assert len({r.config_hash for r in runs}) == 12
    assert all(r.config.config_hash() == r.config_hash for r in runs)


def test_too_many_runs_is_refused_and_nothing_stored(store: Store, make_spec: SpecFactory) -> None:
    with pytest.raises(LimitError) as info:
        store.create_sweep(make_spec(seed=list(range(10))), max_runs=39)
    assert info.value.status_code == 422
    assert info.value.field == "grid"
    assert store.list_sweeps().items == []
    assert store.create_sweep(make_spec(seed=list(range(10))), max_runs=40).n_runs == 40


def test_pagination_visits_every_sweep_once_while_inserting(
    store: Store, make_spec: SpecFactory
) -> None:
    first = [store.create_sweep(make_spec(name=f"s{i}"), max_runs=100).id for i in range(7)]
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        page = store.list_sweeps(limit=2, cursor=cursor)
        seen += [s.id for s in page.items]
        store.create_sweep(make_spec(name=f"late{pages}"), max_runs=100)  # between pages
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == sorted(first, reverse=True)  # newest first, each exactly once
    assert pages == 4


@pytest.mark.parametrize("limit", [0, -1, 1001])
def test_limit_out_of_range(store: Store, limit: int) -> None:
    with pytest.raises(LimitError) as info:
        store.list_sweeps(limit=limit)
    assert (info.value.status_code, info.value.field) == (422, "limit")


@pytest.mark.parametrize("cursor", ["garbage!", "", "cjoy"])
def test_bad_cursor(store: Store, make_spec: SpecFactory, cursor: str) -> None:
    store.create_sweep(make_spec(), max_runs=100)
    with pytest.raises(SpecError) as info:
        store.list_sweeps(cursor=cursor)  # "cjoy" is a *runs* cursor: not accepted here
    assert info.value.field == "cursor"


def test_list_runs_filters_and_pages(store: Store, make_spec: SpecFactory) -> None:
    spec = make_spec(d=[4, 8], weight_decay={"geomspace": [1e-3, 1e-1], "num": 3}, seed=[0, 1, 2])
    sweep = store.create_sweep(spec, max_runs=1000)  # 2 * 2 * 3 * 3 = 36 runs
    assert sweep.n_runs == 36
    runs = store.list_runs(sweep.id, limit=1000).items
    wd = runs[0].config.weight_decay  # from geomspace: not a "round" float
    page = store.list_runs(sweep.id, filters={"d": 8, "weight_decay": wd, "seed": 2})
    assert [(r.config.d, r.config.seed) for r in page.items] == [(8, 2), (8, 2)]
    assert all(r.config.weight_decay == wd for r in page.items)
    assert store.list_runs(sweep.id, filters={"weight_decay": 1e-3}).items[0].config.d == 4
    assert store.list_runs(sweep.id, filters={"d": "8"}, limit=1000).items.__len__() == 18
    assert store.list_runs(sweep.id, status="running").items == []
    assert len(store.list_runs(sweep.id, status="queued", limit=1000).items) == 36
    # keyset pages in expansion order
    indices: list[int] = []
    cursor = None
    while True:
        page = store.list_runs(sweep.id, limit=5, cursor=cursor)
        indices += [r.index for r in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert indices == list(range(36))
    with pytest.raises(SpecError) as info:
        store.list_runs(sweep.id, filters={"tol": 3})
    assert info.value.field == "tol"
    # the diagonal net's width column is d
    assert len(store.list_runs(sweep.id, filters={"width": 8}, limit=1000).items) == 18
    with pytest.raises(SpecError):
        store.list_runs(sweep.id, filters={"d": 2.5})
    with pytest.raises(LimitError):
        store.list_runs(sweep.id, limit=1001)


def test_not_found(store: Store) -> None:
    with pytest.raises(SweepNotFound):
        store.get_sweep(999)
    with pytest.raises(SweepNotFound):
        store.list_runs(999)
    with pytest.raises(SweepNotFound):
        store.cancel_sweep(999)
    with pytest.raises(SweepNotFound):
        store.extend_sweep(999, {"seed": [5]}, max_runs=MAX_RUNS)
    with pytest.raises(SweepNotFound):
        all_runs(store, 999)
    with pytest.raises(RunNotFound):
        store.get_run(999)
    with pytest.raises(RunNotFound):
        store.get_spectra(999)


def test_cancel(store: Store, make_spec: SpecFactory, make_result: ResultFactory) -> None:
    sweep = store.create_sweep(make_spec(), max_runs=100)
    claims = store.claim_runs("r1", limit=3, lease_s=60)
    done = claims[0]
    assert store.record_results([(done.run_id, make_result(done.config.config_hash()))]) == 1
    cancelled = store.cancel_sweep(sweep.id)
    assert cancelled.status == "cancelled"
    assert cancelled.finished_at is not None
    assert cancelled.counts["succeeded"] == 1
    assert cancelled.counts["cancelled"] == 7
    in_flight = [c.run_id for c in claims]
    assert store.cancelled_run_ids(in_flight) == sorted(in_flight[1:])
    late = [(c.run_id, make_result(c.config.config_hash())) for c in claims[1:]]
    assert store.record_results(late) == 0  # a cancelled run takes no result
    assert store.claim_runs("r1", limit=10, lease_s=60) == []
    assert store.cancel_sweep(sweep.id) == store.get_sweep(sweep.id)  # idempotent
    with pytest.raises(ConflictError):
        store.extend_sweep(sweep.id, {"seed": [7]}, max_runs=MAX_RUNS)


def test_extend_adds_only_new_runs(
    store: Store, make_spec: SpecFactory, make_result: ResultFactory
) -> None:
    sweep = store.create_sweep(make_spec(), max_runs=100)  # 8 runs
    claims = store.claim_runs("r1", limit=100, lease_s=60)
    store.record_results([(c.run_id, make_result(c.config.config_hash())) for c in claims])
    before = {r.id: r for r in all_runs(store, sweep.id)}
    assert store.get_sweep(sweep.id).status == "succeeded"

    extended = store.extend_sweep(sweep.id, {"seed": [1, 2, 3], "n": [32]}, max_runs=MAX_RUNS)
    # seed 1 exists already; seeds {0,1,2,3} x n {8,16,32} x wd {2} = 24 runs
    assert extended.n_runs == 24
    assert extended.status == "running"
    assert extended.finished_at is None
    assert extended.spec.grid.seed == [0, 1, 2, 3]
    assert extended.counts["succeeded"] == 8
    assert extended.counts["queued"] == 16
    after = all_runs(store, sweep.id)
    assert [r.index for r in after] == list(range(24))
    for run in after:
        if run.id in before:
            assert run == before[run.id]  # finished runs kept as they were
    assert len({r.config_hash for r in after}) == 24
    again = store.extend_sweep(sweep.id, {"seed": [3]}, max_runs=MAX_RUNS)  # nothing new
    assert again.n_runs == 24
    with pytest.raises(SpecError) as info:
        store.extend_sweep(sweep.id, {"alpha": [1.0]}, max_runs=MAX_RUNS)  # the sweep uses n
    assert info.value.field == "grid.alpha"
    with pytest.raises(SpecError):
        store.extend_sweep(sweep.id, {"width": [3]}, max_runs=MAX_RUNS)
    with pytest.raises(SpecError):
        store.extend_sweep(sweep.id, {"n": [-5]}, max_runs=MAX_RUNS)
    with pytest.raises(LimitError):
        store.extend_sweep(sweep.id, {"seed": list(range(4, 40))}, max_runs=100)
    assert store.get_sweep(sweep.id).n_runs == 24


def test_extend_teacher_axis(store: Store, make_spec: SpecFactory) -> None:
    sweep = store.create_sweep(make_spec(), max_runs=100)
    extended = store.extend_sweep(sweep.id, {"gamma": [2.0]}, max_runs=MAX_RUNS)
    assert extended.n_runs == 16
    assert extended.status == "queued"  # never claimed: still queued
    gammas = {r.config.teacher.gamma for r in all_runs(store, sweep.id)}
    assert gammas == {1.0, 2.0}


def _quadratic(**over: Any) -> SweepSpec:
    """A quadratic sweep d = [4, 6], n = [20], weight_decay = [0.1], seed = [0] (``over``:
    grid axes; ``training`` the training spec)."""
    training = over.pop("training", {})
    grid = {"d": [4, 6], "n": [20], "weight_decay": [0.1], "seed": [0], **over}
    return SweepSpec.model_validate({"model": "quadratic", "grid": grid, "training": training})


def test_the_width_column_holds_the_effective_width_for_filters_and_points(
    store: Store,
) -> None:
    axis = store.create_sweep(_quadratic(width=[2, 9]), max_runs=100)
    ratio = store.create_sweep(_quadratic(width_ratio=[0.5, 2]), max_runs=100)
    default = store.create_sweep(_quadratic(training={"second_layer": "signed"}), max_runs=100)
    expected = {
        axis.id: [(4, 2), (4, 9), (6, 2), (6, 9)],
        ratio.id: [(4, 2), (4, 8), (6, 3), (6, 12)],
        default.id: [(4, 8), (6, 12)],  # signed second layer: 2d
    }
    for sweep_id, pairs in expected.items():
        points = store.run_points(sweep_id)
        assert [(p.d, p.width) for p in points] == pairs
        runs = all_runs(store, sweep_id)
        assert [r.config.width for r in runs] == [w for _, w in pairs]
    assert [r.config.d for r in store.list_runs(axis.id, filters={"width": 9}).items] == [4, 6]
    assert [r.config.d for r in store.list_runs(ratio.id, filters={"width": 12}).items] == [6]
    assert store.list_runs(default.id, filters={"width": 9}).items == []


def test_extend_the_width_axis(store: Store) -> None:
    sweep = store.create_sweep(_quadratic(width=[2]), max_runs=100)
    extended = store.extend_sweep(sweep.id, {"width": [2, 5]}, max_runs=MAX_RUNS)
    assert extended.spec.grid.width == [2, 5] and extended.n_runs == 4
    assert [(p.d, p.width) for p in store.run_points(sweep.id)] == [(4, 2), (6, 2), (4, 5), (6, 5)]
    ratio = store.create_sweep(_quadratic(width_ratio=[0.5]), max_runs=100)
    more = store.extend_sweep(ratio.id, {"width_ratio": [1.0]}, max_runs=MAX_RUNS)
    assert more.spec.grid.width_ratio == [0.5, 1.0] and more.n_runs == 4
    # a range extends by its rounded widths
    ranged = store.create_sweep(_quadratic(width={"geomspace": [1, 4], "num": 3}), max_runs=100)
    assert store.extend_sweep(ranged.id, {"width": [8]}, max_runs=MAX_RUNS).spec.grid.width == [
        1, 2, 4, 8,
    ]  # fmt: skip
    # training.width moves into the grid: its runs keep their identity
    fixed = store.create_sweep(_quadratic(training={"width": 3}), max_runs=100)
    hashes = {r.config_hash for r in all_runs(store, fixed.id)}
    grown = store.extend_sweep(fixed.id, {"width": [7]}, max_runs=MAX_RUNS)
    assert grown.spec.training.width is None and grown.spec.grid.width == [3, 7]
    assert hashes <= {r.config_hash for r in all_runs(store, fixed.id)} and grown.n_runs == 4
    for sweep_id, grid, field in (
        (ratio.id, {"width": [3]}, "grid.width"),  # its widths are grid.width_ratio
        (sweep.id, {"width_ratio": [1.0]}, "grid.width_ratio"),
        (fixed.id, {"width": [0]}, "grid.width"),
    ):
        with pytest.raises(SpecError) as info:
            store.extend_sweep(sweep_id, grid, max_runs=MAX_RUNS)
        assert info.value.field == field, (grid, info.value)
    plain = store.create_sweep(_quadratic(), max_runs=100)
    with pytest.raises(SpecError, match="default width") as info:
        store.extend_sweep(plain.id, {"width": [3]}, max_runs=MAX_RUNS)
    assert info.value.field == "grid.width"


def test_insert_2000_runs_in_one_batch(store: Store, make_spec: SpecFactory) -> None:
    # Speed is measured in bench/, never asserted here (shared, noisy machines).
    spec = make_spec(
        d=[10, 20],
        n=[10, 20, 40, 80, 160],
        weight_decay={"geomspace": [1e-3, 1e-1], "num": 20},
        seed=list(range(10)),
    )
    sweep = store.create_sweep(spec, max_runs=10_000)
    assert sweep.n_runs == 2000
    assert sweep.counts["queued"] == 2000
    runs = all_runs(store, sweep.id)
    assert len(runs) == 2000
    assert len({r.config_hash for r in runs}) == 2000
