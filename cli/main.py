"""The ``scalesweep`` entry point: every parser, and the dispatch.

The parser is built from argparse alone: no command module is imported until its command
runs, so ``scalesweep --help`` and a mistyped option answer at once (numpy, scipy, pydantic,
torch, Ray, SQLAlchemy, FastAPI and matplotlib load only in the commands that use them;
``tests/cli/test_main.py`` checks it). Each subcommand names the function that runs it
(:class:`Handler`: module and function, imported when called); :func:`main` parses and calls
it. Errors a user can act on (a refused request, an unreachable server) become one line on
stderr and exit 1.

Global options (``--server``) are accepted before and after the subcommand: the top-level
parser has them with their defaults, every subcommand a copy whose default is
``argparse.SUPPRESS`` (absent, so a value given before the subcommand stays).

Every option's help states its default and its unit or convention (THEORY.md's: the
objective ``(1/2n) sum (y - f)^2 + (lambda/2)|params|^2``, alpha = n/d^2 for the quadratic
model and n/d for the diagonal one, Delta the label-noise variance).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PLOT_KINDS = ("risk", "theory", "spectrum", "phase", "compare", "width")
"""``plot --kind`` (``cli.figures.KINDS``, written here so that the parser needs no
matplotlib; a test keeps the two equal)."""
X_AXES = ("n", "alpha", "d", "weight_decay", "gamma", "noise", "width")
"""``--x`` of ``exponents`` and ``plot`` (``service.analysis.grouping.X_AXES``, written here
so that the parser needs no numpy; a test keeps the two equal)."""
SWEEP_ID_HELP = "the sweep's id (as submit or list print it)"
RUN_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Handler:
    """The function that runs a subcommand, by module and name: imported when it runs."""

    module: str
    function: str

    def resolve(self) -> Callable[[argparse.Namespace], int]:
        """The function itself (its module imported now)."""
        fn: Callable[[argparse.Namespace], int] = getattr(
            importlib.import_module(self.module), self.function
        )
        return fn

    def __call__(self, args: argparse.Namespace) -> int:
        return self.resolve()(args)


CLIENT = "cli.client_commands"
COMPUTE = "cli.compute_commands"
ADMIN = "cli.admin_commands"
PLOT = "cli.plot_commands"
REPRODUCE = "cli.reproduce_commands"


def _global_options(*, in_subcommand: bool) -> argparse.ArgumentParser:
    """The options every command accepts, before or after its name. The subcommands' copy
    defaults to SUPPRESS: left out after the subcommand, the value given before it (or the
    top-level default) stays."""
    p = argparse.ArgumentParser(add_help=False)
    default = argparse.SUPPRESS if in_subcommand else None
    p.add_argument(
        "--server",
        metavar="URL",
        default=default,
        help="base URL of the scalesweep API, for the commands that talk to a server; "
        "accepted before or after the command (default: SCALESWEEP_SERVER from the "
        "environment or .env, else http://127.0.0.1:8000)",
    )
    return p


class _Commands:
    """Adds subcommands that all carry the global options and a handler."""

    def __init__(self, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        self.sub = sub

    def add(self, name: str, text: str, handler: Handler | None) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = self.sub.add_parser(
            name,
            help=text,
            description=text[0].upper() + text[1:] + ".",
            parents=[_global_options(in_subcommand=True)],
        )
        if handler is not None:
            p.set_defaults(run=handler)
        return p

    def with_id(self, name: str, text: str, handler: Handler) -> argparse.ArgumentParser:
        p = self.add(name, text, handler)
        p.add_argument("id", type=int, metavar="ID", help=SWEEP_ID_HELP)
        return p


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser with every subcommand (argparse only: nothing else is imported)."""
    p = argparse.ArgumentParser(
        prog="scalesweep",
        description="Sweeps for neural scaling laws: train every configuration to its "
        "certified global minimum, store the runs, fit the exponents, compare with theory.",
        epilog="`scalesweep COMMAND --help` describes a command's options.",
        parents=[_global_options(in_subcommand=False)],
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = _Commands(sub)
    _client_parsers(commands)
    _plot_parsers(commands)
    _reproduce_parser(commands)
    _admin_parsers(commands)
    _compute_parsers(commands)
    return p


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--json", action="store_true", help="print the server's JSON answer (default: a table)"
    )


