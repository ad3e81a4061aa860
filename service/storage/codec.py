"""Rows <-> records: column values from configs and results, records from rows, cursors."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, get_args

import numpy as np

from service.errors import LimitError, SpecError
from service.records import RunRecord, SweepRecord
from service.results import CurvePoint, RankFit, RunMetrics, RunStatus, Spectrum, TailFit
from service.spec import RunConfig, SweepSpec

RUN_STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)
ACTIVE: tuple[RunStatus, ...] = ("queued", "running")
MAX_LIMIT = 1000
_F8 = np.dtype("<f8")
_CHUNK = 500  # bound parameters per IN (...) list
T = TypeVar("T")


def chunks(items: Sequence[T], size: int = _CHUNK) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most ``size`` items (IN lists of a bounded length)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


#: filters accepted by list_runs, with the type each value is compared as
RUN_FILTERS: dict[str, type] = {
    "model": str,
    "optimizer": str,
    "d": int,
    "n": int,
    "seed": int,
    "width": int,
    "weight_decay": float,
    "gamma": float,
    "noise": float,
    "link_power": float,
}


def config_columns(cfg: RunConfig, config_hash: str) -> dict[str, Any]:
    """The config JSON and indexed key columns of a run (``config_hash`` = cfg.config_hash())."""
    return {
        "config": cfg.model_dump(mode="json"),
        "config_hash": config_hash,
        "model": cfg.model,
        "d": cfg.d,
        "n": cfg.n,
        "weight_decay": cfg.weight_decay,
        "gamma": cfg.teacher.gamma,
        "noise": cfg.teacher.noise,
        "seed": cfg.seed,
        "optimizer": cfg.training.optimizer,
        "link_power": cfg.link_power,
        "width": cfg.width,
    }


def metric_columns(metrics: RunMetrics | None) -> dict[str, Any]:
    """The metrics JSON and its queryable columns."""
    if metrics is None:
        return {
            "metrics": None,
            "excess_risk": None,
            "converged": None,
            "stop_reason": None,
            "wall_time_s": None,
        }
    return {
        "metrics": metrics.model_dump(mode="json"),
        "excess_risk": metrics.excess_risk,
        "converged": metrics.converged,
        "stop_reason": metrics.stop_reason,
        "wall_time_s": metrics.wall_time_s,
    }


def encode_values(values: Iterable[float]) -> bytes:
    """Spectrum values as a little-endian float64 blob."""
    return np.asarray(list(values), dtype=_F8).tobytes()


def decode_values(blob: bytes) -> list[float]:
    """Inverse of :func:`encode_values`."""
    return [float(v) for v in np.frombuffer(blob, dtype=_F8)]


def spectrum_row(run_id: int, s: Spectrum) -> dict[str, Any]:
    """A row of the spectra table."""
    return {
        "run_id": run_id,
        "kind": s.kind,
        "n_values": len(s.values),
        "values": encode_values(s.values),
        "resolution": s.resolution,
        "tail_alpha": s.tail_fit.alpha if s.tail_fit is not None else None,
        "tail_fit": s.tail_fit.model_dump(mode="json") if s.tail_fit is not None else None,
        "tail_fit_error": s.tail_fit_error,
        "rank_fit": s.rank_fit.model_dump(mode="json") if s.rank_fit is not None else None,
        "rank_fit_error": s.rank_fit_error,
    }


def spectrum_from_row(row: Mapping[Any, Any]) -> Spectrum:
    """A Spectrum from a spectra row."""
    return Spectrum(
        kind=row["kind"],
        values=decode_values(row["values"]),
        resolution=row.get("resolution"),
        tail_fit=TailFit.model_validate(row["tail_fit"]) if row["tail_fit"] is not None else None,
        tail_fit_error=row["tail_fit_error"],
        rank_fit=RankFit.model_validate(row["rank_fit"]) if row["rank_fit"] is not None else None,
        rank_fit_error=row["rank_fit_error"],
    )


def curve_rows(run_id: int, curve: Iterable[CurvePoint]) -> list[dict[str, Any]]:
    """Rows of the curves table (a repeated step keeps its last point)."""
    by_step = {p.step: p for p in curve}
    return [
        {"run_id": run_id, "step": p.step, "train_loss": p.train_loss, "excess_risk": p.excess_risk}
        for p in by_step.values()
    ]


def run_record(row: Mapping[Any, Any], curve: list[CurvePoint] | None = None) -> RunRecord:
    """A RunRecord from a runs row (``curve`` only for get_run)."""
    metrics = row["metrics"]
    return RunRecord(
        id=row["id"],
        sweep_id=row["sweep_id"],
        index=row["run_index"],
        config=RunConfig.model_validate(row["config"]),
        config_hash=row["config_hash"],
        status=row["status"],
        attempts=row["attempts"],
        error=row["error"],
        metrics=RunMetrics.model_validate(metrics) if metrics is not None else None,
        reused_from=row["reused_from"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        curve=curve or [],
    )


def sweep_record(
    row: Mapping[Any, Any], counts: Mapping[str, int], tags: list[str] | None = None
) -> SweepRecord:
    """A SweepRecord from a sweeps row, its run counts per status and its tags."""
    return SweepRecord(
        id=row["id"],
        name=row["name"],
        spec=SweepSpec.model_validate(row["spec"]),
        status=row["status"],
        n_runs=row["n_runs"],
        counts={s: int(counts.get(s, 0)) for s in RUN_STATUSES},
        created_at=row["created_at"],
        finished_at=row["finished_at"],
        tags=sorted(tags or []),
        archived=bool(row.get("archived", False)),
    )


def check_limit(limit: int) -> None:
    """Page sizes are 1..1000 (HTTP 422 on the ``limit`` field otherwise)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise LimitError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}", 422, "limit")


def encode_cursor(kind: str, key: int) -> str:
    """An opaque cursor: base64url of ``kind:key`` (kind keeps sweep and run cursors apart)."""
    return base64.urlsafe_b64encode(f"{kind}:{key}".encode()).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str) -> int:
    """The key of a cursor made by :func:`encode_cursor` (SpecError on field "cursor")."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        got, _, key = raw.partition(":")
        if got != kind or not key.isdigit():
            raise ValueError(raw)
        return int(key)
    except (ValueError, binascii.Error, UnicodeDecodeError) as e:
        raise SpecError(
            "invalid cursor (use the next_cursor of the previous page)", "cursor"
        ) from e


def filter_value(field: str, value: float | int | str) -> float | int | str:
    """A list_runs filter value coerced to its column's type (SpecError naming the field)."""
    kind = RUN_FILTERS.get(field)
    if kind is None:
        raise SpecError(
            f"cannot filter runs on {field!r}; filters: {', '.join(sorted(RUN_FILTERS))}", field
        )
    try:
        if kind is str:
            return str(value)
        number = float(value)
        if kind is int:
            if not number.is_integer():
                raise ValueError(value)
            return int(number)
        return number
    except (TypeError, ValueError) as e:
        raise SpecError(f"{field} must be a {kind.__name__}, got {value!r}", field) from e
