"""Hostile input on both backends: every class of bad body gets a 4xx naming the field (or
saying what is wrong with the body), never a 5xx, and nothing is stored.

The classes: integers beyond the SQL columns (d, n, seed, extend's seed), non-integers where
integers are meant, link powers that overflow or underflow lambda, names with control
characters, NUL, bidirectional controls or a lone surrogate, bodies nested too deeply or not
UTF-8, widths out of range (0, above 1,000,000, fractions, on the diagonal model, given twice)
in a spec, an extension or a filter, and runs admission control refuses (memory, time) with
the estimate in the message.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from api_helpers import MAX_RUNS, TestClient

from api.main import create_app
from service.config import Settings
from service.storage import Store, make_store, upgrade_head

WORKER_MB = 24 * 1024
"""The deployment's largest worker in these tests (the estimate is compared against it)."""

BASE: dict[str, Any] = {
    "model": "diagonal",
    "grid": {"d": [10], "n": [20, 40], "weight_decay": [0.1]},
}


def body(path: str, value: Any, *, drop: str | None = None, **top: Any) -> dict[str, Any]:
    """BASE with ``path`` (dotted) set to ``value`` (and ``drop`` removed from the grid)."""
    out = copy.deepcopy(BASE)
    out.update(top)
    if path:
        *parents, leaf = path.split(".")
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    if drop is not None:
        del out["grid"][drop]
    return out


@pytest.fixture
def app_store(store_url: str) -> Iterator[tuple[TestClient, Store]]:
    """The app on a migrated database of each backend (SQLite, PostgreSQL)."""
    upgrade_head(store_url)
    store = make_store(store_url)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=store_url,
        max_runs_per_sweep=MAX_RUNS,
        worker_memory_mb=WORKER_MB,
        run_time_limit_s=3600.0,
    )
    with TestClient(create_app(settings, store), raise_server_exceptions=False) as client:
        yield client, store
    store.close()


def _nothing_stored(client: TestClient) -> None:
    listed = client.get("/v1/sweeps", params={"archived": "all"})
    assert listed.status_code == 200 and listed.json()["items"] == []


def _named(resp: Any, field: str) -> None:
    """A 422 whose error names ``field`` in its location or its message."""
    assert resp.status_code == 422, resp.text
    errors = resp.json()["detail"]
    text = " ".join(".".join(map(str, e["loc"])) + " " + e["msg"] for e in errors)
    assert field in text, text


SPECS = [
    ("grid.d", body("grid.d", [10**30]), "grid.d"),
    ("grid.d", body("grid.d", [2**31]), "grid.d"),
    ("grid.d negative", body("grid.d", [-3]), "grid.d"),
    ("grid.n", body("grid.n", [1e19]), "grid.n"),
    ("grid.n", body("grid.n", [1e12]), "grid.n"),
    ("grid.n fraction", body("grid.n", [10.5]), "grid.n"),
    ("grid.n below 1", body("grid.n", [0.4]), "grid.n"),
    ("grid.seed", body("grid.seed", [2**63]), "grid.seed"),
    ("grid.seed", body("grid.seed", [2**31]), "grid.seed"),
    (
        "grid.alpha",
        {"model": "quadratic", "grid": {"d": [10_000], "alpha": [1e6], "weight_decay": [0.1]}},
        "grid.alpha",
    ),
    ("training.max_steps", body("training.max_steps", 10**30), "training.max_steps"),
    ("measure.test_samples", body("measure.test_samples", 10**12), "measure.test_samples"),
    ("training.width", body("training.width", 10**9, model="quadratic"), "training.width"),
    ("grid.width 0", body("grid.width", [0, 4], model="quadratic"), "grid.width"),
    ("grid.width 10**7", body("grid.width", [10**7], model="quadratic"), "grid.width"),
    ("grid.width fraction", body("grid.width", [10.5], model="quadratic"), "grid.width"),
    ("grid.width diagonal", body("grid.width", [4]), "grid.width"),
    (
        "grid.width and training.width",
        body("grid.width", [4], model="quadratic", training={"width": 8}),
        "training.width",
    ),
    (
        "grid.width_ratio too wide",
        body("grid.width_ratio", [2e5], model="quadratic"),
        "grid.width_ratio",
    ),
    (
        "link power overflow",
        body("link", {"weight_decay": {"coef": 1.0, "power": 400}}, drop="weight_decay"),
        "link.weight_decay.power",
    ),
    (
        "link power underflow",
        body("link", {"weight_decay": {"coef": 1.0, "power": -400}}, drop="weight_decay"),
        "link.weight_decay.power",
    ),
    ("name ESC", body("name", "run \x1b[31mred"), "name"),
    ("name BEL", body("name", "bell\x07"), "name"),
    ("name CR LF", body("name", "two\r\nlines"), "name"),
    ("name NUL", body("name", "nul\x00byte"), "name"),
    ("name RLO", body("name", "evil\u202etxt.exe"), "name"),
]


@pytest.mark.parametrize(("case", "spec", "field"), SPECS, ids=[c[0] for c in SPECS])
def test_bad_specs_are_422_naming_the_field_and_store_nothing(
    app_store: tuple[TestClient, Store], case: str, spec: dict[str, Any], field: str
) -> None:
    client, _ = app_store
    _named(client.post("/v1/sweeps", json=spec), field)
    _nothing_stored(client)


