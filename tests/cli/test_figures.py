"""The paper figures (cli.figures) as a reader sees them: display names in legends and
labels, integer counts, nothing non-positive on a log axis, readable log ticks, a single x
value on a sensible range, legends naming only what is drawn, titles inside the figure."""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from factories import all_runs, result, spectrum, tail_fit
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image

from cli import figures
from cli.plot_commands import draw
from service import display
from service.client import Client
from service.spec import SweepSpec
from service.storage import Store

LONG_NAME = (
    "plateau and crossover: gamma 1, Delta 0.01, d 1000, lambda = 0.3 n^-l, l = 0 and 1/2, "
    "eight seeds, the small scale of the example"
)
LINKED = {
    "name": LONG_NAME,
    "model": "diagonal",
    "teacher": {"gamma": 1.0, "noise": 0.01},
    "grid": {"d": [50], "n": [200, 400, 800, 1600], "seed": [0, 1, 2]},
    "link": {"weight_decay": {"coef": 0.3, "of": "n", "power": [0.0, -0.5]}},
}
# a spectrum with exact zeros and a numerical one (what the certificate proves zero)
ZEROS = spectrum(
    [k**-1.5 for k in range(1, 31)] + [1e-15, 0.0, 0.0],
    tail=tail_fit(alpha=1.67),
    rank_exponent=1.5,
)
FEW = spectrum([1.0, 0.6, 0.5, 0.0], kind="eig_S")  # counts of 1 and 2 per bin
RAW_NAMES = ("weight_decay", "link_power", "abs_theta", "eig_S", "sv_W", "power_law", "_")


def _sweep(store: Store, body: dict[str, Any], spec: Any = ZEROS) -> int:
    sweep = store.create_sweep(SweepSpec.model_validate(body), max_runs=1000)
    out = []
    for r in all_runs(store, sweep.id):
        risk = (1.0 + 0.05 * (r.config.seed - 1)) * r.config.n ** (
            -0.5 + (r.config.link_power or 0)
        )
        out.append((r.id, result(r.config_hash, risk, spectra=[spec])))
    store.record_results(out)
    return sweep.id


def _args(sweep_id: int, kind: str, **kw: object) -> argparse.Namespace:
    base: dict[str, object] = {"id": sweep_id, "kind": kind, "x": "n", "by": None, "ids": None,
                               "run_id": None}  # fmt: skip
    return argparse.Namespace(**{**base, **kw})


def _texts(fig: Figure) -> list[str]:
    """Every legend entry, axis label and title of a figure."""
    out = [fig._suptitle.get_text()] if fig._suptitle else []
    for ax in fig.axes:
        out += [ax.get_xlabel(), ax.get_ylabel(), ax.get_title()]
        legend = ax.get_legend()
        if legend is not None:
            out += [t.get_text() for t in legend.get_texts()]
    return [t for t in out if t]


def _log_coordinates(ax: Axes) -> list[np.ndarray]:
    """The data coordinates of every line and scatter on the log axes of ``ax``."""
    cols = [i for i, scale in enumerate((ax.get_xscale(), ax.get_yscale())) if scale == "log"]
    out = []
    for artist in ax.get_children():
        if isinstance(artist, Line2D) and artist.get_xydata().size:
            xy = np.asarray(artist.get_xydata(), dtype=float)
        elif isinstance(artist, PathCollection) and len(artist.get_offsets()):
            xy = np.asarray(artist.get_offsets(), dtype=float)
        else:
            continue
        if artist.get_transform().contains_branch(ax.transData):  # data, not axes fractions
            out += [xy[:, c] for c in cols]
    return out


