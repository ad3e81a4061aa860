"""Commands that compute or serve: ``run-one`` (one run here, no server), ``serve`` (API +
runner) and ``demo`` (a small built-in sweep end to end through a real server).

Their parsers are in :mod:`cli.main`. ``serve`` and ``demo`` assemble the process with
:func:`cli.runtime.build_runtime`; every heavy import (torch for ``run-one``; SQLAlchemy,
FastAPI, Ray and the fits for ``serve`` and ``demo``) happens inside the command that needs it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from cli import output as out

if TYPE_CHECKING:
    from service.client import Client
    from service.spec import RunConfig


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The RunConfig described by ``run-one``'s options (pydantic validates every field;
    ValueError for an --alpha that gives no sample size)."""
    import math

    from service.spec import MeasureSpec, RunConfig, TeacherSpec, TrainingSpec, sample_size

    model = args.model
    if args.n is not None:
        n = args.n
    elif math.isfinite(args.alpha) and args.alpha > 0:
        n = sample_size(model, args.d, args.alpha)
    else:
        raise ValueError(f"--alpha must be a positive number, got {args.alpha}")
    training: dict[str, Any] = {"optimizer": args.optimizer}
    options = ("dtype", "max_steps", "device", "second_layer", "width", "restarts", "lr", "tol",
               "timeout_s")  # fmt: skip
    for opt in options:
        val = getattr(args, opt, None)
        if val is not None:
            training[opt] = val
    signed = bool(getattr(args, "signed", False))
    if signed and "second_layer" not in training:
        training["second_layer"] = "signed"
    measure: dict[str, Any] = {}
    if getattr(args, "test_samples", None) is not None:
        measure["test_samples"] = args.test_samples
    if getattr(args, "curve_every", None) is not None:
        measure["curve_every"] = args.curve_every
    if getattr(args, "no_spectrum", False):
        measure["spectrum"] = False
    return RunConfig(
        model=model,
        d=args.d,
        n=n,
        weight_decay=args.weight_decay,
        seed=args.seed,
        teacher=TeacherSpec(gamma=args.gamma, rank=args.rank, noise=args.noise, signed=signed),
        training=TrainingSpec(**training),
        measure=MeasureSpec(**measure),
    )


RUN_ONE_OPTIONS = frozenset(
    "d n weight_decay seed gamma rank noise signed optimizer width restarts second_layer "
    "max_steps tol dtype device lr timeout_s curve_every test_samples".split()
)
"""RunConfig's fields that ``run-one`` sets from an option of the same name."""


def _option_of(loc: tuple[int | str, ...]) -> str:
    """The run-one option behind an invalid field (``--weight-decay``), else the field."""
    name = str(loc[-1]) if loc else ""
    if name in RUN_ONE_OPTIONS:
        return "--" + name.replace("_", "-")
    return ".".join(str(p) for p in loc) or "configuration"


