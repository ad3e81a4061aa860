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

import numpy as np

from service.analysis.grouping import mean_se
from service.analysis.reports import (
    PhaseDiagram,
    Report,
    SpectraSummary,
    SpectrumTheory,
    TheoryReport,
)
from service.examples import Example, VerdictRule
from service.records import RunRecord
from service.results import Spectrum
from service.spec import RunConfig

FINITE_D_C_MAX = 6.0
"""THEORY.md 5.3: R_sim / R_SE = 1 + c/d for the network's x x' - I data, c at most 6."""
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
    expected: bool = True
    """False for a group THEORY.md does not expect to agree at this size."""
    why: str


class Verdict(Report):
    """What ``scalesweep reproduce`` writes to verdict.json."""

    example: str
    scale: str
    sweep_ids: list[int]
    agrees: bool
    groups: list[GroupVerdict]


def _label(group: dict[str, float | None]) -> str:
    return (
        ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in group.items())
        or "all"
    )


def grid_point(cfg: RunConfig) -> tuple[int, int, float, float, float]:
    """What runs share when they differ only by seed: (d, n, weight decay, gamma, noise)."""
    return (cfg.d, cfg.n, cfg.weight_decay, cfg.teacher.gamma, cfg.teacher.noise)


def _tolerance(rule: VerdictRule, d: int) -> float:
    """The relative allowance on R or on a spectrum at dimension d: the rule's, plus the
    finite-d excess of THEORY.md 5.3 (at most 6/d) with ``finite_d``."""
    return rule.allowance + (FINITE_D_C_MAX / d if rule.finite_d else 0.0)


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
    if measured is None or ci is None or se is None:
        agrees, why = False, f"no comparison: {error or 'no measured or SE exponent'}"
    else:
        agrees = ci[0] - widen <= se <= ci[1] + widen
        rel = "inside" if agrees else "outside"
        why = (
            f"SE {se:.3f} {rel} the measured 95% interval [{ci[0]:.3f}, {ci[1]:.3f}]"
            f" widened by {widen:.3f}"
        )
    return _group_verdict(
        rule, sweep_id, sweep_name, group, agrees=agrees, why=why, measured=measured, ci=ci,
        se=se, heuristic=heuristic, form=form,
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


def curve_verdicts(rule: VerdictRule, sweep_name: str, theory: TheoryReport) -> list[GroupVerdict]:
    """Every grid point's seed mean against the SE value, per group."""
    out = []
    by = theory.by
    for g in theory.groups:
        key = tuple(g.group.get(a) for a in by)
        pts = [p for p in theory.points if tuple(getattr(p, a) for a in by) == key]
        worst: tuple[float, str] | None = None
        n_ok = n_cmp = 0
        for p in pts:
            pred = p.predicted.get("excess_risk") if p.predicted else None
            if not isinstance(pred, float) or pred <= 0 or p.measured_mean is None:
                continue
            n_cmp += 1
            tol = _tolerance(rule, p.d)
            se_rel = SE_OF_MEAN * (p.measured_se or 0.0) / pred
            ratio = p.measured_mean / pred
            excess = abs(ratio - 1.0) - tol - se_rel
            n_ok += excess <= 0
            if worst is None or excess > worst[0]:
                worst = (excess, f"{theory.x}={getattr(p, theory.x):.4g}: R/R_SE = {ratio:.3f}"
                                 f" (tolerance {tol:.3f} + {se_rel:.3f})")  # fmt: skip
        agrees = n_cmp > 0 and n_ok == n_cmp
        why = (f"{n_ok} of {n_cmp} grid points within tolerance; worst {worst[1]}" if worst
               else "no grid point with both a measurement and a prediction")  # fmt: skip
        out.append(
            _group_verdict(
                rule, theory.sweep_id, sweep_name, g.group, agrees=agrees, why=why,
                measured=g.measured_exponent, se=g.predicted_exponent,
                form="power_law" if g.measured_exponent is not None else None,
            )
        )  # fmt: skip
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
ZERO = 1e-3
"""``spectrum``: values below this fraction of the largest count as zeros for the support.
The network's certified minimum (relative gap 1e-6) leaves the components the convex
minimum sets to zero at 1e-6 to 1e-4 of the top eigenvalue (seen at d = 40, lambda = 0.3),
while the smallest learned spike there was 5e-3 of it."""


def spectrum_verdicts(
    rule: VerdictRule,
    sweep_name: str,
    sweep_id: int,
    runs: Sequence[tuple[RunRecord, Sequence[Spectrum], SpectrumTheory | None]],
) -> list[GroupVerdict]:
    """Per grid point (d, n, weight decay, teacher): the runs' spectra against the predicted
    spectrum, averaged over seeds: the support (values above ZERO of the largest) and the
    SPIKES largest."""
    by_group: dict[tuple[int, int, float, float, float], list[tuple[float, float, float]]] = {}
    for run, spectra, theory in runs:
        if theory is None or not spectra:
            continue
        measured = next((s for s in spectra if s.kind == theory.kind), None)
        if measured is None or not measured.values:
            continue
        vals = np.sort(np.asarray(measured.values, dtype=float))[::-1]
        pred = np.sort(np.asarray(theory.predicted_values, dtype=float))[::-1]
        support = float(np.count_nonzero(vals > ZERO * vals[0]))
        k = min(SPIKES, int(support), int(np.count_nonzero(pred > 0)))
        spike = float(np.median(np.abs(vals[:k] / pred[:k] - 1.0))) if k else math.inf
        by_group.setdefault(grid_point(run.config), []).append(
            (support, theory.predicted_support, spike)
        )
    out = []
    for (d, n, lam, gamma, noise), rows in sorted(by_group.items()):
        arr = np.array(rows)
        support, predicted, spike = (float(v) for v in arr.mean(axis=0))
        tol = _tolerance(rule, d)
        ok_support = abs(support - predicted) <= tol * predicted + 1.0
        ok_spike = spike <= tol
        why = (
            f"{len(rows)} runs: support {support:.1f} vs predicted {predicted:.1f}"
            f" ({'within' if ok_support else 'outside'} {tol:.0%} + 1); the {SPIKES} largest"
            f" values differ from the predicted ones by {spike:.1%} (median;"
            f" {'within' if ok_spike else 'outside'} {tol:.0%})"
        )
        group: dict[str, float | None] = {
            "weight_decay": lam, "d": float(d), "n": float(n), "gamma": gamma, "noise": noise,
        }  # fmt: skip
        out.append(
            _group_verdict(
                rule, sweep_id, sweep_name, group, agrees=ok_support and ok_spike, why=why,
                form="spectrum",
            )
        )  # fmt: skip
    return out


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
        groups=list(groups),
    )
