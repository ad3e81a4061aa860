"""The verdict of an example: does the measurement agree with the state evolution?

Computed from the answers the API gives (phase diagram, exponents, theory, spectra
summary) by the rule of the example (``service.examples.VerdictRule``). Each group gets the
measured exponent with its 95% interval, the SE exponent (same form, same window), the
heuristic exponent where the phase diagram has one, and ``agrees`` with the reason. A group
the example lists under ``expect_disagree`` keeps its measured answer but does not count
against the example: its ``why`` says what THEORY.md expects instead (a finite window, the
finite-d correction). ``agrees`` of the example: every other group agrees.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from service.analysis.grouping import mean_se
from service.analysis.reports import (
    PhaseDiagram,
    PointTheory,
    Report,
    SpectraSummary,
    SpectrumTheory,
    TheoryReport,
)
from service.examples import Example, VerdictRule
from service.records import RunRecord
from service.results import Spectrum
from service.spec import RunConfig
from service.theory.finite_size import (
    FINITE_SIZE_SOURCE,
    NOISE_FITTING_DF,
    SPECTRUM_SOURCE,
    SPIKE_PER_D,
    SUPPORT_ALLOWANCE,
    WIDTH_MEASURED_D,
    WIDTH_SOURCE,
    finite_size_excess,
    in_noise_fitting,
    width_rule_measured,
)

Z95 = 1.96
"""The two-sided 95% quantile of the normal distribution."""
SE_OF_MEAN = 3.0
"""``curve``: a grid point agrees within this many standard errors of its seed mean."""


class GroupVerdict(Report):
    """One group of one sweep."""

    sweep_id: int
    group: str
    measured_exponent: float | None
    ci: tuple[float, float] | None
    se_exponent: float | None
    heuristic_exponent: float | None = None
    form: str | None
    agrees: bool
    """Agreement with the allowance (``allowance``, ``allowance_source``)."""
    raw_agrees: bool = False
    """Agreement without any allowance: the state-evolution exponent inside the measured 95%
    interval; every grid point within three standard errors of its seed mean; a spectrum
    within its seeds' scatter."""
    allowance: float = 0.0
    """What was added to the measurement's own uncertainty (absolute on an exponent,
    relative on a risk or a spectrum; for a curve the largest over its grid points)."""
    allowance_source: str = ""
    """Where the allowance comes from (the example's reason; a measured finite-size rule)."""
    expected: bool = True
    """False for a group THEORY.md does not expect to agree at this size."""
    why: str


class Verdict(Report):
    """What ``scalesweep reproduce`` writes to verdict.json."""

    example: str
    scale: str
    sweep_ids: list[int]
    agrees: bool
    raw_agrees: int = 0
    """Expected groups that agree without any allowance (of ``n_expected``)."""
    n_expected: int = 0
    groups: list[GroupVerdict]


def _label(group: dict[str, float | None]) -> str:
    return (
        ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in group.items())
        or "all"
    )


def grid_point(cfg: RunConfig) -> tuple[int, int, float, float, float]:
    """What runs share when they differ only by seed: (d, n, weight decay, gamma, noise)."""
    return (cfg.d, cfg.n, cfg.weight_decay, cfg.teacher.gamma, cfg.teacher.noise)


def allowance_at(
    rule: VerdictRule, model: str, d: int, n: int, width: int | None = None
) -> tuple[float, float]:
    """The relative allowance on R at (d, n) and width m, below and above: the rule's on both
    sides, plus above (an excess, as measured) the finite-size excess of the network's data
    (:mod:`service.theory.finite_size`) with ``finite_d``."""
    excess = finite_size_excess(model, d, n, width) if rule.finite_d else 0.0
    return rule.allowance, rule.allowance + excess


