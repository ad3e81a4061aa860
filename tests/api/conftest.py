"""Fixtures: settings, a store on a temporary SQLite file, the app under TestClient."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import MAX_RUNS, TestClient

from api.main import create_app
from service.config import Settings
from service.storage import Store, make_store, upgrade_head


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty database at head, migrated once; each test gets a copy (fast, isolated)."""
    path = tmp_path_factory.mktemp("template") / "head.db"
    upgrade_head(f"sqlite:///{path}")
    return path


@pytest.fixture
def settings(tmp_path: Path, migrated_db: Path) -> Settings:
    shutil.copyfile(migrated_db, tmp_path / "api.db")
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite:///{tmp_path}/api.db",
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