def test_legends_and_labels_use_the_display_names(app_client: Client, store: Store) -> None:
    sid = _sweep(store, LINKED)
    other = _sweep(store, {**LINKED, "name": "fixed", "link": None,
                           "grid": {**LINKED["grid"], "weight_decay": [0.01]}})  # fmt: skip
    kinds = [("risk", {}), ("theory", {}), ("phase", {}), ("spectrum", {}),
             ("compare", {"ids": str(other)})]  # fmt: skip
    for kind, extra in kinds:
        fig = draw(app_client, _args(sid, kind, **extra))
        texts = [t for t in _texts(fig) if t != fig._suptitle.get_text()]  # the name is theirs
        for text in texts:
            words = re.sub(r"\$[^$]*\$", "", text)  # mathtext may have _ (R_SE)
            assert not any(raw in words for raw in RAW_NAMES), (kind, text)
    legend = " | ".join(_texts(draw(app_client, _args(sid, "risk"))))
    # link power -0.5 is l = 0.5 (lambda ~ n^-l), as on the dashboard and in the phase diagram
    assert "$l$ = 0.5" in legend and "$l$ = 0" in legend and "power law" in legend, legend
    assert display.group_label({"link_power": -0.5}, math=True) == "$l$ = 0.5"
    assert display.form("broken_power_law_2") == "broken power law (2 breaks)"
    spec = draw(app_client, _args(sid, "spectrum"))
    assert spec.axes[0].get_xlabel().startswith(r"$|\theta|$")


def test_histogram_counts_have_integer_ticks(app_client: Client, store: Store) -> None:
    sid = _sweep(store, {**LINKED, "grid": {**LINKED["grid"], "n": [200], "seed": [0]}}, FEW)
    fig = draw(app_client, _args(sid, "spectrum"))
    fig.draw_without_rendering()
    hist = fig.axes[0]
    lo, hi = hist.get_ylim()
    shown = [t for t in hist.get_yticks() if lo <= t <= hi]
    assert len(shown) >= 2 and all(float(t).is_integer() for t in shown), shown


def test_no_non_positive_value_is_drawn_on_a_log_axis(app_client: Client, store: Store) -> None:
    sid = _sweep(store, LINKED)
    for kind in ("spectrum", "risk", "theory"):
        fig = draw(app_client, _args(sid, kind))
        logs = [ax for ax in fig.axes if "log" in (ax.get_xscale(), ax.get_yscale())]
        assert logs, kind
        for ax in logs:
            for values in _log_coordinates(ax):
                finite = values[np.isfinite(values)]
                assert (finite > 0).all(), (kind, finite[finite <= 0])
    # and what was left off is said: 30 of the 33 values are above zero
    spec = draw(app_client, _args(sid, "spectrum"))
    labels = [t.get_text() for t in spec.axes[1].get_legend().get_texts()]
    assert any("(30 of 33 > 0)" in label for label in labels), labels
    # risk against a weight decay that includes 0: those runs are left off, and said so
    grid = {"d": [50], "n": [25, 100], "weight_decay": [0.0, 0.01, 0.1], "seed": [0]}
    zero = _sweep(store, {"name": "with zero", "model": "diagonal", "grid": grid})
    fig = draw(app_client, _args(zero, "risk", x="weight_decay", by="n"))
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    for values in _log_coordinates(ax):
        assert (values[np.isfinite(values)] > 0).all()
    notes = [t.get_text() for t in ax.texts]
    assert any(note.startswith("2 runs with") and "≤ 0" in note for note in notes), notes


def test_log_ticks_are_the_grid_values_as_plain_numbers(app_client: Client, store: Store) -> None:
    sid = _sweep(store, LINKED)
    fig = draw(app_client, _args(sid, "risk"))
    fig.draw_without_rendering()
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    labels = [t.get_text() for t in ax.get_xticklabels() if lo <= t.get_position()[0] <= hi]
    assert labels == ["200", "400", "800", "1600"], labels
    ylabels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert ylabels and all(re.fullmatch(r"[0-9.]+|\$.*10\^\{-?\d+\}\$", t) for t in ylabels)


