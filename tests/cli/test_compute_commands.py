"""The compute commands: run-one through the real console entry point; serve's bind rules."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from service.config import get_settings

METRICS = {
    "excess_risk",
    "train_loss",
    "objective",
    "grad_norm",
    "converged",
    "steps",
    "stop_reason",
    "wall_time_s",
    "device",
    "test_error",
}


@pytest.mark.parametrize(
    "argv",
    [
        ["--model", "quadratic", "--d", "8", "--alpha", "2", "--weight-decay", "0.01"],
        ["--model", "diagonal", "--d", "60", "--n", "50", "--weight-decay", "0.003",
         "--gamma", "1.5", "--seed", "3", "--optimizer", "convex", "--test-samples", "2000"],
    ],
)  # fmt: skip
def test_run_one_prints_one_json_object(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run-one", *argv, "--noise", "0.01", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0, doc["error"]
    assert doc["status"] == "succeeded"
    assert METRICS <= set(doc["metrics"])
    assert doc["metrics"]["converged"] is True
    assert doc["config"]["model"] == argv[1]
    assert doc["config"]["teacher"]["noise"] == 0.01
    assert doc["spectra"] and all("tail_fit" in s and "values" in s for s in doc["spectra"])
    if "--test-samples" in argv:
        assert doc["metrics"]["test_error"] is not None
    if "--alpha" in argv:
        assert doc["config"]["n"] == 128 and doc["alpha"] == 2.0  # n = alpha d^2


def test_run_one_refuses_bad_input_naming_the_field(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["run-one", "--model", "diagonal", "--d", "10", "--n", "20", "--weight-decay", "-1"]
    )
    assert code == 2
    assert "--weight-decay: Input should be greater than or equal to 0" in capsys.readouterr().err


def test_run_one_failure_exits_non_zero(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run-one", "--model", "quadratic", "--d", "6", "--n", "80", "--weight-decay", "0.01"]
    diverging = [*argv, "--optimizer", "gd", "--lr", "1000", "--max-steps", "50"]
    code = main([*diverging, "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1
    assert doc["status"] == "failed" and doc["metrics"] is None and "diverged" in doc["error"]
    assert main(diverging) == 1
    text = capsys.readouterr().out
    assert "failed" in text and "\n  error: diverged" in text and "error: error" not in text


def test_run_one_names_the_option_of_an_invalid_value(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["run-one", "--model", "quadratic", "--d", "6", "--weight-decay", "0.01"]
    assert main([*base, "--n", "80", "--rank", "7"]) == 2
    err = capsys.readouterr().err
    assert "teacher.rank (7) must be <= d (6)" in err and "Value error" not in err
    assert main([*base, "--n", "80", "--tol", "2"]) == 2
    assert "scalesweep run-one: --tol: " in capsys.readouterr().err
    assert main([*base, "--alpha", "-2"]) == 2  # would round to n = 1 if it were let through
    assert "--alpha must be a positive number, got -2.0" in capsys.readouterr().err


def test_run_one_width_and_restarts_options(capsys: pytest.CaptureFixture[str]) -> None:
    from cli.compute_commands import config_from_args
    from cli.main import build_parser

    base = ["run-one", "--model", "quadratic", "--d", "6", "--n", "80", "--weight-decay", "0.01"]
    cfg = config_from_args(build_parser().parse_args([*base, "--width", "2", "--restarts", "4"]))
    assert (cfg.width, cfg.training.width, cfg.training.restarts) == (2, 2, 4)
    assert config_from_args(build_parser().parse_args(base)).training.restarts is None
    for option, value, words in (
        ("--width", "0", "greater than or equal to 1"),
        ("--width", "2000000", "less than or equal to 1000000"),
        ("--restarts", "0", "greater than or equal to 1"),
        ("--restarts", "17", "less than or equal to 16"),
    ):
        assert main([*base, option, value]) == 2
        err = capsys.readouterr().err
        assert f"scalesweep run-one: {option}: " in err and words in err, err


class _NoRuntime:
    """build_runtime's stand-in: an app placeholder and nothing to start or stop."""

    app = object()

    def start_runner_thread(self) -> None:
        pass

    def close(self) -> None:
        pass


def _serve_args(host: str) -> argparse.Namespace:
    return argparse.Namespace(host=host, port=8765, no_ray=True, no_runner=True)


def test_serve_command_refuses_a_public_address_without_auth(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from cli import compute_commands, runtime
    from service.config import get_settings

    built: list[Any] = []
    monkeypatch.setattr(runtime, "build_runtime", lambda *a, **k: built.append(a))
    monkeypatch.setenv("SCALESWEEP_AUTH", "off")
    monkeypatch.setenv("SCALESWEEP_DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    get_settings.cache_clear()
    try:
        assert compute_commands.serve_command(_serve_args("0.0.0.0")) != 0
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert "0.0.0.0" in err and "SCALESWEEP_AUTH=on" in err
    assert built == []  # refused before migrating or starting anything


def test_serve_command_on_loopback_says_auth_is_off(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import uvicorn

    from cli import compute_commands, runtime
    from service.config import get_settings

    ran: list[str] = []
    monkeypatch.setattr(runtime, "build_runtime", lambda *a, **k: _NoRuntime())
    monkeypatch.setattr(uvicorn, "run", lambda app, host, **kw: ran.append(host))
    monkeypatch.setenv("SCALESWEEP_AUTH", "off")
    monkeypatch.setenv("SCALESWEEP_DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    get_settings.cache_clear()
    try:
        assert compute_commands.serve_command(_serve_args("127.0.0.1")) == 0
    finally:
        get_settings.cache_clear()
    assert ran == ["127.0.0.1"]
    assert "authentication is off" in capsys.readouterr().err


def test_run_one_refuses_what_cannot_fit_before_training(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SCALESWEEP_WORKER_MEMORY_MB", str(24 * 1024))
    get_settings.cache_clear()
    try:
        code = main(["run-one", "--model", "quadratic", "--d", "100000", "--n", "20",
                     "--weight-decay", "0.1"])  # fmt: skip
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("scalesweep run-one: --d: quadratic d = 100000"), err
    assert "TiB of memory" in err and "the largest worker has 24 GiB" in err
