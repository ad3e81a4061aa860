"""Every ``scalesweep ...`` command the README and DESIGN.md show parses with the real parser.

Commands are taken from fenced code blocks (a line that runs ``scalesweep`` or
``.venv/bin/scalesweep``, after any ``VAR=value`` assignments, up to a ``#`` comment) and
from inline code spans anywhere, comments of code blocks included. DESIGN.md writes
synopses: ``[...]`` is optional (its content is parsed too), ``(a | b)`` and ``a|b`` are
alternatives (the first is parsed), upper-case words are placeholders (given a value of the
right kind from :data:`PLACEHOLDERS`; an unknown one fails, naming the command). A bare
``scalesweep COMMAND`` in prose names a command: it only has to exist; ``--help`` parses when
it exits 0. Nothing is run.

DESIGN.md is read from ``../shared/DESIGN.md`` next to the repository (as CI copies it);
its part is skipped only when that file is absent.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DESIGN = ROOT.parent / "shared" / "DESIGN.md"

PLACEHOLDERS = {
    "ID": "1", "RUN": "2", "D": "20", "N": "100", "A": "2", "L": "0.01", "G": "1.5",
    "DELTA": "0.01", "S": "0", "O": "lbfgs", "R": "3", "M": "quadratic", "T": "paper",
    "F": "csv", "FILE": "out", "SPEC": "spec", "NAME": "diagonal-bias-paths",
    "URL": "http://127.0.0.1:8000", "DIR": "out", "COMMAND": "status",
}  # fmt: skip
"""A value for each placeholder the documents use (``FILE.png`` keeps its suffix)."""

PROGRAM = re.compile(r"^(?:\.venv/bin/)?scalesweep(?:\s|$)")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=\S*\s+")
PLACEHOLDER = re.compile(r"^([A-Z][A-Z_]*)((?:\.[a-z]+)?)$")


def _commands_in(text: str) -> list[str]:
    """Every scalesweep command of a Markdown text, as written."""
    found: list[str] = []
    prose: list[str] = []
    in_fence = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            prose.append("")
            continue
        if not in_fence:
            prose.append(line)
            continue
        code, _, comment = line.partition(" #")
        code = code.strip()
        while ASSIGNMENT.match(code):
            code = ASSIGNMENT.sub("", code, count=1)
        if PROGRAM.match(code):
            found.append(code.rstrip(" &"))
        prose.append(comment)  # a comment's inline code counts
    for span in re.findall(r"`([^`]+)`", "\n".join(prose)):
        span = " ".join(span.split())  # an inline span may wrap over lines
        if PROGRAM.match(span) and span not in ("scalesweep", ".venv/bin/scalesweep"):
            found.append(span)
    return found


def _words(synopsis: str) -> list[str]:
    """A synopsis as argv: optional parts kept, first alternatives, placeholders filled."""
    text = re.sub(r"([\[\]()])", r" \1 ", synopsis)
    tokens = shlex.split(text)
    out: list[str] = []
    skipping = 0  # inside the second or a later alternative of a ( ... | ... ) group
    depth_alt: list[bool] = []  # per open parenthesis: an alternative already taken
    for tok in tokens:
        if tok == "(":
            depth_alt.append(False)
            continue
        if tok == ")":
            depth_alt.pop()
            skipping = 0
            continue
        if tok == "|":
            if depth_alt:
                depth_alt[-1] = True
                skipping = 1
            continue
        if tok in ("[", "]") or skipping:
            continue
        tok = tok.split("|")[0]  # a|b|c: the first
        m = PLACEHOLDER.match(tok)
        if m:
            if m.group(1) not in PLACEHOLDERS:
                raise KeyError(f"unknown placeholder {tok!r}")
            tok = PLACEHOLDERS[m.group(1)] + m.group(2)
        out.append(tok)
    return out


def _argv(command: str) -> list[str]:
    words = _words(PROGRAM.sub("", command, count=1))
    return words


def _subcommands(parser: argparse.ArgumentParser) -> set[str]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(sub.choices)


def _documents() -> list[tuple[str, Path]]:
    docs = [("README.md", README)]
    if DESIGN.exists():
        docs.append(("DESIGN.md", DESIGN))
    return docs


def _all_commands() -> list[tuple[str, str]]:
    return [(name, cmd) for name, path in _documents() for cmd in _commands_in(path.read_text())]


def test_the_extractor_finds_blocks_spans_synopses() -> None:
    text = (
        "Run `scalesweep status ID` or `scalesweep edit ID --name N\n--archive`.\n"
        "```bash\n"
        ".venv/bin/scalesweep runs ID --format csv      # every run; see `scalesweep plot`\n"
        "RAY_ADDRESS=h:1 scalesweep serve               # or: python -m workers\n"
        "make demo    # `scalesweep demo`\n"
        "```\n"
    )
    assert sorted(_commands_in(text)) == sorted(
        [
            ".venv/bin/scalesweep runs ID --format csv",
            "scalesweep serve",
            "scalesweep status ID",
            "scalesweep edit ID --name N --archive",
            "scalesweep plot",
            "scalesweep demo",
        ]
    )
    assert _argv("scalesweep run-one --model M --d D (--n N | --alpha A) --weight-decay L") == [
        "run-one", "--model", "quadratic", "--d", "20", "--n", "100", "--weight-decay", "0.01"
    ]  # fmt: skip
    assert _argv("scalesweep plot ID --kind risk|theory [--run RUN] --out FILE.png|svg|pdf") == [
        "plot", "1", "--kind", "risk", "--run", "2", "--out", "out.png"
    ]  # fmt: skip
    with pytest.raises(KeyError, match="WHO"):
        _argv("scalesweep token create --name WHO")


def test_every_documented_command_parses() -> None:
    parser = build_parser()
    commands = _all_commands()
    assert len(commands) >= 30, commands  # both documents were read
    failures = []
    for doc, command in commands:
        try:
            argv = _argv(command)
        except KeyError as exc:
            failures.append(f"{doc}: {command!r}: {exc}")
            continue
        if len(argv) == 1 and argv[0] in _subcommands(parser):
            continue  # prose naming a command (`scalesweep plot`): it exists
        try:
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                parser.parse_args(argv)
        except SystemExit as exc:
            if exc.code != 0:  # 0: --help, which parsed
                failures.append(f"{doc}: {command!r} (parsed as {argv})")
    assert not failures, "commands the parser refuses:\n" + "\n".join(failures)


def test_design_is_read_when_present() -> None:
    if not DESIGN.exists():
        pytest.skip(f"{DESIGN} is absent (DESIGN.md's commands are not checked)")
    design = [cmd for doc, cmd in _all_commands() if doc == "DESIGN.md"]
    assert any(c.startswith("scalesweep run-one") for c in design), design
    assert any("reproduce NAME" in c and "--server" in c for c in design), design