def test_grid_ticks_give_way_when_their_labels_would_touch() -> None:
    fig = Figure(figsize=(1.6, 1.2))
    ax = fig.subplots()
    xs = [25.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1600.0]
    ax.plot(xs, [1.0 / x for x in xs], "o")
    figures._loglog(ax, "n", xs)
    fig.draw_without_rendering()
    lo, hi = ax.get_xlim()
    boxes = sorted(
        (t.get_window_extent() for t in ax.get_xticklabels()
         if t.get_text() and lo <= t.get_position()[0] <= hi),
        key=lambda b: b.x0,
    )  # fmt: skip
    assert len(boxes) >= 2
    assert all(a.x1 <= b.x0 for a, b in zip(boxes, boxes[1:], strict=False))


def test_a_single_x_value_gets_a_range_around_it_and_its_legend_draws(
    app_client: Client, store: Store
) -> None:
    grid = {"d": [8], "alpha": [1.0], "weight_decay": [0.01, 0.3], "seed": [0, 1]}
    body = {"name": "one n", "model": "quadratic", "teacher": {"gamma": 1.0}, "grid": grid}
    sid = _sweep(store, body)
    for kind in ("risk", "theory"):
        fig = draw(app_client, _args(sid, kind))
        fig.draw_without_rendering()
        ax = fig.axes[0]
        lo, hi = ax.get_xlim()
        assert lo == pytest.approx(64 / 1.6) and hi == pytest.approx(64 * 1.6), (kind, lo, hi)
        assert [t for t in ax.get_xticks() if lo <= t <= hi] == [64.0]
        for handle, text in zip(
            ax.get_legend().legend_handles, ax.get_legend().get_texts(), strict=True
        ):
            if isinstance(handle, Line2D) and handle.get_linestyle() not in ("None", ""):
                # a line of one point is invisible: it must carry a marker to be drawn
                assert handle.get_marker() not in ("None", "", None), (kind, text.get_text())


@pytest.mark.parametrize("kind, width", [("risk", figures.PAGE), ("phase", figures.COLUMN)])
def test_titles_fit_the_figure_at_column_width(
    app_client: Client, store: Store, tmp_path: Path, kind: str, width: float
) -> None:
    sid = _sweep(store, LINKED)
    fig = draw(app_client, _args(sid, kind))
    assert fig.get_figwidth() == pytest.approx(width)
    fig.draw_without_rendering()
    title = fig._suptitle
    assert title is not None and "plateau and crossover" in title.get_text()
    box = title.get_window_extent()
    assert 0 <= box.x0 and box.x1 <= fig.bbox.width, (box, fig.bbox.width)
    out = figures.save(fig, tmp_path / f"{kind}.png")
    with Image.open(out) as png:  # savefig's tight box adds nothing outside the figure
        assert png.width <= math.ceil(width * figures.STYLE["savefig.dpi"]), png.width


def test_risk_against_the_width_has_a_log_axis_ticked_at_the_widths(
    app_client: Client, store: Store
) -> None:
    widths = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32]  # more than 8: still the widths as ticks
    body = {
        "name": "width",
        "model": "quadratic",
        "grid": {"d": [8], "n": [64, 128], "weight_decay": [0.1], "width": widths, "seed": [0, 1]},
    }
    sweep = store.create_sweep(SweepSpec.model_validate(body), max_runs=1000)
    store.record_results(
        [
            (r.id, result(r.config_hash, (1.0 + 0.05 * r.config.seed) * r.config.width**-0.5))
            for r in all_runs(store, sweep.id)
        ]
    )
    fig = draw(app_client, _args(sweep.id, "risk", x="width", by="n"))
    fig.draw_without_rendering()
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlabel() == "$m$ (width)"
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    labels = [t.get_text() for t in ax.get_xticklabels() if lo <= t.get_position()[0] <= hi]
    assert ticks == [float(m) for m in widths], ticks  # the widths themselves, whole numbers
    assert labels == [str(m) for m in widths], labels
    legend = " | ".join(_texts(fig))
    assert "$n$ = 64" in legend and "$n$ = 128" in legend, legend
    # widths are counts: the ticks the locator falls back on are whole numbers only
    locator = figures.ReadableLogLocator(integer=True)
    for ticks in locator.candidates(0.3, 40.0):
        assert ticks and all(t >= 1 and float(t).is_integer() for t in ticks), ticks


