"""Runs: one run with its metrics and learning curve, and its weight spectra.

A spectrum is served with at most SCALESWEEP_MAX_SPECTRUM_POINTS values (fewer with
``?max_points=``): the largest ones, with ``n_values_total`` and ``truncated`` saying so.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api.deps import SettingsDep, StoreDep, visible_run
from api.schemas import ErrorBody, RunId, SpectraResponse, SpectrumOut
from service.analysis.spectra_summary import spectrum_theory
from service.records import RunRecord

router = APIRouter(prefix="/runs", tags=["runs"], dependencies=[Depends(visible_run)])

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Unknown run id"}
}


@router.get("/{run_id}", responses=NOT_FOUND)
def get_run(run_id: RunId, store: StoreDep) -> RunRecord:
    """One run: config, status, metrics and stop reason, attempts, timings, learning curve."""
    return store.get_run(run_id)


@router.get("/{run_id}/spectrum", responses=NOT_FOUND)
def get_spectrum(
    run_id: RunId,
    store: StoreDep,
    settings: SettingsDep,
    theory: Annotated[
        bool, Query(description="Add the state-evolution prediction of the sorted spectrum")
    ] = False,
    max_points: Annotated[
        int | None,
        Query(ge=1, description="At most this many values per spectrum (capped by the server)"),
    ] = None,
) -> SpectraResponse:
    """Spectra of the trained weights (sorted, decreasing) with their tail and rank fits.

    Values beyond the point limit are cut, never silently: each spectrum carries
    ``n_values_total`` and ``truncated``. The fits were made on every stored value.
    """
    cap = settings.max_spectrum_points
    limit = cap if max_points is None else min(max_points, cap)
    spectra = store.get_spectra(run_id)
    base: dict[str, Any] = {
        "run_id": run_id,
        "spectra": [SpectrumOut.of(s, limit) for s in spectra],
    }
    if not theory:
        if not spectra:
            store.get_run(run_id)  # RunNotFound -> 404; a known run may have no spectrum yet
        return SpectraResponse(**base)
    run = store.get_run(run_id)  # RunNotFound -> 404
    predicted = spectrum_theory(run, spectra)  # on the full spectra, not the served cut
    if isinstance(predicted, str):
        return SpectraResponse(**base, theory_error=predicted)
    return SpectraResponse(**base, theory=predicted)
