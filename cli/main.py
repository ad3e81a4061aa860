"""The ``scalesweep`` entry point: one parser with every command, and the dispatch.

Each command module registers its subcommands (``add_parsers``) with the function that
runs them (``set_defaults(run=...)``); :func:`main` parses and calls it. Errors a user can
act on (a refused request, an unreachable server) become one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import httpx

from cli import (
    admin_commands,
    client_commands,
    compute_commands,
    plot_commands,
    reproduce_commands,
)
from service.client import ServerError
from service.config import Settings


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser with every subcommand."""
    p = argparse.ArgumentParser(prog="scalesweep", description="Sweeps for neural scaling laws.")
    p.add_argument("--server", help="API base URL (default: SCALESWEEP_SERVER)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = (client_commands, plot_commands, reproduce_commands, admin_commands, compute_commands)
    for module in modules:
        module.add_parsers(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scalesweep`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.run(args)
        return status
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
