"""service.client against the real app (TestClient as transport): pages, events, errors."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator

import httpx
import pytest
from factories import SMALL_SPEC, SMALL_SPEC_RUNS, finish
from starlette.exceptions import StarletteDeprecationWarning

from api.main import create_app
from service.client import Client, Progress, ServerError
from service.config import Settings
from service.storage import Store

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)  # httpx2 wanted, httpx works
    from fastapi.testclient import TestClient

SPEC = SMALL_SPEC
N_RUNS = SMALL_SPEC_RUNS


@pytest.fixture
def store(sqlite_store: Store) -> Store:
    return sqlite_store


@pytest.fixture
def app_client(store: Store) -> Iterator[Client]:
    """A Client on the in-process app."""
    settings = Settings(_env_file=None, database_url="sqlite://")  # type: ignore[call-arg]
    app = create_app(settings, store, events_poll_s=0.02)
    with Client(http=TestClient(app)) as client:
        yield client


def test_client_round_trip_and_cursor_following(app_client: Client, store: Store) -> None:
    submitted = app_client.submit(SPEC)
    assert submitted.n_runs == N_RUNS and submitted.status == "queued"
    for _ in range(6):
        app_client.submit(SPEC)
    assert [s.id for s in app_client.list_sweeps(page_size=2)] == list(range(7, 0, -1))
    runs = list(app_client.list_runs(submitted.id, page_size=5))  # three pages
    assert [r.index for r in runs] == list(range(N_RUNS))
    assert len(list(app_client.list_runs(submitted.id, seed=1, n=32))) == 2
    extended = app_client.extend(submitted.id, {"seed": [2]})
    assert extended.n_runs == N_RUNS + N_RUNS // 2
    assert app_client.cancel(submitted.id).status == "cancelled"
    assert app_client.get_run(runs[0].id).config == runs[0].config
    assert app_client.get_spectra(runs[0].id) == []
    assert app_client.health()["status"] == "ok"


def test_wait_for_follows_events_and_reports_progress(app_client: Client, store: Store) -> None:
    sid = app_client.submit(SPEC).id
    seen: list[Progress] = []
    worker = threading.Thread(target=finish, args=(store, sid, 0.03))
    worker.start()
    try:
        final = app_client.wait_for(sid, seen.append, timeout_s=30)
    finally:
        worker.join()
    assert final.status == "succeeded" and final.counts["succeeded"] == N_RUNS
    assert seen and seen[-1].done == N_RUNS and seen[-1].n_runs == N_RUNS
    report = app_client.exponents(sid, by=["weight_decay"])
    assert all(g.exponent == pytest.approx(1.0) for g in report.groups)


def test_wait_for_polls_when_the_event_stream_breaks(store: Store) -> None:
    app = create_app(Settings(_env_file=None), store)  # type: ignore[call-arg]
    inner = TestClient(app)
    sid = inner.post("/v1/sweeps", json=SPEC).json()["id"]
    finish(store, sid)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            raise httpx.ReadError("proxy dropped the stream", request=request)
        r = inner.request(request.method, request.url.path, params=request.url.params)
        return httpx.Response(r.status_code, content=r.content, headers=r.headers)

    seen: list[Progress] = []
    with Client("http://sweeps.test", transport=httpx.MockTransport(handler)) as client:
        final = client.wait_for(sid, seen.append, poll_s=0.01)
    assert final.status == "succeeded" and seen[-1].done == N_RUNS


def test_client_raises_server_errors_with_detail() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"detail": "no sweep with id 5"})

    with Client("http://x", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(ServerError) as info:
            client.get_sweep(5)
    assert info.value.status_code == 404 and "no sweep with id 5" in str(info.value)
