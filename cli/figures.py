"""Paper figures with matplotlib: the dashboard's content, styled for print.

One module draws every figure, for ``scalesweep plot`` and ``scalesweep reproduce``. Each
function takes what the API answers (runs, reports) and returns a matplotlib ``Figure``
(no pyplot, so no global state and no display needed); :func:`save` writes it as PNG, SVG
or PDF from the file's suffix.

Figures are a paper's column wide (:data:`COLUMN` 3.4 in, :data:`PAGE` 7 in, constrained
layout, titles wrapped to fit); legends, axis labels and titles use the display names of
:mod:`service.display` (the dashboard's table: λ, l, |θ|, "power law"); log axes never get a
non-positive value (what is left off is said: a legend entry's count or a note), their ticks
are the grid's own x values or 1-2-5 per decade as plain numbers, a single x gets a range
around it; histogram counts have integer ticks; a legend names only what is drawn.

* :func:`risk_figure`: excess risk against x per group, log-log: single seeds faint, seed
  means with standard-error bars, the fitted form with its exponent band, plateau and
  breaks, and the state-evolution curve dashed;
* :func:`theory_figure`: measured means against the state evolution per group, with the
  ratio measured / predicted below;
* :func:`width_figure`: R against the width per n beside the finite-width state evolution,
  with the best widths marked, and R against n for a few widths;
* :func:`spectrum_figure`: a run's spectrum as a histogram over log bins and as a rank
  plot with the tail fit, the rank fit and the predicted spectrum;
* :func:`phase_figure`: measured (95% interval), SE and heuristic exponents against l;
* :func:`compare_figure`: the seed-mean curves of several sweeps on one plot;
* :func:`tails_figure`: the heavy-tail exponent of the weights against 1 + 1/gamma, and next
  to the excess risk across weight decays and n (the link of tails and generalisation).
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import (
    FixedLocator,
    FuncFormatter,
    Locator,
    MaxNLocator,
    NullFormatter,
)

from service import display
from service.analysis.grouping import group_order
from service.analysis.reports import (
    ExponentReport,
    GroupFit,
    PhaseDiagram,
    PointTheory,
    SpectraSummary,
    TheoryReport,
)
from service.records import RunRecord, SweepRecord
from service.results import Spectrum

T = TypeVar("T")

FORMATS = (".png", ".svg", ".pdf")
KINDS = ("risk", "theory", "spectrum", "phase", "compare", "width")
COLUMN = 3.4
"""Inches: one column of a two-column paper."""
PAGE = 7.0
"""Inches: the full text width (two columns)."""
R_LABEL = display.axis_label("excess_risk", math=True)
STYLE: Any = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "figure.titlesize": 9,
    "legend.fontsize": 7,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "lines.linewidth": 1.4,
    "lines.markersize": 4,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "grid.linewidth": 0.5,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
    "savefig.dpi": 200,
    "pdf.fonttype": 42,  # TrueType in PDFs (editable text, accepted by publishers)
    "svg.fonttype": "none",
}
COLORS = [
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#7f7f7f",
    "#bcbd22",
]


@contextmanager
def paper_style() -> Iterator[None]:
    """The rc settings of every figure here."""
    with rc_context(STYLE):
        yield


def save(fig: Figure, out: Path) -> Path:
    """Write ``fig`` to ``out`` (.png, .svg or .pdf); returns the path."""
    if out.suffix.lower() not in FORMATS:
        raise ValueError(f"--out must end in one of {', '.join(FORMATS)}, got {out.name!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with paper_style():
        fig.savefig(out)
    return out


# --- shared helpers -----------------------------------------------------------------------


def axis_value(run: RunRecord, axis: str) -> float | None:
    """The value of a grid axis for a run (None where it has none)."""
    c = run.config
    values: dict[str, float | None] = {
        "n": c.n,
        "d": c.d,
        "alpha": c.alpha,
        "weight_decay": c.weight_decay,
        "gamma": c.teacher.gamma,
        "noise": c.teacher.noise,
        "rank": c.teacher.rank,
        "seed": c.seed,
        "link_power": c.link_power,
        "width": c.width,
    }
    if axis not in values:
        raise ValueError(f"unknown axis {axis!r}")
    return values[axis]


def usable(run: RunRecord) -> bool:
    """Plotted runs: succeeded, certified, with a positive finite risk."""
    m = run.metrics
    return (
        run.status == "succeeded"
        and m is not None
        and m.converged
        and math.isfinite(m.excess_risk)
        and m.excess_risk > 0
    )


def _key(values: Sequence[float | None]) -> str:
    return json.dumps([None if v is None else float(v) for v in values])


def _in_order(groups: Mapping[str, T]) -> list[tuple[str, T]]:
    """Groups keyed by :func:`_key` in the numeric order of their values (n = 800 before
    1000; a missing value last), not the order of their JSON text."""
    return sorted(groups.items(), key=lambda kv: group_order(json.loads(kv[0])))


def _grouped(
    items: Iterable[T], axes: Sequence[str], value: Callable[[T, str], Any]
) -> list[tuple[str, list[T]]]:
    """``items`` grouped by their ``value`` on ``axes`` (keyed by :func:`_key`), in order."""
    groups: dict[str, list[T]] = defaultdict(list)
    for item in items:
        groups[_key([value(item, a) for a in axes])].append(item)
    return _in_order(groups)


def group_label(group: Mapping[str, float | None]) -> str:
    """``$\\lambda$ = 0.01, $l$ = 0.5`` (or "all runs"): display names, in mathtext."""
    return display.group_label(group, math=True)


def _figure(width: float, height: float) -> Figure:
    """An empty figure with constrained layout (legends and titles stay inside it)."""
    return Figure(figsize=(width, height), layout="constrained")


def _title(fig: Figure, text: str) -> None:
    """A title over the whole figure, wrapped at words until it fits the figure's width."""
    room = 0.96 * fig.bbox.width
    title = fig.suptitle(text)
    chars = len(text)
    while title.get_window_extent().width > room and chars > 12:
        chars = max(12, int(chars * 0.9))
        title.set_text(_wrap(text, chars))