def _source(rule: VerdictRule) -> str:
    """What the allowance of ``rule`` is made of, with its reasons."""
    parts = []
    if rule.allowance:
        parts.append(f"{rule.allowance:g} ({rule.allowance_why or 'the example allowance'})")
    if rule.finite_d:
        parts.append(SPECTRUM_SOURCE if rule.kind == "spectrum" else FINITE_SIZE_SOURCE)
        if rule.kind == "width":
            parts.append(WIDTH_SOURCE)
    return " + ".join(parts) or "none"


def _expected(rule: VerdictRule, sweep_name: str, group: dict[str, float | None]) -> str | None:
    """The reason THEORY.md gives for a disagreement, when the example lists this group."""
    for dis in rule.expect_disagree:
        ok = True
        for k, v in dis.match.items():
            have = sweep_name if k == "sweep" else group.get(k)
            if isinstance(v, str) or have is None or isinstance(have, str):
                ok = ok and have == v
            else:
                ok = ok and math.isclose(float(have), float(v), rel_tol=1e-9, abs_tol=1e-12)
        if ok:
            return dis.why
    return None


def _group_verdict(
    rule: VerdictRule,
    sweep_id: int,
    sweep_name: str,
    group: dict[str, float | None],
    *,
    agrees: bool,
    why: str,
    raw: bool = False,
    allowance: float = 0.0,
    measured: float | None = None,
    ci: tuple[float, float] | None = None,
    se: float | None = None,
    heuristic: float | None = None,
    form: str | None = None,
) -> GroupVerdict:
    """One group's verdict, marked (with THEORY.md's reason) when the example does not
    expect this group to agree."""
    reason = _expected(rule, sweep_name, group)
    if reason is not None:
        why = f"{why}; not expected to agree here: {reason}"
    return GroupVerdict(
        sweep_id=sweep_id,
        group=f"{sweep_name}: {_label(group)}",
        measured_exponent=measured,
        ci=ci,
        se_exponent=se,
        heuristic_exponent=heuristic,
        form=form,
        agrees=agrees,
        raw_agrees=raw,
        allowance=allowance,
        allowance_source=_source(rule) if allowance else "none",
        expected=reason is None,
        why=why,
    )


def _exponent_verdict(
    rule: VerdictRule,
    sweep_id: int,
    sweep_name: str,
    group: dict[str, float | None],
    measured: float | None,
    ci: tuple[float, float] | None,
    se: float | None,
    form: str | None,
    *,
    heuristic: float | None = None,
    error: str | None = None,
) -> GroupVerdict:
    widen = rule.allowance
    raw = False
    if measured is None or ci is None or se is None:
        missing = error or "no measured or state-evolution exponent"
        agrees, why = False, f"no comparison: {missing}"
    else:
        raw = ci[0] <= se <= ci[1]
        agrees = ci[0] - widen <= se <= ci[1] + widen
        if raw:
            why = (
                f"state evolution {se:.3f} inside the measured 95% interval "
                f"[{ci[0]:.3f}, {ci[1]:.3f}]"
            )
        else:
            how = (
                f"inside it widened by {widen:.3f}"
                if agrees
                else f"outside it even widened by {widen:.3f}"
            )
            why = (
                f"state evolution {se:.3f} outside the measured 95% interval [{ci[0]:.3f}, "
                f"{ci[1]:.3f}], {how}"
            )
    return _group_verdict(
        rule, sweep_id, sweep_name, group, agrees=agrees, why=why, raw=raw,
        allowance=widen if not raw else 0.0, measured=measured, ci=ci, se=se,
        heuristic=heuristic, form=form,
    )  # fmt: skip


def phase_verdicts(rule: VerdictRule, sweep_name: str, phase: PhaseDiagram) -> list[GroupVerdict]:
    """One verdict per family of the phase diagram."""
    out = []
    for f in sorted(phase.families, key=lambda f: f.decay):
        group = {"l": f.decay + 0.0, **{k: v for k, v in f.group.items() if k != "link_power"}}
        out.append(
            _exponent_verdict(
                rule, phase.sweep_id, sweep_name, group, f.measured_exponent, f.measured_ci,
                f.se_exponent, f.measured_form, heuristic=f.heuristic_exponent, error=f.error,
            )
        )  # fmt: skip
    return out


