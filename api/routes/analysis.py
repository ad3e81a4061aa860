"""Answers computed from the stored runs: exponents, theory, phase diagram, spectra summary.

Every answer is cached per (store, sweep, number of ended runs, query): a new result
invalidates it, the same query on an unchanged sweep is answered from memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query

from api.deps import StoreDep, visible_sweep
from api.schemas import ErrorBody, SweepId
from service.analysis.cache import CACHE
from service.analysis.exponents import sweep_exponents
from service.analysis.phase_diagram import sweep_phase_diagram
from service.analysis.reports import ExponentReport, PhaseDiagram, SpectraSummary, TheoryReport
from service.analysis.spectra_summary import sweep_spectra_summary
from service.analysis.theory_comparison import sweep_theory
from service.storage.base import SweepStore

router = APIRouter(prefix="/sweeps", tags=["analysis"], dependencies=[Depends(visible_sweep)])
T = TypeVar("T")

RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Unknown sweep id"},
    422: {"model": ErrorBody, "description": "Unknown axis or a query the sweep cannot answer"},
}
XAxis = Annotated[
    str,
    Query(
        description="Axis to fit against: n, alpha, d, weight_decay, gamma, noise, width "
        "(against the width R need not be a power law: each group's notes say so)"
    ),
]
ByAxes = Annotated[
    str | None,
    Query(description="Comma-separated axes to group on; default: every other varying axis"),
]


NonUnique = Annotated[
    bool,
    Query(
        description="Also fit runs whose minimiser is not unique (weight_decay = 0 with fewer "
        "samples than parameters: their risk is the optimiser's implicit bias); default: left "
        "out and counted in n_non_unique"
    ),
]


def _by(by: str | None) -> list[str] | None:
    return None if by is None else [a.strip() for a in by.split(",") if a.strip()]


def _answer(
    store: SweepStore, sweep_id: int, query: tuple[Any, ...], compute: Callable[[], T]
) -> T:
    """``compute()``, cached per (store, sweep, number of runs ended, query)."""
    sweep = store.get_sweep(sweep_id)
    ended = sum(v for k, v in sweep.counts.items() if k not in ("queued", "running"))
    # the store itself, not id(store): the cache keeps it alive, so its id cannot be reused by
    # another store (a fresh database whose sweep 1 would otherwise hit this one's answers)
    key = (store, sweep.id, sweep.n_runs, ended, query)
    return CACHE.get_or_compute(key, compute)


def _per_group(
    store: SweepStore,
    sweep_id: int,
    name: str,
    fit: Callable[..., T],
    x: str,
    by: str | None,
    include_non_unique: bool,
) -> T:
    """A per-group answer of the ``x`` and ``by`` query, cached like every other."""
    axes = _by(by)

    def run() -> T:
        points = store.run_points(sweep_id)
        return fit(sweep_id, points, x=x, by=axes, include_non_unique=include_non_unique)

    key = (name, x, None if axes is None else tuple(axes), include_non_unique)
    return _answer(store, sweep_id, key, run)


@router.get("/{sweep_id}/exponents", responses=RESPONSES)
def get_exponents(
    sweep_id: SweepId,
    store: StoreDep,
    x: XAxis = "n",
    by: ByAxes = None,
    include_non_unique: NonUnique = False,
) -> ExponentReport:
    """Fitted exponents of R ~ C x^-beta per group (power law, plateau or broken), bootstrap CI."""
    return _per_group(store, sweep_id, "exponents", sweep_exponents, x, by, include_non_unique)


@router.get("/{sweep_id}/theory", responses=RESPONSES)
def get_theory(
    sweep_id: SweepId,
    store: StoreDep,
    x: XAxis = "n",
    by: ByAxes = None,
    include_non_unique: NonUnique = False,
) -> TheoryReport:
    """State-evolution prediction next to the measured mean per grid point, and exponents."""
    return _per_group(store, sweep_id, "theory", sweep_theory, x, by, include_non_unique)


@router.get("/{sweep_id}/phase-diagram", responses=RESPONSES)
def get_phase_diagram(
    sweep_id: SweepId, store: StoreDep, include_non_unique: NonUnique = False
) -> PhaseDiagram:
    """Measured, SE and heuristic exponents against the power l of lambda ~ n^-l, with regimes."""

    def run() -> PhaseDiagram:
        spec = store.get_sweep(sweep_id).spec
        points = store.run_points(sweep_id)
        return sweep_phase_diagram(sweep_id, spec, points, include_non_unique=include_non_unique)

    return _answer(store, sweep_id, ("phase", include_non_unique), run)


@router.get("/{sweep_id}/spectra/summary", responses=RESPONSES)
def get_spectra_summary(sweep_id: SweepId, store: StoreDep) -> SpectraSummary:
    """Per grid point: heavy-tail and rank-ordered exponents of the weights next to R."""

    def run() -> SpectraSummary:
        points, spectra = store.run_points(sweep_id), store.spectrum_points(sweep_id)
        return sweep_spectra_summary(sweep_id, points, spectra)

    return _answer(store, sweep_id, ("spectra",), run)