def _positive(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def _log_points(
    points: Iterable[tuple[float | None, float | None]],
) -> tuple[list[tuple[float, float]], int]:
    """The points a log-log axis can show (both coordinates > 0), and how many it cannot."""
    kept: list[tuple[float, float]] = []
    dropped = 0
    for x, y in points:
        if _positive(x) and _positive(y):
            kept.append((float(x), float(y)))  # type: ignore[arg-type]
        else:
            dropped += 1
    return kept, dropped


def _means(points: Sequence[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, seed mean and standard error of y per distinct x."""
    by_x: dict[float, list[float]] = defaultdict(list)
    for x, y in points:
        by_x[x].append(y)
    xs = np.array(sorted(by_x))
    means = np.array([np.mean(by_x[x]) for x in xs])
    se = np.array(
        [np.std(by_x[x], ddof=1) / math.sqrt(len(by_x[x])) if len(by_x[x]) > 1 else 0.0 for x in xs]
    )
    return xs, means, se


def _error_below(means: np.ndarray, se: np.ndarray) -> np.ndarray:
    """Lower error bars that stay above zero on a log axis (at most 95% of the mean down)."""
    below: np.ndarray = np.minimum(se, 0.95 * means)
    return below


def tick_text(v: float) -> str:
    """A log tick as a plain number from 0.001 to 99999 (200, 1600, 0.005), else
    ``2×10⁻⁵`` in mathtext."""
    if 1e-3 <= abs(v) < 1e5:
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
    exp = math.floor(math.log10(abs(v)) + 1e-9)
    mant = round(v / 10**exp, 2)
    power = f"10^{{{exp}}}"
    return f"${power}$" if mant == 1 else f"${mant:g}\\times{power}$"


def _label_chars(v: float) -> int:
    """About how many characters wide :func:`tick_text` of ``v`` is drawn."""
    text = tick_text(v).replace("\\times", "x")
    return len(re.sub(r"[${}^]", "", text))


def _decades(vmin: float, vmax: float, mantissas: Sequence[float], every: int) -> list[float]:
    """mantissa x 10^k for every ``every``-th k from below ``vmin`` to above ``vmax``."""
    lo, hi = math.floor(math.log10(vmin)) - 1, math.ceil(math.log10(vmax)) + 1
    return [m * 10.0**k for k in range(lo, hi + 1) if k % every == 0 for m in mantissas]


FINE_MANTISSAS = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)
"""Ticks per decade of a log axis too short for two of 1-2-5."""


class ReadableLogLocator(Locator):
    """Log ticks whose labels never touch, chosen when the axis is drawn (its length after
    layout, its labels' font): the grid's own values where given (200, 400, 800, 1600),
    else 1-2-5 per decade, 1-3, every decade, every 2nd, 3rd, 5th, 10th decade, and for an
    axis of less than a factor 2.5 :data:`FINE_MANTISSAS`; the first set with two visible
    ticks whose labels fit, else the sparsest."""

    def __init__(self, grid: Sequence[float] | None = None, integer: bool = False) -> None:
        self.grid = [float(v) for v in grid] if grid else None
        self.integer = integer

    def __call__(self) -> Sequence[float]:
        vmin, vmax = self.axis.get_view_interval() if self.axis else (1.0, 10.0)
        return self.tick_values(vmin, vmax)

    def candidates(self, vmin: float, vmax: float) -> list[list[float]]:
        """The tick sets in the order they are tried; the last but one (every 10th decade) is
        the fallback, the last (:data:`FINE_MANTISSAS`) is for an axis shorter than 1-2-5 can
        mark twice (0.13 .. 0.47)."""
        sets = [self.grid] if self.grid else []
        sets += [_decades(vmin, vmax, (1.0, 2.0, 5.0), 1), _decades(vmin, vmax, (1.0, 3.0), 1)]
        sets += [_decades(vmin, vmax, (1.0,), every) for every in (1, 2, 3, 5, 10)]
        sets += [_decades(vmin, vmax, FINE_MANTISSAS, 1)]
        if self.integer:  # counts (widths): whole numbers only
            sets = [[t for t in ts if t >= 1 and float(t).is_integer()] for ts in sets]
        return sets

    def tick_values(self, vmin: float, vmax: float) -> Sequence[float]:
        vmin, vmax = sorted((vmin, vmax))
        if not 0 < vmin < vmax:
            return self.grid or []
        sets = self.candidates(vmin, vmax)
        for ticks in sets:
            if self.fits([t for t in ticks if vmin <= t <= vmax], vmin, vmax):
                return ticks
        return sets[-2]

    def fits(self, ticks: Sequence[float], vmin: float, vmax: float) -> bool:
        """Two ticks or more, neighbouring labels at least 0.8 em apart (across: 1.5 em
        between label centres up an axis)."""
        axis = self.axis
        if len(ticks) < 2:
            return False
        if not isinstance(axis, Axis):
            return True
        axes = axis.axes
        across = axis is axes.xaxis
        length = axes.bbox.width if across else axes.bbox.height
        # pixels per em of the tick labels (get_major_ticks(1) asks no locator)
        em = float(axis.get_major_ticks(1)[0].label1.get_fontsize()) * axes.figure.dpi / 72
        per_decade = length / math.log10(vmax / vmin)
        for a, b in zip(ticks, ticks[1:], strict=False):
            need = 0.3 * em * (_label_chars(a) + _label_chars(b)) + 0.8 * em if across else 1.5 * em
            if math.log10(b / a) * per_decade < need:
                return False
        return True


def _log_ticks(axis: Axis, values: Iterable[float], grid: bool, integer: bool = False) -> None:
    """Ticks on a log axis that read: plain numbers (:func:`tick_text`), never touching
    (:class:`ReadableLogLocator`); with ``grid`` (an x axis of grid values), the values
    themselves where there are 3 to 8 of them at least a factor 1.4 apart. One x value:
    that value, with a range of a factor 1.6 either side (not a decade of empty axis).
    ``integer`` (a count, as the width): the grid's values first whenever their labels fit,
    and only whole numbers as ticks."""
    vals = sorted({float(v) for v in values if _positive(v)})
    if not vals:
        return
    if grid and len(vals) == 1:
        ax = axis.axes
        (ax.set_xlim if axis is ax.xaxis else ax.set_ylim)(vals[0] / 1.6, vals[0] * 1.6)
        axis.set_major_locator(FixedLocator(vals))
    else:
        ratios = [b / a for a, b in zip(vals, vals[1:], strict=False)]
        own = grid and (integer or (3 <= len(vals) <= 8 and min(ratios) >= 1.4))
        axis.set_major_locator(ReadableLogLocator(vals if own else None, integer=integer))
    axis.set_major_formatter(FuncFormatter(lambda v, _: tick_text(v)))
    axis.set_minor_formatter(NullFormatter())


def _wrap(text: str, width: int) -> str:
    """``text`` in lines of about ``width`` characters, broken at spaces outside mathtext
    (a ``$...$`` stays whole)."""
    words: list[str] = []
    for piece in text.split(" "):
        if words and words[-1].count("$") % 2:
            words[-1] += " " + piece  # inside $...$: no break here
        else:
            words.append(piece)
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "\n".join(lines)


def _legend(ax: Axes, outside: bool = True, first: Sequence[str] = (), **kw: Any) -> None:
    """The legend of what is drawn (nothing when nothing is labelled), each group's entries
    together: the measured means ("λ = 0.01", error bars) first, then their fit and state
    evolution ("λ = 0.01: ..."); labels starting with one of ``first`` lead."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    groups = list(dict.fromkeys(label.split(": ")[0] for label in labels))

    def rank(i: int) -> tuple[int, int, int]:
        label = labels[i]
        lead = next((k for k, f in enumerate(first) if label.startswith(f)), len(first))
        measured = ": " not in label or isinstance(handles[i], ErrorbarContainer)
        return lead, groups.index(label.split(": ")[0]), 0 if measured else 1

    order = sorted(range(len(labels)), key=rank)
    hs = [handles[i] for i in order]
    # long labels (sweep names) wrap, so the legend leaves the axes their width
    ls = [_wrap(labels[i], 48) for i in order]
    if outside:
        ax.legend(hs, ls, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False,
                  borderaxespad=0.0)  # fmt: skip
    else:
        ax.legend(hs, ls, frameon=False, **kw)


def _loglog(ax: Axes, x: str, xs: Iterable[float], ylabel: str = R_LABEL) -> None:
    """Log-log axes over what is drawn: ticks at the grid values ``xs`` (x) and over the
    data's extent (y)."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    _log_ticks(ax.xaxis, xs, grid=True, integer=x == "width")
    _log_ticks(ax.yaxis, ax.dataLim.intervaly, grid=False)
    ax.set_xlabel(display.axis_label(x, math=True))
    ax.set_ylabel(ylabel)


def _note(ax: Axes, text: str) -> None:
    """A small note inside the axes, lower left (what a log axis leaves off)."""
    ax.text(0.01, 0.01, text, transform=ax.transAxes, fontsize=6, color="0.35", va="bottom")


def _nothing(ax: Axes, text: str) -> None:
    """An axes with nothing to draw says so, with no empty log axes."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", wrap=True)


def _draw_fit(ax: Axes, fit: GroupFit, color: str, label: str) -> None:
    curve = [p for p in fit.curve if _positive(p.x) and _positive(p.fit)]
    if not curve:
        return
    band = [p for p in curve if _positive(p.lo) and _positive(p.hi)]
    ax.fill_between(
        [p.x for p in band],
        [p.lo for p in band],
        [p.hi for p in band],
        color=color,
        alpha=0.15,
        linewidth=0,
    )
    cx = [p.x for p in curve]
    ci = fit.exponent_ci
    beta = f"$\\beta$ = {fit.exponent:.3g}" + (f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else "")
    form = display.form(fit.form)
    ax.plot(cx, [p.fit for p in curve], color=color, label=f"{label}: {form}, {beta}")
    if fit.plateau and fit.plateau > 0:
        ax.axhline(fit.plateau, color=color, linestyle=":", linewidth=0.9)
    for b in fit.breaks:
        if b > 0:
            ax.axvline(b, color=color, linestyle="-.", linewidth=0.8)


def _se_curve(
    points: Sequence[PointTheory], by: Sequence[str], key: str, x: str
) -> list[tuple[float, float]]:
    out = []
    for p in points:
        if _key([getattr(p, a) for a in by]) != key or not p.predicted:
            continue
        r, xv = p.predicted_risk, getattr(p, x)
        if r is not None and _positive(xv):
            out.append((float(xv), r))
    return sorted(out)


def _groups(runs: Sequence[RunRecord], by: Sequence[str]) -> dict[str, list[RunRecord]]:
    return dict(_grouped((r for r in runs if usable(r)), by, axis_value))


def _risk_points(runs: Iterable[RunRecord], x: str) -> tuple[list[tuple[float, float]], int]:
    """(x, R) of runs with metrics that a log-log axis can show, and how many it cannot."""
    return _log_points((axis_value(r, x), r.metrics.excess_risk) for r in runs if r.metrics)


def _left_off(ax: Axes, dropped: int, x: str) -> None:
    if dropped:
        sym = display.symbol(x, math=True)
        _note(ax, f"{dropped} run{'s' if dropped > 1 else ''} with {sym} ≤ 0 not on the log axis")


# --- figures -------------------------------------------------------------------------------


def risk_figure(
    sweep: SweepRecord,
    runs: Sequence[RunRecord],
    exponents: ExponentReport,
    theory: TheoryReport | None = None,
) -> Figure:
    """R against x per group: seeds, means, fit with band, plateau, breaks, SE dashed."""
    x, by = exponents.x, exponents.by
    fits = {_key([g.group.get(a) for a in by]): g for g in exponents.groups}
    with paper_style():
        fig = _figure(PAGE, 3.2)
        ax = fig.subplots()
        xs_drawn: list[float] = []
        dropped = 0
        for i, (key, members) in enumerate(_groups(runs, by).items()):
            color = COLORS[i % len(COLORS)]
            fit = fits.get(key)
            label = group_label(fit.group if fit else dict(zip(by, json.loads(key), strict=True)))
            pts, off = _risk_points(members, x)
            dropped += off
            if not pts:
                continue
            ax.scatter(
                [p[0] for p in pts], [p[1] for p in pts], s=6, color=color, alpha=0.25, linewidths=0
            )
            xs, means, se = _means(pts)
            xs_drawn += list(xs)
            ax.errorbar(
                xs, means, yerr=[_error_below(means, se), se], fmt="o", color=color, capsize=2,
                label=label,
            )  # fmt: skip
            if fit:
                _draw_fit(ax, fit, color, label)
            if theory is not None:
                se_pts = _se_curve(theory.points, by, key, x)
                if se_pts:  # markers too: a single point is drawn (and so named)
                    ax.plot(
                        *zip(*se_pts, strict=True),
                        "--x",
                        color=color,
                        linewidth=1.0,
                        markersize=4,
                        label=f"{label}: state evolution",
                    )
        title = sweep.name or f"sweep {sweep.id}"
        if not xs_drawn:
            _nothing(ax, "no finished run to plot (none succeeded with a certified minimum)")
        else:
            _loglog(ax, x, xs_drawn)
            _left_off(ax, dropped, x)
            _legend(ax)
        _title(fig, title)
    return fig


def _errorbars(
    ax: Axes,
    pts: Sequence[PointTheory],
    x: str,
    color: str,
    label: str | None = None,
    markersize: float | None = 3,
) -> None:
    """Seed means with standard-error bars (kept above 0) of the points with a positive
    measured mean, against ``x``."""
    meas = [p for p in pts if _positive(p.measured_mean)]
    if meas:
        means = np.array([p.measured_mean for p in meas], dtype=float)
        se = np.array([p.measured_se or 0.0 for p in meas], dtype=float)
        xs = [getattr(p, x) for p in meas]
        ax.errorbar(xs, means, yerr=[_error_below(means, se), se], fmt="o", color=color,
                    capsize=2, markersize=markersize, label=label)  # fmt: skip


def theory_figure(
    sweep: SweepRecord,
    theory: TheoryReport,
    allowance: Callable[[PointTheory], tuple[float, float]] | None = None,
) -> Figure:
    """Measured means with error bars against the SE curve per group; ratio below, with the
    band ``1 - below .. 1 + above`` of ``allowance(point)`` (a verdict's relative allowance)
    where one is given."""
    by, x = theory.by, theory.x
    with paper_style():
        fig = _figure(PAGE, 4.2)
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.3])
        xs_drawn: list[float] = []
        dropped = 0
        for i, (key, pts) in enumerate(_grouped(theory.points, by, getattr)):
            color = COLORS[i % len(COLORS)]
            label = group_label(dict(zip(by, json.loads(key), strict=True)))
            pts = sorted(pts, key=lambda p: float(getattr(p, x)))
            with_runs = [p for p in pts if p.measured_mean is not None]
            meas = [p for p in with_runs if _positive(p.measured_mean) and _positive(getattr(p, x))]
            dropped += len(with_runs) - len(meas)
            if meas:
                xs_drawn += [float(getattr(p, x)) for p in meas]
                _errorbars(top, meas, x, color, label=f"{label}: measured", markersize=None)
            pred = [
                (float(getattr(p, x)), r)
                for p in pts
                if (r := p.predicted_risk) is not None and _positive(getattr(p, x))
            ]
            if pred:
                xs_drawn += [v for v, _ in pred]
                top.plot(
                    *zip(*pred, strict=True), "--x", color=color, markersize=4,
                    label=f"{label}: state evolution",
                )  # fmt: skip
            ratio = [
                (float(getattr(p, x)), float(p.measured_mean or 0.0) / r)
                for p in meas
                if (r := p.predicted_risk) is not None
            ]
            if ratio:
                bottom.plot(*zip(*ratio, strict=True), "o-", color=color, markersize=3)
            if allowance is not None and meas:
                xs = [float(getattr(p, x)) for p in meas]
                tol = np.array([allowance(p) for p in meas])
                bottom.fill_between(
                    xs,
                    1.0 - tol[:, 0],
                    1.0 + tol[:, 1],
                    color=color,
                    alpha=0.12,
                    linewidth=0,
                    label="verdict's allowance" if i == 0 else None,
                )
        title = f"{sweep.name or f'sweep {sweep.id}'}: measurement and state evolution"
        if not xs_drawn:
            _nothing(top, "no grid point with a finished run or a prediction")
            bottom.set_axis_off()
        else:
            _loglog(top, x, xs_drawn)
            top.set_xlabel("")
            _left_off(top, dropped, x)
            _legend(top)
            bottom.axhline(1.0, color="k", linewidth=0.8)
            _legend(bottom, outside=False, fontsize=6, loc="upper right")
            bottom.set_xlabel(display.axis_label(x, math=True))
            bottom.set_ylabel(r"$R / R_{\mathrm{SE}}$")
        _title(fig, title)
    return fig


def _best(
    pts: Sequence[PointTheory], value: Callable[[PointTheory], float | None]
) -> PointTheory | None:
    """The point with the lowest positive ``value`` (the best width of a curve)."""
    scored = [(v, p) for p in pts if (v := value(p)) is not None and v > 0]
    return min(scored, key=lambda vp: vp[0])[1] if scored else None


WIDTH_LINES = 4
""":func:`width_figure`: at most this many widths drawn against n."""


def width_figure(
    sweep: SweepRecord,
    theory: TheoryReport,
    allowance: Callable[[PointTheory], tuple[float, float]] | None = None,
) -> Figure:
    """Left: R against the width per group of the other axes (n): measured means with error
    bars, the finite-width state evolution dashed (with the verdict's allowance shaded above
    it), the measured best width as a star and the SE's as an open circle. Right: R against
    n for a few widths (the narrowest, the best ones, the widest): where narrow networks win
    and from which n the full width does. ``theory`` is the sweep's answer with ``x =
    width``."""
    by = [a for a in theory.by if a != "width"]
    with_width = [p for p in theory.points if p.width is not None]
    distinct = sorted({p.width for p in theory.points if p.width is not None})
    if len(distinct) < 2:
        has = f"one width, m = {distinct[0]}" if distinct else "no width"
        raise ValueError(
            f"sweep {sweep.id} has {has}: the width figure needs a sweep over at least two "
            "widths (grid.width)"
        )
    with paper_style():
        fig = _figure(PAGE, 3.6)
        left, right = fig.subplots(1, 2, width_ratios=[1.35, 1])
        widths: set[int] = set()
        chosen: set[int] = set()
        handles: list[Any] = []
        for i, (key, pts) in enumerate(_grouped(with_width, by, getattr)):
            color = COLORS[i % len(COLORS)]
            label = group_label(dict(zip(by, json.loads(key), strict=True)))
            pts = sorted(pts, key=lambda p: int(p.width or 0))
            widths |= {int(p.width or 0) for p in pts}
            _errorbars(left, pts, "width", color)
            pred = [(float(p.width or 0), r, p) for p in pts if (r := p.predicted_risk) is not None]
            if pred:
                left.plot([w for w, _, _ in pred], [r for _, r, _ in pred], "--", color=color,
                          linewidth=1.0)  # fmt: skip
                if allowance is not None:
                    left.fill_between([w for w, _, _ in pred], [r for _, r, _ in pred],
                                      [r * (1.0 + allowance(p)[1]) for _, r, p in pred],
                                      color=color, alpha=0.10, linewidth=0)  # fmt: skip
            best = _best(pts, lambda p: p.measured_mean)
            se_best = _best(pts, lambda p: p.predicted_risk)
            marks = []
            if best is not None:
                left.plot([best.width], [best.measured_mean], "*", color=color, markersize=11,
                          markeredgecolor="k", markeredgewidth=0.5)  # fmt: skip
                chosen.add(int(best.width or 0))
                marks.append(f"best {best.width}")
            if se_best is not None:
                left.plot([se_best.width], [se_best.predicted_risk], "o", markersize=10,
                          markerfacecolor="none", markeredgecolor=color)  # fmt: skip
                chosen.add(int(se_best.width or 0))
                marks.append(f"SE {se_best.width}")
            text = f"{label} ({', '.join(marks)})" if marks else label
            handles.append(Line2D([], [], color=color, marker="o", markersize=3, label=text))
        if not widths:
            _nothing(left, "no grid point with a width")
            right.set_axis_off()
        else:
            _loglog(left, "width", sorted(widths))
            handles += [
                Line2D([], [], color="0.3", marker="o", linestyle="none", markersize=3,
                       label="measured (seed mean ± s.e.)"),
                Line2D([], [], color="0.3", linestyle="--", label="state evolution (width m)"),
                Line2D([], [], color="0.3", marker="*", linestyle="none", markersize=9,
                       markeredgecolor="k", markeredgewidth=0.5, label="best width, measured"),
                Line2D([], [], color="0.3", marker="o", linestyle="none", markersize=8,
                       markerfacecolor="none", label="best width, state evolution"),
            ]  # fmt: skip
            if allowance is not None:
                handles.append(Patch(color="0.3", alpha=0.15, label="verdict's allowance"))
            fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False,
                       fontsize=6)  # fmt: skip
            _width_lines(right, theory, sorted({min(widths), max(widths), *chosen}))
        _title(fig, f"{sweep.name or f'sweep {sweep.id}'}: excess risk against the width")
    return fig


