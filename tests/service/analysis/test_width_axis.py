"""The width as an axis of the analyses (service.analysis.grouping, exponents, phase
diagram) on hand-built RunPoint lists: x = width and by = width, which axes group by
default, and the notes that say a risk-against-width curve need not be a power law."""

from __future__ import annotations

from typing import Any

import pytest

from service.analysis.exponents import WIDTH_NOTE, sweep_exponents
from service.analysis.grouping import axis_value, check_axes, default_by, width_varies
from service.analysis.phase_diagram import sweep_phase_diagram
from service.records import RunPoint
from service.spec import SweepSpec

WIDTHS = (2, 4, 8, 16, 32, 64)


def qp(run_id: int, **kw: Any) -> RunPoint:
    """A succeeded, converged quadratic run at d = 20; keywords override any column."""
    base: dict[str, Any] = {
        "run_id": run_id,
        "status": "succeeded",
        "converged": True,
        "model": "quadratic",
        "d": 20,
        "n": 400,
        "weight_decay": 0.1,
        "gamma": 1.0,
        "noise": 0.01,
        "seed": 0,
        "link_power": None,
        "rank": None,
        "excess_risk": 0.1,
        "width": 20,
    }
    base.update(kw)
    return RunPoint(**base)


def test_a_points_width_defaults_to_the_models_width() -> None:
    assert qp(1, width=7).width == 7
    no_width = {k: v for k, v in vars_of(qp(1)).items() if k != "width"}
    assert RunPoint(**no_width).width == 20
    assert RunPoint(**{**no_width, "signed": True}).width == 40  # signed second layer: 2d
    assert RunPoint(**{**no_width, "model": "diagonal", "signed": False}).width == 20
    assert axis_value(qp(1, width=7), "width") == 7.0


def vars_of(p: RunPoint) -> dict[str, Any]:
    return {name: getattr(p, name) for name in p.__dataclass_fields__}


def test_width_is_an_x_and_a_grouping_axis() -> None:
    check_axes("width", None)
    check_axes("width", ["n", "d", "weight_decay"])
    check_axes("n", ["width"])


def test_exponent_against_the_width_per_n_with_the_note() -> None:
    beta = {400: 0.5, 1600: 1.0}
    points = [
        qp(i, n=n, width=m, seed=s, excess_risk=3.0 * m ** -beta[n] * (1 + 0.01 * s))
        for i, (n, m, s) in enumerate(
            ((n, m, s) for n in beta for m in WIDTHS for s in range(3)), start=1
        )
    ]
    rep = sweep_exponents(5, points, x="width", by=["n"], bootstrap=40)
    assert rep.x == "width" and rep.by == ["n"]
    assert [g.group for g in rep.groups] == [{"n": 400.0}, {"n": 1600.0}]
    for g in rep.groups:
        assert g.n_points == len(WIDTHS) and g.n_runs == 3 * len(WIDTHS)
        assert g.form == "power_law"
        assert g.exponent == pytest.approx(beta[int(g.group["n"] or 0)], abs=1e-8)  # 1e-8 abs
        assert g.selection_notes[0] == WIDTH_NOTE  # monotone: only the general note
        assert not any("not monotone" in note for note in g.selection_notes)


def test_a_bump_in_the_width_is_said_in_words() -> None:
    # R rises from m = 2 to a peak at m = 8 and falls after: no power law
    shape = {2: 0.10, 4: 0.20, 8: 0.40, 16: 0.20, 32: 0.08, 64: 0.05}
    points = [
        qp(i, width=m, seed=s, excess_risk=r * (1 + 0.02 * (s - 1)))
        for i, (m, r, s) in enumerate(
            ((m, r, s) for m, r in shape.items() for s in range(3)), start=1
        )
    ]
    rep = sweep_exponents(5, points, x="width", by=[], bootstrap=20)
    (g,) = rep.groups
    assert g.selection_notes[0] == WIDTH_NOTE
    turn = [note for note in g.selection_notes if "not monotone" in note]
    assert len(turn) == 1 and "peak at m = 8" in turn[0] and "up to m = 64" in turn[0], turn
    # a dip is said too
    dip = [qp(i, width=m, excess_risk=0.5 / r) for i, (m, r) in enumerate(shape.items(), 1)]
    (g,) = sweep_exponents(5, dip, x="width", by=[], bootstrap=0).groups
    assert any("dip at m = 8" in note for note in g.selection_notes), g.selection_notes


