"""Runs: one run with its metrics and learning curve, and its weight spectra."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import StoreDep
from api.schemas import ErrorBody, SpectraResponse
from service.analysis.spectra import spectrum_theory
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
def get_spectrum(
    run_id: int,
    store: StoreDep,
    theory: Annotated[
        bool, Query(description="Add the state-evolution prediction of the sorted spectrum")
    ] = False,
) -> SpectraResponse:
    """Spectra of the trained weights (sorted, decreasing) with their tail and rank fits."""
    spectra = store.get_spectra(run_id)
    if not spectra and not theory:
        store.get_run(run_id)  # RunNotFound -> 404; a known run may have no spectrum yet
    if not theory:
        return SpectraResponse(run_id=run_id, spectra=spectra)
    run = store.get_run(run_id)
    predicted = spectrum_theory(run, spectra)
    if isinstance(predicted, str):
        return SpectraResponse(run_id=run_id, spectra=spectra, theory_error=predicted)
    return SpectraResponse(run_id=run_id, spectra=spectra, theory=predicted)