@dataclass
class _PointChecks:
    """The per-point comparison of one group (``curve`` and ``width``)."""

    n_cmp: int = 0
    n_ok: int = 0
    n_raw: int = 0
    used: float = 0.0
    worst: tuple[float, str] | None = None
    unruled: list[str] = field(default_factory=list)

    @property
    def agrees(self) -> bool:
        return self.n_cmp > 0 and self.n_ok == self.n_cmp

    @property
    def raw(self) -> bool:
        return self.n_cmp > 0 and self.n_raw == self.n_cmp

    def why(self) -> str:
        text = (f"{self.n_raw} of {self.n_cmp} grid points within 3 standard errors, {self.n_ok}"
                f" with the allowance; worst {self.worst[1]}" if self.worst
                else "no grid point with both a measurement and a prediction")  # fmt: skip
        if self.unruled:
            text += (
                f"; not judged (noise fitting, df/n >= {NOISE_FITTING_DF:g}, or a narrow width "
                f"below d(d+1)/2 samples at d > {WIDTH_MEASURED_D}: no measured finite-size "
                f"rule holds there): {', '.join(self.unruled)}"
            )
        return text


def _compare_points(rule: VerdictRule, x: str, pts: Sequence[PointTheory]) -> _PointChecks:
    """Every grid point's seed mean against its state-evolution value: raw when within three
    standard errors of the mean, with the allowance when within that plus the relative
    tolerance (:func:`allowance_at`)."""
    c = _PointChecks()
    for p in pts:
        pred = p.predicted_risk
        if pred is None or p.measured_mean is None:
            continue
        where = f"{x}={getattr(p, x):.4g}"
        df = _num(p.predicted.get("df") if p.predicted else None)
        ratio = p.measured_mean / pred
        if rule.finite_d and p.model == "quadratic" and df is not None:
            if in_noise_fitting(df, p.n):
                c.unruled.append(f"{where} (R/R_SE = {ratio:.3f}, df/n = {df / p.n:.2f})")
                continue
            if not width_rule_measured(p.d, p.n, p.width):
                c.unruled.append(f"{where} (R/R_SE = {ratio:.3f}, narrow width at d = {p.d})")
                continue
        c.n_cmp += 1
        below, above = allowance_at(rule, p.model, p.d, p.n, p.width)
        se_rel = SE_OF_MEAN * (p.measured_se or 0.0) / pred
        dev = ratio - 1.0
        raw_ok = abs(dev) <= se_rel
        c.n_raw += raw_ok
        excess = max(-dev - below, dev - above) - se_rel
        c.n_ok += excess <= 0
        if not raw_ok:
            c.used = max(c.used, above if dev > 0 else below)
        if c.worst is None or excess > c.worst[0]:
            c.worst = (excess, f"{where}: R/R_SE = {ratio:.3f} (3 standard errors {se_rel:.3f},"
                               f" allowance -{below:.3f} / +{above:.3f})")  # fmt: skip
    return c


def _group_points(theory: TheoryReport, group: dict[str, float | None]) -> list[PointTheory]:
    key = tuple(group.get(a) for a in theory.by)
    return [p for p in theory.points if tuple(getattr(p, a) for a in theory.by) == key]


def curve_verdicts(rule: VerdictRule, sweep_name: str, theory: TheoryReport) -> list[GroupVerdict]:
    """Every grid point's seed mean against the state-evolution value, per group
    (:func:`_compare_points`)."""
    out = []
    for g in theory.groups:
        c = _compare_points(rule, theory.x, _group_points(theory, g.group))
        out.append(
            _group_verdict(
                rule, theory.sweep_id, sweep_name, g.group, agrees=c.agrees, why=c.why(),
                raw=c.raw, allowance=c.used, measured=g.measured_exponent, ci=g.measured_ci,
                se=g.predicted_exponent, form=g.form,
            )
        )  # fmt: skip
    return out


