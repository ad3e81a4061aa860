"""Shared dependencies: the store and the settings, as ``Annotated`` aliases, and auth."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.config import Settings
from service.errors import SweepServiceError
from service.records import Page, RunPoint, RunRecord, SpectrumPoint, SweepRecord
from service.results import RunStatus, Spectrum
from service.spec import SweepSpec

RayStatus = Callable[[], dict[str, Any]]
"""Reports the Ray cluster (e.g. nodes, resources); raises when Ray is unreachable."""
TokenVerifier = Callable[[str], bool]
"""True when a bearer token may use the API (SCALESWEEP_AUTH=on)."""


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


class Unauthorized(SweepServiceError):
    """Missing or invalid bearer token (HTTP 401)."""


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


def require_auth(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """With SCALESWEEP_AUTH=on, every /v1 route needs ``Authorization: Bearer <token>``."""
    if settings.auth == "off":
        return
    verify: TokenVerifier = request.app.state.verify_token
    if credentials is None or not credentials.credentials:
        raise Unauthorized("missing bearer token")
    # compare_digest inside the verifier is its business; never log the token
    if not verify(credentials.credentials):
        raise Unauthorized("invalid bearer token")


def static_token_verifier(token: str) -> TokenVerifier:
    """A verifier accepting exactly one token (constant-time comparison)."""

    def verify(candidate: str) -> bool:
        return secrets.compare_digest(candidate.encode(), token.encode())

    return verify
