"""The admin commands on the database: db-upgrade, token create | list | revoke."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from service.auth import key_id_of
from service.storage import check_schema, upgrade_head


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


def test_db_upgrade_migrates_the_configured_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/fresh.db"
    monkeypatch.setenv("SCALESWEEP_DATABASE_URL", url)
    assert main(["db-upgrade"]) == 0
    check_schema(url)  # raises unless at head
    assert "at head" in capsys.readouterr().out