BUMP = 0.10
"""``width``: the state evolution predicts a bump when some width above its best one has a risk
at least this much (relative) above the widest's, and a narrow advantage when the widest's risk
is at least this much above the best one's."""


@dataclass(frozen=True)
class _Width:
    """One width of a group: the seeds' mean and standard error, the SE's risk."""

    m: int
    mean: float
    se: float
    pred: float


def _tied(a: _Width, b: _Width) -> bool:
    """Whether two widths' measured means are within 3 standard errors of their difference."""
    return abs(a.mean - b.mean) <= SE_OF_MEAN * math.hypot(a.se, b.se)


def _above(a: _Width, b: _Width) -> bool:
    """Whether ``a``'s measured mean is above ``b``'s by more than 3 standard errors."""
    return a.mean - b.mean > SE_OF_MEAN * math.hypot(a.se, b.se)


def _widths(pts: Sequence[PointTheory]) -> list[_Width]:
    out = []
    for p in pts:
        pred = p.predicted_risk
        if p.width is None or p.measured_mean is None or pred is None:
            continue
        out.append(_Width(p.width, p.measured_mean, p.measured_se or 0.0, pred))
    return sorted(out, key=lambda w: w.m)


@dataclass(frozen=True)
class _Shape:
    """The risk-against-width curve's shape, measured and predicted, and whether they agree."""

    best: _Width
    """The measured best width (lowest seed mean)."""
    se_best: _Width
    """The state evolution's best width."""
    ok: bool
    why: str


def _shape(ws: Sequence[_Width]) -> _Shape | None:
    """Best width, narrow advantage and bump of one group's curve (None below 3 widths).

    * best width: the measured risk at the SE's best width is tied (3 standard errors) with the
      lowest measured one;
    * narrow advantage: where the SE's widest risk is BUMP above its best, the measured widest
      is significantly above the measured best;
    * bump: where the SE has a width above its best one BUMP above the widest, the measured
      risk there is significantly above the widest's; where it has none, no measured width
      between the best and the widest is significantly above the widest."""
    if len(ws) < 3:
        return None
    best = min(ws, key=lambda w: w.mean)
    se_best = min(ws, key=lambda w: w.pred)
    wide = ws[-1]
    checks: list[tuple[bool, str]] = [
        (
            _tied(se_best, best),
            f"best width {best.m} measured (R = {best.mean:.3g} +- {best.se:.2g}), {se_best.m} "
            f"predicted (measured there {se_best.mean:.3g} +- {se_best.se:.2g})",
        )
    ]
    advantage = wide.pred / se_best.pred - 1.0
    if advantage >= BUMP:
        checks.append(
            (
                _above(wide, best),
                f"widest ({wide.m}) / best: {wide.mean / best.mean:.2f} measured, "
                f"{wide.pred / se_best.pred:.2f} predicted",
            )
        )
    inner = [w for w in ws if se_best.m < w.m < wide.m]
    peak = max(inner, key=lambda w: w.pred, default=None)
    if peak is not None and peak.pred / wide.pred - 1.0 >= BUMP:
        checks.append(
            (
                _above(peak, wide),
                f"bump at width {peak.m}: R/R(widest) = {peak.mean / wide.mean:.2f} measured, "
                f"{peak.pred / wide.pred:.2f} predicted",
            )
        )
    else:
        between = [w for w in ws if best.m < w.m < wide.m and _above(w, wide)]
        checks.append(
            (
                not any(w.pred / wide.pred - 1.0 < BUMP for w in between),
                "no bump predicted"
                + (f"; measured above the widest at {', '.join(str(w.m) for w in between)}"
                   if between else ", none measured"),
            )
        )  # fmt: skip
    ok = all(c for c, _ in checks)
    return _Shape(best, se_best, ok, "; ".join(f"{t} ({'ok' if c else 'NO'})" for c, t in checks))


