"""Settings from the environment (and a ``.env`` file); DESIGN.md lists the variables."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import (
    AliasChoices,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything configurable; nothing is built at import time."""

    model_config = SettingsConfigDict(env_prefix="SCALESWEEP_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./scalesweep.db"
    ray_address: str | None = Field(
        default=None, validation_alias=AliasChoices("RAY_ADDRESS", "SCALESWEEP_RAY_ADDRESS")
    )
    server: str = "http://127.0.0.1:8000"
    max_runs_per_sweep: PositiveInt = 10_000
    auth: Literal["off", "on"] = "off"
    api_token: str | None = None
    max_inflight_runs: PositiveInt = 64
    """Ray tasks in flight at once (bounded with ray.wait)."""
    lease_s: PositiveFloat = 60.0
    """A claimed run whose lease is older than this goes back to the queue."""
    max_attempts: PositiveInt = 3
    """Retry budget of a run whose worker was lost."""
    runner_poll_s: PositiveFloat = 0.2
    runner_flush_s: NonNegativeFloat = 0.5
    """Results are written at least this often while tasks are in flight (0: as they come)."""
    pack_below_s: PositiveFloat = 0.5
    """Runs expected to take less than this are packed several per Ray task."""
    batching: Literal["on", "off"] = "on"
    """on: network runs of one shape (``RunConfig.batch_shape``) share a task and train as one
    batched program; off: every network run trains alone (tiny runs are still packed)."""
    batch_max_runs: PositiveInt = 32
    """Most runs of one batched task (lower it to spread a sweep over more workers)."""
    batch_budget_s: PositiveFloat = 300.0
    """Estimated seconds of batched work one task takes at most (packing's cost model)."""
    task_memory_mb: PositiveInt = 4096
    """Host memory the data of one task may take (packing), and a CPU batch's budget."""
    gpus_per_task: float = Field(default=0.5, gt=0.0, le=1.0)
    """Share of a GPU a GPU task asks Ray for when its batch is small (0.5: two small batches
    share a GPU, each sized to that share of the GPU's free memory); a batch that needs more
    than that share of ``gpu_memory_mb`` asks for the whole GPU."""
    gpu_memory_mb: PositiveInt = 40960
    """Memory of the cluster's GPUs, for packing GPU batches (the worker sizes its slots by the
    device's real free memory, and halves them on an out-of-memory error)."""
    gpu_batch_max_runs: PositiveInt = 256
    """Most runs of one batched GPU task."""
    worker_memory_mb: PositiveInt | None = None
    """Memory of the largest worker, for admission control (None: this machine's physical
    memory); a sweep with a run that cannot fit is refused (422) before it is stored."""
    run_time_limit_s: PositiveFloat = 14_400.0
    """Wall-time limit of a run that sets no ``training.timeout_s`` (it then fails with
    stop_reason ``timeout``); admission control refuses runs that cannot finish within it."""
    worker_gflops: PositiveFloat = 100.0
    """Nominal float64 rate of one CPU worker for admission control's time floor: fast on
    purpose (this 2-core machine: 43 GFLOP/s for a one-thread float64 matmul), so that only
    runs that could not finish are refused."""
    width_restarts: int = Field(default=5, ge=1, le=16)
    """Restarts a narrow network's run compares when it sets no ``training.restarts``
    (a width below the convex solution's rank: the certificate is second-order
    stationarity plus agreement of the restarts)."""
    width_restarts_max: int = Field(default=8, ge=1, le=16)
    """The most restarts a spec may ask for on this deployment (422 above it)."""
    gpu_tflops: PositiveFloat = 60.0
    """Nominal rate of one GPU for the same floor (an H200: 67 TFLOP/s float64 tensor)."""
    max_body_bytes: PositiveInt = 1024 * 1024
    """Largest request body the API reads (HTTP 413 above it)."""
    max_spectrum_points: PositiveInt = 10_000
    """GET /v1/runs/{id}/spectrum returns at most this many values per spectrum."""
    submissions_per_minute: PositiveInt = 60
    """Sweep submissions per token (per client address with auth off) in any 60 s (429),
    counted in the database: the limit holds across every API process on it."""

    @field_validator("database_url")
    @classmethod
    def _normalise_url(cls, v: str) -> str:
        for old in ("postgres://", "postgresql://"):
            if v.startswith(old):
                return "postgresql+psycopg://" + v[len(old) :]
        return v


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (tests build their own ``Settings``)."""
    return Settings()
