"""`scalesweep run-one` (workers/cli.py) through the real console entry point."""

from __future__ import annotations

import json

import pytest

from service.cli import main

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
    assert "weight_decay" in capsys.readouterr().err


def test_run_one_failure_exits_non_zero(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run-one", "--model", "quadratic", "--d", "6", "--n", "80", "--weight-decay", "0.01"]
    code = main([*argv, "--optimizer", "gd", "--lr", "1000", "--max-steps", "50", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1
    assert doc["status"] == "failed" and doc["metrics"] is None and "diverged" in doc["error"]
