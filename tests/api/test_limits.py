"""Limits: body size (413), page size and runs per sweep (422), points per spectrum
(truncated, never silently) and submissions per minute (429); a refusal stores nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
from api_helpers import MAX_RUNS, SPEC, TestClient, result, spec

from api.limits import BodySizeLimit
from api.main import create_app
from service.auth import TokenService
from service.config import Settings
from service.storage import Store, make_store
from service.storage.tokens import TokenStore


def app_client(settings: Settings, store: Store, **changes: Any) -> TestClient:
    return TestClient(create_app(settings.model_copy(update=changes), store))


def nothing_stored(store: Store) -> bool:
    return store.list_sweeps().items == []


def test_body_over_the_declared_limit_is_413(settings: Settings, store: Store) -> None:
    body = json.dumps({**SPEC, "name": "x" * 150}).encode()
    with app_client(settings, store, max_body_bytes=len(body) - 1) as c:
        r = c.post("/v1/sweeps", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 413
        assert "SCALESWEEP_MAX_BODY_BYTES" in r.json()["detail"]
        assert nothing_stored(store)
    with app_client(settings, store, max_body_bytes=len(body)) as c:
        r = c.post("/v1/sweeps", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 201


def test_streamed_body_over_the_limit_is_413(settings: Settings, store: Store) -> None:
    body = json.dumps(SPEC).encode()

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        for i in range(0, len(body), 16):
            yield body[i : i + 16]

    with app_client(settings, store, max_body_bytes=len(body) - 1) as c:
        r = c.post("/v1/sweeps", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and nothing_stored(store)
    with app_client(settings, store, max_body_bytes=len(body)) as c:
        r = c.post("/v1/sweeps", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 201, r.text


@pytest.mark.anyio
async def test_body_longer_than_its_content_length_is_counted() -> None:
    reached: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover - refused
        reached.append((await receive())["body"])

    sent: list[MutableMapping[str, Any]] = []
    parts = [b"a" * 60, b"b" * 60]

    async def receive() -> dict[str, Any]:
        chunk = parts.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(parts)}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/sweeps",
        "headers": [(b"content-length", b"10")],  # a lie
    }
    await BodySizeLimit(app, max_bytes=100)(scope, receive, send)
    assert sent[0]["status"] == 413 and reached == []


def test_page_size_above_1000_is_422(client: TestClient) -> None:
    r = client.get("/v1/sweeps", params={"limit": 1001})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "limit"]


def test_too_many_runs_per_sweep_is_422(client: TestClient, store: Store) -> None:
    r = client.post("/v1/sweeps", json=spec(grid__seed=list(range(MAX_RUNS))))
    assert r.status_code == 422 and nothing_stored(store)


def _finished_run_with_spectrum(c: TestClient, store: Store) -> int:
    sid = c.post("/v1/sweeps", json=SPEC).json()["id"]
    run = store.list_runs(sid, limit=1).items[0]
    store.record_results([(run.id, result(run.config_hash, 0.2, spectrum=True))])
    return run.id  # the spectrum has 3 values: [1.0, 0.5, 0.25]


def test_spectrum_points_are_capped_and_the_cut_is_said(settings: Settings, store: Store) -> None:
    with app_client(settings, store, max_spectrum_points=2) as c:
        rid = _finished_run_with_spectrum(c, store)
        (sp,) = c.get(f"/v1/runs/{rid}/spectrum").json()["spectra"]
        assert sp["values"] == [1.0, 0.5]
        assert sp["n_values_total"] == 3 and sp["truncated"] is True
        (sp,) = c.get(f"/v1/runs/{rid}/spectrum", params={"max_points": 1}).json()["spectra"]
        assert sp["values"] == [1.0] and sp["truncated"] is True
        (sp,) = c.get(f"/v1/runs/{rid}/spectrum", params={"max_points": 50}).json()["spectra"]
        assert sp["values"] == [1.0, 0.5] and sp["truncated"] is True  # the server's cap wins
        r = c.get(f"/v1/runs/{rid}/spectrum", params={"max_points": 0})
        assert r.status_code == 422
        theory = c.get(f"/v1/runs/{rid}/spectrum", params={"theory": "true"}).json()
        assert theory["spectra"][0]["n_values_total"] == 3


def test_spectrum_within_the_limit_is_whole(client: TestClient, store: Store) -> None:
    rid = _finished_run_with_spectrum(client, store)
    (sp,) = client.get(f"/v1/runs/{rid}/spectrum").json()["spectra"]
    assert sp["values"] == [1.0, 0.5, 0.25]
    assert sp["n_values_total"] == 3 and sp["truncated"] is False


def test_submissions_per_minute_answer_429_with_retry_after(
    settings: Settings, store: Store
) -> None:
    with app_client(settings, store, submissions_per_minute=2) as c:
        assert c.post("/v1/sweeps", json=SPEC).status_code == 201
        assert c.post("/v1/sweeps", json=SPEC).status_code == 201
        r = c.post("/v1/sweeps", json=SPEC)
        assert r.status_code == 429
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert "SCALESWEEP_SUBMISSIONS_PER_MINUTE" in r.json()["detail"]
        assert len(store.list_sweeps().items) == 2  # the refused one stored nothing
        assert c.get("/v1/sweeps").status_code == 200  # reads are not limited


def test_submission_limit_is_per_token(settings: Settings, store: Store) -> None:
    tokens = TokenService(TokenStore.of(store))
    on = settings.model_copy(update={"auth": "on", "submissions_per_minute": 1})
    a = {"Authorization": f"Bearer {tokens.create('a', 'write').token}"}
    b = {"Authorization": f"Bearer {tokens.create('b', 'write').token}"}
    with TestClient(create_app(on, store, verify_token=tokens.verify)) as c:
        assert c.post("/v1/sweeps", json=SPEC, headers=a).status_code == 201
        assert c.post("/v1/sweeps", json=SPEC, headers=a).status_code == 429
        assert c.post("/v1/sweeps", json=SPEC, headers=b).status_code == 201


def test_the_submission_limit_holds_across_api_processes(settings: Settings) -> None:
    # two apps, each with its own store (its own connection pool) on one database: what two
    # API processes of a team deployment share
    limited = settings.model_copy(update={"submissions_per_minute": 3})
    stores = [make_store(settings.database_url) for _ in range(2)]
    try:
        apps = [TestClient(create_app(limited, st)) for st in stores]
        codes = [apps[i % 2].post("/v1/sweeps", json=SPEC).status_code for i in range(6)]
        assert codes == [201, 201, 201, 429, 429, 429]
        assert len(stores[0].list_sweeps().items) == 3
    finally:
        for st in stores:
            st.close()