def _width_lines(ax: Axes, theory: TheoryReport, widths: Sequence[int]) -> None:
    """R against n at a few ``widths`` (at most :data:`WIDTH_LINES`: the first, the last and
    those between in order), measured and predicted."""
    if len(widths) > WIDTH_LINES:
        widths = [widths[0], *widths[1:-1][: WIDTH_LINES - 2], widths[-1]]
    rest = [a for a in theory.by if a not in ("n", "width")]  # one line per their values
    ns: set[float] = set()
    for j, m in enumerate(widths):
        color = COLORS[(j + 3) % len(COLORS)]
        for _, pts in _grouped((p for p in theory.points if p.width == m), rest, getattr):
            at = sorted(pts, key=lambda p: p.n)
            ns |= {float(p.n) for p in at}
            _errorbars(ax, at, "n", color)
            pred = [(float(p.n), r) for p in at if (r := p.predicted_risk) is not None]
            if pred:
                ax.plot(*zip(*pred, strict=True), "--", color=color, linewidth=1.0)
        ax.plot([], [], color=color, marker="o", markersize=3, label=f"m = {m}")
    if not ns:
        _nothing(ax, "no width with runs")
        return
    ax.set_xscale("log")
    ax.set_yscale("log")
    _log_ticks(ax.xaxis, ns, grid=True, integer=True)
    _log_ticks(ax.yaxis, ax.dataLim.intervaly, grid=False)
    ax.set_xlabel(display.axis_label("n", math=True))
    ax.set_ylabel(R_LABEL)
    ax.legend(frameon=False, fontsize=6, loc="best")


