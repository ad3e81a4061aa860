"""Shared dependencies: the store and the settings, as ``Annotated`` aliases, and auth.

Auth (SCALESWEEP_AUTH=on): :func:`require_auth` turns the bearer token into a
:class:`~service.auth.Principal` (None with auth off); :func:`require_write` refuses a
read-only token (403); :func:`visible_sweep` / :func:`visible_run` answer 404 for a sweep
or run of another team, exactly as for an unknown id.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.auth import Principal
from service.config import Settings
from service.errors import RunNotFound, StorageError, SweepNotFound, SweepServiceError
from service.records import Page, RunPoint, RunRecord, SpectrumPoint, SweepRecord
from service.results import RunStatus, Spectrum
from service.spec import SweepSpec

RayStatus = Callable[[], dict[str, Any]]
"""Reports the Ray cluster (e.g. nodes, resources); raises when Ray is unreachable."""
TokenVerifier = Callable[[str], Principal | bool | None]
"""The principal of a bearer token that may use the API (SCALESWEEP_AUTH=on); None or
False refuses it. ``True`` (a static verifier) is an admin without a team."""


class StoreAPI(Protocol):
    """The part of ``service.storage.Store`` that the API uses (notes/store-interface.md)."""

    def create_sweep(self, spec: SweepSpec, *, max_runs: int) -> SweepRecord: ...

    def extend_sweep(
        self, sweep_id: int, grid: dict[str, list[float] | list[int]]
    ) -> SweepRecord: ...

    def get_sweep(self, sweep_id: int) -> SweepRecord: ...

    def list_sweeps(self, *, limit: int = 50, cursor: str | None = None) -> Page[SweepRecord]: ...

    def list_runs(
        self,
        sweep_id: int,
        *,
        status: RunStatus | None = None,
        filters: dict[str, float | int | str] | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[RunRecord]: ...

    def get_run(self, run_id: int) -> RunRecord: ...

    def get_spectra(self, run_id: int) -> list[Spectrum]: ...

    def cancel_sweep(self, sweep_id: int) -> SweepRecord: ...

    def sweep_results(self, sweep_id: int) -> list[RunRecord]: ...

    def run_points(self, sweep_id: int) -> list[RunPoint]: ...

    def spectrum_points(self, sweep_id: int) -> list[SpectrumPoint]: ...


class TeamAccess(Protocol):
    """Team-scoped sweep access (``service.storage.teams.TeamStore``), used with auth on."""

    def sweep_team(self, sweep_id: int) -> str | None: ...

    def run_team(self, run_id: int) -> str | None: ...

    def list_sweeps(
        self, team: str | None, *, limit: int = 50, cursor: str | None = None
    ) -> Page[SweepRecord]: ...

    def create_sweep(self, spec: SweepSpec, *, max_runs: int, team: str | None) -> SweepRecord: ...


class Unauthorized(SweepServiceError):
    """Missing or invalid bearer token (HTTP 401)."""


class Forbidden(SweepServiceError):
    """A valid token whose scope does not allow the route (HTTP 403)."""


def get_store(request: Request) -> StoreAPI:
    """The store the app was built with (set by create_app or its lifespan)."""
    store: StoreAPI = request.app.state.store
    return store


def get_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


StoreDep = Annotated[StoreAPI, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

_bearer = HTTPBearer(auto_error=False)


STATIC_PRINCIPAL = Principal(token_id=None, name="static", scope="admin", team=None)


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
    found = verify(credentials.credentials)
    if found is None or found is False:
        raise Unauthorized("invalid bearer token")
    principal = STATIC_PRINCIPAL if found is True else found
    request.state.principal = principal
    return principal


AuthDep = Annotated[Principal | None, Depends(require_auth)]


def require_write(principal: AuthDep) -> None:
    """Routes that change state (submit, cancel, extend) need a write or admin token."""
    if principal is not None and not principal.allows("write"):
        raise Forbidden(f"token {principal.name!r} has scope {principal.scope!r}; this needs write")


def get_teams(request: Request) -> TeamAccess:
    """Team-scoped access: the app's, or a TeamStore on the app's SQL store (built once)."""
    teams: TeamAccess | None = request.app.state.teams
    if teams is not None:
        return teams
    from service.storage import Store
    from service.storage.teams import TeamStore

    store = request.app.state.store
    if not isinstance(store, Store):
        raise StorageError("team-scoped access needs the SQL store (or create_app(teams=...))")
    built = TeamStore(store)
    request.app.state.teams = built
    return built


TeamsDep = Annotated[TeamAccess, Depends(get_teams)]


def visible_sweep(sweep_id: int, principal: AuthDep, request: Request) -> None:
    """404 for a sweep of another team (tokens without a team: sweeps without a team)."""
    if principal is not None and get_teams(request).sweep_team(sweep_id) != principal.team:
        raise SweepNotFound(f"sweep {sweep_id} not found")


def visible_run(run_id: int, principal: AuthDep, request: Request) -> None:
    """404 for a run of another team's sweep."""
    if principal is not None and get_teams(request).run_team(run_id) != principal.team:
        raise RunNotFound(f"run {run_id} not found")


def static_token_verifier(token: str) -> TokenVerifier:
    """A verifier accepting exactly one token (constant-time comparison)."""

    def verify(candidate: str) -> bool:
        return secrets.compare_digest(candidate.encode(), token.encode())

    return verify
