"""service.client against the real app (TestClient as transport) and service.cli end to end:
parsing, dispatch to workers.cli, output formats, exit codes."""

from __future__ import annotations

import csv
import io
import json
import sys
import threading
import time
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from starlette.exceptions import StarletteDeprecationWarning

from api.main import create_app
from service import cli
from service.client import Client, Progress, ServerError
from service.config import Settings
from service.results import RunMetrics, RunResult
from service.storage import Store, check_schema, make_store, upgrade_head

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)  # httpx2 wanted, httpx works
    from fastapi.testclient import TestClient

SPEC: dict[str, Any] = {
    "name": "cli-test",
    "model": "diagonal",
    "grid": {"d": [8], "n": [16, 32, 64], "weight_decay": [0.01, 0.1], "seed": [0, 1]},
}
N_RUNS = 12


def result(config_hash: str, risk: float) -> RunResult:
    metrics = RunMetrics(
        excess_risk=risk,
        train_loss=0.0,
        objective=0.0,
        grad_norm=0.0,
        converged=True,
        steps=1,
        stop_reason="gradient",
        wall_time_s=0.0,
        device="cpu",
        duality_gap=0.0,
        support=1,
        penalty_norm=1.0,
    )
    return RunResult(config_hash=config_hash, status="succeeded", metrics=metrics)


def finish(store: Store, sweep_id: int, delay: float = 0.0) -> None:
    """Record R = n^-1 for every run (optionally one at a time, ``delay`` apart)."""
    for run in store.list_runs(sweep_id, limit=1000).items:
        time.sleep(delay)
        store.record_results([(run.id, result(run.config_hash, 1.0 / run.config.n))])


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db") / "head.db"
    upgrade_head(f"sqlite:///{path}")
    return path


@pytest.fixture
def store(tmp_path: Path, migrated: Path) -> Iterator[Store]:
    (tmp_path / "t.db").write_bytes(migrated.read_bytes())
    s = make_store(f"sqlite:///{tmp_path}/t.db")
    yield s
    s.close()


@pytest.fixture
def app_client(store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    """A Client on the in-process app; the CLI's commands use one like it."""
    settings = Settings(_env_file=None, database_url="sqlite://")  # type: ignore[call-arg]
    app = create_app(settings, store, events_poll_s=0.02)
    monkeypatch.setattr(cli, "_client", lambda args: Client(http=TestClient(app)))
    with Client(http=TestClient(app)) as client:
        yield client


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return path


# -- client ----------------------------------------------------------------------------


def test_client_round_trip_and_cursor_following(app_client: Client, store: Store) -> None:
    submitted = app_client.submit(SPEC)
    assert submitted.n_runs == N_RUNS and submitted.status == "queued"
    for _ in range(6):
        app_client.submit(SPEC)
    assert [s.id for s in app_client.list_sweeps(page_size=2)] == list(range(7, 0, -1))
    runs = list(app_client.list_runs(submitted.id, page_size=5))  # three pages
    assert [r.index for r in runs] == list(range(N_RUNS))
    assert len(list(app_client.list_runs(submitted.id, seed=1, n=32))) == 2
    extended = app_client.extend(submitted.id, {"seed": [2]})
    assert extended.n_runs == N_RUNS + N_RUNS // 2
    assert app_client.cancel(submitted.id).status == "cancelled"
    assert app_client.get_run(runs[0].id).config == runs[0].config
    assert app_client.get_spectra(runs[0].id) == []
    assert app_client.health()["status"] == "ok"


def test_wait_for_follows_events_and_reports_progress(app_client: Client, store: Store) -> None:
    sid = app_client.submit(SPEC).id
    seen: list[Progress] = []
    worker = threading.Thread(target=finish, args=(store, sid, 0.03))
    worker.start()
    try:
        final = app_client.wait_for(sid, seen.append, timeout_s=30)
    finally:
        worker.join()
    assert final.status == "succeeded" and final.counts["succeeded"] == N_RUNS
    assert seen and seen[-1].done == N_RUNS and seen[-1].n_runs == N_RUNS
    report = app_client.exponents(sid, by=["weight_decay"])
    assert all(g.exponent == pytest.approx(1.0) for g in report.groups)


def test_wait_for_polls_when_the_event_stream_breaks(store: Store) -> None:
    app = create_app(Settings(_env_file=None), store)  # type: ignore[call-arg]
    inner = TestClient(app)
    sid = inner.post("/v1/sweeps", json=SPEC).json()["id"]
    finish(store, sid)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            raise httpx.ReadError("proxy dropped the stream", request=request)
        r = inner.request(request.method, request.url.path, params=request.url.params)
        return httpx.Response(r.status_code, content=r.content, headers=r.headers)

    seen: list[Progress] = []
    with Client("http://sweeps.test", transport=httpx.MockTransport(handler)) as client:
        final = client.wait_for(sid, seen.append, poll_s=0.01)
    assert final.status == "succeeded" and seen[-1].done == N_RUNS


def test_client_raises_server_errors_with_detail() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"detail": "no sweep with id 5"})

    with Client("http://x", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(ServerError) as info:
            client.get_sweep(5)
    assert info.value.status_code == 404 and "no sweep with id 5" in str(info.value)


# -- CLI -------------------------------------------------------------------------------


def test_parser_has_every_contract_subcommand() -> None:
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    expected = {"submit", "status", "runs", "exponents", "cancel", "serve", "run-one", "demo"}
    assert expected | {"db-upgrade"} <= set(sub.choices)
    serve = parser.parse_args(["serve"])
    assert (serve.host, serve.port, serve.no_ray, serve.no_runner) == (
        "127.0.0.1",
        8000,
        False,
        False,
    )
    assert parser.parse_args(["demo"]).port == 0
    one = parser.parse_args(
        "run-one --model quadratic --d 10 --alpha 2 --weight-decay 0.01 --json".split()
    )
    assert (one.model, one.d, one.alpha, one.n, one.weight_decay, one.json) == (
        "quadratic",
        10,
        2.0,
        None,
        0.01,
        True,
    )
    assert one.optimizer == "lbfgs" and one.gamma == 1.0 and one.noise == 0.0 and one.seed == 0
    with pytest.raises(SystemExit):  # n and alpha are exclusive
        parser.parse_args("run-one --model diagonal --d 4 --n 8 --alpha 2 --weight-decay 0".split())


@pytest.mark.parametrize(
    ("argv", "function"),
    [
        (["serve", "--no-runner", "--port", "9000"], "serve_command"),
        (
            ["run-one", "--model", "diagonal", "--d", "4", "--n", "8", "--weight-decay", "0.1"],
            "run_one_command",
        ),
        (["demo", "--port", "0"], "demo_command"),
    ],
)
def test_compute_commands_dispatch_to_workers_cli(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], function: str
) -> None:
    calls: list[Any] = []
    fake = types.ModuleType("workers.cli")
    for name in cli.WORKER_COMMANDS.values():
        setattr(fake, name, lambda args, name=name: calls.append((name, args)) or 7)
    monkeypatch.setitem(sys.modules, "workers.cli", fake)
    assert cli.main(argv) == 7
    assert calls[0][0] == function and calls[0][1].command == argv[0]