def test_a_turn_within_the_seed_scatter_is_not_called_one() -> None:
    # seed means 0.1, 0.104, 0.1, 0.09, ... wiggle by less than twice their standard errors
    shape = {2: 0.100, 4: 0.104, 8: 0.100, 16: 0.090, 32: 0.080, 64: 0.070}
    points = [
        qp(i, width=m, seed=s, excess_risk=r * (1 + 0.2 * (s - 1)))
        for i, (m, r, s) in enumerate(
            ((m, r, s) for m, r in shape.items() for s in range(3)), start=1
        )
    ]
    (g,) = sweep_exponents(5, points, x="width", by=[], bootstrap=0).groups
    assert g.selection_notes[0] == WIDTH_NOTE
    assert not any("not monotone" in note for note in g.selection_notes)


def test_by_width_groups_a_curve_against_n_per_width() -> None:
    points = [
        qp(i, n=n, width=m, excess_risk=m * n**-0.5)
        for i, (m, n) in enumerate(((m, n) for m in (2, 8) for n in (100, 200, 400, 800)), 1)
    ]
    rep = sweep_exponents(5, points, x="n", by=["width"], bootstrap=0)
    assert [g.group for g in rep.groups] == [{"width": 2.0}, {"width": 8.0}]
    for g in rep.groups:
        assert g.exponent == pytest.approx(0.5, abs=1e-8)  # tolerance: 1e-8 absolute
        assert WIDTH_NOTE not in g.selection_notes  # x is n: no width note
    assert rep.groups == sweep_exponents(5, points, x="n", by=None, bootstrap=0).groups


def _grid(ds: tuple[int, ...], widths_at: Any) -> list[RunPoint]:
    """One point per (d, width, n) with widths ``widths_at(d)``."""
    out: list[RunPoint] = []
    for d in ds:
        for m in widths_at(d):
            for n in (100, 200):
                out.append(qp(len(out) + 1, d=d, width=m, n=n))
    return out


def test_which_axes_group_by_default() -> None:
    listed = _grid((10, 20), lambda d: (2, 8))  # grid.width: the same widths at every d
    ratio = _grid((10, 20), lambda d: (d // 2, 2 * d))  # grid.width_ratio: widths follow d
    default = _grid((10, 20), lambda d: (d,))  # no width axis: m = d
    assert width_varies(listed) and width_varies(ratio) and not width_varies(default)
    assert default_by("n", listed) == ["d", "width"]
    assert default_by("d", listed) == ["width"]
    assert default_by("width", listed) == ["d", "n"]
    assert default_by("n", ratio) == ["d", "width"]
    assert default_by("d", ratio) == []  # tied to d, as alpha's n are
    assert default_by("width", ratio) == ["d", "n"]
    assert default_by("n", default) == ["d"]  # d tells the widths apart
    assert default_by("d", default) == []


def test_the_phase_diagram_has_a_family_per_power_and_width() -> None:
    powers = (0.0, -0.5)
    points = [
        qp(
            i, d=10, n=n, width=m, link_power=p, weight_decay=0.1 * n**p,
            excess_risk=(1.0 + m / 10) * n ** (-0.3 + p / 2),
        )
        for i, (p, m, n) in enumerate(
            ((p, m, n) for p in powers for m in (3, 10) for n in (100, 200, 400, 800)), 1
        )
    ]  # fmt: skip
    spec = SweepSpec.model_validate(
        {
            "model": "quadratic",
            "grid": {"d": [10], "n": [100, 200, 400, 800], "width": [3, 10]},
            "link": {"weight_decay": {"coef": 0.1, "of": "n", "power": list(powers)}},
        }
    )
    diagram = sweep_phase_diagram(2, spec, points, bootstrap=0)
    groups = sorted((f.group["link_power"], f.group["width"]) for f in diagram.families)
    assert groups == [(-0.5, 3.0), (-0.5, 10.0), (0.0, 3.0), (0.0, 10.0)]
    for f in diagram.families:
        assert f.n_runs == 4
        assert f.measured_exponent == pytest.approx(0.3 - f.power / 2, abs=1e-8)  # 1e-8 abs
