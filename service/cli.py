"""The ``scalesweep`` command line (DESIGN.md, "Contract: CLI").

Client commands (submit, status, runs, exponents, cancel) talk to the server through
``service.client``; ``db-upgrade`` migrates the database and ``token create|list|revoke``
manage API tokens in it directly (SCALESWEEP_DATABASE_URL, no server); ``serve``, ``run-one`` and
``demo`` need compute and are dispatched to ``workers.cli`` through importlib, so that
``service`` never imports ``workers`` statically.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import httpx
import pydantic
import yaml

from service import cli_output as out
from service.client import Client, Progress, ServerError
from service.config import Settings
from service.spec import spec_from_obj

WORKER_COMMANDS = {"serve": "serve_command", "run-one": "run_one_command", "demo": "demo_command"}


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser with every subcommand."""
    p = argparse.ArgumentParser(prog="scalesweep", description="Sweeps for neural scaling laws.")
    p.add_argument("--server", help="API base URL (default: SCALESWEEP_SERVER)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("submit", help="submit a sweep spec (YAML or JSON); prints the sweep id")
    s.add_argument("spec", type=Path, metavar="SPEC.yaml")
    s.add_argument("--wait", action="store_true", help="follow progress, then print exponents")
    for name, text in (("status", "a sweep's status and counts"), ("cancel", "cancel a sweep")):
        sub.add_parser(name, help=text).add_argument("id", type=int, metavar="ID")
    r = sub.add_parser("runs", help="every run of a sweep (follows every page)")
    r.add_argument("id", type=int, metavar="ID")
    r.add_argument("--format", choices=("table", "csv", "json"), default="table")
    r.add_argument("--status", choices=("queued", "running", "succeeded", "failed", "cancelled"))
    e = sub.add_parser("exponents", help="fitted scaling exponents of a sweep")
    e.add_argument("id", type=int, metavar="ID")
    e.add_argument("--x", default="n", help="axis to fit against (default n)")
    e.add_argument("--by", help="comma-separated grouping axes (default: every varying axis)")
    e.add_argument("--json", action="store_true")
    t = sub.add_parser("theory", help="state-evolution prediction next to the measurement")
    t.add_argument("id", type=int, metavar="ID")
    t.add_argument("--x", default="n", help="axis of the exponents (default n)")
    t.add_argument("--by", help="comma-separated grouping axes (default: every varying axis)")
    t.add_argument("--json", action="store_true")
    for name, text in (
        ("phase-diagram", "exponent against the power of a linked weight decay, with regimes"),
        ("spectra", "tail and rank exponents of the weights next to the excess risk"),
    ):
        q = sub.add_parser(name, help=text)
        q.add_argument("id", type=int, metavar="ID")
        q.add_argument("--json", action="store_true")
    sub.add_parser("db-upgrade", help="migrate the database (SCALESWEEP_DATABASE_URL) to head")

    tk = sub.add_parser("token", help="API tokens (in the database, SCALESWEEP_DATABASE_URL)")
    tsub = tk.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    tc = tsub.add_parser("create", help="create a token; prints it once (only its hash is kept)")
    tc.add_argument("--name", required=True)
    tc.add_argument("--scope", choices=("read", "write", "admin"), required=True)
    tc.add_argument("--team", help="the token sees and submits only this team's sweeps")
    tc.add_argument("--json", action="store_true", help='print {"token": ..., "id": ...}')
    tl = tsub.add_parser("list", help="every token (never the token itself)")
    tl.add_argument("--json", action="store_true")
    tsub.add_parser("revoke", help="revoke a token").add_argument("id", type=int, metavar="ID")

    sv = sub.add_parser("serve", help="API + runner (embedded default: SQLite, local Ray)")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--no-ray", action="store_true", help="run sweeps in-process, without Ray")
    sv.add_argument("--no-runner", action="store_true", help="API only (the runner runs elsewhere)")

    o = sub.add_parser("run-one", help="train one configuration here, no server")
    o.add_argument("--model", choices=("quadratic", "diagonal"), required=True)
    o.add_argument("--d", type=int, required=True)
    size = o.add_mutually_exclusive_group(required=True)
    size.add_argument("--n", type=int)
    size.add_argument("--alpha", type=float)
    o.add_argument("--weight-decay", type=float, required=True)
    o.add_argument("--gamma", type=float, default=1.0)
    o.add_argument("--noise", type=float, default=0.0)
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--optimizer", choices=("lbfgs", "gd", "adam", "convex"), default="lbfgs")
    o.add_argument("--rank", type=int)
    o.add_argument("--dtype", choices=("float32", "float64"))
    o.add_argument("--max-steps", type=int)
    o.add_argument("--test-samples", type=int)
    o.add_argument("--signed", action="store_true", help="signed teacher (quadratic)")
    o.add_argument("--second-layer", choices=("positive", "signed"))
    o.add_argument("--device", choices=("auto", "cpu", "cuda"))
    o.add_argument("--width", type=int)
    o.add_argument("--lr", type=float)
    o.add_argument("--tol", type=float)
    o.add_argument("--timeout-s", type=float)
    o.add_argument("--curve-every", type=int)
    o.add_argument("--no-spectrum", action="store_true")
    o.add_argument("--json", action="store_true", help="print one JSON object")

    dm = sub.add_parser("demo", help="a small built-in sweep end to end through a real server")
    dm.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    return p


def progress_bar(stream: TextIO, width: int = 30) -> Callable[[Progress], None]:
    """A callback drawing ``[#####.....] done/total`` on one line of ``stream``."""

    def draw(p: Progress) -> None:
        filled = width * p.done // p.n_runs if p.n_runs else width
        counts = " ".join(f"{k}={v}" for k, v in sorted(p.counts.items()) if v)
        bar = "#" * filled + "." * (width - filled)
        stream.write(f"\r[{bar}] {p.done}/{p.n_runs} {p.status} {counts}\x1b[K")
        stream.flush()

    return draw


def _client(args: argparse.Namespace) -> Client:
    settings = Settings()
    return Client(args.server or settings.server, token=settings.api_token)


def cmd_submit(args: argparse.Namespace) -> int:
    """Submit a spec; with --wait follow it and print the exponent table."""
    try:
        obj = yaml.safe_load(args.spec.read_text())
        spec = spec_from_obj(obj)  # refuse locally what the server would refuse (and NaN)
    except OSError as exc:
        print(f"error: cannot read {args.spec}: {exc}", file=sys.stderr)
        return 2
    except yaml.YAMLError as exc:
        print(f"error: {args.spec} is not valid YAML: {exc}", file=sys.stderr)
        return 2
    except pydantic.ValidationError as exc:
        print(out.validation_message(args.spec, exc), file=sys.stderr)
        return 2
    with _client(args) as client:
        submitted = client.submit(spec.model_dump(mode="json", exclude_unset=True))
        print(submitted.id, flush=True)
        if not args.wait:
            return 0
        final = client.wait_for(submitted.id, progress_bar(sys.stderr))
        print(file=sys.stderr)
        print(out.status_text(final))
        print(out.exponent_table(client.exponents(submitted.id)))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Print a sweep's status and counts."""
    with _client(args) as client:
        print(out.status_text(client.get_sweep(args.id)))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    """Print every run of a sweep as a table, CSV or JSON."""
    with _client(args) as client:
        runs = list(client.list_runs(args.id, status=args.status))
    writer = {"table": out.runs_table, "csv": out.runs_csv, "json": out.runs_json}[args.format]
    sys.stdout.write(writer(runs))
    return 0


def cmd_exponents(args: argparse.Namespace) -> int:
    """Print the fitted exponents."""
    by = None if args.by is None else [a for a in args.by.split(",") if a]
    with _client(args) as client:
        report = client.exponents(args.id, x=args.x, by=by)
    print(report.model_dump_json(indent=2) if args.json else out.exponent_table(report))
    return 0


def cmd_theory(args: argparse.Namespace) -> int:
    """Print the theory report."""
    by = None if args.by is None else [a for a in args.by.split(",") if a]
    with _client(args) as client:
        report = client.theory(args.id, x=args.x, by=by)
    print(report.model_dump_json(indent=2) if args.json else out.theory_table(report))
    return 0


def cmd_phase_diagram(args: argparse.Namespace) -> int:
    """Print the phase diagram."""
    with _client(args) as client:
        report = client.phase_diagram(args.id)
    print(report.model_dump_json(indent=2) if args.json else out.phase_table(report))
    return 0


def cmd_spectra(args: argparse.Namespace) -> int:
    """Print the spectra summary."""
    with _client(args) as client:
        report = client.spectra_summary(args.id)
    print(report.model_dump_json(indent=2) if args.json else out.spectra_table(report))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel a sweep and print its new status."""
    with _client(args) as client:
        print(out.status_text(client.cancel(args.id)))
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    """Migrate the configured database to the newest revision."""
    from service.storage import upgrade_head  # SQLAlchemy/Alembic only for this command

    url = Settings().database_url
    upgrade_head(url)
    print(f"database at head: {url.split('@')[-1]}")  # never print credentials
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """token create | list | revoke, directly on the database (no server involved)."""
    from service.auth import TokenService  # SQLAlchemy only for this command
    from service.errors import NotFoundError, SpecError, StorageError
    from service.storage import check_schema
    from service.storage.tokens import make_token_store

    url = Settings().database_url
    try:
        check_schema(url)
    except StorageError as exc:
        print(f"error: {exc} (run `scalesweep db-upgrade`)", file=sys.stderr)
        return 1
    store = make_token_store(url)
    try:
        tokens = TokenService(store)
        if args.token_command == "create":
            try:
                new = tokens.create(args.name, args.scope, args.team)
            except SpecError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            if args.json:
                print(json.dumps({"token": new.token, **out.token_row(new.info)}))
            else:
                print(new.token)
                print(
                    f"token {new.info.id} ({new.info.name}, scope {new.info.scope}"
                    f"{', team ' + new.info.team if new.info.team else ''}): "
                    "store it now, it is not shown again",
                    file=sys.stderr,
                )
        elif args.token_command == "list":
            rows = tokens.list()
            sys.stdout.write(out.tokens_json(rows) if args.json else out.tokens_table(rows))
        else:
            try:
                row = tokens.revoke(args.id)
            except NotFoundError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            print(f"token {row.id} ({row.name}) revoked")
    finally:
        store.close()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """serve / run-one / demo: implemented in workers.cli (imported only here, dynamically)."""
    try:
        module: Any = importlib.import_module("workers.cli")
    except ImportError as exc:
        print(f"error: `{args.command}` needs the workers package: {exc}", file=sys.stderr)
        return 2
    result: int = getattr(module, WORKER_COMMANDS[args.command])(args)
    return result


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "submit": cmd_submit,
    "status": cmd_status,
    "runs": cmd_runs,
    "exponents": cmd_exponents,
    "theory": cmd_theory,
    "phase-diagram": cmd_phase_diagram,
    "spectra": cmd_spectra,
    "cancel": cmd_cancel,
    "db-upgrade": cmd_db_upgrade,
    "token": cmd_token,
    **dict.fromkeys(WORKER_COMMANDS, cmd_worker),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scalesweep`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        server = args.server or Settings().server
        print(f"error: cannot reach the server at {server}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
