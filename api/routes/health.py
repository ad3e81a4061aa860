"""Liveness and readiness: the database (a trivial query) and, if given, Ray."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import RayStatus, StoreDep
from api.schemas import ComponentHealth, Health
from service.storage.base import SweepStore

router = APIRouter(tags=["health"])


def _database(store: SweepStore) -> ComponentHealth:
    try:
        store.ping()
    except Exception as exc:  # readiness reports any failure, it never raises
        return ComponentHealth(ok=False, detail=f"{type(exc).__name__}: {exc}")
    return ComponentHealth(ok=True)


def _ray(status: RayStatus) -> ComponentHealth:
    try:
        info: dict[str, Any] = status()
    except Exception as exc:
        return ComponentHealth(ok=False, detail=f"{type(exc).__name__}: {exc}")
    return ComponentHealth(ok=True, info=info)


@router.get("/healthz", responses={503: {"model": Health, "description": "Database unreachable"}})
def healthz(request: Request, store: StoreDep) -> JSONResponse:
    """Liveness; readiness of the database and Ray (503 when the database is unreachable)."""
    database = _database(store)
    ray_status: RayStatus | None = request.app.state.ray_status
    ray = _ray(ray_status) if ray_status is not None else None
    if not database.ok:
        state = "unavailable"
    elif ray is not None and not ray.ok:
        state = "degraded"
    else:
        state = "ok"
    body = Health(status=state, database=database, ray=ray)
    return JSONResponse(
        body.model_dump(mode="json", exclude_none=True),
        status_code=503 if state == "unavailable" else 200,
    )