def _client_parsers(c: _Commands) -> None:
    s = c.add("submit", "submit a sweep spec (YAML or JSON); prints the sweep id",
              Handler(CLIENT, "cmd_submit"))  # fmt: skip
    s.add_argument(
        "spec", type=Path, metavar="SPEC.yaml",
        help="the sweep spec: a YAML or JSON file (fields: DESIGN.md, 'the sweep spec')",
    )  # fmt: skip
    s.add_argument(
        "--wait", action="store_true",
        help="follow the sweep with a progress bar until it ends, then print its exponents "
        "(default: print the id and return)",
    )  # fmt: skip
    ls = c.add("list", "sweeps, newest first (archived ones hidden)", Handler(CLIENT, "cmd_list"))
    ls.add_argument("--tag", metavar="TAG", help="only sweeps with this tag (default: any tag)")
    ls.add_argument(
        "--archived", choices=("false", "true", "all"), default="false",
        help="false: sweeps not archived, true: only archived ones, all: both (default: false)",
    )  # fmt: skip
    c.with_id("status", "a sweep's status and counts", Handler(CLIENT, "cmd_status"))
    ed = c.with_id("edit", "rename a sweep, set its tags, archive or unarchive it",
                   Handler(CLIENT, "cmd_edit"))  # fmt: skip
    ed.add_argument("--name", help="the new name, up to 200 characters (default: unchanged)")
    ed.add_argument(
        "--tags", metavar="A,B",
        help="comma-separated tags; replaces the sweep's tags, '' removes them "
        "(default: unchanged)",
    )  # fmt: skip
    arch = ed.add_mutually_exclusive_group()
    arch.add_argument(
        "--archive", dest="archived", action="store_const", const=True,
        help="hide the sweep from the default list (default: unchanged)",
    )  # fmt: skip
    arch.add_argument(
        "--unarchive", dest="archived", action="store_const", const=False,
        help="show the sweep in the default list again (default: unchanged)",
    )  # fmt: skip
    rm = c.with_id("delete", "delete a sweep with its runs (admin token)",
                   Handler(CLIENT, "cmd_delete"))  # fmt: skip
    rm.add_argument(
        "--yes", action="store_true",
        help="really delete (default: say what would be deleted and change nothing)",
    )  # fmt: skip
    c.with_id("cancel", "cancel a sweep's queued and running runs", Handler(CLIENT, "cmd_cancel"))
    r = c.with_id("runs", "every run of a sweep (follows every page)", Handler(CLIENT, "cmd_runs"))
    r.add_argument(
        "--format", choices=("table", "csv", "json"), default="table",
        help="table: the main columns aligned; csv: the export's columns; json: the API's "
        "run records (default: table)",
    )  # fmt: skip
    r.add_argument(
        "--status", choices=RUN_STATUSES, help="only runs in this status (default: every run)"
    )
    for name, text, fn in (
        ("exponents", "fitted scaling exponents of a sweep, R ~ C x^-exponent per group",
         "cmd_exponents"),
        ("theory", "state-evolution prediction next to the measurement", "cmd_theory"),
    ):  # fmt: skip
        q = c.with_id(name, text, Handler(CLIENT, fn))
        _x_by(q, "fit against")
        _json_flag(q)
    for name, text, fn in (
        ("phase-diagram", "exponent against the power l of a linked weight decay lambda ~ n^-l",
         "cmd_phase_diagram"),
        ("spectra", "tail and rank exponents of the weights next to the excess risk",
         "cmd_spectra"),
    ):  # fmt: skip
        _json_flag(c.with_id(name, text, Handler(CLIENT, fn)))


