"""cli.main: one parser with every contract subcommand, dispatched to its module."""

from __future__ import annotations

from typing import Any

import pytest

from cli import admin_commands, client_commands, compute_commands, main


def test_parser_has_every_contract_subcommand() -> None:
    parser = main.build_parser()
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
    ("argv", "module", "function"),
    [
        (["serve", "--no-runner", "--port", "9000"], compute_commands, "serve_command"),
        (
            ["run-one", "--model", "diagonal", "--d", "4", "--n", "8", "--weight-decay", "0.1"],
            compute_commands,
            "run_one_command",
        ),
        (["demo", "--port", "0"], compute_commands, "demo_command"),
        (["status", "3"], client_commands, "cmd_status"),
        (["token", "list"], admin_commands, "cmd_token"),
    ],
)
def test_every_command_dispatches_to_its_function(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], module: Any, function: str
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(module, function, lambda args: calls.append(args) or 7)
    assert main.main(argv) == 7  # the parser is built after the patch: it binds the fake
    assert len(calls) == 1 and calls[0].command == argv[0]
