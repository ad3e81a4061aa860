"""``scalesweep plot`` (paper figures, :mod:`cli.figures`) and ``scalesweep export``.

``plot ID --kind risk|theory|spectrum|phase|compare|width [--run RUN] [--x n] [--by AXES]
[--ids 1,2] --out FILE.png|svg|pdf`` fetches what the dashboard shows from the server and
draws it with matplotlib; ``export ID --format csv|parquet|jsonl --out FILE`` streams every
run of a sweep into a file (their parsers are in :mod:`cli.main`). matplotlib is imported
by ``plot`` only, when it draws.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from cli import client_commands
from cli import output as out

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from service.client import Client


def _by(text: str | None) -> list[str] | None:
    return None if text is None else [a for a in text.split(",") if a]


def draw(c: Client, args: argparse.Namespace) -> Figure:
    """The figure ``args`` asks for, from the server ``c``."""
    from cli import figures

    sweep = c.get_sweep(args.id)
    by = _by(args.by)
    if args.kind == "risk":
        runs = list(c.list_runs(args.id))
        return figures.risk_figure(
            sweep, runs, c.exponents(args.id, x=args.x, by=by), c.theory(args.id, x=args.x, by=by)
        )
    if args.kind == "theory":
        return figures.theory_figure(sweep, c.theory(args.id, x=args.x, by=by))
    if args.kind == "phase":
        return figures.phase_figure(sweep, c.phase_diagram(args.id))
    if args.kind == "width":  # always against the width, grouped by the rest (--by)
        return figures.width_figure(sweep, c.theory(args.id, x="width", by=by))
    if args.kind == "spectrum":
        run_id = args.run_id
        if run_id is None:
            first = next(iter(c.list_runs(args.id, status="succeeded", page_size=1)), None)
            if first is None:
                raise ValueError(f"sweep {args.id} has no succeeded run to draw")
            run_id = first.id
        spectra, theory = c.spectra_with_theory(run_id)
        return figures.spectrum_figure(c.get_run(run_id), spectra, theory)
    ids = [args.id, *(int(i) for i in (args.ids or "").split(",") if i.strip())]
    if len(ids) < 2:
        raise ValueError("--kind compare needs --ids with at least one more sweep")
    items = [
        (c.get_sweep(i), list(c.list_runs(i, status="succeeded")), c.exponents(i, x=args.x, by=by))
        for i in ids
    ]
    return figures.compare_figure(items)


def cmd_plot(args: argparse.Namespace) -> int:
    """Draw and save one figure."""
    from cli import figures

    if args.out.suffix.lower() not in figures.FORMATS:
        got = out.safe(args.out.name)
        print(f"error: --out must end in .png, .svg or .pdf, got {got}", file=sys.stderr)
        return 2
    with client_commands.client(args) as c:
        try:
            fig = draw(c, args)
        except ValueError as exc:
            print(f"error: {out.safe(exc)}", file=sys.stderr)
            return 2
    print(out.safe(figures.save(fig, args.out)))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Stream a sweep's export into a file; prints the path and the size."""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".part")
    with client_commands.client(args) as c, tmp.open("wb") as f:
        size = c.export(args.id, f, format=args.format)
    tmp.replace(args.out)  # never a half-written file under the asked name
    print(out.safe(f"{args.out} ({size} bytes)"))
    return 0
