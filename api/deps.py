"""Shared dependencies: the store and the settings, as ``Annotated`` aliases, and auth.

Auth (SCALESWEEP_AUTH=on): :func:`require_auth` turns the bearer token into a
:class:`~service.auth.Principal` (None with auth off); :func:`require_write` refuses a
read-only token (403); :func:`visible_sweep` / :func:`visible_run` answer 404 for a sweep
or run of another team, exactly as for an unknown id.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.auth import Principal
from service.config import Settings
from service.errors import RunNotFound, SweepNotFound, SweepServiceError
from service.storage.base import ANY_TEAM, SweepStore, TeamFilter

RayStatus = Callable[[], dict[str, Any]]
"""Reports the Ray cluster (e.g. nodes, resources); raises when Ray is unreachable."""
TokenVerifier = Callable[[str], Principal | None]
"""The principal of a bearer token that may use the API (SCALESWEEP_AUTH=on), or None to
refuse it (``service.auth.TokenService.verify``)."""


class Unauthorized(SweepServiceError):
    """Missing or invalid bearer token (HTTP 401)."""


class Forbidden(SweepServiceError):
    """A valid token whose scope does not allow the route (HTTP 403)."""


def get_store(request: Request) -> SweepStore:
    """The store the app was built with (set by create_app or its lifespan)."""
    store: SweepStore = request.app.state.store
    return store


def get_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


StoreDep = Annotated[SweepStore, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

_bearer = HTTPBearer(auto_error=False)


def require_auth(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal | None:
    """With SCALESWEEP_AUTH=on, every /v1 route needs ``Authorization: Bearer <token>``.

    Returns who the token speaks for (None with auth off: no scope or team checks).
    """
    if settings.auth == "off":
        return None
    verify: TokenVerifier = request.app.state.verify_token
    if credentials is None or not credentials.credentials:
        raise Unauthorized("missing bearer token")
    # compare_digest inside the verifier is its business; never log the token
    principal = verify(credentials.credentials)
    if principal is None:
        raise Unauthorized("invalid bearer token")
    request.state.principal = principal
    return principal


AuthDep = Annotated[Principal | None, Depends(require_auth)]


def require_write(principal: AuthDep) -> None:
    """Routes that change state (submit, cancel, extend) need a write or admin token."""
    if principal is not None and not principal.allows("write"):
        raise Forbidden(f"token {principal.name!r} has scope {principal.scope!r}; this needs write")


def require_admin(principal: AuthDep) -> None:
    """Deleting a sweep needs an admin token (with auth on)."""
    if principal is not None and not principal.allows("admin"):
        raise Forbidden(f"token {principal.name!r} has scope {principal.scope!r}; this needs admin")


def team_filter(principal: Principal | None) -> TeamFilter:
    """The sweeps a caller may list: every sweep with auth off, else its token's team's."""
    return ANY_TEAM if principal is None else principal.team


def visible_sweep(sweep_id: int, principal: AuthDep, store: StoreDep) -> None:
    """404 for a sweep of another team (tokens without a team: sweeps without a team)."""
    if principal is not None and store.sweep_team(sweep_id) != principal.team:
        raise SweepNotFound(f"sweep {sweep_id} not found")


def visible_run(run_id: int, principal: AuthDep, store: StoreDep) -> None:
    """404 for a run of another team's sweep."""
    if principal is not None and store.run_team(run_id) != principal.team:
        raise RunNotFound(f"run {run_id} not found")