def _spectrum_fits(ax: Axes, s: Spectrum, top: float) -> None:
    """The tail fit (over the measured values only: up to ``top``) and the rank fit of a
    spectrum on its rank plot."""
    if s.tail_fit is not None:
        tf = s.tail_fit
        rs = np.arange(1, tf.n_tail + 1)
        tail = tf.xmin * (rs / tf.n_tail) ** (-1.0 / (tf.alpha - 1.0))
        keep = (tail <= top) & (tail > 0)
        lo, hi = tf.alpha_ci
        if keep.any():
            ax.plot(rs[keep], tail[keep], color=COLORS[2],
                    label=f"tail fit $\\alpha$ = {tf.alpha:.3g} [{lo:.3g}, {hi:.3g}]")  # fmt: skip
    if s.rank_fit is not None and s.rank_fit.prefactor > 0:
        rf = s.rank_fit
        rs = np.array([1.0, float(rf.n_points)])
        ax.plot(rs, rf.prefactor * rs ** (-rf.exponent), ":", color=COLORS[3],
                label=f"rank fit exponent {rf.exponent:.3g}")  # fmt: skip


def spectrum_figure(run: RunRecord, spectra: Sequence[Spectrum], theory: Any = None) -> Figure:
    """Histogram over log bins and rank plot of the first spectrum, with fits and theory."""
    if not spectra:
        raise ValueError(f"run {run.id} has no stored spectrum")
    s = spectra[0]
    values = np.asarray(s.values, dtype=float)
    # the certified minimum's zeros (and values within the certificate's resolution of zero)
    # have no place on a log axis: left off, and the legend says how many
    floor = max(1e-8 * float(values.max()) if values.size else 0.0, s.resolution or 0.0)
    pos = np.sort(values[values > floor])[::-1]
    if pos.size == 0:
        raise ValueError(
            f"run {run.id}: the spectrum has no value above the certificate's resolution"
        )
    name = display.symbol(s.kind, math=True)
    measured = f"{name} measured" + (
        f" ({pos.size} of {values.size} > 0)" if pos.size < values.size else ""
    )
    predicted = None
    predicted_label = "predicted"
    if theory is not None and getattr(theory, "predicted_values", None):
        pv = np.asarray(theory.predicted_values, dtype=float)
        predicted = np.sort(pv[pv > floor])[::-1]
        if predicted.size < pv.size:
            predicted_label = f"predicted ({predicted.size} of {pv.size} > 0)"
        if predicted.size == 0:
            predicted = None
    with paper_style():
        fig = _figure(PAGE, 2.9)
        hist, rank = fig.subplots(1, 2)
        both = pos if predicted is None else np.concatenate([pos, predicted])
        bins = np.geomspace(
            both.min(), both.max() * (1 + 1e-9), min(40, 2 * int(np.sqrt(pos.size)) + 5)
        )
        hist.hist(pos, bins=bins, color=COLORS[0], alpha=0.7, label=measured)
        if predicted is not None:
            hist.hist(
                predicted,
                bins=bins,
                histtype="step",
                color=COLORS[1],
                linestyle="--",
                label=predicted_label,
            )
        hist.set_xscale("log")
        _log_ticks(hist.xaxis, both, grid=False)
        hist.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: 1, 2, never 1.5
        hist.set_xlabel(display.axis_label(s.kind, math=True))
        hist.set_ylabel("count")
        _legend(hist, outside=False, loc="upper left")
        ranks = np.arange(1, pos.size + 1)
        rank.plot(ranks, pos, "o", markersize=2.5, color=COLORS[0], label=measured)
        if predicted is not None:
            rank.plot(
                np.arange(1, predicted.size + 1),
                predicted,
                "--",
                color=COLORS[1],
                label=predicted_label,
            )
        _spectrum_fits(rank, s, float(pos[0]))
        rank.set_xscale("log")
        rank.set_yscale("log")
        _log_ticks(
            rank.xaxis,
            [1.0, float(max(pos.size, 1 if predicted is None else predicted.size))],
            grid=False,
        )
        _log_ticks(rank.yaxis, rank.dataLim.intervaly, grid=False)
        rank.set_xlabel("rank")
        rank.set_ylabel(display.axis_label(s.kind, math=True))
        _legend(rank, outside=False)
        c = run.config
        point = {"d": float(c.d), "n": float(c.n), "weight_decay": c.weight_decay}
        _title(fig, f"run {run.id}: {c.model}, {group_label(point)}")
    return fig