def width_verdicts(rule: VerdictRule, sweep_name: str, theory: TheoryReport) -> list[GroupVerdict]:
    """Risk against the width (``x = width``), per group of the other axes (n, lambda): every
    grid point against the finite-width state evolution (:func:`_compare_points`) and the
    curve's shape (:func:`_shape`: best width, narrow advantage, bump). The last group (largest
    n) of each family that differs only in n also says how the best width moves with n,
    measured and predicted (a summary: each n's best width is judged in its own group).
    ``measured_exponent`` and ``se_exponent`` carry the measured and the predicted best width
    (form ``best width``)."""
    out: list[GroupVerdict] = []
    families: dict[tuple[tuple[str, float | None], ...], list[tuple[float, _Shape, int]]] = {}
    for g in theory.groups:
        pts = _group_points(theory, g.group)
        c = _compare_points(rule, theory.x, pts)
        shape = _shape(_widths(pts))
        why = c.why() + (f"; {shape.why}" if shape else "; no shape: fewer than 3 widths")
        if g.n_left_out:
            why += (
                f"; {g.n_left_out} of {g.n_runs + g.n_left_out} runs left out (failed or "
                "uncertified: a narrow run whose restarts disagree has no certificate)"
            )
        n = g.group.get("n")
        if shape is not None and n is not None:
            rest = tuple(sorted((k, v) for k, v in g.group.items() if k != "n"))
            families.setdefault(rest, []).append((float(n), shape, len(out)))
        out.append(
            _group_verdict(
                rule, theory.sweep_id, sweep_name, g.group, agrees=c.agrees and bool(shape and
                shape.ok), why=why, raw=c.raw and bool(shape and shape.ok), allowance=c.used,
                measured=float(shape.best.m) if shape else None,
                se=float(shape.se_best.m) if shape else None, form="best width",
            )
        )  # fmt: skip
    for rows in families.values():
        if len(rows) < 2:
            continue
        rows.sort(key=lambda r: r[0])
        last = out[rows[-1][2]]
        moves = (
            f"; best width against n = {', '.join(f'{n:.4g}' for n, _, _ in rows)}: measured "
            f"{' -> '.join(str(s.best.m) for _, s, _ in rows)}, predicted "
            f"{' -> '.join(str(s.se_best.m) for _, s, _ in rows)}"
        )
        out[rows[-1][2]] = last.model_copy(update={"why": last.why + moves})
    return out


def tail_verdicts(
    rule: VerdictRule, sweep_name: str, summary: SpectraSummary
) -> list[GroupVerdict]:
    """The heavy-tail exponent against 1 + 1/gamma, per gamma (pooled over the grid)."""
    out = []
    by_gamma: dict[float, list[tuple[float, float]]] = {}
    predicted: dict[float, float] = {}
    for p in summary.points:
        if p.tail_alpha_mean is None:
            continue
        by_gamma.setdefault(p.gamma, []).append((p.tail_alpha_mean, p.tail_alpha_se or 0.0))
        predicted[p.gamma] = p.predicted_alpha_ww
    for gamma, vals in sorted(by_gamma.items()):
        mean, spread = mean_se([m for m, _ in vals])  # over grid points; one: its own SE
        assert mean is not None
        spread = spread if spread is not None else vals[0][1]
        ci = (mean - Z95 * spread, mean + Z95 * spread)
        out.append(
            _exponent_verdict(
                rule, summary.sweep_id, sweep_name, {"gamma": gamma}, mean, ci, predicted[gamma],
                "tail",
            )
        )  # fmt: skip
    return out


SPIKES = 5
"""``spectrum``: how many of the largest values are compared with the prediction."""


