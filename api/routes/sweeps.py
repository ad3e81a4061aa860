"""Sweeps: submit, list, read, rename / tag / archive, delete, cancel, extend, list runs, export.

With SCALESWEEP_AUTH=on a token sees only its team's sweeps (another team's answer 404,
lists are filtered), submitting, cancelling and extending need a write token (403), and
submissions are rate-limited per token (429).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import StreamingResponse

from api.deps import (
    AuthDep,
    SettingsDep,
    StoreDep,
    require_admin,
    require_write,
    team_filter,
    visible_sweep,
)
from api.limits import limit_submissions
from api.schemas import (
    MAX_SQL_INT,
    ErrorBody,
    ExtendRequest,
    SweepAccepted,
    SweepDeleted,
    SweepId,
    SweepPatch,
    Tag,
)
from service.export import MEDIA_TYPES, Format, export_chunks
from service.records import Page, RunRecord, SweepRecord
from service.resources import Capacity, admit_spec
from service.results import RunStatus
from service.spec import MAX_WIDTH, Model, Optimizer, SweepSpec
from service.storage.base import iter_runs
from service.storage.store import extended_spec

router = APIRouter(prefix="/sweeps", tags=["sweeps"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Unknown sweep id"}
}
FORBIDDEN: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorBody, "description": "The token's scope does not allow writing"}
}
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size (at most 1,000)")]
Cursor = Annotated[str | None, Query(description="Opaque cursor from the previous page")]
VISIBLE = Depends(visible_sweep)
WRITE = Depends(require_write)


@router.post(
    "",
    status_code=201,
    responses={
        **FORBIDDEN,
        413: {"model": ErrorBody, "description": "Request body too large"},
        422: {"model": ErrorBody, "description": "Invalid spec or too many runs"},
        429: {"model": ErrorBody, "description": "Too many submissions (see Retry-After)"},
    },
    dependencies=[WRITE, Depends(limit_submissions)],
)
def submit_sweep(
    spec: SweepSpec,
    store: StoreDep,
    settings: SettingsDep,
    response: Response,
    principal: AuthDep,
) -> SweepAccepted:
    """Validate a sweep spec, expand it into runs and queue them."""
    # the store refuses more than max_runs (LimitError naming grid) before writing anything;
    # the sweep belongs to the token's team, written in the same transaction
    team = principal.team if principal is not None else None
    # admission control: a run that cannot fit a worker or finish in the per-run time limit
    # is refused (422 naming the field, with the estimate) before anything is stored
    admit_spec(spec, Capacity.from_settings(settings), max_runs=settings.max_runs_per_sweep)
    record = store.create_sweep(spec, max_runs=settings.max_runs_per_sweep, team=team)
    response.headers["Location"] = f"/v1/sweeps/{record.id}"
    return SweepAccepted(id=record.id, status=record.status, n_runs=record.n_runs)


@router.get("")
def list_sweeps(
    store: StoreDep,
    principal: AuthDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    tag: Annotated[Tag | None, Query(description="Only sweeps with this tag")] = None,
    archived: Annotated[
        Literal["false", "true", "all"],
        Query(description="Archived sweeps: hidden (false), only them (true) or listed too"),
    ] = "false",
) -> Page[SweepRecord]:
    """List sweeps (with auth on: the token's team's), newest first, one page at a time."""
    which = {"false": False, "true": True, "all": None}[archived]
    return store.list_sweeps(
        limit=limit, cursor=cursor, team=team_filter(principal), tag=tag, archived=which
    )


@router.get("/{sweep_id}", responses=NOT_FOUND, dependencies=[VISIBLE])
def get_sweep(sweep_id: SweepId, store: StoreDep) -> SweepRecord:
    """One sweep: spec, status, run counts per status, created and finished times."""
    return store.get_sweep(sweep_id)


@router.patch(
    "/{sweep_id}",
    responses={**NOT_FOUND, **FORBIDDEN, 422: {"model": ErrorBody, "description": "Bad field"}},
    dependencies=[WRITE, VISIBLE],
)
def update_sweep(sweep_id: SweepId, body: SweepPatch, store: StoreDep) -> SweepRecord:
    """Rename a sweep, replace its tags, or archive it (hidden from the default list)."""
    return store.update_sweep(sweep_id, name=body.name, tags=body.tags, archived=body.archived)


@router.delete(
    "/{sweep_id}",
    responses={
        **NOT_FOUND,
        403: {"model": ErrorBody, "description": "Deleting needs an admin token"},
    },
    dependencies=[VISIBLE, Depends(require_admin)],  # another team's sweep: 404 first
)
def delete_sweep(sweep_id: SweepId, store: StoreDep) -> SweepDeleted:
    """Delete a sweep with its runs, spectra and curves (one transaction; admin scope).

    A run of another sweep that reused one of its results keeps its own copy."""
    return SweepDeleted(id=sweep_id, deleted_runs=store.delete_sweep(sweep_id))


@router.get(
    "/{sweep_id}/export",
    responses={
        **NOT_FOUND,
        200: {"content": {m.split(";")[0]: {} for m in MEDIA_TYPES.values()}},
    },
    response_class=StreamingResponse,
    dependencies=[VISIBLE],
)
def export_sweep(
    sweep_id: SweepId,
    store: StoreDep,
    format: Annotated[Format, Query(description="csv, parquet or jsonl")] = "csv",
) -> StreamingResponse:
    """Every run of the sweep, one flat row per run (DESIGN.md "exports"), streamed a page
    of runs at a time: the server's memory does not grow with the number of runs."""
    sweep = store.get_sweep(sweep_id)  # 404 before the stream starts
    filename = f"sweep-{sweep.id}.{format}"
    return StreamingResponse(
        export_chunks(iter_runs(store, sweep_id), format),
        media_type=MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.post(
    "/{sweep_id}/cancel", responses={**NOT_FOUND, **FORBIDDEN}, dependencies=[WRITE, VISIBLE]
)
def cancel_sweep(sweep_id: SweepId, store: StoreDep) -> SweepRecord:
    """Cancel a sweep: queued runs become cancelled, running ones are stopped."""
    return store.cancel_sweep(sweep_id)


@router.post(
    "/{sweep_id}/extend",
    responses={
        **NOT_FOUND,
        **FORBIDDEN,
        409: {"model": ErrorBody, "description": "Sweep was cancelled"},
    },
    dependencies=[WRITE, VISIBLE],
)
def extend_sweep(
    sweep_id: SweepId, body: ExtendRequest, store: StoreDep, settings: SettingsDep
) -> SweepRecord:
    """Add grid values (more seeds, larger n); finished runs are reused."""
    grid: dict[str, list[float] | list[int]] = {str(k): v for k, v in body.grid.items()}
    extended = extended_spec(store.get_sweep(sweep_id).spec, grid)  # 422 before any write
    admit_spec(extended, Capacity.from_settings(settings), max_runs=settings.max_runs_per_sweep)
    return store.extend_sweep(sweep_id, grid, max_runs=settings.max_runs_per_sweep)


@router.get("/{sweep_id}/runs", responses=NOT_FOUND, dependencies=[VISIBLE])
def list_runs(
    sweep_id: SweepId,
    store: StoreDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    status: RunStatus | None = None,
    model: Model | None = None,
    d: Annotated[int | None, Query(ge=1, le=MAX_SQL_INT)] = None,
    n: Annotated[int | None, Query(ge=1, le=MAX_SQL_INT)] = None,
    weight_decay: Annotated[float | None, Query(allow_inf_nan=False)] = None,
    gamma: Annotated[float | None, Query(allow_inf_nan=False)] = None,
    noise: Annotated[float | None, Query(allow_inf_nan=False)] = None,
    seed: Annotated[int | None, Query(ge=0, le=MAX_SQL_INT)] = None,
    optimizer: Optimizer | None = None,
    width: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_WIDTH,
            description="Effective hidden width m: training.width, else d (2d with a "
            "signed second layer); the diagonal net's is d",
        ),
    ] = None,
) -> Page[RunRecord]:
    """Runs of a sweep in expansion order, with config and metrics; filter on status and config."""
    given = {
        "model": model,
        "d": d,
        "n": n,
        "weight_decay": weight_decay,
        "gamma": gamma,
        "noise": noise,
        "seed": seed,
        "optimizer": optimizer,
        "width": width,
    }
    filters: dict[str, float | int | str] = {k: v for k, v in given.items() if v is not None}
    store.get_sweep(sweep_id)  # 404 for an unknown sweep rather than an empty page
    return store.list_runs(
        sweep_id, status=status, filters=filters or None, limit=limit, cursor=cursor
    )
