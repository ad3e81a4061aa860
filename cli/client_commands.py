"""Commands that talk to a scalesweep server through ``service.client``.

``submit``, ``list``, ``status``, ``edit`` (rename, tags, archive), ``delete``, ``runs``,
``exponents``, ``theory``, ``phase-diagram``, ``spectra`` and ``cancel`` (their parsers are in
:mod:`cli.main`); the server is ``--server`` or SCALESWEEP_SERVER, the token
SCALESWEEP_API_TOKEN. Imported only when one of them runs; what it imports stays light
(no scipy, matplotlib, torch, Ray, SQLAlchemy or FastAPI).
"""

from __future__ import annotations

import argparse
import sys

import pydantic

from cli import output as out
from cli.output import progress_bar
from service.client import Client
from service.config import Settings
from service.spec import spec_from_obj


def client(args: argparse.Namespace) -> Client:
    """A client on ``--server`` (else SCALESWEEP_SERVER) with SCALESWEEP_API_TOKEN."""
    settings = Settings()
    return Client(args.server or settings.server, token=settings.api_token)


def _by(args: argparse.Namespace) -> list[str] | None:
    return None if args.by is None else [a for a in args.by.split(",") if a]


def cmd_submit(args: argparse.Namespace) -> int:
    """Submit a spec; with --wait follow it and print the exponent table."""
    from service.documents import read_document
    from service.errors import SpecError

    try:
        obj = read_document(args.spec)  # UTF-8 YAML, no key given twice
        spec = spec_from_obj(obj)  # refuse locally what the server would refuse (and NaN)
    except OSError as exc:
        print(out.safe(f"error: cannot read {args.spec}: {exc}"), file=sys.stderr)
        return 2
    except SpecError as exc:
        print(out.safe(f"error: {exc}"), file=sys.stderr)
        return 2
    except pydantic.ValidationError as exc:
        print(out.validation_message(args.spec, exc), file=sys.stderr)
        return 2
    with client(args) as c:
        submitted = c.submit(spec.model_dump(mode="json", exclude_unset=True))
        print(submitted.id, flush=True)
        if not args.wait:
            return 0
        final = c.wait_for(submitted.id, progress_bar(sys.stderr))
        print(file=sys.stderr)
        print(out.status_text(final))
        print(out.exponent_table(c.exponents(submitted.id)))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """Print the sweeps (every page)."""
    with client(args) as c:
        sweeps = list(c.list_sweeps(tag=args.tag, archived=args.archived))
    sys.stdout.write(out.sweeps_table(sweeps))
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    """Rename, retag or (un)archive a sweep; print its new status."""
    tags = None if args.tags is None else [t.strip() for t in args.tags.split(",") if t.strip()]
    if args.name is None and tags is None and args.archived is None:
        print("error: give --name, --tags, --archive or --unarchive", file=sys.stderr)
        return 2
    with client(args) as c:
        sweep = c.update_sweep(args.id, name=args.name, tags=tags, archived=args.archived)
    print(out.status_text(sweep))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    """Delete a sweep (with --yes), printing how many runs went."""
    with client(args) as c:
        sweep = c.get_sweep(args.id)
        if not args.yes:
            print(
                f"would delete sweep {sweep.id} {out.quoted(sweep.name)} and its "
                f"{sweep.n_runs} runs; run again with --yes",
                file=sys.stderr,
            )
            return 2
        n = c.delete_sweep(args.id)
    print(f"deleted sweep {args.id} and {n} runs")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Print a sweep's status and counts."""
    with client(args) as c:
        print(out.status_text(c.get_sweep(args.id)))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    """Print every run of a sweep as a table, CSV or JSON."""
    with client(args) as c:
        runs = list(c.list_runs(args.id, status=args.status))
    writer = {"table": out.runs_table, "csv": out.runs_csv, "json": out.runs_json}[args.format]
    sys.stdout.write(writer(runs))
    return 0


def cmd_exponents(args: argparse.Namespace) -> int:
    """Print the fitted exponents."""
    with client(args) as c:
        report = c.exponents(args.id, x=args.x, by=_by(args))
    print(out.json_text(report) if args.json else out.exponent_table(report))
    return 0


def cmd_theory(args: argparse.Namespace) -> int:
    """Print the theory report."""
    with client(args) as c:
        report = c.theory(args.id, x=args.x, by=_by(args))
    print(out.json_text(report) if args.json else out.theory_table(report))
    return 0


def cmd_phase_diagram(args: argparse.Namespace) -> int:
    """Print the phase diagram."""
    with client(args) as c:
        report = c.phase_diagram(args.id)
    print(out.json_text(report) if args.json else out.phase_table(report))
    return 0


def cmd_spectra(args: argparse.Namespace) -> int:
    """Print the spectra summary."""
    with client(args) as c:
        report = c.spectra_summary(args.id)
    print(out.json_text(report) if args.json else out.spectra_table(report))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel a sweep and print its new status."""
    with client(args) as c:
        print(out.status_text(c.cancel(args.id)))
    return 0