def test_submit_prints_the_id_and_runs_csv_lists_every_run(
    app_client: Client, store: Store, spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["submit", str(spec_file)]) == 0
    sid = int(capsys.readouterr().out.strip())
    finish(store, sid)
    assert cli.main(["runs", str(sid), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == N_RUNS
    assert [int(r["index"]) for r in rows] == list(range(N_RUNS))
    assert {"excess_risk", "train_loss", "converged", "stop_reason", "weight_decay"} <= set(rows[0])
    assert all(float(r["excess_risk"]) == pytest.approx(1 / int(r["n"])) for r in rows)
    assert cli.main(["runs", str(sid), "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == N_RUNS
    assert cli.main(["runs", str(sid)]) == 0
    assert f"{N_RUNS} runs" in capsys.readouterr().out


def test_submit_wait_shows_progress_then_exponents(
    app_client: Client, store: Store, spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    worker = threading.Thread(target=lambda: (time.sleep(0.2), finish(store, 1, 0.02)))
    worker.start()
    try:
        code = cli.main(["submit", str(spec_file), "--wait"])
    finally:
        worker.join()
    out, err = capsys.readouterr()
    assert code == 0
    assert out.splitlines()[0] == "1"
    assert "succeeded" in out and "exponent" in out and "weight_decay" in out
    assert f"{N_RUNS}/{N_RUNS}" in err and "[" in err


def test_status_cancel_exponents(
    app_client: Client, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = app_client.submit(SPEC).id
    assert cli.main(["status", str(sid)]) == 0
    assert "queued" in capsys.readouterr().out
    assert cli.main(["cancel", str(sid)]) == 0
    assert "cancelled" in capsys.readouterr().out
    assert cli.main(["exponents", str(sid), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sweep_id"] == sid


def test_server_errors_print_detail_and_exit_1(
    app_client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["status", "999"]) == 1
    assert "999" in capsys.readouterr().err
    assert cli.main(["exponents", "999"]) == 1
    sid = app_client.submit(SPEC).id
    assert cli.main(["exponents", str(sid), "--x", "colour"]) == 1
    assert "query.x" in capsys.readouterr().err


def test_invalid_spec_file_is_refused_locally(
    app_client: Client, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**SPEC, "grid": {**SPEC["grid"], "weight_decay": [".nan"]}}))
    bad.write_text(bad.read_text().replace("'.nan'", ".nan"))
    assert cli.main(["submit", str(bad)]) == 2
    assert "grid.weight_decay" in capsys.readouterr().err
    assert cli.main(["submit", str(tmp_path / "missing.yaml")]) == 2
    assert store.list_sweeps().items == []


def test_unreachable_server_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--server", "http://127.0.0.1:9", "status", "1"]) == 1
    assert "cannot reach" in capsys.readouterr().err


def test_db_upgrade_migrates_the_configured_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/fresh.db"
    monkeypatch.setenv("SCALESWEEP_DATABASE_URL", url)
    assert cli.main(["db-upgrade"]) == 0
    check_schema(url)  # raises unless at head
    assert "at head" in capsys.readouterr().out