ADMISSION = [
    # (spec, field, words the estimate must contain)
    (body("grid.d", [100_000], model="quadratic"), "grid.d", "TiB of memory"),
    ({"model": "diagonal", "grid": {"d": [1_000_000], "n": [100_000], "weight_decay": [0.1]}},
     "grid.d", "GiB of memory"),
    (
        {"model": "quadratic", "grid": {"d": [10_000], "alpha": [1.0], "weight_decay": [0.1]}},
        "grid.alpha",
        "of memory",
    ),
    (
        {"model": "quadratic", "grid": {"d": [5000], "n": [300_000], "weight_decay": [0.1]},
         "training": {"optimizer": "convex"}},
        "grid.d",
        "per-run time limit",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "field", "words"), ADMISSION)
def test_runs_that_cannot_run_are_refused_with_the_estimate(
    app_store: tuple[TestClient, Store], spec: dict[str, Any], field: str, words: str
) -> None:
    client, _ = app_store
    resp = client.post("/v1/sweeps", json=spec)
    _named(resp, field)
    assert words in resp.json()["detail"][0]["msg"], resp.text
    _nothing_stored(client)


RAW = [
    (b'{"model":"diagonal","name":"\\ud800","grid":{"d":[10],"n":[10],"weight_decay":[0.1]}}',
     "name"),
    (b"[" * 5000 + b"]" * 5000, "nests too deeply"),
    (b'{"model":"diagonal","name":"\xff\xfe","grid":{}}', "not UTF-8"),
    (b'{"model": "diagonal", "grid": ', "not valid JSON"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "words"), RAW, ids=["surrogate", "nested", "latin-1", "cut"])
def test_unreadable_bodies_are_422_with_a_reason(
    app_store: tuple[TestClient, Store], raw: bytes, words: str
) -> None:
    client, _ = app_store
    resp = client.post("/v1/sweeps", content=raw, headers={"content-type": "application/json"})
    _named(resp, words)
    _nothing_stored(client)


def test_extend_patch_and_ids_refuse_out_of_range_values(
    app_store: tuple[TestClient, Store],
) -> None:
    client, store = app_store
    created = client.post("/v1/sweeps", json=BASE)
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    before = store.get_sweep(sid).n_runs
    for grid, field in (
        ({"seed": [10**30]}, "grid.seed"),
        ({"n": [10.5]}, "grid.n"),
        ({"n": [2**31]}, "grid.n"),
        ({"d": [10**8]}, "grid.d"),  # admission: the optimizer's state alone is 74 GB
    ):
        _named(client.post(f"/v1/sweeps/{sid}/extend", json={"grid": grid}), field)
    assert store.get_sweep(sid).n_runs == before
    _named(client.patch(f"/v1/sweeps/{sid}", json={"name": "a\x1bb"}), "name")
    assert store.get_sweep(sid).name == ""
    for path in (f"/v1/sweeps/{10**30}", f"/v1/runs/{2**63}", f"/v1/sweeps/{sid}/runs?seed=1e30"):
        resp = client.get(path)
        assert resp.status_code == 422, (path, resp.text)


def test_bad_widths_in_extend_and_filters_are_422_and_change_nothing(
    app_store: tuple[TestClient, Store],
) -> None:
    client, store = app_store
    spec = body("grid.width", [2, 8], model="quadratic")
    created = client.post("/v1/sweeps", json=spec)
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    before = [(r.id, r.config_hash) for r in store.list_runs(sid, limit=1000).items]
    assert len(before) == 4
    for grid, field in (
        ({"width": [0]}, "grid.width"),
        ({"width": [10**7]}, "grid.width"),
        ({"width": [10.5]}, "grid.width"),
        ({"width": [-1]}, "grid.width"),
        ({"width_ratio": [0.5]}, "grid.width_ratio"),  # the sweep's widths are grid.width
        ({"width_ratio": [-0.5]}, "grid.width_ratio"),
    ):
        _named(client.post(f"/v1/sweeps/{sid}/extend", json={"grid": grid}), field)
    after = [(r.id, r.config_hash) for r in store.list_runs(sid, limit=1000).items]
    assert after == before and store.get_sweep(sid).spec.grid.width == [2, 8]
    for value in ("0", str(10**7), "2.5", "-3"):
        resp = client.get(f"/v1/sweeps/{sid}/runs", params={"width": value})
        _named(resp, "width")
    ok = client.get(f"/v1/sweeps/{sid}/runs", params={"width": 8})
    assert ok.status_code == 200
    assert [r["config"]["training"]["width"] for r in ok.json()["items"]] == [8, 8]


def test_openapi_declares_the_refusals(app_store: tuple[TestClient, Store]) -> None:
    client, _ = app_store
    paths = client.get("/openapi.json").json()["paths"]
    for path, ops in paths.items():
        if not path.startswith("/v1/"):
            continue
        for method, op in ops.items():
            codes = set(op["responses"])
            assert {"401", "422"} <= codes, (method, path, codes)
            if method in ("post", "patch", "delete"):
                assert {"403", "413"} <= codes, (method, path, codes)
    assert "429" in paths["/v1/sweeps"]["post"]["responses"]
