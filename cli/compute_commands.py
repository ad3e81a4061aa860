"""Commands that compute or serve: ``run-one`` (one run here, no server), ``serve`` (API +
runner) and ``demo`` (a small built-in sweep end to end through a real server).

``serve`` and ``demo`` assemble the process with :func:`cli.runtime.build_runtime`.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any

from pydantic import ValidationError

from cli import output as out
from cli.output import progress_bar
from cli.runtime import build_runtime, embedded_server, freeze_startup_heap
from service.auth import AUTH_OFF_NOTICE, bind_refusal
from service.config import get_settings
from service.logs import configure_logging
from service.spec import MeasureSpec, RunConfig, TeacherSpec, TrainingSpec, sample_size


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register run-one, serve and demo."""
    sv = sub.add_parser("serve", help="API + runner (embedded default: SQLite, local Ray)")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--no-ray", action="store_true", help="run sweeps in-process, without Ray")
    sv.add_argument("--no-runner", action="store_true", help="API only (the runner runs elsewhere)")
    sv.set_defaults(run=serve_command)

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
    o.set_defaults(run=run_one_command)

    dm = sub.add_parser("demo", help="a small built-in sweep end to end through a real server")
    dm.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    dm.set_defaults(run=demo_command)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The RunConfig described by ``run-one``'s options (pydantic validates every field)."""
    model = args.model
    n = args.n if args.n is not None else sample_size(model, args.d, args.alpha)
    training: dict[str, Any] = {"optimizer": args.optimizer}
    for opt in ("dtype", "max_steps", "device", "second_layer", "width", "lr", "tol", "timeout_s"):
        val = getattr(args, opt, None)
        if val is not None:
            training[opt] = val
    signed = bool(getattr(args, "signed", False))
    if signed and "second_layer" not in training:
        training["second_layer"] = "signed"
    measure: dict[str, Any] = {}
    if getattr(args, "test_samples", None):
        measure["test_samples"] = args.test_samples
    if getattr(args, "curve_every", None):
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


def run_one_command(args: argparse.Namespace) -> int:
    """``scalesweep run-one``: train one configuration in this process and print it."""
    from workers.tasks import run_one  # torch is imported only for this command

    try:
        cfg = config_from_args(args)
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "config"
            print(f"scalesweep run-one: {loc}: {err['msg']}", file=sys.stderr)
        return 2
    result = run_one(cfg)
    if getattr(args, "json", False):
        print(json.dumps(out.result_document(cfg, result)))
    else:
        print(out.run_summary(cfg, result))
    return 0 if result.status == "succeeded" else 1


def serve_command(args: argparse.Namespace) -> int:
    """``scalesweep serve``: the API and (unless --no-runner) the runner in one process."""
    import uvicorn

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
    """``scalesweep demo``: a small sweep over both models through a real server."""
    from service.client import Client

    # the demo's server listens on loopback only, for its own client: no tokens (and says so)
    settings = get_settings().model_copy(update={"auth": "off"})
    print(f"scalesweep demo: database {settings.database_url}, local Ray", file=sys.stderr)
    print("scalesweep demo: authentication off for this loopback-only demo server", file=sys.stderr)
    try:
        with embedded_server(settings, port=args.port) as url:
            print(f"scalesweep demo: server at {url}", file=sys.stderr)
            with Client(url) as client:
                submitted = [client.submit(spec) for spec in DEMO_SWEEPS]
                for spec, sub in zip(DEMO_SWEEPS, submitted, strict=True):
                    print(f"\nsweep {sub.id}: {spec['name']} ({sub.n_runs} runs)")
                    final = client.wait_for(sub.id, progress_bar(sys.stderr))
                    print(file=sys.stderr)
                    print(out.status_text(final))
                    report = client.exponents(sub.id, x="n", by=["weight_decay"])
                    print(out.exponent_table(report))
    except RuntimeError as exc:
        print(f"scalesweep demo: {exc}", file=sys.stderr)
        return 1
    return 0
