"""cli.output: every string a user or a server supplied reaches the terminal with its control
characters escaped (names, tags, errors, table cells, error lines), JSON in ASCII, a run's
error prefixed once; and the demo's words: the comparison with the theory per group and
where to see the results."""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, datetime
from typing import Any

import pytest
from factories import SMALL_SPEC, result

from cli import client_commands, output
from cli.compute_commands import how_to_look
from cli.main import main
from service.analysis.reports import (
    ExponentReport,
    GroupFit,
    GroupTheory,
    PointTheory,
    TheoryReport,
)
from service.client import ServerError
from service.records import SweepRecord
from service.spec import RunConfig, SweepSpec

HOSTILE = [
    "\x1b[31mred\x1b[0m",  # ANSI colour
    "\x1b]0;title\x07",  # OSC: sets the terminal's title, ends with BEL
    "over\rwrite",
    "two\nlines",
    "\x9b2J",  # C1 CSI: clears the screen on some terminals
    "del\x7f",
    "\u202eevil\u202c",  # right-to-left override
    "\u2066isolate\u2069",
    "nul\x00",
]
ACTING = {"\u061c", "\u200e", "\u200f", *map(chr, range(0x202A, 0x202F)),
          *map(chr, range(0x2066, 0x206A))}  # fmt: skip
"""The invisible bidirectional controls (Unicode's Bidi_Control, less the plain marks)."""


def _acts(text: str) -> list[str]:
    """The characters of ``text`` that would act on a terminal instead of being shown,
    apart from the newlines that separate an output's lines."""
    return [c for c in text if (unicodedata.category(c) == "Cc" and c != "\n") or c in ACTING]


@pytest.mark.parametrize("value", HOSTILE)
def test_safe_escapes_every_control_character(value: str) -> None:
    shown = output.safe(value)
    assert _acts(shown) == [] and "\n" not in shown
    assert "\\" in shown  # written as a visible escape, not dropped


def test_safe_keeps_text_as_it_is() -> None:
    for text in ("plain", "décroissance", "שלום עולם", "指数", "a\\x1b stays text"):
        assert output.safe(text) == text


def _sweep(name: str, tags: list[str]) -> SweepRecord:
    return SweepRecord(
        id=7, name=name, spec=SweepSpec.model_validate(SMALL_SPEC), status="queued", n_runs=16,
        counts={"queued": 16}, created_at=datetime(2026, 1, 1, tzinfo=UTC), tags=tags,
    )  # fmt: skip


@pytest.mark.parametrize("value", HOSTILE)
def test_status_list_and_tables_escape_names_tags_and_cells(value: str) -> None:
    sweep = _sweep(value, [value, "ok"])
    status = output.status_text(sweep)
    assert _acts(status) == [] and status.count("\n") == 1
    listing = output.sweeps_table([sweep])
    assert _acts(listing) == [] and listing.count("\n") == 4  # header, row, blank, count
    table = output.table(["col", value], [[value, "x"]])
    assert _acts(table) == [] and table.count("\n") == 2


class _FakeClient:
    """What client_commands.client returns, answering with a hostile sweep or error."""

    def __init__(self, sweep: SweepRecord, error: ServerError | None = None) -> None:
        self.sweep, self.error = sweep, error

    def __enter__(self) -> _FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def get_sweep(self, sweep_id: int) -> SweepRecord:
        if self.error is not None:
            raise self.error
        return self.sweep

    def list_sweeps(self, **kw: Any) -> list[SweepRecord]:
        return [self.sweep]