def spectrum_verdicts(
    rule: VerdictRule,
    sweep_name: str,
    sweep_id: int,
    runs: Sequence[tuple[RunRecord, Sequence[Spectrum], SpectrumTheory | None]],
) -> list[GroupVerdict]:
    """Per grid point (d, n, weight decay, teacher): the runs' certified spectra against the
    predicted spectrum, over seeds: the support (the certified solution's non-zeros) and the
    SPIKES largest values. Raw: the mean within three standard errors over the seeds (at
    least 1 on the support: an integer); with the allowance: within that plus the relative
    tolerance."""
    by_group: dict[tuple[int, int, float, float, float], list[tuple[float, float, float]]] = {}
    for run, spectra, theory in runs:
        if theory is None or not spectra:
            continue
        measured = next((s for s in spectra if s.kind == theory.kind), None)
        if measured is None or not measured.values:
            continue
        vals = np.sort(np.abs(np.asarray(measured.values, dtype=float)))[::-1]
        pred = np.sort(np.asarray(theory.predicted_values, dtype=float))[::-1]
        support = float(np.count_nonzero(vals > 0))
        k = min(SPIKES, int(support), int(np.count_nonzero(pred > 0)))
        spike = float(np.median(vals[:k] / pred[:k] - 1.0)) if k else math.inf
        by_group.setdefault(grid_point(run.config), []).append(
            (support, theory.predicted_support, spike)
        )
    out = []
    for (d, n, lam, gamma, noise), rows in sorted(by_group.items()):
        arr = np.array(rows)
        support, predicted, spike = (float(v) for v in arr.mean(axis=0))
        m = len(rows)
        sd = arr.std(axis=0, ddof=1) if m > 1 else np.zeros(3)
        s_support = SE_OF_MEAN * float(sd[0]) / math.sqrt(m)
        s_spike = SE_OF_MEAN * float(sd[2]) / math.sqrt(m)
        spike_tol = rule.allowance + (SPIKE_PER_D / d if rule.finite_d else 0.0)
        support_tol = rule.allowance * predicted + (SUPPORT_ALLOWANCE if rule.finite_d else 0.0)
        raw_support = abs(support - predicted) <= s_support
        raw_spike = abs(spike) <= s_spike
        ok_support = abs(support - predicted) <= s_support + support_tol
        ok_spike = abs(spike) <= s_spike + spike_tol
        raw = raw_support and raw_spike
        why = (
            f"{m} runs: support {support:.1f} vs predicted {predicted:.1f} (3 standard errors"
            f" {s_support:.1f}; {_within(raw_support, ok_support)}); the {SPIKES} largest"
            f" values {spike:+.1%} from the predicted ones (median; 3 standard errors"
            f" {s_spike:.1%}; {_within(raw_spike, ok_spike)})"
        )
        group: dict[str, float | None] = {
            "weight_decay": lam, "d": float(d), "n": float(n), "gamma": gamma, "noise": noise,
        }  # fmt: skip
        out.append(
            _group_verdict(
                rule, sweep_id, sweep_name, group, agrees=ok_support and ok_spike, why=why,
                raw=raw, allowance=0.0 if raw else spike_tol, form="spectrum",
            )
        )  # fmt: skip
    return out


def _num(v: object) -> float | None:
    return float(v) if isinstance(v, (int, float)) else None


def _within(raw: bool, with_allowance: bool) -> str:
    if raw:
        return "within"
    return "within with the allowance" if with_allowance else "outside even with the allowance"


def combine(
    example: Example, scale: str, groups: Sequence[GroupVerdict], sweep_ids: list[int]
) -> Verdict:
    """The example's verdict: every expected group agrees (and there is at least one)."""
    expected = [g for g in groups if g.expected]
    return Verdict(
        example=example.name,
        scale=scale,
        sweep_ids=sweep_ids,
        agrees=bool(expected) and all(g.agrees for g in expected),
        raw_agrees=sum(g.raw_agrees for g in expected),
        n_expected=len(expected),
        groups=list(groups),
    )
