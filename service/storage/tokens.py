"""SQL for API tokens (table ``api_tokens``): only hashes are stored, never a token.

``service.auth`` owns the logic (generating, hashing, scopes); this module only reads and
writes rows. A :class:`TokenStore` can share the engine of a :class:`~service.storage.Store`
(:meth:`TokenStore.of`) or open its own (:func:`make_token_store`, for the CLI).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from service.storage.engine import TransactionalStore, make_engine
from service.storage.queue import utcnow
from service.storage.tables import ApiToken


@dataclass(frozen=True)
class TokenRow:
    """One stored token, without its secret (the hash stays in the database layer)."""

    id: int
    key_id: str
    name: str
    scope: str
    team: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


_COLUMNS = tuple(getattr(ApiToken, f.name) for f in fields(TokenRow))
"""The columns of a TokenRow, in its field order (the hash stays in the database layer)."""


def _row(r: Any) -> TokenRow:
    return TokenRow(*(r[i] for i in range(len(_COLUMNS))))


class TokenStore(TransactionalStore):
    """Rows of ``api_tokens``."""

    @classmethod
    def of(cls, store: TransactionalStore) -> TokenStore:
        """A token store on the same engine (closing the original closes both)."""
        return cls(store._engine)

    def insert(
        self, *, key_id: str, token_hash: str, name: str, scope: str, team: str | None
    ) -> TokenRow:
        """Store a new token's hash; ConflictError if ``key_id`` exists."""
        with self._transaction() as conn:
            new_id = conn.execute(
                insert(ApiToken)
                .values(
                    key_id=key_id,
                    token_hash=token_hash,
                    name=name,
                    scope=scope,
                    team=team,
                    created_at=utcnow(),
                )
                .returning(ApiToken.id)
            ).scalar_one()
            return _row(conn.execute(select(*_COLUMNS).where(ApiToken.id == new_id)).one())

    def lookup(self, key_id: str) -> tuple[TokenRow, str] | None:
        """The row and stored hash for ``key_id`` (None if unknown)."""
        with self._transaction(write=False) as conn:
            r = conn.execute(
                select(*_COLUMNS, ApiToken.token_hash).where(ApiToken.key_id == key_id)
            ).first()
        return None if r is None else (_row(r), str(r.token_hash))

    def list(self) -> list[TokenRow]:
        """Every token, oldest first (revoked ones included)."""
        with self._transaction(write=False) as conn:
            return [_row(r) for r in conn.execute(select(*_COLUMNS).order_by(ApiToken.id))]

    def revoke(self, token_id: int) -> TokenRow | None:
        """Mark a token revoked (idempotent); None if there is no such token."""
        with self._transaction() as conn:
            conn.execute(
                update(ApiToken)
                .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            r = conn.execute(select(*_COLUMNS).where(ApiToken.id == token_id)).first()
        return None if r is None else _row(r)

    def touch(self, token_id: int, when: datetime) -> None:
        """Record that a token was used at ``when``."""
        with self._transaction() as conn:
            conn.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=when))


def make_token_store(url: str) -> TokenStore:
    """A token store with its own engine on ``url`` (the schema must be at head)."""
    return TokenStore(make_engine(url))
