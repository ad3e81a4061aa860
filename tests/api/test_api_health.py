"""GET /healthz (liveness, database and Ray readiness) and SCALESWEEP_AUTH=on."""

from __future__ import annotations

from typing import Any

import pytest
from api_helpers import SPEC, TestClient

from api.main import create_app
from service.auth import Principal
from service.config import Settings
from service.errors import StorageError
from service.storage import Store


def test_healthz_reports_the_database(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "database": {"ok": True}}


def test_healthz_reports_ray_when_given(settings: Settings, store: Store) -> None:
    app = create_app(settings, store, ray_status=lambda: {"nodes": 2, "CPU": 16.0})
    with TestClient(app) as c:
        body = c.get("/healthz").json()
    assert body["status"] == "ok"
    assert body["ray"] == {"ok": True, "info": {"nodes": 2, "CPU": 16.0}}


def test_healthz_degraded_when_ray_is_down(settings: Settings, store: Store) -> None:
    def down() -> dict[str, Any]:
        raise ConnectionError("no Ray cluster at ray-head:6379")

    with TestClient(create_app(settings, store, ray_status=down)) as c:
        r = c.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "degraded"
    assert "ray-head" in r.json()["ray"]["detail"]


class BrokenStore:
    def ping(self) -> None:
        raise StorageError("database operation failed: OperationalError: unable to open")

    def get_sweep(self, sweep_id: int) -> Any:
        raise StorageError("database operation failed: OperationalError: unable to open")


def test_healthz_503_and_storage_errors_503_when_the_database_is_down(
    settings: Settings,
) -> None:
    with TestClient(create_app(settings, BrokenStore())) as c:  # type: ignore[arg-type]
        health = c.get("/healthz")
        assert health.status_code == 503
        assert health.json()["status"] == "unavailable"
        assert "unable to open" in health.json()["database"]["detail"]
        r = c.get("/v1/sweeps/1")
        assert r.status_code == 503 and "database" in r.json()["detail"]


def test_lifespan_opens_a_store_from_settings(settings: Settings) -> None:
    with TestClient(create_app(settings)) as c:
        assert c.post("/v1/sweeps", json=SPEC).status_code == 201
        assert c.get("/healthz").json()["status"] == "ok"


def test_auth_on_needs_a_bearer_token(settings: Settings, store: Store) -> None:
    on = settings.model_copy(update={"auth": "on"})
    with pytest.raises(ValueError, match="verifier"):
        create_app(on, store)
    admin = Principal(token_id=None, name="static", scope="admin")
    app = create_app(on, store, verify_token=lambda t: admin if t == "s3cret" else None)
    with TestClient(app) as c:
        assert c.get("/v1/sweeps").status_code == 401
        bad = c.get("/v1/sweeps", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
        ok = c.get("/v1/sweeps", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert c.get("/healthz").status_code == 200  # liveness stays open
