"""The /theory answer and the spectra summary of a width sweep: each point is predicted at its
width (service.theory finite width), widths are kept apart, and x = width is answered with a
per-point comparison the curve verdict can judge."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from service.analysis.spectra_summary import spectrum_theory, sweep_spectra_summary
from service.analysis.theory_comparison import WIDTH_THEORY_NOTE, sweep_theory
from service.analysis.verdict import curve_verdicts
from service.examples import VerdictRule
from service.records import RunPoint, RunRecord
from service.spec import RunConfig
from service.theory import predict

D, N, LAM, NOISE = 20, 800, 0.03, 0.25
WIDTHS = (2, 5, 20, 40)


def qp(run_id: int, **kw: Any) -> RunPoint:
    """A succeeded, converged quadratic run; keywords override any column."""
    base: dict[str, Any] = {
        "run_id": run_id, "status": "succeeded", "converged": True, "model": "quadratic",
        "d": D, "n": N, "weight_decay": LAM, "gamma": 1.0, "noise": NOISE, "seed": 0,
        "link_power": None, "rank": None, "excess_risk": 0.1,
    }  # fmt: skip
    base.update(kw)
    return RunPoint(**base)


def _width_sweep(excess: float) -> list[RunPoint]:
    """Three seeds per width, measured at (1 + excess +- 0.01) times the width's SE risk."""
    out = []
    for m in WIDTHS:
        r = predict("quadratic", D, N, LAM, 1.0, NOISE, width=m).excess_risk
        for s in range(3):
            risk = r * (1 + excess + 0.01 * (s - 1))
            out.append(qp(len(out) + 1, width=m, seed=s, excess_risk=risk))
    return out


def test_each_width_is_predicted_at_its_width() -> None:
    rep = sweep_theory(4, _width_sweep(0.02), x="width", by=[], bootstrap=0)
    assert rep.x == "width"
    assert sorted(p.width for p in rep.points if p.width is not None) == sorted(WIDTHS)
    by_width = {p.width: p for p in rep.points}
    for m in WIDTHS:
        p = by_width[m]
        assert p.predicted is not None and p.n_seeds == 3
        want = predict("quadratic", D, N, LAM, 1.0, NOISE, width=m)
        assert p.predicted["excess_risk"] == want.excess_risk
        assert p.rel_diff == pytest.approx(0.02, abs=1e-12)  # the seeds' mean: exact
    # a narrow width has its own prediction; m = d and m = 2d are the convex one
    full = predict("quadratic", D, N, LAM, 1.0, NOISE).excess_risk
    assert by_width[20].predicted and by_width[20].predicted["excess_risk"] == full  # type: ignore[index]
    assert by_width[40].predicted and by_width[40].predicted["excess_risk"] == full  # type: ignore[index]
    assert by_width[2].predicted["excess_risk"] != full  # type: ignore[index]
    assert by_width[2].predicted["support"] == 2  # type: ignore[index]
    (g,) = rep.groups
    assert g.n_points == len(WIDTHS) and g.error is None
    assert rep.note is not None and WIDTH_THEORY_NOTE in rep.note and "x = width" in rep.note


def test_the_curve_verdict_judges_a_width_sweep_per_point() -> None:
    rule = VerdictRule(kind="curve", allowance=0.0, finite_d=True)
    (ok,) = curve_verdicts(rule, "widths", sweep_theory(4, _width_sweep(0.02), x="width", by=[]))
    # +2 %: beyond 3 standard errors (1.7 %) but within the finite-size allowance (+10 %)
    assert ok.agrees and not ok.raw_agrees, ok.why
    assert f"{len(WIDTHS)} with the allowance" in ok.why and "worst width=" in ok.why
    # 30 % above the SE: beyond 3 standard errors and the d = 20 allowance (0.10)
    (bad,) = curve_verdicts(rule, "widths", sweep_theory(4, _width_sweep(0.3), x="width", by=[]))
    assert not bad.agrees


def test_full_width_sweeps_are_answered_as_before() -> None:
    points = [qp(i, n=n, width=D, excess_risk=0.1) for i, n in enumerate((400, 800), 1)]
    rep = sweep_theory(1, points, x="n", by=[], bootstrap=0)
    assert rep.note is not None and WIDTH_THEORY_NOTE not in rep.note
    for p in rep.points:
        assert p.predicted is not None
        want = predict("quadratic", D, p.n, LAM, 1.0, NOISE)
        assert p.predicted["excess_risk"] == want.excess_risk


def test_spectra_summary_keeps_widths_apart() -> None:
    points = [qp(i, width=m, excess_risk=0.1 * m) for i, m in enumerate((2, 5, 2), 1)]
    summary = sweep_spectra_summary(3, points, [])
    assert [(p.width, p.n_runs) for p in summary.points] == [(2, 2), (5, 1)]
    assert summary.points[1].excess_risk_mean == pytest.approx(0.5, rel=1e-12)


def test_a_narrow_runs_predicted_spectrum_has_rank_at_most_its_width() -> None:
    cfg = RunConfig.model_validate(
        {"model": "quadratic", "d": D, "n": N, "weight_decay": LAM,
         "teacher": {"gamma": 1.0, "noise": NOISE}, "training": {"width": 3}}
    )  # fmt: skip
    run = RunRecord.model_construct(id=1, sweep_id=1, config=cfg)
    theory = spectrum_theory(run, [])
    assert not isinstance(theory, str)
    values = np.array(theory.predicted_values)
    assert np.all(values[3:] == 0.0) and np.all(values[:3] > 0)
    assert theory.predicted_support == 3
    full = spectrum_theory(RunRecord.model_construct(id=2, sweep_id=1, config=cfg.model_copy(
        update={"training": cfg.training.model_copy(update={"width": None})})), [])  # fmt: skip
    assert not isinstance(full, str) and full.predicted_support > 3
