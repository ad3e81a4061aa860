"""Paper figures with matplotlib: the dashboard's content, styled for print.

One module draws every figure, for ``scalesweep plot`` and ``scalesweep reproduce``. Each
function takes what the API answers (runs, reports) and returns a matplotlib ``Figure``
(no pyplot, so no global state and no display needed); :func:`save` writes it as PNG, SVG
or PDF from the file's suffix.

* :func:`risk_figure`: excess risk against x per group, log-log: single seeds faint, seed
  means with standard-error bars, the fitted form with its exponent band, plateau and
  breaks, and the state-evolution curve dashed;
* :func:`theory_figure`: measured means against the state evolution per group, with the
  ratio measured / predicted below;
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
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

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

FORMATS = (".png", ".svg", ".pdf")
KINDS = ("risk", "theory", "spectrum", "phase", "compare")
AXIS_LABEL = {
    "n": r"$n$ (samples)",
    "alpha": r"$\alpha = n/d^2$ (quadratic), $n/d$ (diagonal)",
    "d": r"$d$",
    "weight_decay": r"weight decay $\lambda$",
    "gamma": r"$\gamma$",
    "noise": r"noise $\Delta$",
}
STYLE: Any = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
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


def group_label(group: dict[str, float | None]) -> str:
    """``weight_decay=0.01, d=50`` (or "all runs")."""
    if not group:
        return "all runs"
    return ", ".join(f"{k}={_fmt(v)}" for k, v in group.items())


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}"


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


def _plain_log_ticks(ax: Axes) -> None:
    """x ticks at 1, 2, 5 x 10^k labelled as plain numbers: a grid over less than a few
    decades (n, alpha) reads better than 2 x 10^-1, and minor labels never overlap."""
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _legend_outside(ax: Axes) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, borderaxespad=0.0)


def _loglog(ax: Axes, x: str, ylabel: str = r"excess risk $R$") -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_ticks(ax)
    ax.set_xlabel(AXIS_LABEL.get(x, x))
    ax.set_ylabel(ylabel)


def _draw_fit(ax: Axes, fit: GroupFit, color: str, label: str) -> None:
    if not fit.curve:
        return
    cx = [p.x for p in fit.curve]
    ax.fill_between(
        cx,
        [p.lo for p in fit.curve],
        [p.hi for p in fit.curve],
        color=color,
        alpha=0.15,
        linewidth=0,
    )
    ci = fit.exponent_ci
    beta = f"$\\beta$={fit.exponent:.3g}" + (f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else "")
    ax.plot(cx, [p.fit for p in fit.curve], color=color, label=f"{label}: {fit.form}, {beta}")
    if fit.plateau:
        ax.axhline(fit.plateau, color=color, linestyle=":", linewidth=0.9)
    for b in fit.breaks:
        ax.axvline(b, color=color, linestyle="-.", linewidth=0.8)


def _predicted_r(p: PointTheory) -> float | None:
    """The SE excess risk of a grid point (None without a positive prediction)."""
    r = p.predicted.get("excess_risk") if p.predicted else None
    return r if isinstance(r, float) and r > 0 else None


def _points(runs: Sequence[RunRecord], x: str) -> list[tuple[float, float]]:
    """(x, R) of runs with metrics."""
    return [(float(axis_value(r, x) or 0.0), r.metrics.excess_risk) for r in runs if r.metrics]


def _se_curve(
    points: Sequence[PointTheory], by: Sequence[str], key: str, x: str
) -> list[tuple[float, float]]:
    out = []
    for p in points:
        if _key([getattr(p, a) for a in by]) != key or not p.predicted:
            continue
        r, xv = _predicted_r(p), getattr(p, x)
        if r is not None and xv:
            out.append((float(xv), r))
    return sorted(out)


def _groups(runs: Sequence[RunRecord], by: Sequence[str]) -> dict[str, list[RunRecord]]:
    groups: dict[str, list[RunRecord]] = defaultdict(list)
    for r in runs:
        if usable(r):
            groups[_key([axis_value(r, a) for a in by])].append(r)
    return dict(sorted(groups.items()))


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
        fig = Figure(figsize=(5.0, 3.6))
        ax = fig.subplots()
        for i, (key, members) in enumerate(_groups(runs, by).items()):
            color = COLORS[i % len(COLORS)]
            fit = fits.get(key)
            label = group_label(fit.group if fit else dict(zip(by, json.loads(key), strict=True)))
            pts = [
                (float(axis_value(r, x) or 0), r.metrics.excess_risk) for r in members if r.metrics
            ]
            ax.scatter(
                [p[0] for p in pts], [p[1] for p in pts], s=6, color=color, alpha=0.25, linewidths=0
            )
            xs, means, se = _means(pts)
            ax.errorbar(xs, means, yerr=se, fmt="o", color=color, capsize=2, label=label)
            if fit:
                _draw_fit(ax, fit, color, label)
            if theory is not None:
                se_pts = _se_curve(theory.points, by, key, x)
                if se_pts:
                    ax.plot(
                        *zip(*se_pts, strict=True),
                        color=color,
                        linestyle="--",
                        linewidth=1.0,
                        label=f"{label}: state evolution",
                    )
        _loglog(ax, x)
        ax.set_title(sweep.name or f"sweep {sweep.id}")
        _legend_outside(ax)
    return fig


def theory_figure(
    sweep: SweepRecord,
    theory: TheoryReport,
    allowance: Callable[[PointTheory], tuple[float, float]] | None = None,
) -> Figure:
    """Measured means with error bars against the SE curve per group; ratio below, with the
    band ``1 - below .. 1 + above`` of ``allowance(point)`` (a verdict's relative allowance)
    where one is given."""
    by, x = theory.by, theory.x
    groups: dict[str, list[PointTheory]] = defaultdict(list)
    for p in theory.points:
        groups[_key([getattr(p, a) for a in by])].append(p)
    with paper_style():
        fig = Figure(figsize=(5.0, 4.6))
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.3])
        for i, (key, pts) in enumerate(sorted(groups.items())):
            color = COLORS[i % len(COLORS)]
            label = group_label(dict(zip(by, json.loads(key), strict=True)))
            pts = sorted(pts, key=lambda p: float(getattr(p, x)))
            meas = [p for p in pts if p.measured_mean and p.measured_mean > 0]
            top.errorbar(
                [getattr(p, x) for p in meas],
                [p.measured_mean for p in meas],
                yerr=[p.measured_se or 0.0 for p in meas],
                fmt="o",
                color=color,
                capsize=2,
                label=f"{label}: measured",
            )
            pred = [(float(getattr(p, x)), r) for p in pts if (r := _predicted_r(p)) is not None]
            if pred:
                top.plot(
                    *zip(*pred, strict=True), "--", color=color, label=f"{label}: state evolution"
                )
            ratio = [
                (float(getattr(p, x)), float(p.measured_mean or 0.0) / r)
                for p in meas
                if (r := _predicted_r(p)) is not None
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
        _loglog(top, x)
        top.set_xlabel("")
        top.set_title(f"{sweep.name or f'sweep {sweep.id}'}: measurement and state evolution")
        _legend_outside(top)
        bottom.set_xscale("log")
        _plain_log_ticks(bottom)
        bottom.axhline(1.0, color="k", linewidth=0.8)
        if allowance is not None:
            bottom.legend(frameon=False, fontsize=6, loc="upper right")
        bottom.set_xlabel(AXIS_LABEL.get(x, x))
        bottom.set_ylabel(r"$R / R_{\mathrm{SE}}$")
    return fig


def spectrum_figure(run: RunRecord, spectra: Sequence[Spectrum], theory: Any = None) -> Figure:
    """Histogram over log bins and rank plot of the first spectrum, with fits and theory."""
    if not spectra:
        raise ValueError(f"run {run.id} has no stored spectrum")
    s = spectra[0]
    values = np.asarray(s.values, dtype=float)
    # the certified minimum's zeros (and values within the certificate's resolution of zero)
    # have no place on a log axis
    floor = max(1e-8 * float(values.max()) if values.size else 0.0, s.resolution or 0.0)
    pos = np.sort(values[values > floor])[::-1]
    if pos.size == 0:
        raise ValueError(
            f"run {run.id}: the spectrum has no value above the certificate's resolution"
        )
    predicted = None
    if theory is not None and getattr(theory, "predicted_values", None):
        pv = np.asarray(theory.predicted_values, dtype=float)
        predicted = np.sort(pv[pv > floor])[::-1]
    with paper_style():
        fig = Figure(figsize=(7.0, 3.0))
        hist, rank = fig.subplots(1, 2)
        both = pos if predicted is None else np.concatenate([pos, predicted])
        bins = np.geomspace(
            both.min(), both.max() * (1 + 1e-9), min(40, 2 * int(np.sqrt(pos.size)) + 5)
        )
        hist.hist(pos, bins=bins, color=COLORS[0], alpha=0.7, label=f"{s.kind} (measured)")
        if predicted is not None:
            hist.hist(
                predicted,
                bins=bins,
                histtype="step",
                color=COLORS[1],
                linestyle="--",
                label="predicted",
            )
        hist.set_xscale("log")
        hist.set_xlabel(f"{s.kind} value")
        hist.set_ylabel("count")
        hist.legend(frameon=False)
        ranks = np.arange(1, pos.size + 1)
        rank.plot(ranks, pos, "o", markersize=2.5, color=COLORS[0], label=f"{s.kind} (measured)")
        if predicted is not None:
            rank.plot(
                np.arange(1, predicted.size + 1),
                predicted,
                "--",
                color=COLORS[1],
                label="predicted",
            )
        if s.tail_fit is not None:
            tf = s.tail_fit
            rs = np.arange(1, tf.n_tail + 1)
            tail = tf.xmin * (rs / tf.n_tail) ** (-1.0 / (tf.alpha - 1.0))
            keep = tail <= pos[0]  # the fitted law over the measured values only
            lo, hi = tf.alpha_ci
            rank.plot(
                rs[keep],
                tail[keep],
                color=COLORS[2],
                label=f"tail fit $\\alpha$={tf.alpha:.3g} [{lo:.3g}, {hi:.3g}]",
            )
        if s.rank_fit is not None:
            rf = s.rank_fit
            rs = np.array([1.0, float(rf.n_points)])
            rank.plot(
                rs,
                rf.prefactor * rs ** (-rf.exponent),
                ":",
                color=COLORS[3],
                label=f"rank fit exponent {rf.exponent:.3g}",
            )
        rank.set_xscale("log")
        rank.set_yscale("log")
        rank.set_xlabel("rank")
        rank.set_ylabel(f"{s.kind} value")
        rank.legend(frameon=False)
        c = run.config
        fig.suptitle(
            f"run {run.id}: {c.model}, d={c.d}, n={c.n}, $\\lambda$={c.weight_decay:.3g}",
            fontsize=9,
        )
    return fig


def phase_figure(sweep: SweepRecord, phase: PhaseDiagram, allowance: float = 0.0) -> Figure:
    """Measured (95% interval), SE and heuristic exponents against l; with ``allowance``
    (a verdict's), the interval widened by it is drawn too, lighter."""
    fams = sorted(phase.families, key=lambda f: f.decay)
    with paper_style():
        fig = Figure(figsize=(4.2, 3.2))
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
        ax.set_xlabel(
            r"$l$ in $\lambda = \lambda_0\,%s^{-l}$" % ("n" if phase.x == "n" else r"\alpha")
        )
        ax.set_ylabel("exponent of $R$")
        ax.set_title(f"{sweep.name or f'sweep {sweep.id}'} ({sweep.spec.model})")
        ax.legend(frameon=False)
    return fig


def compare_figure(
    items: Sequence[tuple[SweepRecord, Sequence[RunRecord], ExponentReport]],
) -> Figure:
    """The seed means and fitted curves of several sweeps on one log-log plot."""
    with paper_style():
        fig = Figure(figsize=(5.0, 3.6))
        ax = fig.subplots()
        color = 0
        x = items[0][2].x if items else "n"
        for sweep, runs, exponents in items:
            by = exponents.by
            members = _groups(runs, by)
            for g in exponents.groups:
                group_runs = members.get(_key([g.group.get(a) for a in by]))
                if not group_runs:
                    continue
                c = COLORS[color % len(COLORS)]
                color += 1
                label = f"{sweep.name or f'sweep {sweep.id}'}: {group_label(g.group)}"
                pts = [
                    (float(axis_value(r, x) or 0), r.metrics.excess_risk)
                    for r in group_runs
                    if r.metrics
                ]
                xs, means, se = _means(pts)
                ax.errorbar(xs, means, yerr=se, fmt="o", color=c, capsize=2, label=label)
                if g.curve:
                    ax.plot([p.x for p in g.curve], [p.fit for p in g.curve], color=c)
        _loglog(ax, x)
        _legend_outside(ax)
    return fig


def tails_figure(sweep: SweepRecord, summary: SpectraSummary) -> Figure:
    """Left: measured tail exponent against the predicted 1 + 1/gamma per grid point.
    Right: tail exponent against the excess risk, one colour per gamma."""
    pts = [p for p in summary.points if p.tail_alpha_mean is not None]
    with paper_style():
        fig = Figure(figsize=(7.0, 3.0))
        left, right = fig.subplots(1, 2)
        gammas = sorted({p.gamma for p in pts})
        for i, gamma in enumerate(gammas):
            color = COLORS[i % len(COLORS)]
            mine = [p for p in pts if p.gamma == gamma]
            left.errorbar(
                [p.predicted_alpha_ww for p in mine],
                [float(p.tail_alpha_mean or 0.0) for p in mine],
                yerr=[p.tail_alpha_se or 0.0 for p in mine],
                fmt="o",
                color=color,
                capsize=2,
                label=f"$\\gamma$={gamma:g}",
            )
            risk = [p for p in mine if p.excess_risk_mean]
            right.scatter(
                [float(p.excess_risk_mean or 0.0) for p in risk],
                [float(p.tail_alpha_mean or 0.0) for p in risk],
                color=color,
                s=14,
                label=f"$\\gamma$={gamma:g}",
            )
        if pts:
            vals = [v for p in pts for v in (p.predicted_alpha_ww, p.tail_alpha_mean) if v]
            lo, hi = min(vals), max(vals)
            left.plot([lo, hi], [lo, hi], "k:", linewidth=0.8, label="measured = 1 + 1/$\\gamma$")
        left.set_xlabel(r"predicted $1 + 1/\gamma$")
        left.set_ylabel(r"measured tail exponent $\alpha$")
        left.legend(frameon=False)
        right.set_xscale("log")
        right.set_xlabel(r"excess risk $R$")
        right.set_ylabel(r"tail exponent $\alpha$")
        right.legend(frameon=False)
        fig.suptitle(sweep.name or f"sweep {sweep.id}", fontsize=9)
    return fig
