"""Runs: one run with its metrics and learning curve, and its weight spectra."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import StoreDep
from api.schemas import ErrorBody, SpectraResponse
from service.records import RunRecord

router = APIRouter(prefix="/runs", tags=["runs"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Unknown run id"}
}


@router.get("/{run_id}", responses=NOT_FOUND)
def get_run(run_id: int, store: StoreDep) -> RunRecord:
    """One run: config, status, metrics and stop reason, attempts, timings, learning curve."""
    return store.get_run(run_id)


@router.get("/{run_id}/spectrum", responses=NOT_FOUND)
def get_spectrum(run_id: int, store: StoreDep) -> SpectraResponse:
    """Spectra of the trained weights (sorted, decreasing) with their tail and rank fits."""
    spectra = store.get_spectra(run_id)
    if not spectra:
        store.get_run(run_id)  # RunNotFound -> 404; a known run may have no spectrum yet
    return SpectraResponse(run_id=run_id, spectra=spectra)
