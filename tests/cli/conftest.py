"""Fixtures of the CLI tests: a store, an in-process app the client commands talk to, a
spec file."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from factories import SMALL_SPEC, SMALL_SPEC_RUNS
from starlette.exceptions import StarletteDeprecationWarning

from api.main import create_app
from service.client import Client
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
def app_client(store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    """A Client on the in-process app; the client commands use one like it."""
    from cli import client_commands

    settings = Settings(_env_file=None, database_url="sqlite://")  # type: ignore[call-arg]
    app = create_app(settings, store, events_poll_s=0.02)
    monkeypatch.setattr(client_commands, "client", lambda args: Client(http=TestClient(app)))
    with Client(http=TestClient(app)) as client:
        yield client


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return path
