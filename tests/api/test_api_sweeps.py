"""POST/GET sweeps: round trip, validation (422 naming the field, nothing stored), pagination,
404s, cancel, extend, run listing with filters."""

from __future__ import annotations

import json
from typing import Any

import pytest
from api_helpers import MAX_RUNS, N_RUNS, SPEC, TestClient, result, spec

from service.spec import SweepSpec
from service.storage import Store


def submit(client: TestClient, body: dict[str, Any] | None = None) -> dict[str, Any]:
    r = client.post("/v1/sweeps", json=body or SPEC)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def where(response: Any) -> str:
    """Every location and message of a 422 body, as one string."""
    detail = response.json()["detail"]
    assert isinstance(detail, list), detail
    return " | ".join(".".join(map(str, d["loc"])) + ": " + d["msg"] for d in detail)


def assert_nothing_stored(client: TestClient, store: Store) -> None:
    assert client.get("/v1/sweeps").json() == {"items": [], "next_cursor": None}
    assert store.list_sweeps(limit=1000).items == []


def test_submit_then_get_returns_an_equal_spec(client: TestClient) -> None:
    accepted = submit(client)
    assert accepted["status"] == "queued" and accepted["n_runs"] == N_RUNS
    got = client.get(f"/v1/sweeps/{accepted['id']}")
    assert got.status_code == 200
    body = got.json()
    assert SweepSpec.model_validate(body["spec"]) == SweepSpec.model_validate(SPEC)
    assert body["counts"]["queued"] == N_RUNS and body["finished_at"] is None
    assert body["created_at"]


INVALID = [
    ("unknown field", spec(colour="red"), "colour"),
    ("negative d", spec(grid__d=[-4]), "grid.d"),
    ("both n and alpha", spec(grid__alpha=[1.0]), "alpha"),
    ("empty axis", spec(grid__weight_decay=[]), "grid.weight_decay"),
    ("empty seed axis", spec(grid__seed=[]), "grid.seed"),
    ("negative noise", spec(teacher={"noise": -1.0}), "teacher.noise"),
    ("n below 1", spec(grid__n=[0]), "grid.n"),
    ("string nan", spec(grid__weight_decay=["nan"]), "grid.weight_decay"),
    ("string Infinity", spec(teacher={"gamma": "Infinity"}), "teacher.gamma"),
]


@pytest.mark.parametrize(("case", "body", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_spec_is_refused_naming_the_field(
    client: TestClient, store: Store, case: str, body: dict[str, Any], field: str
) -> None:
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 422, r.text
    assert field in where(r)
    assert_nothing_stored(client, store)


@pytest.mark.parametrize("token", ["1e999", "-1e999", "Infinity", "NaN"])
def test_non_finite_lambda_in_raw_json_is_refused(
    client: TestClient, store: Store, token: str
) -> None:
    raw = json.dumps(SPEC).replace('"weight_decay": [0.01, 0.1]', f'"weight_decay": [{token}]')
    assert token in raw
    r = client.post("/v1/sweeps", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert "weight_decay" in where(r)
    assert_nothing_stored(client, store)


def test_too_many_runs_is_refused_naming_grid(client: TestClient, store: Store) -> None:
    body = spec(grid__seed=list(range(MAX_RUNS)))  # 6 * MAX_RUNS runs
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "grid"]
    assert str(MAX_RUNS) in r.json()["detail"][0]["msg"]
    assert_nothing_stored(client, store)


def test_pagination_visits_every_sweep_once_while_sweeps_are_added(client: TestClient) -> None:
    before = [submit(client)["id"] for _ in range(7)]
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/sweeps", params=params).json()
        seen += [s["id"] for s in page["items"]]
        submit(client)  # a newer sweep lands between page fetches
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == sorted(before, reverse=True)  # newest first, each exactly once


@pytest.mark.parametrize("limit", [0, 1001, -5])
def test_limit_out_of_range_is_422(client: TestClient, limit: int) -> None:
    r = client.get("/v1/sweeps", params={"limit": limit})
    assert r.status_code == 422
    assert "limit" in where(r)


def test_invalid_cursor_is_422_naming_cursor(client: TestClient) -> None:
    r = client.get("/v1/sweeps", params={"cursor": "not-a-cursor"})
    assert r.status_code == 422
    assert where(r).startswith("query.cursor")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/sweeps/999",
        "/v1/sweeps/999/runs",
        "/v1/sweeps/999/exponents",
        "/v1/sweeps/999/events",
        "/v1/runs/999",
        "/v1/runs/999/spectrum",
    ],
)
def test_unknown_ids_are_404(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404
    assert "999" in r.json()["detail"]


@pytest.mark.parametrize("path", ["/v1/sweeps/999/cancel", "/v1/sweeps/999/extend"])
def test_unknown_ids_are_404_on_post(client: TestClient, path: str) -> None:
    r = client.post(path, json={"grid": {"seed": [5]}})
    assert r.status_code == 404


def test_cancel_marks_queued_runs_cancelled(client: TestClient, store: Store) -> None:
    sid = submit(client)["id"]
    run = store.list_runs(sid, limit=1).items[0]
    store.record_results([(run.id, result(run.config_hash))])
    r = client.post(f"/v1/sweeps/{sid}/cancel")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "cancelled"
    assert body["counts"]["cancelled"] == N_RUNS - 1 and body["counts"]["succeeded"] == 1
    extend = client.post(f"/v1/sweeps/{sid}/extend", json={"grid": {"seed": [7]}})
    assert extend.status_code == 409


def test_extend_adds_runs_and_keeps_finished_ones(client: TestClient, store: Store) -> None:
    sid = submit(client)["id"]
    first = store.list_runs(sid, limit=1).items[0]
    store.record_results([(first.id, result(first.config_hash, 0.5))])
    r = client.post(f"/v1/sweeps/{sid}/extend", json={"grid": {"seed": [2, 3]}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["n_runs"] == 2 * N_RUNS
    assert body["spec"]["grid"]["seed"] == [0, 1, 2, 3]
    assert body["counts"]["succeeded"] == 1
    assert client.get(f"/v1/runs/{first.id}").json()["metrics"]["excess_risk"] == 0.5


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"grid": {"colour": [1]}}, "grid.colour"),
        ({"grid": {"seed": [-1]}}, "grid"),
        ({"grid": {"seed": [1.5]}}, "grid"),
        ({"grid": {"n": []}}, "grid.n"),
        ({"grid": {}}, "grid"),
        ({"grid": {"weight_decay": ["nan"]}}, "grid.weight_decay"),
        ({"grids": {"seed": [3]}}, "grids"),
        ({"grid": {"alpha": [2.0]}}, "grid"),  # the sweep has an n axis, not alpha
    ],
)
def test_extend_validates_axes(
    client: TestClient, store: Store, body: dict[str, Any], field: str
) -> None:
    sid = submit(client)["id"]
    r = client.post(f"/v1/sweeps/{sid}/extend", json=body)
    assert r.status_code == 422, r.text
    assert field in where(r)
    assert store.get_sweep(sid).n_runs == N_RUNS