def test_commands_print_server_strings_escaped(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = _sweep("\x1b[2J\x1b[Hpwned\u202e", ["\x07bell"])
    monkeypatch.setattr(client_commands, "client", lambda args: _FakeClient(hostile))
    for argv in (["status", "7"], ["list"], ["delete", "7"]):
        main(argv)
        out, err = capsys.readouterr()
        assert "pwned" in out + err, argv
        assert _acts(out) == [] and _acts(err) == [], argv
    refused = ServerError(404, "sweep \x1b[31m7\x1b[0m not found")
    monkeypatch.setattr(client_commands, "client", lambda args: _FakeClient(hostile, refused))
    assert main(["status", "7"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: HTTP 404: sweep \\x1b[31m7") and _acts(err) == []


def test_json_output_is_ascii() -> None:
    text = output.json_text(_sweep("\u202eevil\x1b", []))
    assert text.isascii() and json.loads(text)["name"] == "\u202eevil\x1b"


def test_a_runs_error_is_prefixed_once_and_escaped() -> None:
    cfg = RunConfig(model="diagonal", d=4, n=8, weight_decay=0.1)
    failed = result(cfg, status="failed", error="error: RuntimeError: CUDA \x1b[31mgone")
    text = output.run_summary(cfg, failed)
    assert "\n  error: RuntimeError: CUDA \\x1b[31mgone" in text
    assert "error: error" not in text and _acts(text) == []
    stopped = result(cfg, status="failed", error="diverged: diverged at step 4")
    assert "\n  error: diverged: diverged at step 4" in output.run_summary(cfg, stopped)


def _point(wd: float, n: int, mean: float, se: float, predicted: float) -> PointTheory:
    return PointTheory(
        model="diagonal", d=100, n=n, alpha=n / 100, weight_decay=wd, gamma=1.0, noise=0.01,
        rank=None, link_power=None, predicted={"excess_risk": predicted}, measured_mean=mean,
        measured_se=se, n_seeds=4, rel_diff=(mean - predicted) / predicted,
    )  # fmt: skip


def _fit(wd: float, **kw: Any) -> GroupFit:
    base: dict[str, Any] = {"group": {"weight_decay": wd}, "n_points": 2, "n_runs": 8,
                            "n_left_out": 0, "n_failed": 0, "n_unconverged": 0,
                            "n_pending": 0}  # fmt: skip
    return GroupFit(**{**base, **kw})


def test_theory_words_say_per_group_whether_theory_and_measurement_agree() -> None:
    groups = [
        GroupTheory(group={"weight_decay": 0.01}, x_window=(100.0, 800.0), measured_exponent=1.2,
                    measured_ci=(1.1, 1.3), form="power_law", predicted_exponent=1.25,
                    n_points=2),
        GroupTheory(group={"weight_decay": 0.03}, x_window=(100.0, 800.0), measured_exponent=2.5,
                    measured_ci=(2.2, 18.4), form="plateau", predicted_exponent=1.96,
                    n_points=2),
        GroupTheory(group={"weight_decay": 0.1}, x_window=None, measured_exponent=None,
                    predicted_exponent=None, n_points=1, error="fewer than 2 distinct n"),
    ]  # fmt: skip
    points = [
        _point(0.01, 100, 0.101, 0.001, 0.100),  # +1%, within 3 standard errors
        _point(0.01, 800, 0.0115, 0.0001, 0.010),  # +15%, 15 standard errors off
        _point(0.03, 100, 0.095, 0.007, 0.0952),
        _point(0.03, 800, 0.0483, 0.0012, 0.0464),
    ]
    theory = TheoryReport(
        sweep_id=1, x="n", by=["weight_decay"], points=points, groups=groups,
        note="finite d: \x1b[1mR sits above",
    )  # fmt: skip
    exponents = ExponentReport(
        sweep_id=1, x="n", by=["weight_decay"], selection="aicc", bootstrap=200,
        bootstrap_seed=0, groups=[
            _fit(0.01, form="power_law", exponent=1.2, selection_notes=["broken not tried"]),
            _fit(0.03, form="plateau", exponent=2.5, plateau=0.047,
                 selection_notes=["broken_power_law_1, plateau not fitted (no fit could gain 10)"]),
            _fit(0.1, error="fewer than 2 distinct n"),
        ],
    )  # fmt: skip
    text, agrees = output.theory_words(theory, exponents)
    assert agrees == [True, False, False]
    first, second, third = text.split("\n  weight decay ")[1:]
    assert first.startswith("0.01: measured exponent 1.2 (95% interval 1.1 to 1.3);")
    assert "the theory's is 1.25 over n = 100 to 800, inside it: agrees." in first
    assert "within 15% of the theory's at each of the 2 values of n (1 within 3 standard" in first
    assert "levelling off at R = 0.047" in second and "outside it: does not agree" in second
    assert "(2 within 3 standard errors)" in second
    assert third == (
        "0.1: no comparison (fewer than 2 distinct n)\n  note: finite d: \\x1b[1mR sits above"
    )
    assert "not fitted" not in text and "not tried" not in text  # no internal fit notes


def test_how_to_look_names_the_dashboard_pages_and_the_command() -> None:
    text = how_to_look([3, 4], "sqlite:///./scalesweep.db")
    assert "scalesweep serve  # from this folder: the same database, ./scalesweep.db" in text
    assert "http://127.0.0.1:8000/sweeps/3 and http://127.0.0.1:8000/sweeps/4" in text
    assert "scalesweep theory 3" in text
    elsewhere = how_to_look([1], "postgresql+psycopg://u:secret@db/x")
    assert "same SCALESWEEP_DATABASE_URL" in elsewhere and "secret" not in elsewhere
