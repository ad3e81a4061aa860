"""Fixtures: settings, a store on a temporary SQLite file, the app under TestClient."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_helpers import MAX_RUNS, TestClient

from api.main import create_app
from service.config import Settings
from service.storage import Store, make_store


@pytest.fixture
def settings(sqlite_url: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=sqlite_url,
        max_runs_per_sweep=MAX_RUNS,
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    s = make_store(settings.database_url)
    yield s
    s.close()


@pytest.fixture
def client(settings: Settings, store: Store) -> Iterator[TestClient]:
    app = create_app(settings, store, events_poll_s=0.02)
    with TestClient(app) as test_client:
        yield test_client
