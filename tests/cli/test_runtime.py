"""cli.runtime: the runtime `scalesweep serve` assembles (here with auth on and no runner)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from factories import SMALL_SPEC as SPEC
from starlette.exceptions import StarletteDeprecationWarning

from cli.runtime import build_runtime
from service.auth import TokenService
from service.config import Settings
from service.storage import make_store
from service.storage.tokens import TokenStore

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient


def test_serve_with_auth_on_verifies_tokens_from_the_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/serve.db"
    settings = Settings(_env_file=None, database_url=url, auth="on")  # type: ignore[call-arg]
    rt = build_runtime(settings, runner=False)
    assert rt.app is not None and rt.runner is None and rt.executor is None
    try:
        assert "no active token" in capsys.readouterr().err
        store = make_store(url)
        try:
            token = TokenService(TokenStore.of(store)).create("ci", "write", team="a").token
        finally:
            store.close()
        with TestClient(rt.app) as c:
            assert c.get("/v1/sweeps").status_code == 401
            h = {"Authorization": f"Bearer {token}"}
            assert c.post("/v1/sweeps", json=SPEC, headers=h).status_code == 201
            assert len(c.get("/v1/sweeps", headers=h).json()["items"]) == 1
    finally:
        rt.close()
