"""cli.main: one parser with every contract subcommand, dispatched to its module; help for
every option with its default; global options on either side of the command; and the
import discipline (help and argument errors load nothing heavy; client commands nothing of
the server side), checked by the modules a fresh interpreter has loaded, not by a clock."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli import admin_commands, client_commands, compute_commands, main

ROOT = Path(__file__).resolve().parents[2]


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


def _parsers(
    parser: argparse.ArgumentParser, path: str = "scalesweep"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every parser, the top-level one and each (nested) subcommand's, with its command."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, f"{path} {name}")


def test_every_option_of_every_command_has_help_with_its_default() -> None:
    seen = 0
    for path, parser in _parsers(main.build_parser()):
        required_groups = {
            a for g in parser._mutually_exclusive_groups if g.required for a in g._group_actions
        }
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            seen += 1
            name = action.option_strings[-1] if action.option_strings else action.dest
            text = action.help
            assert text and text is not argparse.SUPPRESS and text.strip(), (path, name)
            if not action.option_strings:
                continue  # a positional: what it is, no default to state
            if action.required or action in required_groups:
                assert "required" in text, (path, name, text)
            else:
                assert "default" in text, (path, name, text)
    assert seen > 80  # every command was walked


RUN_ONE_SPEC_DEFAULTS = {
    # option dest -> (spec model, field); a None default is stated as a word
    "gamma": ("TeacherSpec", "gamma"),
    "noise": ("TeacherSpec", "noise"),
    "rank": ("TeacherSpec", "rank"),
    "seed": ("RunConfig", "seed"),
    "optimizer": ("TrainingSpec", "optimizer"),
    "dtype": ("TrainingSpec", "dtype"),
    "max_steps": ("TrainingSpec", "max_steps"),
    "second_layer": ("TrainingSpec", "second_layer"),
    "device": ("TrainingSpec", "device"),
    "width": ("TrainingSpec", "width"),
    "lr": ("TrainingSpec", "lr"),
    "tol": ("TrainingSpec", "tol"),
    "timeout_s": ("TrainingSpec", "timeout_s"),
    "restarts": ("TrainingSpec", "restarts"),
    "test_samples": ("MeasureSpec", "test_samples"),
    "curve_every": ("MeasureSpec", "curve_every"),
}
NONE_STATED_AS = {
    "rank": "d",
    "width": "d",
    "lr": "none",
    "timeout_s": "none",
    "restarts": "SCALESWEEP_WIDTH_RESTARTS",
}


def test_run_one_help_states_the_specs_own_defaults() -> None:
    from service import spec

    parser = dict(_parsers(main.build_parser()))["scalesweep run-one"]
    actions = {a.dest: a for a in parser._actions}
    for dest, (model, field) in RUN_ONE_SPEC_DEFAULTS.items():
        default = getattr(spec, model).model_fields[field].default
        action = actions[dest]
        stated = re.search(r"\(default: ([^,;:)]+)", action.help or "")
        assert stated, (dest, action.help)
        expected = NONE_STATED_AS[dest] if default is None else str(default)
        assert stated.group(1) == expected, (dest, stated.group(1), default)
        assert action.default in (None, default), (dest, action.default, default)
    # the alpha convention of THEORY.md and service.spec.sample_size
    alpha = actions["alpha"].help or ""
    assert "n = alpha d^2 (quadratic)" in alpha and "n = alpha d (diagonal)" in alpha
    assert spec.sample_size("quadratic", 10, 2.0) == 200
    assert spec.sample_size("diagonal", 10, 2.0) == 20


def test_plot_kinds_are_the_figures_kinds() -> None:
    from cli import figures

    assert main.PLOT_KINDS == figures.KINDS


def test_x_axes_are_the_analyses_and_plot_help_lists_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from service.analysis.grouping import X_AXES

    assert main.X_AXES == X_AXES
    with pytest.raises(SystemExit):
        main.main(["plot", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "n, alpha, d, weight_decay, gamma, noise or width" in text, text
    args = main.build_parser().parse_args(["plot", "3", "--x", "width", "--out", "r.pdf"])
    assert args.x == "width"
    with pytest.raises(SystemExit):
        main.build_parser().parse_args(["exponents", "3", "--x", "depth"])
    assert "invalid choice: 'depth'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        "--server http://gpu-head:8000 reproduce quadratic-neff --scale paper --out paper/q",
        "reproduce quadratic-neff --scale paper --server http://gpu-head:8000 --out paper/q",
        "reproduce quadratic-neff --server http://gpu-head:8000 --scale paper --out paper/q",
    ],
)
def test_global_options_are_accepted_before_and_after_the_command(argv: str) -> None:
    args = main.build_parser().parse_args(argv.split())
    assert (args.command, args.name, args.scale, args.server) == (
        "reproduce", "quadratic-neff", "paper", "http://gpu-head:8000"
    )  # fmt: skip


def test_global_options_keep_one_default_wherever_they_are_allowed() -> None:
    parser = main.build_parser()
    assert parser.parse_args(["status", "1"]).server is None  # Settings decides: one default
    assert parser.parse_args(["--server", "http://a:1", "status", "1"]).server == "http://a:1"
    after = parser.parse_args(["--server", "http://a:1", "status", "1", "--server", "http://b:2"])
    assert after.server == "http://b:2"  # the later one wins, as with any repeated option
    nested = parser.parse_args(["token", "create", "--name", "x", "--scope", "read",
                                "--server", "http://c:3"])  # fmt: skip
    assert nested.server == "http://c:3" and nested.token_command == "create"
    for path, sub in _parsers(parser):
        assert "--server" in sub._option_string_actions, path


def test_unreachable_server_named_after_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["status", "1", "--server", "http://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach the server at http://127.0.0.1:9")


SERVER_SIDE = ("scipy", "matplotlib", "torch", "ray", "sqlalchemy", "alembic", "fastapi",
               "starlette", "uvicorn", "pandas", "pyarrow", "psycopg")  # fmt: skip
HEAVY = (*SERVER_SIDE, "numpy", "pydantic", "pydantic_settings", "httpx", "yaml")


def _loaded_after(code: str, modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` a fresh interpreter has loaded after running ``code``."""
    probe = (
        "import contextlib, io, json, sys\n"
        f"{code}\n"
        f"print(json.dumps([m for m in {modules!r} if m in sys.modules]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALESWEEP_")}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT,
        timeout=120, check=True,
    )  # fmt: skip
    loaded: list[str] = json.loads(done.stdout.splitlines()[-1])
    return loaded


