"""API tokens (service.auth, service.storage.tokens) on SQLite and PostgreSQL, the
`scalesweep token` commands, and `scalesweep serve`'s loopback rule."""

from __future__ import annotations

import argparse
import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from service.auth import (
    Principal,
    TokenNotFound,
    TokenService,
    bind_refusal,
    hash_token,
    is_loopback,
    key_id_of,
    parse_token,
)
from service.cli import main
from service.errors import SpecError
from service.storage import Store, upgrade_head
from service.storage.tables import ApiToken
from service.storage.tokens import TokenStore

with warnings.catch_warnings():
    from starlette.exceptions import StarletteDeprecationWarning

    warnings.simplefilter("ignore", StarletteDeprecationWarning)  # httpx2 wanted, httpx works
    from fastapi.testclient import TestClient

SPEC: dict[str, Any] = {
    "name": "token-test",
    "model": "diagonal",
    "grid": {"d": [8], "n": [16, 32], "weight_decay": [0.1], "seed": [0]},
}


@pytest.fixture
def tokens(store: Store) -> TokenService:
    return TokenService(TokenStore.of(store))


def test_tokens_are_stored_hashed_never_in_clear(store: Store, tokens: TokenService) -> None:
    new = tokens.create("ci", "write", team="physics")
    assert new.token.startswith("ss_") and len(new.token) > 50
    with store._engine.connect() as conn:
        row = conn.execute(select(ApiToken)).mappings().one()
    assert row["token_hash"] == hashlib.sha256(new.token.encode()).hexdigest()
    assert row["key_id"] == key_id_of(new.token)
    assert all(new.token not in str(v) for v in row.values())
    parsed = parse_token(new.token)
    assert parsed is not None and parsed[0] == row["key_id"]
    secret = parsed[1]
    assert len(secret) == 43 and secret.isalnum()  # 256 bits, no "_" to split on
    assert all(secret not in str(v) for v in row.values())
    assert (row["name"], row["scope"], row["team"]) == ("ci", "write", "physics")
    assert tokens.create("ci2", "write").token != new.token


@pytest.mark.parametrize("secret", ["a_b-" * 10 + "xyz", "_" * 43, "-" * 42 + "_", "A" * 43])
def test_the_parser_splits_by_position_not_by_underscore(secret: str) -> None:
    # tokens made before the base-62 secrets carry URL-safe base64, "_" and "-" included
    token = f"ss_0123456789ab_{secret}"
    assert parse_token(token) == ("0123456789ab", secret)
    assert key_id_of(token) == "0123456789ab"
    assert parse_token(token + "_") is None and parse_token("ss_0123456789a_" + secret) is None


def test_verify_accepts_only_valid_unrevoked_tokens(tokens: TokenService) -> None:
    new = tokens.create("ci", "read", team="a")
    p = tokens.verify(new.token)
    assert p == Principal(token_id=new.info.id, name="ci", scope="read", team="a")
    flipped = new.token[:-1] + ("A" if new.token[-1] != "A" else "B")
    for bad in ("", "nope", flipped, new.token + "x", "ss_000000000000_" + "x" * 43):
        assert tokens.verify(bad) is None, bad
    tokens.revoke(new.info.id)
    assert tokens.verify(new.token) is None


def test_list_shows_metadata_never_the_token(tokens: TokenService) -> None:
    a = tokens.create("alice", "admin")
    b = tokens.create("bob", "read", team="t")
    assert tokens.list()[0].last_used_at is None
    tokens.verify(a.token)
    rows = tokens.list()
    assert [(r.id, r.name, r.scope, r.team) for r in rows] == [
        (a.info.id, "alice", "admin", None),
        (b.info.id, "bob", "read", "t"),
    ]
    assert rows[0].last_used_at is not None and rows[0].revoked_at is None
    assert not any(hasattr(r, "token") or hasattr(r, "token_hash") for r in rows)
    revoked = tokens.revoke(b.info.id)
    assert revoked.revoked_at is not None
    assert tokens.revoke(b.info.id).revoked_at == revoked.revoked_at  # idempotent
    with pytest.raises(TokenNotFound):
        tokens.revoke(9999)


