"""Commands on the database itself (SCALESWEEP_DATABASE_URL), no server involved:
``db-upgrade`` and ``token create | list | revoke`` (their parsers are in :mod:`cli.main`);
SQLAlchemy and Alembic are imported by the commands, when they run."""

from __future__ import annotations

import argparse
import json
import sys

from cli import output as out
from service.auth import TokenService
from service.config import Settings
from service.errors import NotFoundError, SpecError, StorageError


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    """Migrate the configured database to the newest revision."""
    from service.storage import upgrade_head  # SQLAlchemy/Alembic only for this command

    url = Settings().database_url
    upgrade_head(url)
    print(f"database at head: {url.split('@')[-1]}")  # never print credentials
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """token create | list | revoke, directly on the database."""
    from service.storage import check_schema  # SQLAlchemy only for this command
    from service.storage.tokens import make_token_store

    url = Settings().database_url
    try:
        check_schema(url)
    except StorageError as exc:
        print(f"error: {out.safe(exc)} (run `scalesweep db-upgrade`)", file=sys.stderr)
        return 1
    store = make_token_store(url)
    try:
        action = {"create": _create, "list": _list, "revoke": _revoke}[args.token_command]
        return action(TokenService(store), args)
    finally:
        store.close()


def _create(tokens: TokenService, args: argparse.Namespace) -> int:
    try:
        new = tokens.create(args.name, args.scope, args.team)
    except SpecError as exc:
        print(f"error: {out.safe(exc)}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"token": new.token, **out.token_row(new.info)}))
    else:
        print(new.token)
        team = f", team {new.info.team}" if new.info.team else ""
        print(
            out.safe(f"token {new.info.id} ({new.info.name}, scope {new.info.scope}{team}): ")
            + "store it now, it is not shown again",
            file=sys.stderr,
        )
    return 0


def _list(tokens: TokenService, args: argparse.Namespace) -> int:
    rows = tokens.list()
    sys.stdout.write(out.tokens_json(rows) if args.json else out.tokens_table(rows))
    return 0


def _revoke(tokens: TokenService, args: argparse.Namespace) -> int:
    try:
        row = tokens.revoke(args.id)
    except NotFoundError as exc:
        print(f"error: {out.safe(exc)}", file=sys.stderr)
        return 1
    print(out.safe(f"token {row.id} ({row.name}) revoked"))
    return 0