def test_runs_list_filters_and_pages(client: TestClient, store: Store) -> None:
    sid = submit(client)["id"]
    url = f"/v1/sweeps/{sid}/runs"
    everything: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = client.get(url, params={"limit": 5, **({"cursor": cursor} if cursor else {})})
        everything += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert [r["index"] for r in everything] == list(range(N_RUNS))

    runs = store.list_runs(sid, limit=100).items
    done = [r for r in runs if r.config.seed == 1][:2]
    store.record_results([(r.id, result(r.config_hash)) for r in done])
    by_status = client.get(url, params={"status": "succeeded"}).json()["items"]
    assert {r["id"] for r in by_status} == {r.id for r in done}
    n32 = client.get(url, params={"n": 32, "weight_decay": 0.1}).json()["items"]
    assert len(n32) == 2 and all(
        r["config"]["n"] == 32 and r["config"]["weight_decay"] == 0.1 for r in n32
    )
    combo = {"seed": 0, "d": 8, "model": "diagonal", "gamma": 1.0, "noise": 0.01}
    assert len(client.get(url, params=combo).json()["items"]) == N_RUNS // 2
    assert client.get(url, params={"model": "quadratic"}).json()["items"] == []
    assert client.get(url, params={"status": "exploded"}).status_code == 422
    assert client.get(url, params={"seed": -1}).status_code == 422


def test_run_detail_and_spectrum(client: TestClient, store: Store) -> None:
    sid = submit(client)["id"]
    run = store.list_runs(sid, limit=1).items[0]
    empty = client.get(f"/v1/runs/{run.id}/spectrum")
    assert empty.status_code == 200
    assert empty.json() == {"run_id": run.id, "spectra": [], "theory": None, "theory_error": None}
    store.record_results([(run.id, result(run.config_hash, 0.25, spectrum=True))])
    detail = client.get(f"/v1/runs/{run.id}").json()
    assert detail["status"] == "succeeded"
    assert detail["metrics"]["stop_reason"] == "gradient"
    assert detail["attempts"] >= 0 and "curve" in detail and detail["finished_at"]
    spectra = client.get(f"/v1/runs/{run.id}/spectrum").json()["spectra"]
    assert spectra[0]["kind"] == "abs_theta" and spectra[0]["values"] == [1.0, 0.5, 0.25]


def test_openapi_documents_every_route(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    expected = {
        ("post", "/v1/sweeps"),
        ("get", "/v1/sweeps"),
        ("get", "/v1/sweeps/{sweep_id}"),
        ("post", "/v1/sweeps/{sweep_id}/cancel"),
        ("post", "/v1/sweeps/{sweep_id}/extend"),
        ("get", "/v1/sweeps/{sweep_id}/runs"),
        ("get", "/v1/sweeps/{sweep_id}/exponents"),
        ("get", "/v1/sweeps/{sweep_id}/theory"),
        ("get", "/v1/sweeps/{sweep_id}/phase-diagram"),
        ("get", "/v1/sweeps/{sweep_id}/spectra/summary"),
        ("get", "/v1/sweeps/{sweep_id}/events"),
        ("get", "/v1/runs/{run_id}"),
        ("get", "/v1/runs/{run_id}/spectrum"),
        ("get", "/healthz"),
    }
    found = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert expected <= found
    for path, method in ((p, m) for m, p in expected):
        assert doc["paths"][path][method]["description"], (method, path)