def test_scopes_are_ordered_and_checked(tokens: TokenService) -> None:
    read = Principal(token_id=1, name="r", scope="read")
    write = Principal(token_id=2, name="w", scope="write")
    admin = Principal(token_id=3, name="a", scope="admin")
    assert read.allows("read") and not read.allows("write")
    assert write.allows("write") and not write.allows("admin")
    assert admin.allows("read") and admin.allows("write") and admin.allows("admin")
    with pytest.raises(SpecError, match="scope"):
        tokens.create("x", "root")
    with pytest.raises(SpecError, match="name"):
        tokens.create("  ", "read")
    assert hash_token("abc") == hashlib.sha256(b"abc").hexdigest()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("example.org", False),
    ],
)
def test_serve_binds_non_loopback_only_with_auth_on(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    assert (bind_refusal(host, "off") is None) is loopback
    assert bind_refusal(host, "on") is None


def _serve_args(host: str) -> argparse.Namespace:
    return argparse.Namespace(host=host, port=8765, no_ray=True, no_runner=True)


def test_serve_command_refuses_a_public_address_without_auth(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import workers.cli
    from service.config import get_settings

    built: list[Any] = []
    monkeypatch.setattr(workers.cli, "_build_service", lambda *a, **k: built.append(a))
    monkeypatch.setenv("SCALESWEEP_AUTH", "off")
    monkeypatch.setenv("SCALESWEEP_DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    get_settings.cache_clear()
    try:
        assert workers.cli.serve_command(_serve_args("0.0.0.0")) != 0
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert "0.0.0.0" in err and "SCALESWEEP_AUTH=on" in err
    assert built == []  # refused before migrating or starting anything


def test_serve_command_on_loopback_says_auth_is_off(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import uvicorn

    import workers.cli
    from service.config import get_settings

    ran: list[str] = []
    monkeypatch.setattr(workers.cli, "_build_service", lambda *a, **k: (None, lambda: None))
    monkeypatch.setattr(uvicorn, "run", lambda app, host, **kw: ran.append(host))
    monkeypatch.setenv("SCALESWEEP_AUTH", "off")
    monkeypatch.setenv("SCALESWEEP_DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    get_settings.cache_clear()
    try:
        assert workers.cli.serve_command(_serve_args("127.0.0.1")) == 0
    finally:
        get_settings.cache_clear()
    assert ran == ["127.0.0.1"]
    assert "authentication is off" in capsys.readouterr().err


def test_token_cli_create_list_revoke(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("SCALESWEEP_DATABASE_URL", url)
    assert main(["token", "list"]) == 1  # no schema yet: says to run db-upgrade
    assert "db-upgrade" in capsys.readouterr().err
    upgrade_head(url)

    assert (
        main(["token", "create", "--name", "ci", "--scope", "write", "--team", "a", "--json"]) == 0
    )
    created = json.loads(capsys.readouterr().out)
    token = created["token"]
    assert created["scope"] == "write" and created["team"] == "a"
    assert main(["token", "create", "--name", "ro", "--scope", "read"]) == 0
    out = capsys.readouterr()
    plain = out.out.strip()
    assert key_id_of(plain) is not None and "not shown again" in out.err

    assert main(["token", "list"]) == 0
    listing = capsys.readouterr().out
    assert "ci" in listing and "ro" in listing and "2 tokens" in listing
    assert token not in listing and plain not in listing
    assert main(["token", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["ci", "ro"] and token not in json.dumps(rows)

    assert main(["token", "revoke", str(created["id"])]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["token", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["revoked"] is not None and rows[1]["revoked"] is None
    assert main(["token", "revoke", "999"]) == 1
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["token", "create", "--name", "x", "--scope", "root"])


def test_serve_with_auth_on_verifies_tokens_from_the_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.config import Settings
    from service.storage import make_store
    from workers.cli import _build_service

    url = f"sqlite:///{tmp_path}/serve.db"
    settings = Settings(_env_file=None, database_url=url, auth="on")  # type: ignore[call-arg]
    app, shutdown = _build_service(settings, no_ray=True, no_runner=True)
    try:
        assert "no active token" in capsys.readouterr().err
        store = make_store(url)
        try:
            token = TokenService(TokenStore.of(store)).create("ci", "write", team="a").token
        finally:
            store.close()
        with TestClient(app) as c:
            assert c.get("/v1/sweeps").status_code == 401
            h = {"Authorization": f"Bearer {token}"}
            assert c.post("/v1/sweeps", json=SPEC, headers=h).status_code == 201
            assert len(c.get("/v1/sweeps", headers=h).json()["items"]) == 1
    finally:
        shutdown()
