"""The FastAPI application: ``create_app(settings, store)`` wires routers, deps and errors.

Nothing is built at import time. Without a store, the lifespan checks that the database
schema is at head (``scalesweep serve`` / ``scalesweep db-upgrade`` migrate it) and opens
one. The API process imports neither ray, torch nor workers: Ray readiness comes in as a
callable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI

from api import dashboard, observability
from api.deps import RayStatus, TokenVerifier, require_auth
from api.errors import install_error_handlers
from api.limits import BodySizeLimit
from api.routes import analysis, events, health, runs, sweeps
from api.schemas import ErrorBody
from service.config import Settings
from service.storage.base import SweepStore

API_PREFIX = "/v1"

V1_REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No token, or an unknown or revoked one (auth on)"},
    413: {"model": ErrorBody, "description": "Request body too large (SCALESWEEP_MAX_BODY_BYTES)"},
    422: {"model": ErrorBody, "description": "Invalid input: the field is named in `loc`"},
}
"""What any /v1 route may answer besides its own responses (OpenAPI)."""


def create_app(
    settings: Settings,
    store: SweepStore | None = None,
    *,
    ray_status: RayStatus | None = None,
    verify_token: TokenVerifier | None = None,
    events_poll_s: float = 0.5,
) -> FastAPI:
    """Build the app; ``store`` defaults to one on ``settings.database_url``, opened at startup.

    With SCALESWEEP_AUTH=on, ``verify_token`` maps a bearer token to its principal (e.g.
    ``service.auth.TokenService(...).verify``); a token sees only its team's sweeps.
    """
    if settings.auth == "on" and verify_token is None:
        raise ValueError("SCALESWEEP_AUTH=on needs a token verifier (create_app(verify_token=...))")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if store is not None:
            yield
            return
        from service.storage import check_schema, make_store  # SQLAlchemy only when serving

        check_schema(settings.database_url)
        owned: SweepStore = make_store(settings.database_url)
        app.state.store = owned
        try:
            yield
        finally:
            owned.close()

    app = FastAPI(
        title="scalesweep",
        summary="Distributed sweeps for neural scaling laws in the feature-learning regime",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.ray_status = ray_status
    app.state.verify_token = verify_token
    app.state.events_poll_s = events_poll_s
    v1 = [Depends(require_auth)]
    for module in (sweeps, analysis, events, runs):
        app.include_router(module.router, prefix=API_PREFIX, dependencies=v1, responses=V1_REFUSALS)
    app.include_router(health.router)
    app.include_router(dashboard.router)  # HTML pages and plotly.js, before the mount
    app.mount("/static", dashboard.static_files(), name="static")
    app.include_router(observability.router)  # GET /metrics (Prometheus)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(observability.RequestLog)  # outermost: logs every answer, 413s too
    return app
