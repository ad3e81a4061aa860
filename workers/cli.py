"""The CLI commands that need compute or the whole service: ``run-one``, ``serve``, ``demo``.

``service.cli`` parses the arguments and dispatches here through importlib, so that the
``service`` package never imports ``workers`` (it is a composition root, like the runner).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any

from service.results import RunResult
from service.spec import MeasureSpec, RunConfig, TeacherSpec, TrainingSpec, sample_size


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


def result_document(cfg: RunConfig, result: RunResult) -> dict[str, Any]:
    """One JSON object: the configuration, then the result (metrics, spectra, curve)."""
    return {
        "config": cfg.model_dump(mode="json"),
        "alpha": cfg.alpha,
        **result.model_dump(mode="json"),
    }


def _summary(cfg: RunConfig, result: RunResult) -> str:
    lines = [
        f"{cfg.model} d={cfg.d} n={cfg.n} (alpha={cfg.alpha:.4g}) lambda={cfg.weight_decay:g} "
        f"seed={cfg.seed} optimizer={cfg.training.optimizer}: {result.status}"
    ]
    if result.error:
        lines.append(f"  error: {result.error}")
    m = result.metrics
    if m is not None:
        lines.append(
            f"  excess_risk={m.excess_risk:.6g} train_loss={m.train_loss:.6g} "
            f"objective={m.objective:.10g}"
        )
        lines.append(
            f"  converged={m.converged} stop_reason={m.stop_reason} steps={m.steps} "
            f"grad_norm={m.grad_norm:.3g} duality_gap={m.duality_gap:.3g} "
            f"wall_time_s={m.wall_time_s:.3f} device={m.device}"
        )
        if m.test_error is not None:
            lines.append(f"  test_error={m.test_error:.6g} +- {m.test_error_se:.2g}")
    for sp in result.spectra:
        tf = sp.tail_fit
        tail = (
            f"alpha={tf.alpha:.3f} [{tf.alpha_ci[0]:.3f}, {tf.alpha_ci[1]:.3f}] n_tail={tf.n_tail}"
            if tf
            else f"no tail fit ({sp.tail_fit_error})"
        )
        rank = f"rank exponent={sp.rank_fit.exponent:.3f}" if sp.rank_fit else "no rank fit"
        lines.append(f"  spectrum {sp.kind}: {len(sp.values)} values, {tail}, {rank}")
    return "\n".join(lines)


def run_one_command(args: argparse.Namespace) -> int:
    """``scalesweep run-one``: train one configuration in this process and print it."""
    from pydantic import ValidationError

    from workers.tasks import run_one

    try:
        cfg = config_from_args(args)
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "config"
            print(f"scalesweep run-one: {loc}: {err['msg']}", file=sys.stderr)
        return 2
    result = run_one(cfg)
    if getattr(args, "json", False):
        print(json.dumps(result_document(cfg, result)))
    else:
        print(_summary(cfg, result))
    return 0 if result.status == "succeeded" else 1


def _build_service(settings: Any, *, no_ray: bool, no_runner: bool) -> tuple[Any, Any]:
    """Migrate, open the store, start the runner thread; returns (app, stopper).

    With SCALESWEEP_AUTH=on the API verifies bearer tokens against the database's
    ``api_tokens`` (``scalesweep token create``).
    """
    from api.main import create_app
    from service.auth import TokenService
    from service.storage import make_store, upgrade_head
    from service.storage.tokens import TokenStore
    from workers.runner import build_executor, start_runner_thread

    upgrade_head(settings.database_url)
    store = make_store(settings.database_url)
    verify_token = None
    if settings.auth == "on":
        tokens = TokenService(TokenStore.of(store))
        verify_token = tokens.verify
        if not any(t.revoked_at is None for t in tokens.list()):
            print(
                "scalesweep: SCALESWEEP_AUTH=on and no active token: every /v1 request will be "
                "refused until one is made with `scalesweep token create --name N --scope S`",
                file=sys.stderr,
            )
    stoppers: list[Any] = []
    ray_status = None
    if not no_runner:
        executor = build_executor(settings, no_ray=no_ray)
        thread, stop = start_runner_thread(settings, store, executor)
        ray_status = getattr(executor, "status", None)

        def stop_runner() -> None:
            stop.set()
            thread.join(timeout=60)
            executor.close()

        stoppers.append(stop_runner)
    stoppers.append(store.close)

    def shutdown() -> None:
        for fn in stoppers:
            fn()

    app = create_app(settings, store, ray_status=ray_status, verify_token=verify_token)
    return app, shutdown


def serve_command(args: argparse.Namespace) -> int:
    """``scalesweep serve``: the API and (unless --no-runner) the runner in one process."""
    import uvicorn

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
    app, shutdown = _build_service(settings, no_ray=args.no_ray, no_runner=args.no_runner)
    print(
        f"scalesweep: serving on http://{args.host}:{args.port} "
        f"(database {settings.database_url.split('@')[-1]}, "
        f"{'no runner' if args.no_runner else 'inline runner' if args.no_ray else 'Ray runner'})",
        file=sys.stderr,
    )
    # uvicorn shuts down gracefully on SIGTERM and then re-raises the signal; with the default
    # handler that would kill the process before the runner writes back what came in and
    # releases its leases. A no-op handler while uvicorn runs lets `finally` do that.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", log_config=None)
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutdown()
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


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def demo_command(args: argparse.Namespace) -> int:
    """``scalesweep demo``: a small sweep over both models through a real server."""
    import threading
    import time

    import uvicorn

    from service import cli_output as out
    from service.cli import progress_bar
    from service.client import Client
    from service.config import get_settings

    # the demo's server listens on loopback only, for its own client: no tokens (and says so)
    settings = get_settings().model_copy(update={"auth": "off"})
    port = args.port or _free_port()
    print(f"scalesweep demo: database {settings.database_url}, local Ray", file=sys.stderr)
    print("scalesweep demo: authentication off for this loopback-only demo server", file=sys.stderr)
    app, shutdown = _build_service(settings, no_ray=False, no_runner=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="scalesweep-api", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                print("scalesweep demo: the server did not start", file=sys.stderr)
                return 1
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        print(f"scalesweep demo: server at {url}", file=sys.stderr)
        with Client(url) as client:
            submitted = [client.submit(spec) for spec in DEMO_SWEEPS]
            for spec, sub in zip(DEMO_SWEEPS, submitted, strict=True):
                print(f"\nsweep {sub.id}: {spec['name']} ({sub.n_runs} runs)")
                final = client.wait_for(sub.id, progress_bar(sys.stderr))
                print(file=sys.stderr)
                print(out.status_text(final))
                print(out.exponent_table(client.exponents(sub.id, x="n", by=["weight_decay"])))
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        shutdown()
    return 0
