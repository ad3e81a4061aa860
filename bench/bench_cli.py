"""Latency of the ``scalesweep`` command line (printed, never asserted).

Each command runs as a fresh process, as a user types it, ``--repeats`` times; the median
(and the fastest) wall time is printed with its ratio to a bare ``python -c pass`` on the
same interpreter:

* ``scalesweep --help`` and an argument error (``run-one --d notanumber``): argparse alone,
  target <= max(0.6 s, 15x ``python -c pass``);
* ``scalesweep status ID``, ``list`` and ``runs ID`` against a real server this script starts
  itself (``scalesweep serve --no-runner`` on a temporary SQLite database and a free port,
  with one submitted sweep of 16 runs that stays queued), target for ``status`` <= 1.5 s.

Run: ``.venv/bin/python bench/bench_cli.py [--repeats 7] [--json]`` (``--json``: one JSON
line at the end as well).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = {
    "name": "bench-cli",
    "model": "diagonal",
    "grid": {"d": [8], "n": [16, 32, 64, 128], "weight_decay": [0.01, 0.1], "seed": [0, 1]},
}
SERVER_START_S = 120.0


def scalesweep() -> list[str]:
    """The console script next to this interpreter, else ``python -m cli``."""
    script = Path(sys.executable).parent / "scalesweep"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli"]


def _env(db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALESWEEP_")}
    env["SCALESWEEP_DATABASE_URL"] = f"sqlite:///{db}"
    env["SCALESWEEP_AUTH"] = "off"
    return env


def timed(argv: list[str], env: dict[str, str], repeats: int, expect: int) -> list[float]:
    """Wall times of ``repeats`` fresh runs of ``argv`` (each must exit with ``expect``)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if done.returncode != expect:
            raise RuntimeError(
                f"{' '.join(argv)} exited {done.returncode}, expected {expect}: {done.stderr}"
            )
    return times


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 (loopback)
        body: bytes = answer.read()
        return body


@contextmanager
def server(env: dict[str, str]) -> Iterator[str]:
    """``scalesweep serve --no-runner`` on a free port; yields its URL, stops it with SIGTERM."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [*scalesweep(), "serve", "--no-runner", "--port", str(port)],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read() if proc.stderr else ""
                raise RuntimeError(f"the server exited: {err}")
            try:
                _get(f"{url}/healthz")
                break
            except (urllib.error.URLError, ConnectionError) as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the server did not answer within {SERVER_START_S} s"
                    ) from exc
                time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def submit(url: str) -> int:
    """Submit :data:`SPEC`; the sweep's id."""
    request = urllib.request.Request(
        f"{url}/v1/sweeps", data=json.dumps(SPEC).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (loopback)
        sweep_id: int = json.loads(answer.read())["id"]
        return sweep_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="runs per command (default: 7)")
    parser.add_argument("--json", action="store_true", help="also one JSON line at the end")
    args = parser.parse_args()
    n = args.repeats
    cli = scalesweep()
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        env = _env(Path(tmp) / "bench.db")
        rows["python -c pass"] = timed([sys.executable, "-c", "pass"], env, n, 0)
        rows["scalesweep --help"] = timed([*cli, "--help"], env, n, 0)
        rows["scalesweep run-one --d notanumber"] = timed(
            [*cli, "run-one", "--d", "notanumber"], env, n, 2
        )
        with server(env) as url:
            sid = submit(url)
            base = [*cli, "--server", url]
            rows["scalesweep status ID"] = timed([*base, "status", str(sid)], env, n, 0)
            rows["scalesweep list"] = timed([*base, "list"], env, n, 0)
            rows["scalesweep runs ID"] = timed([*base, "runs", str(sid)], env, n, 0)

    bare = statistics.median(rows["python -c pass"])
    quick_target = max(0.6, 15 * bare)
    print(f"scalesweep CLI latency: median (fastest) of {n} fresh processes, {' '.join(cli)}")
    print(f"{'command':<38} {'median s':>9} {'fastest s':>10} {'x python -c pass':>17}")
    for name, times in rows.items():
        med = statistics.median(times)
        print(f"{name:<38} {med:>9.3f} {min(times):>10.3f} {med / bare:>17.1f}")
    status = statistics.median(rows["scalesweep status ID"])
    worst_quick = max(
        statistics.median(rows["scalesweep --help"]),
        statistics.median(rows["scalesweep run-one --d notanumber"]),
    )
    print(
        f"targets: --help and an argument error <= {quick_target:.2f} s "
        f"(max(0.6 s, 15 x {bare:.3f} s)): {worst_quick:.3f} s; status <= 1.5 s: {status:.3f} s"
    )
    if args.json:
        summary = {
            "repeats": n,
            "median_s": {k: round(statistics.median(v), 4) for k, v in rows.items()},
            "ratio_to_python": {k: round(statistics.median(v) / bare, 2) for k, v in rows.items()},
            "quick_target_s": round(quick_target, 3),
        }
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
