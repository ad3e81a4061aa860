"""The display names (service.display): one table for the dashboard and the figures."""

from __future__ import annotations

import typing

import pytest

from service import display
from service.results import Spectrum


@pytest.mark.parametrize(
    "value, text",
    [(0.01, "0.01"), (1600.0, "1600"), (1e-5, "1e-5"), (123456.0, "1.235e5"), (-0.0, "0"),
     (0.0, "0"), (1 / 3, "0.3333"), (None, "–")],
)  # fmt: skip
def test_numbers_are_short(value: float | None, text: str) -> None:
    assert display.number(value) == text


def test_group_labels_say_symbols_and_the_path_power_l() -> None:
    group = {"weight_decay": 0.01, "link_power": -0.5, "d": 50.0}
    assert display.group_label(group) == "λ = 0.01, l = 0.5, d = 50"
    assert display.group_label(group, math=True) == r"$\lambda$ = 0.01, $l$ = 0.5, $d$ = 50"
    assert display.group_label({"link_power": 0.0}) == "l = 0"  # never "-0"
    assert display.group_label({}) == "all runs"
    assert display.shown("link_power", -1.0) == 1.0 and display.shown("n", 5.0) == 5.0


def test_labels_forms_and_spectra_have_names() -> None:
    assert display.axis_label("weight_decay") == "λ (weight decay)"
    assert (
        display.axis_label("abs_theta", math=True) == r"$|\theta|$ (effective coefficients |a w|)"
    )
    assert display.axis_label("unknown_axis") == "unknown axis"
    assert display.form("power_law") == "power law" and display.form(None) == ""
    assert display.form("broken_power_law_1") == "broken power law (1 break)"
    kinds = typing.get_args(Spectrum.model_fields["kind"].annotation)
    assert set(kinds) == set(display.SPECTRA)  # every stored spectrum has its name
    table = display.table()
    assert set(table) == {"fields", "spectra", "forms"}
    assert table["fields"]["alpha"]["symbol"] == "α"


def test_the_width_axes_have_names() -> None:
    assert display.axis_label("width") == "m (width)"
    assert display.symbol("width_ratio") == "m/d"
    assert display.axis_label("width", math=True) == "$m$ (width)"
    assert display.group_label({"width": 16.0, "n": 400.0}) == "m = 16, n = 400"