def phase_figure(sweep: SweepRecord, phase: PhaseDiagram, allowance: float = 0.0) -> Figure:
    """Measured (95% interval), SE and heuristic exponents against l; with ``allowance``
    (a verdict's), the interval widened by it is drawn too, lighter."""
    fams = sorted(phase.families, key=lambda f: f.decay)
    with paper_style():
        fig = _figure(COLUMN, 3.0)
        ax = fig.subplots()
        meas = [f for f in fams if f.measured_exponent is not None]
        if meas:
            y = np.array([f.measured_exponent for f in meas], dtype=float)
            ci = [f.measured_ci or (v, v) for f, v in zip(meas, y, strict=True)]
            lo, hi = np.array([c[0] for c in ci]), np.array([c[1] for c in ci])
            if allowance > 0:
                ax.errorbar(
                    [f.decay for f in meas],
                    y,
                    yerr=[y - lo + allowance, hi - y + allowance],
                    fmt="none",
                    capsize=5,
                    elinewidth=4,
                    alpha=0.25,
                    color=COLORS[0],
                    label=f"widened by the verdict's allowance {allowance:g}",
                )
            ax.errorbar(
                [f.decay for f in meas],
                y,
                yerr=[y - lo, hi - y],
                fmt="o",
                capsize=3,
                color=COLORS[0],
                label="measured (95% interval)",
            )
        for attr, style, color, label in (
            ("se_exponent", "--x", COLORS[1], "state evolution"),
            ("heuristic_exponent", ":", COLORS[2], "heuristic (asymptotic)"),
        ):
            pts = [(f.decay, getattr(f, attr)) for f in fams if getattr(f, attr) is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), style, color=color, label=label)
        along = f"{display.symbol(phase.x)}⁻"  # λ ∝ n⁻ˡ, R ∝ n⁻ᵝ: the path's own x
        ax.set_xlabel(display.axis_label("decay", math=True).replace("x⁻", along))
        ax.set_ylabel(display.axis_label("exponent", math=True).replace("x⁻", along))
        _legend(ax, outside=False, first=("measured", "widened"), fontsize=6)
        _title(fig, f"{sweep.name or f'sweep {sweep.id}'} ({sweep.spec.model})")
    return fig


