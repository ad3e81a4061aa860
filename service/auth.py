"""API tokens: generating, hashing, verifying, listing and revoking; scopes and teams.

A token reads ``ss_<key_id>_<secret>``: ``key_id`` (12 hex characters) is public and finds
the row; the secret is 43 base-62 characters (256 random bits, letters and digits only, so a
token never needs quoting). Tokens made before that used URL-safe base64 secrets, which can
hold ``_`` and ``-``; :func:`parse_token` splits both forms by position, never by ``_``.
Only ``sha256(token)`` is stored, so a token is shown once, at creation, and never again
(not in lists, not in logs). Scopes are ordered: ``read`` < ``write`` < ``admin``; a route
that changes state needs ``write``.

With SCALESWEEP_AUTH=on every /v1 route needs a token; ``scalesweep serve`` refuses a
non-loopback address unless auth is on (:func:`bind_refusal`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal, get_args

from service.errors import NotFoundError, SpecError
from service.text import check_text

if TYPE_CHECKING:
    from service.storage.tokens import TokenRow, TokenStore

Scope = Literal["read", "write", "admin"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
_RANK = {scope: i for i, scope in enumerate(SCOPES)}
TOKEN_PREFIX = "ss"
_TOKEN_RE = re.compile(r"^ss_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_SECRET_ALPHABET = string.ascii_letters + string.digits
_SECRET_LENGTH = 43
"""43 characters of 62 carry 256.04 bits."""
TOUCH_EVERY = timedelta(seconds=60)
"""``last_used_at`` is written at most this often per token (no write per request)."""


class TokenNotFound(NotFoundError):
    """No token with that id."""


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for."""

    token_id: int | None
    name: str
    scope: Scope
    team: str | None = None

    def allows(self, needed: Scope) -> bool:
        """True when this principal's scope includes ``needed`` (admin includes everything)."""
        return _RANK[self.scope] >= _RANK[needed]


@dataclass(frozen=True)
class NewToken:
    """A freshly created token: ``token`` is the only copy of the secret."""

    token: str
    info: TokenRow


def hash_token(token: str) -> str:
    """sha256 hex digest of the whole token (what the database stores)."""
    return hashlib.sha256(token.encode()).hexdigest()


def generate_token() -> tuple[str, str]:
    """A new token and its public ``key_id``."""
    key_id = secrets.token_hex(6)
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(_SECRET_LENGTH))
    return f"{TOKEN_PREFIX}_{key_id}_{secret}", key_id


def parse_token(token: str) -> tuple[str, str] | None:
    """``(key_id, secret)`` of a well-formed token, else None (the secret may hold ``_``)."""
    m = _TOKEN_RE.match(token)
    return (m.group(1), m.group(2)) if m else None


def key_id_of(token: str) -> str | None:
    """The ``key_id`` of a well-formed token, else None."""
    parsed = parse_token(token)
    return parsed[0] if parsed else None


def check_scope(scope: str) -> Scope:
    """``scope`` as a Scope (SpecError naming the field otherwise)."""
    for s in SCOPES:
        if scope == s:
            return s
    raise SpecError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}", "scope")


def _check_name(value: str, field: str) -> str:
    value = value.strip()
    if not value or len(value) > 200:
        raise SpecError(f"{field} must be 1 to 200 characters", field)
    try:
        return check_text(value, field)
    except ValueError as exc:
        raise SpecError(str(exc), field) from None


class TokenService:
    """Create, verify, list and revoke tokens stored in a :class:`TokenStore`."""

    def __init__(self, store: TokenStore) -> None:
        self._store = store

    def create(self, name: str, scope: str, team: str | None = None) -> NewToken:
        """A new token (shown once); only its hash is stored."""
        checked = check_scope(scope)
        name = _check_name(name, "name")
        team = None if team is None else _check_name(team, "team")
        token, key_id = generate_token()
        info = self._store.insert(
            key_id=key_id, token_hash=hash_token(token), name=name, scope=checked, team=team
        )
        return NewToken(token=token, info=info)

    def list(self) -> list[TokenRow]:
        """Every token (without secrets), revoked ones included."""
        return self._store.list()

    def revoke(self, token_id: int) -> TokenRow:
        """Revoke a token (TokenNotFound); revoking twice is harmless."""
        row = self._store.revoke(token_id)
        if row is None:
            raise TokenNotFound(f"token {token_id} not found")
        return row

    def verify(self, token: str) -> Principal | None:
        """The principal of a valid, unrevoked token; None otherwise (constant-time compare)."""
        key_id = key_id_of(token)
        if key_id is None:
            return None
        found = self._store.lookup(key_id)
        if found is None:
            return None
        row, stored = found
        if not secrets.compare_digest(hash_token(token), stored) or row.revoked_at is not None:
            return None
        now = datetime.now(UTC)
        if row.last_used_at is None or now - row.last_used_at >= TOUCH_EVERY:
            self._store.touch(row.id, now)
        return Principal(
            token_id=row.id, name=row.name, scope=check_scope(row.scope), team=row.team
        )


LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def bind_refusal(host: str, auth: str) -> str | None:
    """Why ``scalesweep serve --host HOST`` must not start (None: it may)."""
    if auth == "on" or is_loopback(host):
        return None
    return (
        f"refusing to serve on {host}: it is not a loopback address and authentication is off. "
        "Set SCALESWEEP_AUTH=on and create tokens with `scalesweep token create`, "
        "or serve on 127.0.0.1."
    )


AUTH_OFF_NOTICE = (
    "scalesweep: authentication is off (SCALESWEEP_AUTH=off): loopback only, no tokens needed"
)
