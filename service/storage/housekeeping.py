"""Sweep housekeeping inside one transaction: tags, and deleting a sweep with its results.

Deleting a sweep removes its runs, their spectra, curves and attempts, and its tags, in the
caller's transaction. A run of another sweep that reused one of them keeps its own copy of
the results (reuse copies rows); its ``reused_from`` is cleared, so it never names a run
that no longer exists.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, delete, insert, select, update

from service.storage.tables import AttemptRow, CurveRow, Run, SpectrumRow, Sweep, SweepTag


def tags_of(conn: Connection, sweep_ids: Iterable[int]) -> dict[int, list[str]]:
    """The tags of each sweep (sweeps without tags are absent)."""
    ids = list(sweep_ids)
    out: dict[int, list[str]] = {}
    if not ids:
        return out
    for sid, tag in conn.execute(
        select(SweepTag.sweep_id, SweepTag.tag).where(SweepTag.sweep_id.in_(ids))
    ):
        out.setdefault(sid, []).append(tag)
    return out


def set_tags(conn: Connection, sweep_id: int, tags: Iterable[str]) -> None:
    """Replace a sweep's tags."""
    conn.execute(delete(SweepTag).where(SweepTag.sweep_id == sweep_id))
    unique = sorted(set(tags))
    if unique:
        conn.execute(insert(SweepTag), [{"sweep_id": sweep_id, "tag": t} for t in unique])


def delete_sweep_rows(conn: Connection, sweep_id: int) -> int:
    """Delete a sweep and everything that belongs to it; returns how many runs went."""
    runs = select(Run.id).where(Run.sweep_id == sweep_id).scalar_subquery()
    conn.execute(
        update(Run)
        .where(Run.reused_from.in_(runs), Run.sweep_id != sweep_id)
        .values(reused_from=None)
    )
    for table in (CurveRow, SpectrumRow, AttemptRow):
        conn.execute(delete(table).where(table.run_id.in_(runs)))
    n_runs = conn.execute(delete(Run).where(Run.sweep_id == sweep_id)).rowcount
    conn.execute(delete(SweepTag).where(SweepTag.sweep_id == sweep_id))
    conn.execute(delete(Sweep).where(Sweep.id == sweep_id))
    return int(n_runs)