def compare_figure(
    items: Sequence[tuple[SweepRecord, Sequence[RunRecord], ExponentReport]],
) -> Figure:
    """The seed means and fitted curves of several sweeps on one log-log plot."""
    with paper_style():
        fig = _figure(PAGE, 3.2)
        ax = fig.subplots()
        color = 0
        x = items[0][2].x if items else "n"
        xs_drawn: list[float] = []
        dropped = 0
        for sweep, runs, exponents in items:
            by = exponents.by
            members = _groups(runs, by)
            for g in exponents.groups:
                group_runs = members.get(_key([g.group.get(a) for a in by]))
                if not group_runs:
                    continue
                pts, off = _risk_points(group_runs, x)
                dropped += off
                if not pts:
                    continue
                c = COLORS[color % len(COLORS)]
                color += 1
                label = f"{sweep.name or f'sweep {sweep.id}'}: {group_label(g.group)}"
                xs, means, se = _means(pts)
                xs_drawn += list(xs)
                ax.errorbar(
                    xs, means, yerr=[_error_below(means, se), se], fmt="o", color=c, capsize=2,
                    label=label,
                )  # fmt: skip
                curve = [p for p in g.curve if _positive(p.x) and _positive(p.fit)]
                if curve:
                    ax.plot([p.x for p in curve], [p.fit for p in curve], color=c)
        if not xs_drawn:
            _nothing(ax, "no finished run to plot in these sweeps")
        else:
            _loglog(ax, x, xs_drawn)
            _left_off(ax, dropped, x)
            _legend(ax)
        names = ", ".join(sw.name or f"sweep {sw.id}" for sw, _, _ in items)
        _title(fig, f"compared: {names}")
    return fig