def test_help_and_argument_errors_import_nothing_heavy() -> None:
    code = (
        "import cli.main\n"
        "argvs = [['--help'], ['run-one', '--help'], ['plot', '--help'], ['token', 'create',"
        " '--help'], ['run-one', '--d', 'notanumber'], ['status', 'x'], ['no-such-command']]\n"
        "for argv in argvs:\n"
        "    with contextlib.redirect_stdout(io.StringIO()), "
        "contextlib.redirect_stderr(io.StringIO()):\n"
        "        try:\n"
        "            cli.main.main(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
        "        else:\n"
        "            raise AssertionError(argv)\n"
    )
    assert _loaded_after(code, HEAVY) == []


def test_client_commands_import_nothing_of_the_server_side() -> None:
    # `status` end to end (parse, dispatch, client, the unreachable server's error line),
    # and every command module imported: what a client command costs stays small
    code = (
        "import cli.main\n"
        "with contextlib.redirect_stderr(io.StringIO()):\n"
        "    assert cli.main.main(['status', '1', '--server', 'http://127.0.0.1:9']) == 1\n"
        "import cli.client_commands, cli.plot_commands, cli.admin_commands\n"
        "import cli.compute_commands, cli.reproduce_commands, cli.output\n"
    )
    assert _loaded_after(code, SERVER_SIDE) == []