def _x_by(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument(
        "--x", default="n", metavar="AXIS", choices=X_AXES,
        help=f"the axis to {verb}: {', '.join(X_AXES[:-1])} or {X_AXES[-1]} (the hidden "
        "width m: on a log axis with the widths as ticks; R need not be a power law of it, "
        "the fit's notes say so) (default: n)",
    )  # fmt: skip
    p.add_argument(
        "--by", metavar="A,B",
        help="comma-separated grouping axes, e.g. weight_decay (default: every axis that "
        "varies besides --x)",
    )  # fmt: skip


def _plot_parsers(c: _Commands) -> None:
    p = c.add("plot", "a paper figure of a sweep or run (.png, .svg, .pdf)",
              Handler(PLOT, "cmd_plot"))  # fmt: skip
    p.add_argument("id", type=int, metavar="ID", help="the sweep's id (compare: the first sweep)")
    p.add_argument(
        "--kind", choices=PLOT_KINDS, default="risk",
        help="risk: R against x per group with the fits and the state evolution; theory: "
        "measured against predicted R, their ratio below; spectrum: one run's spectrum; phase: "
        "exponents against l; compare: several sweeps on one plot; width: R against the width "
        "per n with the best widths marked, and R against n for a few widths (default: risk)",
    )  # fmt: skip
    p.add_argument(
        "--run", dest="run_id", type=int, metavar="RUN",
        help="--kind spectrum: the run's id (default: the sweep's first succeeded run)",
    )  # fmt: skip
    _x_by(p, "plot against")
    p.add_argument(
        "--ids", metavar="ID,ID",
        help="--kind compare: the other sweeps' ids, comma-separated (default: none; "
        "compare needs at least one)",
    )  # fmt: skip
    p.add_argument(
        "--out", type=Path, required=True, metavar="FILE",
        help="the figure's file; .png, .svg or .pdf chooses the format (required)",
    )  # fmt: skip
    e = c.add("export", "every run of a sweep as csv, parquet or jsonl",
              Handler(PLOT, "cmd_export"))  # fmt: skip
    e.add_argument("id", type=int, metavar="ID", help=SWEEP_ID_HELP)
    e.add_argument(
        "--format", choices=("csv", "parquet", "jsonl"), default="csv",
        help="the file's format, one row per run with the export's columns (default: csv)",
    )  # fmt: skip
    e.add_argument(
        "--out", type=Path, required=True, metavar="FILE",
        help="the file to write (required; written whole or not at all)",
    )  # fmt: skip


def _reproduce_parser(c: _Commands) -> None:
    r = c.add("reproduce", "run an example of the paper and judge it against theory",
              Handler(REPRODUCE, "cmd_reproduce"))  # fmt: skip
    r.add_argument(
        "name", nargs="?", metavar="NAME",
        help="the example, as --list names it (required unless --list)",
    )  # fmt: skip
    r.add_argument("--list", action="store_true", help="list the examples (default: run NAME)")
    r.add_argument("--json", action="store_true", help="with --list: as JSON (default: a table)")
    r.add_argument(
        "--scale", choices=("tiny", "small", "paper"), default="small",
        help="small: minutes on 2 CPU cores; paper: the paper's sizes, for a GPU cluster; "
        "tiny: seconds, for the tests (default: small)",
    )  # fmt: skip
    r.add_argument(
        "--out", type=Path, metavar="DIR",
        help="folder for the figures and verdict.json (default: ./NAME)",
    )  # fmt: skip
    r.add_argument(
        "--no-ray", action="store_true",
        help="without --server: train in the embedded server's process (default: a local Ray)",
    )  # fmt: skip


def _admin_parsers(c: _Commands) -> None:
    c.add("db-upgrade", "migrate the database (SCALESWEEP_DATABASE_URL) to head",
          Handler(ADMIN, "cmd_db_upgrade"))  # fmt: skip
    tk = c.add("token", "API tokens (in the database, SCALESWEEP_DATABASE_URL)",
               Handler(ADMIN, "cmd_token"))  # fmt: skip
    tsub = _Commands(tk.add_subparsers(dest="token_command", required=True, metavar="ACTION"))
    tc = tsub.add("create", "create a token; prints it once (only its hash is kept)", None)
    tc.add_argument("--name", required=True, help="who or what holds the token (required)")
    tc.add_argument(
        "--scope", choices=("read", "write", "admin"), required=True,
        help="read: GET routes; write: also submit, cancel, edit; admin: also delete "
        "(required)",
    )  # fmt: skip
    tc.add_argument(
        "--team",
        help="the token sees and submits only this team's sweeps (default: no team: sweeps "
        "without a team)",
    )  # fmt: skip
    tc.add_argument(
        "--json", action="store_true",
        help='print {"token": ..., "id": ...} (default: the token alone on stdout)',
    )  # fmt: skip
    tl = tsub.add("list", "every token (never the token itself)", None)
    tl.add_argument("--json", action="store_true", help="as JSON (default: a table)")
    tsub.add("revoke", "revoke a token", None).add_argument(
        "id", type=int, metavar="ID", help="the token's id (as token list prints it)"
    )


def _compute_parsers(c: _Commands) -> None:
    sv = c.add("serve", "API + runner (embedded default: SQLite, local Ray)",
               Handler(COMPUTE, "serve_command"))  # fmt: skip
    sv.add_argument(
        "--host", default="127.0.0.1",
        help="address to listen on; a non-loopback one needs SCALESWEEP_AUTH=on "
        "(default: 127.0.0.1)",
    )  # fmt: skip
    sv.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    sv.add_argument(
        "--no-ray", action="store_true",
        help="train in this process, without Ray (default: Ray at RAY_ADDRESS, else a new "
        "local Ray)",
    )  # fmt: skip
    sv.add_argument(
        "--no-runner", action="store_true",
        help="API and dashboard only; a runner elsewhere trains (default: a runner here)",
    )  # fmt: skip

    _run_one_parser(c)

    dm = c.add("demo", "a small built-in sweep end to end through a real server",
               Handler(COMPUTE, "demo_command"))  # fmt: skip
    dm.add_argument(
        "--port", type=int, default=0,
        help="TCP port of the demo's server on 127.0.0.1 (default: 0, a free port)",
    )  # fmt: skip


def _run_one_parser(c: _Commands) -> None:
    """``run-one``: the defaults stated here are RunConfig's (service/spec.py; a test keeps
    them equal); an option left out is left to the spec."""
    o = c.add("run-one", "train one configuration here, no server",
              Handler(COMPUTE, "run_one_command"))  # fmt: skip
    o.epilog = (
        "The network minimises (1/2n) sum (y - f)^2 + (lambda/2)|params|^2 on n samples "
        "x ~ N(0, I_d), y = f*(x) + sqrt(Delta) xi (THEORY.md). A run succeeds when a stop "
        "rule is met and the relative duality gap of the equivalent convex problem is below "
        "1e-6 (1e-4 in float32)."
    )
    o.add_argument(
        "--model", choices=("quadratic", "diagonal"), required=True,
        help="quadratic: f(x) = sum_j s_j [(w_j.x)^2 - |w_j|^2], at its minimum nuclear-norm "
        "matrix sensing; diagonal: f(x) = sum_i a_i w_i x_i, at its minimum the LASSO "
        "(required)",
    )  # fmt: skip
    o.add_argument("--d", type=int, required=True, metavar="D",
                   help="input dimension d, an integer >= 1 (required)")  # fmt: skip
    size = o.add_mutually_exclusive_group(required=True)
    size.add_argument(
        "--n", type=int, metavar="N",
        help="number of training samples n (required: --n or --alpha)",
    )  # fmt: skip
    size.add_argument(
        "--alpha", type=float, metavar="A",
        help="sample ratio instead of --n: n = alpha d^2 (quadratic) or n = alpha d "
        "(diagonal), rounded, at least 1 (required: --n or --alpha)",
    )  # fmt: skip
    o.add_argument(
        "--weight-decay", type=float, required=True, metavar="L",
        help="lambda >= 0 in (1/2n) sum (y - f)^2 + (lambda/2)|params|^2; 0 with n below the "
        "convex problem's dimension has many minima (required)",
    )  # fmt: skip
    o.add_argument(
        "--gamma", type=float, default=1.0, metavar="G",
        help="power-law exponent of the teacher: coefficients (diagonal) or eigenvalues "
        "(quadratic) c k^-gamma, normalised to |theta*| = 1 or 2|S*|_F^2 = 1 (default: 1.0)",
    )  # fmt: skip
    o.add_argument(
        "--noise", type=float, default=0.0, metavar="DELTA",
        help="label-noise variance Delta >= 0: y = f*(x) + sqrt(Delta) xi (default: 0.0)",
    )  # fmt: skip
    o.add_argument(
        "--seed", type=int, default=0, metavar="S",
        help="seed of the teacher, the data and the initialisation, >= 0 (default: 0)",
    )  # fmt: skip
    _run_one_training_options(o)


def _run_one_training_options(o: argparse.ArgumentParser) -> None:
    """``run-one``'s options after the problem's: the optimiser, the teacher's rank and
    signs, the width and restarts, stopping, and what is measured and printed."""
    o.add_argument(
        "--optimizer", choices=("lbfgs", "gd", "adam", "convex"), default="lbfgs",
        help="lbfgs, gd or adam train the network's own parameters; convex solves the "
        "equivalent convex problem directly (default: lbfgs)",
    )  # fmt: skip
    o.add_argument(
        "--rank", type=int, metavar="R",
        help="non-zero teacher coefficients (diagonal) or eigenvalues (quadratic), <= d "
        "(default: d)",
    )  # fmt: skip
    o.add_argument(
        "--dtype", choices=("float32", "float64"),
        help="training precision; the certificate is always evaluated in float64 "
        "(default: float64)",
    )  # fmt: skip
    o.add_argument(
        "--max-steps", type=int, metavar="STEPS",
        help="optimiser steps (convex: iterations) at most (default: 20000)",
    )  # fmt: skip
    o.add_argument(
        "--test-samples", type=int, metavar="K",
        help="also measure the test error on K fresh samples (default: 0, not measured)",
    )  # fmt: skip
    o.add_argument(
        "--signed", action="store_true",
        help="quadratic: teacher eigenvalues alternate in sign; implies --second-layer signed "
        "(default: off, a positive semi-definite teacher)",
    )  # fmt: skip
    o.add_argument(
        "--second-layer", choices=("positive", "signed"),
        help="quadratic: the second-layer signs s_j, all +1 or half -1 (default: positive; "
        "signed with --signed)",
    )  # fmt: skip
    o.add_argument(
        "--device", choices=("auto", "cpu", "cuda"),
        help="where to train; auto is cuda when available, else cpu (default: auto)",
    )  # fmt: skip
    o.add_argument(
        "--width", type=int, metavar="M",
        help="quadratic: hidden width m, every neuron counted, 1 to 1,000,000; m >= d is the "
        "convex problem; below the convex solution's rank the certificate is second-order + "
        "restarts (default: d, 2d with a signed second layer)",
    )  # fmt: skip
    o.add_argument(
        "--restarts", type=int, metavar="K",
        help="quadratic, a width below the convex solution's rank: trainings from independent "
        "initialisations that must agree, this one included, 1 to 16 (default: "
        "SCALESWEEP_WIDTH_RESTARTS, 5 unless set; at most SCALESWEEP_WIDTH_RESTARTS_MAX)",
    )  # fmt: skip
    o.add_argument(
        "--lr", type=float, metavar="ETA",
        help="learning rate of gd (fixed, no line search) or adam (its start, halved when the "
        "objective rises) (default: none: gd backtracks from its last step, adam starts at 0.01)",
    )  # fmt: skip
    o.add_argument(
        "--tol", type=float, metavar="TOL",
        help="stop when the relative objective change per step is below TOL or the gradient "
        "norm below sqrt(TOL), in (0, 1) (default: 1e-08)",
    )  # fmt: skip
    o.add_argument(
        "--timeout-s", type=float, metavar="SECONDS",
        help="wall-time limit of the run in seconds; past it the run fails with stop_reason "
        "timeout (default: none)",
    )  # fmt: skip
    o.add_argument(
        "--curve-every", type=int, metavar="STEPS",
        help="record the learning curve (step, train loss, excess risk) every STEPS steps "
        "(default: 0, no curve)",
    )  # fmt: skip
    o.add_argument(
        "--no-spectrum", action="store_true",
        help="skip the spectrum of the trained weights (default: measured, with its fits)",
    )  # fmt: skip
    o.add_argument(
        "--json", action="store_true",
        help="print one JSON object: config, config_hash, status, error, metrics, spectra, "
        "curve (default: a few lines of text)",
    )  # fmt: skip


def _server_of(args: argparse.Namespace) -> str:
    if getattr(args, "server", None):
        return str(args.server)
    from service.config import Settings

    return Settings().server


def _user_error(exc: BaseException, args: argparse.Namespace) -> str | None:
    """The one line for an error a user can act on (None: not one)."""
    httpx = sys.modules.get("httpx")  # loaded whenever a command talked to a server
    client = sys.modules.get("service.client")
    if client is not None and isinstance(exc, client.ServerError):
        return f"error: {exc}"
    if httpx is not None and isinstance(exc, httpx.HTTPError):
        return f"error: cannot reach the server at {_server_of(args)}: {exc}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scalesweep`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    run: Any = args.run
    try:
        status: int = run(args)
        return status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # stdout closed early (`scalesweep runs 1 | head`): not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:
        message = _user_error(exc, args)
        if message is None:
            raise
        from cli.output import safe

        print(safe(message), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