def tails_figure(sweep: SweepRecord, summary: SpectraSummary) -> Figure:
    """Left: measured tail exponent against the predicted 1 + 1/gamma per grid point.
    Right: tail exponent against the excess risk, one colour per gamma."""
    pts = [p for p in summary.points if p.tail_alpha_mean is not None]
    gamma = display.symbol("gamma", math=True)
    with paper_style():
        fig = _figure(PAGE, 2.9)
        left, right = fig.subplots(1, 2)
        gammas = sorted({p.gamma for p in pts})
        dropped = 0
        for i, g in enumerate(gammas):
            color = COLORS[i % len(COLORS)]
            mine = [p for p in pts if p.gamma == g]
            left.errorbar(
                [p.predicted_alpha_ww for p in mine],
                [float(p.tail_alpha_mean or 0.0) for p in mine],
                yerr=[p.tail_alpha_se or 0.0 for p in mine],
                fmt="o",
                color=color,
                capsize=2,
                label=f"{gamma} = {display.number(g)}",
            )
            risk = [p for p in mine if _positive(p.excess_risk_mean)]
            dropped += len(mine) - len(risk)
            if risk:
                right.scatter(
                    [float(p.excess_risk_mean or 0.0) for p in risk],
                    [float(p.tail_alpha_mean or 0.0) for p in risk],
                    color=color,
                    s=14,
                    label=f"{gamma} = {display.number(g)}",
                )
        if pts:
            vals = [v for p in pts for v in (p.predicted_alpha_ww, p.tail_alpha_mean) if v]
            lo, hi = min(vals), max(vals)
            left.plot([lo, hi], [lo, hi], "k:", linewidth=0.8, label=f"measured = 1 + 1/{gamma}")
        else:
            _nothing(left, "no grid point has a tail fit")
        left.set_xlabel(f"predicted 1 + 1/{gamma}")
        left.set_ylabel(r"measured tail exponent $\alpha$")
        _legend(left, outside=False)
        if any(_positive(p.excess_risk_mean) for p in pts):
            right.set_xscale("log")
            _log_ticks(right.xaxis, right.dataLim.intervalx, grid=False)
            if dropped:
                _note(right, f"{dropped} point{'s' if dropped > 1 else ''} with $R$ ≤ 0 left off")
        else:
            _nothing(right, "no grid point with a positive excess risk and a tail fit")
        right.set_xlabel(R_LABEL)
        right.set_ylabel(r"tail exponent $\alpha$")
        _legend(right, outside=False)
        _title(fig, sweep.name or f"sweep {sweep.id}")
    return fig
