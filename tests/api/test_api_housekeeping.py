"""PATCH /v1/sweeps/{id} (rename, tags, archive), the list's tag and archived filters, and
DELETE /v1/sweeps/{id} (admin scope with auth on)."""

from __future__ import annotations

import pytest
from api_helpers import TestClient, spec
from test_auth import auth_client, make, tokens  # noqa: F401  (fixtures)

from service.auth import TokenService
from service.storage import Store


def _submit(client: TestClient, **changes: object) -> int:
    r = client.post("/v1/sweeps", json=spec(**changes))
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def test_rename_tag_archive_and_filter_the_list(client: TestClient) -> None:
    a = _submit(client, name="a")
    b = _submit(client, name="b", grid__seed=[7])
    r = client.patch(f"/v1/sweeps/{a}", json={"name": "a, renamed", "tags": ["paper", "d8"]})
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["tags"]) == ("a, renamed", ["d8", "paper"])
    assert client.patch(f"/v1/sweeps/{b}", json={"archived": True}).json()["archived"] is True

    def names(**params: str) -> list[str]:
        return [s["name"] for s in client.get("/v1/sweeps", params=params).json()["items"]]

    assert names() == ["a, renamed"]
    assert names(archived="true") == ["b"]
    assert names(archived="all") == ["b", "a, renamed"]
    assert names(tag="paper") == ["a, renamed"]
    assert client.get(f"/v1/sweeps/{b}").json()["archived"] is True  # still readable


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"tags": ["has space"]}, "tags"),
        ({"tags": ["x" * 65]}, "tags"),
        ({"archived": "maybe"}, "archived"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_patch_is_422_naming_the_field_and_changes_nothing(
    client: TestClient, body: dict[str, object], field: str
) -> None:
    sid = _submit(client, name="kept")
    r = client.patch(f"/v1/sweeps/{sid}", json=body)
    assert r.status_code == 422 and field in r.text, r.text
    after = client.get(f"/v1/sweeps/{sid}").json()
    assert (after["name"], after["tags"], after["archived"]) == ("kept", [], False)
    assert client.get("/v1/sweeps", params={"tag": "bad tag"}).status_code == 422


def test_delete_removes_the_sweep_and_its_runs(client: TestClient, store: Store) -> None:
    sid = _submit(client)
    r = client.delete(f"/v1/sweeps/{sid}")
    assert r.status_code == 200 and r.json() == {"id": sid, "deleted_runs": 12}
    assert client.get(f"/v1/sweeps/{sid}").status_code == 404
    assert client.get(f"/v1/sweeps/{sid}/runs").status_code == 404
    assert client.delete(f"/v1/sweeps/{sid}").status_code == 404
    assert store.claim_runs("r", limit=100, lease_s=60) == []


def test_delete_needs_an_admin_token_and_patch_a_write_token(
    auth_client: TestClient,  # noqa: F811
    tokens: TokenService,  # noqa: F811
) -> None:
    write, read, admin = (
        make(tokens, "write", "t"),
        make(tokens, "read", "t"),
        make(tokens, "admin", "t"),
    )
    sid = auth_client.post("/v1/sweeps", json=spec(), headers=write).json()["id"]
    assert (
        auth_client.patch(f"/v1/sweeps/{sid}", json={"name": "n"}, headers=read).status_code == 403
    )
    assert (
        auth_client.patch(f"/v1/sweeps/{sid}", json={"name": "n"}, headers=write).status_code == 200
    )
    r = auth_client.delete(f"/v1/sweeps/{sid}", headers=write)
    assert r.status_code == 403 and "admin" in r.json()["detail"]
    assert auth_client.get(f"/v1/sweeps/{sid}", headers=read).status_code == 200
    assert auth_client.delete(f"/v1/sweeps/{sid}", headers=admin).status_code == 200
    assert auth_client.get(f"/v1/sweeps/{sid}", headers=read).status_code == 404
