"""Read models that storage returns and the API serves (rows never leave service.storage)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from service.results import CurvePoint, RunMetrics, RunStatus
from service.spec import Model, RunConfig, SweepSpec

SweepStatus = Literal["queued", "running", "succeeded", "cancelled"]
T = TypeVar("T")


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SweepRecord(_Record):
    """A stored sweep with its run counts."""

    id: int
    name: str
    spec: SweepSpec
    status: SweepStatus
    n_runs: int
    counts: dict[RunStatus, int]
    created_at: datetime
    finished_at: datetime | None = None
    tags: list[str] = []
    """Labels to filter the sweep list on (sorted)."""
    archived: bool = False
    """Hidden from the default sweep list."""


class RunRecord(_Record):
    """A stored run: configuration, status, metrics (and, from get_run, the learning curve)."""

    id: int
    sweep_id: int
    index: int
    """Position of the run in the sweep's expansion order."""
    config: RunConfig
    config_hash: str
    status: RunStatus
    attempts: int
    error: str | None = None
    metrics: RunMetrics | None = None
    reused_from: int | None = None
    """Id of the finished run whose result was reused (the team-shared cache)."""
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    curve: list[CurvePoint] = Field(default_factory=list)


class Claim(_Record):
    """A run handed to a runner under a lease."""

    run_id: int
    sweep_id: int
    config: RunConfig
    attempt: int


class Page(_Record, Generic[T]):
    """One page of a list; ``next_cursor`` is None on the last page (never a silent truncation)."""

    items: list[T]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class RunPoint:
    """The few columns of a run that the fitting queries need (read straight from SQL).

    A plain slotted dataclass, not a pydantic model: the exponents query builds one per run
    (10,000 for a large sweep) from typed SQL columns, and pydantic's construction cost
    was a third of the uncached query (bench/bench_queries.py)."""

    run_id: int
    status: RunStatus
    converged: bool | None
    model: Model
    d: int
    n: int
    weight_decay: float
    gamma: float
    noise: float
    seed: int
    link_power: float | None
    rank: int | None
    excess_risk: float | None
    signed: bool = False
    """Quadratic: signed teacher and second layer."""
    width: int = 0
    """The effective hidden width m (``RunConfig.width``, the ``runs.width`` column):
    ``training.width`` or its default d (2d with a signed second layer); d for the diagonal
    net. Left out (0) when a point is built by hand: filled in with d (2d when ``signed``)."""

    def __post_init__(self) -> None:
        if self.width == 0:
            signed = self.model == "quadratic" and self.signed
            object.__setattr__(self, "width", 2 * self.d if signed else self.d)


class SpectrumPoint(_Record):
    """One stored spectrum's fit numbers, with its run's key columns."""

    run_id: int
    kind: str
    n_values: int
    tail_alpha: float | None
    tail_alpha_ci: tuple[float, float] | None
    n_tail: int | None
    rank_exponent: float | None
    rank_points: int | None


@dataclass(frozen=True)
class StoreMetrics:
    """A snapshot of the queue."""

    runs_by_status: dict[RunStatus, int]
    """Every status, zeros included."""
    duration_buckets: list[tuple[float, int]]
    """(upper bound in seconds, finished runs with wall_time_s <= bound), cumulative."""
    duration_count: int
    """Finished runs with a wall time."""
    duration_sum_s: float
    lease_holder: str | None
    """The runner holding an unexpired runner lease."""

    @property
    def queue_depth(self) -> int:
        """Runs waiting to be claimed."""
        return self.runs_by_status["queued"]