def test_the_width_figure_marks_the_best_widths_and_draws_r_against_n(
    app_client: Client, store: Store
) -> None:
    # R = (m - 3)^2 / 100 + 0.3 at n = 64, monotone at n = 128: best widths 3 and the widest
    body = {
        "name": "width",
        "model": "quadratic",
        "grid": {"d": [8], "n": [64, 128], "weight_decay": [0.1], "width": [1, 3, 5, 8],
                 "seed": [0, 1]},
    }  # fmt: skip
    sweep = store.create_sweep(SweepSpec.model_validate(body), max_runs=1000)
    risk = {64: lambda m: (m - 3) ** 2 / 100 + 0.3, 128: lambda m: 0.5 / m}
    runs = all_runs(store, sweep.id)
    values = [risk[r.config.n](r.config.width) * (1 + 0.01 * r.config.seed) for r in runs]
    store.record_results(
        [(r.id, result(r.config_hash, v)) for r, v in zip(runs, values, strict=True)]
    )
    fig = draw(app_client, _args(sweep.id, "width", by="n"))
    fig.draw_without_rendering()
    left, right = fig.axes[:2]
    stars = [ln for ln in left.get_lines() if ln.get_marker() == "*"]
    assert sorted(float(ln.get_xdata()[0]) for ln in stars) == [3.0, 8.0]
    assert left.get_xlabel() == "$m$ (width)" and right.get_xlabel() == "$n$ (samples)"
    legend = " | ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert "$n$ = 64" in legend and "(best 3," in legend and "best width, measured" in legend
    assert legend.index("$n$ = 64") < legend.index("$n$ = 128")  # numeric order, not text
    assert "m = 1" in " | ".join(_texts(fig))
    for ax in (left, right):  # log axes, every drawn value positive, ticks labelled
        assert ax.get_xscale() == ax.get_yscale() == "log"
        assert all(np.all(c > 0) for c in _log_coordinates(ax))
        assert [t.get_text() for t in ax.get_yticklabels() if t.get_text()], ax.get_ylabel()


def test_a_log_axis_shorter_than_two_125_ticks_gets_finer_ones() -> None:
    fig = Figure(figsize=(3.0, 3.0))
    ax = fig.subplots()
    ax.plot([1.0, 2.0], [0.13, 0.45], "o")
    figures._loglog(ax, "n", [1.0, 2.0])
    fig.draw_without_rendering()
    lo, hi = ax.get_ylim()
    shown = [t.get_text() for t in ax.get_yticklabels() if lo <= t.get_position()[1] <= hi]
    assert len(shown) >= 2 and set(shown) <= {"0.15", "0.2", "0.3", "0.4"}, shown


def test_the_width_figure_draws_one_line_per_weight_decay_and_refuses_one_width(
    app_client: Client, store: Store
) -> None:
    body = {
        "name": "two lambdas",
        "model": "quadratic",
        "grid": {"d": [8], "n": [64, 128, 256], "weight_decay": [0.01, 0.1], "width": [2, 8],
                 "seed": [0, 1]},
    }  # fmt: skip
    sid = _sweep(store, body)
    fig = draw(app_client, _args(sid, "width", by="n,weight_decay"))
    right = fig.axes[1]
    # R against n at each width: one dashed line per weight decay, each going up in n (one line
    # through both weight decays would run back from n = 256 to 64)
    dashed = [ln for ln in right.get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 4, len(dashed)  # 2 widths x 2 weight decays
    assert all(np.all(np.diff(ln.get_xdata()) > 0) for ln in dashed)
    one = _sweep(store, {**body, "grid": {**body["grid"], "width": [4]}})
    with pytest.raises(ValueError, match="one width, m = 4"):
        draw(app_client, _args(one, "width"))
