"""SCALESWEEP_AUTH=on: bearer tokens from the database, scopes (403) and teams (404)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from api_helpers import SPEC, TestClient, result

from api.main import create_app
from service.auth import TokenService
from service.config import Settings
from service.spec import SweepSpec
from service.storage import Store
from service.storage.tokens import TokenStore


@pytest.fixture
def tokens(store: Store) -> TokenService:
    return TokenService(TokenStore.of(store))


@pytest.fixture
def auth_client(settings: Settings, store: Store, tokens: TokenService) -> Iterator[TestClient]:
    on = settings.model_copy(update={"auth": "on"})
    app = create_app(on, store, verify_token=tokens.verify, events_poll_s=0.02)
    with TestClient(app) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make(tokens: TokenService, scope: str, team: str | None = None) -> dict[str, str]:
    return bearer(tokens.create(f"{scope}-{team}", scope, team).token)


def submit(c: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    r = c.post("/v1/sweeps", json=SPEC, headers=headers)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def routes(sweep_id: int, run_id: int) -> list[tuple[str, str]]:
    return [
        ("get", "/v1/sweeps"),
        ("get", f"/v1/sweeps/{sweep_id}"),
        ("get", f"/v1/sweeps/{sweep_id}/runs"),
        ("get", f"/v1/sweeps/{sweep_id}/exponents"),
        ("get", f"/v1/sweeps/{sweep_id}/theory"),
        ("get", f"/v1/sweeps/{sweep_id}/phase-diagram"),
        ("get", f"/v1/sweeps/{sweep_id}/spectra/summary"),
        ("get", f"/v1/sweeps/{sweep_id}/events"),
        ("get", f"/v1/runs/{run_id}"),
        ("get", f"/v1/runs/{run_id}/spectrum"),
        ("get", f"/v1/sweeps/{sweep_id}/export"),
        ("patch", f"/v1/sweeps/{sweep_id}"),
        ("delete", f"/v1/sweeps/{sweep_id}"),
        ("post", "/v1/sweeps"),
        ("post", f"/v1/sweeps/{sweep_id}/cancel"),
        ("post", f"/v1/sweeps/{sweep_id}/extend"),
    ]


def test_every_v1_route_needs_a_valid_token(
    auth_client: TestClient, store: Store, tokens: TokenService
) -> None:
    sid = store.create_sweep(SweepSpec.model_validate(SPEC), max_runs=50).id
    rid = store.list_runs(sid, limit=1).items[0].id
    revoked = tokens.create("gone", "admin")
    tokens.revoke(revoked.info.id)
    good = tokens.create("ok", "admin").token
    wrong_secret = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    for method, path in routes(sid, rid):
        for headers in (
            {},
            bearer("nope"),
            bearer(revoked.token),
            bearer(wrong_secret),
            {"Authorization": f"Basic {good}"},
        ):
            r = auth_client.request(method, path, headers=headers, json={})
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
    assert auth_client.get("/healthz").status_code == 200  # liveness stays open
    assert store.list_sweeps().items[0].id == sid and len(store.list_sweeps().items) == 1


def test_read_token_reads_but_cannot_write(
    auth_client: TestClient, store: Store, tokens: TokenService
) -> None:
    read, write = make(tokens, "read"), make(tokens, "write")
    sid = submit(auth_client, write)["id"]
    assert auth_client.get(f"/v1/sweeps/{sid}", headers=read).status_code == 200
    assert auth_client.get(f"/v1/sweeps/{sid}/runs", headers=read).status_code == 200
    for path, body in (
        ("/v1/sweeps", SPEC),
        (f"/v1/sweeps/{sid}/cancel", None),
        (f"/v1/sweeps/{sid}/extend", {"grid": {"seed": [7]}}),
    ):
        r = auth_client.post(path, json=body, headers=read)
        assert r.status_code == 403, (path, r.text)
        assert "write" in r.json()["detail"]
    sweep = store.get_sweep(sid)  # nothing changed, nothing stored
    assert sweep.status == "queued" and sweep.n_runs == 12
    assert len(store.list_sweeps().items) == 1


def test_write_and_admin_tokens_may_submit_cancel_and_extend(
    auth_client: TestClient, tokens: TokenService
) -> None:
    for scope in ("write", "admin"):
        h = make(tokens, scope)
        sid = submit(auth_client, h)["id"]
        r = auth_client.post(f"/v1/sweeps/{sid}/extend", json={"grid": {"seed": [9]}}, headers=h)
        assert r.status_code == 200 and r.json()["n_runs"] == 18
        r = auth_client.post(f"/v1/sweeps/{sid}/cancel", headers=h)
        assert r.status_code == 200 and r.json()["status"] == "cancelled"


def test_teams_see_and_change_only_their_own_sweeps(
    auth_client: TestClient, store: Store, tokens: TokenService
) -> None:
    a_write, a_read = make(tokens, "write", "a"), make(tokens, "read", "a")
    b_admin, none_write = make(tokens, "admin", "b"), make(tokens, "write")
    sa = submit(auth_client, a_write)["id"]
    sb = submit(auth_client, b_admin)["id"]
    sn = submit(auth_client, none_write)["id"]
    assert {s: store.sweep_team(s) for s in (sa, sb, sn)} == {sa: "a", sb: "b", sn: None}
    run_a = store.list_runs(sa, limit=1).items[0]
    store.record_results([(run_a.id, result(run_a.config_hash, 0.2, spectrum=True))])

    def listed(h: dict[str, str]) -> list[int]:
        return [s["id"] for s in auth_client.get("/v1/sweeps", headers=h).json()["items"]]

    assert listed(a_read) == [sa] and listed(b_admin) == [sb] and listed(none_write) == [sn]
    for method, path in routes(sa, run_a.id)[1:]:
        if path == "/v1/sweeps":
            continue
        body = {"grid": {"seed": [9]}} if path.endswith("extend") else None
        for other in (b_admin, none_write):
            r = auth_client.request(method, path, headers=other, json=body)
            assert r.status_code == 404, (method, path, r.text)
            assert "not found" in r.json()["detail"]
        if method == "get" and not path.endswith(("theory", "phase-diagram", "events")):
            r = auth_client.get(path, headers=a_read)
            assert r.status_code == 200, (path, r.text)
    assert store.get_sweep(sa).status == "queued" and store.get_sweep(sa).n_runs == 12
    r = auth_client.post(f"/v1/sweeps/{sa}/cancel", headers=a_write)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"


def test_events_stream_needs_the_teams_token(
    auth_client: TestClient, store: Store, tokens: TokenService
) -> None:
    a = make(tokens, "write", "a")
    sid = submit(auth_client, a)["id"]
    auth_client.post(f"/v1/sweeps/{sid}/cancel", headers=a)
    with auth_client.stream("GET", f"/v1/sweeps/{sid}/events", headers=a) as r:
        assert r.status_code == 200
        text = "".join(r.iter_text())
    assert "sweep_finished" in text
    assert auth_client.get(f"/v1/sweeps/{sid}/events").status_code == 401
    r = auth_client.get(f"/v1/sweeps/{sid}/events", headers=make(tokens, "admin", "b"))
    assert r.status_code == 404


def test_token_use_is_recorded_and_the_token_never_echoed(
    auth_client: TestClient, tokens: TokenService
) -> None:
    new = tokens.create("ci", "read")
    assert new.info.last_used_at is None
    r = auth_client.get("/v1/sweeps", headers=bearer(new.token))
    assert r.status_code == 200 and new.token not in r.text
    (row,) = [t for t in tokens.list() if t.id == new.info.id]
    assert row.last_used_at is not None


def test_a_team_never_reuses_or_sees_another_teams_results(
    auth_client: TestClient, store: Store, tokens: TokenService
) -> None:
    a, b = make(tokens, "write", "a"), make(tokens, "write", "b")
    sa = submit(auth_client, a)["id"]
    for run in store.list_runs(sa, limit=100).items:  # team a's sweep finishes
        store.record_results([(run.id, result(run.config_hash, 0.1))])
    sb = auth_client.post("/v1/sweeps", json=SPEC, headers=b).json()
    assert sb["status"] == "queued"  # nothing of team a's was reused
    runs_b = auth_client.get(f"/v1/sweeps/{sb['id']}/runs", headers=b).json()["items"]
    assert runs_b and all(r["reused_from"] is None for r in runs_b)
    again = auth_client.post("/v1/sweeps", json=SPEC, headers=a).json()
    assert again["status"] == "succeeded"  # team a reuses its own
    runs_a = auth_client.get(f"/v1/sweeps/{again['id']}/runs", headers=a).json()["items"]
    for r in runs_a:  # and every reused_from is a run team a can read
        assert auth_client.get(f"/v1/runs/{r['reused_from']}", headers=a).status_code == 200
        assert auth_client.get(f"/v1/runs/{r['reused_from']}", headers=b).status_code == 404