def run_one_command(args: argparse.Namespace) -> int:
    """``scalesweep run-one``: train one configuration in this process and print it."""
    from pydantic import ValidationError

    try:
        cfg = config_from_args(args)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            msg = str(err["msg"]).removeprefix("Value error, ")
            print(f"scalesweep run-one: {_option_of(err['loc'])}: {out.safe(msg)}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"scalesweep run-one: {out.safe(exc)}", file=sys.stderr)
        return 2
    from service.config import get_settings
    from service.errors import LimitError
    from service.resources import Capacity, check_run

    settings = get_settings()
    try:  # admission control, as the server does for a sweep: refuse what cannot run here
        check_run(cfg, Capacity.from_settings(settings), n_field="--n" if args.n else "--alpha")
    except LimitError as exc:
        option = "--" + str(exc.field).split(".")[-1].replace("_", "-")
        print(f"scalesweep run-one: {option}: {out.safe(exc)}", file=sys.stderr)
        return 2
    from workers.tasks import run_batch  # torch is imported only for this command
    from workers.training import TaskBudget

    budget = TaskBudget(
        run_time_limit_s=settings.run_time_limit_s, width_restarts=settings.width_restarts
    )
    result = run_batch([cfg], budget)[0]
    if getattr(args, "json", False):
        print(json.dumps(out.result_document(cfg, result)))
    else:
        print(out.run_summary(cfg, result))
    return 0 if result.status == "succeeded" else 1


def serve_command(args: argparse.Namespace) -> int:
    """``scalesweep serve``: the API and (unless --no-runner) the runner in one process."""
    import uvicorn

    from cli.runtime import build_runtime, freeze_startup_heap
    from service.auth import AUTH_OFF_NOTICE, bind_refusal
    from service.config import get_settings
    from service.logs import configure_logging

    settings = get_settings()
    configure_logging()  # JSON lines, with sweep/run/runner ids, for the API and the runner
    refusal = bind_refusal(args.host, settings.auth)
    if refusal is not None:
        print(f"scalesweep serve: {refusal}", file=sys.stderr)
        return 2
    if settings.auth == "off":
        print(AUTH_OFF_NOTICE, file=sys.stderr)
    rt = build_runtime(settings, runner=not args.no_runner, no_ray=args.no_ray)
    assert rt.app is not None
    rt.start_runner_thread()
    print(
        f"scalesweep: serving on http://{args.host}:{args.port} "
        f"(database {settings.database_url.split('@')[-1]}, "
        f"{'no runner' if args.no_runner else 'inline runner' if args.no_ray else 'Ray runner'})"
        f"\nscalesweep: dashboard at http://{args.host}:{args.port}/",
        file=sys.stderr,
    )
    # uvicorn shuts down gracefully on SIGTERM and then re-raises the signal; with the default
    # handler that would kill the process before the runner writes back what came in and
    # releases its leases. A no-op handler while uvicorn runs lets `finally` do that.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    freeze_startup_heap()
    try:
        uvicorn.run(rt.app, host=args.host, port=args.port, log_level="warning", log_config=None)
    finally:
        signal.signal(signal.SIGTERM, previous)
        rt.close()
    return 0


DEMO_SWEEPS: list[dict[str, Any]] = [
    {
        "name": "demo: diagonal net (LASSO), excess risk vs n per weight decay",
        "model": "diagonal",
        "teacher": {"gamma": 1.0, "noise": 0.01},
        "grid": {
            "d": [400],
            "n": [100, 200, 400, 800, 1600, 3200],
            "weight_decay": [0.01, 0.03, 0.1],
            "seed": [0, 1, 2, 3],
        },
        "training": {"optimizer": "lbfgs"},
    },
    {
        "name": "demo: quadratic net (nuclear-norm sensing), excess risk vs n per weight decay",
        "model": "quadratic",
        "teacher": {"gamma": 1.0, "noise": 0.01},
        "grid": {
            "d": [20],
            "alpha": [0.5, 1, 2, 4, 8],
            "weight_decay": [0.03, 0.1, 0.3],
            "seed": [0, 1, 2, 3],
        },
        "training": {"optimizer": "lbfgs"},
    },
]


def demo_command(args: argparse.Namespace) -> int:
    """``scalesweep demo``: a small sweep over both models through a real server; ends with
    the comparison with the state-evolution theory in words and how to see the results."""
    from cli.runtime import embedded_server
    from service.client import Client
    from service.config import get_settings

    # the demo's server listens on loopback only, for its own client: no tokens (and says so)
    settings = get_settings().model_copy(update={"auth": "off"})
    ray = f"Ray at {settings.ray_address}" if settings.ray_address else "local Ray"
    print(f"scalesweep demo: database {settings.database_url}, {ray}", file=sys.stderr)
    print("scalesweep demo: authentication off for this loopback-only demo server", file=sys.stderr)
    started = time.monotonic()
    verdicts: list[bool] = []
    ids: list[int] = []
    try:
        with embedded_server(settings, port=args.port) as url:
            print(f"scalesweep demo: server at {url}", file=sys.stderr)
            with Client(url) as client:
                submitted = [client.submit(spec) for spec in DEMO_SWEEPS]
                for spec, sub in zip(DEMO_SWEEPS, submitted, strict=True):
                    ids.append(sub.id)
                    print(f"\nsweep {sub.id}: {spec['name']} ({sub.n_runs} runs)", flush=True)
                    client.wait_for(sub.id, out.progress_bar(sys.stderr))
                    print(file=sys.stderr)
                    print(_runs_line(client, sub.id))
                    theory = client.theory(sub.id, x="n", by=["weight_decay"])
                    exponents = client.exponents(sub.id, x="n", by=["weight_decay"])
                    text, agree = out.theory_words(theory, exponents)
                    verdicts += agree
                    print(text, flush=True)
    except RuntimeError as exc:
        print(f"scalesweep demo: {out.safe(exc)}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - started
    print(
        f"\n{sum(verdicts)} of {len(verdicts)} groups agree with the state-evolution theory "
        f"({elapsed:.0f} s, the server's start included)."
    )
    print(how_to_look(ids, settings.database_url))
    return 0


def _runs_line(client: Client, sweep_id: int) -> str:
    """How the sweep's runs ended, and how many were reused from the store."""
    runs = list(client.list_runs(sweep_id))
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.status] = counts.get(r.status, 0) + 1
    ended = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    reused = sum(r.reused_from is not None for r in runs)
    how = f" ({reused} reused from earlier runs in the store)" if reused else ""
    return f"{len(runs)} runs: {ended}{how}"


def _command() -> str:
    """How this process was invoked, for commands to copy: ``.venv/bin/scalesweep`` as
    typed, else ``scalesweep``."""
    argv0 = sys.argv[0] if sys.argv else ""
    return argv0 if argv0.rsplit("/", 1)[-1] == "scalesweep" else "scalesweep"


def how_to_look(sweep_ids: list[int], database_url: str) -> str:
    """Where to see the demo's sweeps: the dashboard (``serve`` on the same database, its
    default address) and the commands that print the answers."""
    from service.config import Settings

    cmd = _command()
    if database_url == Settings.model_fields["database_url"].default:
        where = "  # from this folder: the same database, ./scalesweep.db"
    else:
        where = "  # with the same SCALESWEEP_DATABASE_URL"
    pages = " and ".join(f"http://127.0.0.1:8000/sweeps/{i}" for i in sweep_ids)
    first = sweep_ids[0] if sweep_ids else "ID"
    return (
        "\nSee the results in the dashboard:\n"
        f"  {cmd} serve{where}\n"
        f"  then open {pages}\n"
        "  (every sweep: http://127.0.0.1:8000/). With the server running, in a terminal:\n"
        f"  {cmd} theory {first} --by weight_decay\n"
        f"  {cmd} plot {first} --kind risk --by weight_decay --out risk.png"
    )
