"""API tokens (service.auth, service.storage.tokens) on SQLite and PostgreSQL, the
`scalesweep token` commands, and `scalesweep serve`'s loopback rule."""

from __future__ import annotations

import hashlib
import warnings
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
from service.errors import SpecError
from service.storage import Store
from service.storage.tables import ApiToken
from service.storage.tokens import TokenStore

with warnings.catch_warnings():
    from starlette.exceptions import StarletteDeprecationWarning

    warnings.simplefilter("ignore", StarletteDeprecationWarning)  # httpx2 wanted, httpx works

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
