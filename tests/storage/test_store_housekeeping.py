"""Sweep housekeeping on each backend: rename, tags, archive, delete (with reuse kept)."""

from __future__ import annotations

import pytest
from factories import all_runs, diagonal_spec, finish, result, spectrum

from service.errors import SweepNotFound
from service.storage import Store


def test_rename_tags_and_archive_change_only_what_is_given(store: Store) -> None:
    sweep = store.create_sweep(diagonal_spec(name="first"), max_runs=100)
    renamed = store.update_sweep(sweep.id, name="renamed", tags=["paper", "d8", "paper"])
    assert (renamed.name, renamed.spec.name, renamed.tags) == (
        "renamed",
        "renamed",
        ["d8", "paper"],
    )
    assert not renamed.archived
    archived = store.update_sweep(sweep.id, archived=True)
    assert (archived.name, archived.tags, archived.archived) == ("renamed", ["d8", "paper"], True)
    assert store.update_sweep(sweep.id, tags=[]).tags == []
    with pytest.raises(SweepNotFound):
        store.update_sweep(sweep.id + 100, name="x")


def test_list_filters_on_a_tag_and_hides_archived_sweeps(store: Store) -> None:
    a = store.create_sweep(diagonal_spec(name="a"), max_runs=100)
    b = store.create_sweep(diagonal_spec(name="b", seed=[5]), max_runs=100)
    c = store.create_sweep(diagonal_spec(name="c", seed=[6]), max_runs=100)
    store.update_sweep(a.id, tags=["keep"])
    store.update_sweep(b.id, tags=["keep", "old"], archived=True)

    def names(**kw: object) -> list[str]:
        return [s.name for s in store.list_sweeps(**kw).items]  # type: ignore[arg-type]

    assert names() == ["c", "a"]
    assert names(archived=True) == ["b"]
    assert names(archived=None) == ["c", "b", "a"]
    assert names(tag="keep") == ["a"]
    assert names(tag="keep", archived=None) == ["b", "a"]
    assert names(tag="none") == []
    page = store.list_sweeps(limit=1, archived=None)  # pagination still walks every sweep
    rest = store.list_sweeps(limit=10, archived=None, cursor=page.next_cursor)
    assert [s.id for s in page.items + rest.items] == [c.id, b.id, a.id]


def test_delete_removes_runs_spectra_and_curves_and_a_reusing_sweep_keeps_its_copy(
    store: Store,
) -> None:
    first = store.create_sweep(diagonal_spec(name="first"), max_runs=100)
    runs = all_runs(store, first.id)
    store.record_results([(r.id, result(r.config_hash, 0.5, spectra=[spectrum()])) for r in runs])
    second = store.create_sweep(diagonal_spec(name="second"), max_runs=100)
    reused = all_runs(store, second.id)
    assert all(r.reused_from is not None and r.status == "succeeded" for r in reused)

    assert store.delete_sweep(first.id) == len(runs)

    with pytest.raises(SweepNotFound):
        store.get_sweep(first.id)
    assert store.cancelled_run_ids([r.id for r in runs]) == sorted(r.id for r in runs)
    kept = all_runs(store, second.id)
    assert [r.metrics.excess_risk for r in kept if r.metrics] == [0.5] * len(kept)
    assert all(r.reused_from is None for r in kept)  # never names a deleted run
    assert all(store.get_spectra(r.id) for r in kept)
    assert [s.id for s in store.list_sweeps().items] == [second.id]


def test_delete_of_a_running_sweep_drops_late_results(store: Store) -> None:
    sweep = store.create_sweep(diagonal_spec(), max_runs=100)
    claims = store.claim_runs("runner-a", limit=10, lease_s=60)
    store.delete_sweep(sweep.id)
    stored = store.record_results([(c.run_id, result(c.config.config_hash())) for c in claims])
    assert stored == 0
    finish(store, store.create_sweep(diagonal_spec(seed=[9]), max_runs=100).id)
