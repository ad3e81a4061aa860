"""HTTP-only shapes. The sweep spec (service.spec.SweepSpec) and the read models
(service.records) are served as they are; nothing here copies them."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.analysis.reports import SpectrumTheory
from service.records import SweepStatus
from service.results import Spectrum
from service.spec import MAX_INT, MAX_WIDTH
from service.text import check_text

GridAxis = Literal[
    "d", "n", "alpha", "weight_decay", "seed", "gamma", "noise", "width", "width_ratio"
]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
_INT_AXES = {"d": (1, MAX_INT), "n": (1, MAX_INT), "seed": (0, MAX_INT), "width": (1, MAX_WIDTH)}
"""Integer axes -> (smallest, largest) allowed value."""
_POSITIVE_AXES = ("alpha", "gamma", "width_ratio")

MAX_SQL_INT = MAX_INT
"""Ids and integer filters live in SQL INTEGER columns: a larger value matches nothing, and
SQLite cannot even bind one past 2**63 (OverflowError, a 500 before this bound)."""
SweepId = Annotated[int, Path(ge=1, le=MAX_SQL_INT, description="Sweep id")]
RunId = Annotated[int, Path(ge=1, le=MAX_SQL_INT, description="Run id")]


class _Schema(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SweepAccepted(_Schema):
    """Answer to POST /v1/sweeps."""

    id: int
    status: SweepStatus
    n_runs: int


Tag = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:+-]*$")]
"""A sweep tag: letters, digits and ``_.:+-``, starting with a letter or digit."""


class SweepPatch(_Schema):
    """PATCH /v1/sweeps/{id}: the fields given change, the others stay."""

    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    tags: Annotated[list[Tag], Field(max_length=32)] | None = None
    """The sweep's tags after the change (replaces them)."""
    archived: bool | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str | None) -> str | None:
        if name is not None and not name.strip():
            raise ValueError("name must not be blank")
        return name if name is None else check_text(name, "name")


class SweepDeleted(_Schema):
    """Answer to DELETE /v1/sweeps/{id}."""

    id: int
    deleted_runs: int


class ExtendRequest(_Schema):
    """Grid values to add to a sweep, e.g. ``{"grid": {"seed": [3, 4]}}``."""

    grid: dict[GridAxis, Annotated[list[int] | list[FiniteFloat], Field(min_length=1)]]

    @field_validator("grid")
    @classmethod
    def _check_values(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if not grid:
            raise ValueError("give at least one grid axis to extend")
        for axis, values in grid.items():
            if len(set(values)) != len(values):
                raise ValueError(f"grid.{axis} has repeated values")
            if axis in _INT_AXES:
                lo, hi = _INT_AXES[axis]
                if not all(float(v).is_integer() and lo <= v <= hi for v in values):
                    raise ValueError(f"grid.{axis} values must be whole numbers in [{lo}, {hi}]")
                grid[axis] = [int(v) for v in values]
            elif axis in _POSITIVE_AXES and any(v <= 0 for v in values):
                raise ValueError(f"grid.{axis} values must be > 0")
            elif any(v < 0 or not math.isfinite(v) for v in values):
                raise ValueError(f"grid.{axis} values must be >= 0")
        return grid


class SpectrumOut(Spectrum):
    """A stored spectrum as served: ``values`` may be cut to the largest ``max_points``."""

    n_values_total: int
    """How many values the stored spectrum has (the fits used all of them)."""
    truncated: bool = False
    """True when ``values`` holds only the first (largest) values, not all of them."""

    @classmethod
    def of(cls, spectrum: Spectrum, max_points: int) -> SpectrumOut:
        """``spectrum`` with at most ``max_points`` values, saying whether it was cut."""
        total = len(spectrum.values)
        data = spectrum.model_dump()
        data["values"] = spectrum.values[:max_points]
        return cls(**data, n_values_total=total, truncated=total > max_points)


class SpectraResponse(_Schema):
    """Answer to GET /v1/runs/{id}/spectrum: every measured spectrum with its fits."""

    run_id: int
    spectra: list[SpectrumOut]
    """Each with ``n_values_total`` and ``truncated`` (SCALESWEEP_MAX_SPECTRUM_POINTS)."""
    theory: SpectrumTheory | None = None
    """With ?theory=true: the SE prediction of the main spectrum (THEORY.md 3.1, 4.5)."""
    theory_error: str | None = None
    """With ?theory=true: why there is no prediction."""


class ComponentHealth(_Schema):
    """One dependency's readiness."""

    ok: bool
    detail: str | None = None
    info: dict[str, Any] | None = None


class Health(_Schema):
    """Answer to GET /healthz: liveness, and readiness of the database and Ray."""

    status: Literal["ok", "degraded", "unavailable"]
    database: ComponentHealth
    ray: ComponentHealth | None = None
    """Absent when the API was started without a Ray status callable."""


class ErrorBody(_Schema):
    """Every error: a human-readable ``detail`` (422: a list of ``{loc, msg, type}``)."""

    detail: str | list[dict[str, Any]]
