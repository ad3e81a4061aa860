"""The verdict rules (service.analysis.verdict) on hand-made reports."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.analysis.reports import FamilyPhase, PhaseDiagram
from service.analysis.verdict import _tolerance, combine, phase_verdicts
from service.examples import Disagreement, VerdictRule, find_example


def _family(decay: float, measured: float, ci: tuple[float, float], se: float) -> FamilyPhase:
    return FamilyPhase(
        power=-decay, decay=decay, group={"link_power": -decay}, measured_exponent=measured,
        measured_ci=ci, measured_form="power_law", se_exponent=se, heuristic_exponent=measured,
        heuristic_regime="bias-dominated", regime="bias-dominated", df_over_n=0.1,
        x_window=(100.0, 800.0), n_runs=12, n_left_out=0,
    )  # fmt: skip


def test_se_inside_the_widened_interval_agrees_and_outside_does_not() -> None:
    rule = VerdictRule(kind="phase", allowance=0.05)
    phase = PhaseDiagram(
        sweep_id=3, x="n", regime_rule="r",
        families=[_family(0.5, 0.70, (0.66, 0.74), 0.80), _family(0.25, 0.35, (0.33, 0.37), 0.40)],
    )  # fmt: skip
    inside, outside = phase_verdicts(rule, "s", phase)
    assert inside.group == "s: l=0.25" and inside.agrees  # 0.40 <= 0.37 + 0.05
    assert not outside.agrees and "outside" in outside.why
    verdict = combine(find_example("diagonal-bias-paths"), "small", [inside, outside], [3])
    assert verdict.agrees is False and verdict.sweep_ids == [3]


def test_an_expected_disagreement_is_reported_but_does_not_count() -> None:
    rule = VerdictRule(
        kind="phase",
        allowance=0.0,
        expect_disagree=[Disagreement(match={"l": 1.0}, why="a finite window")],
    )
    phase = PhaseDiagram(sweep_id=1, x="n", regime_rule="r",
                         families=[_family(1.0, 0.5, (0.4, 0.6), 1.0),
                                   _family(0.5, 0.6, (0.5, 0.7), 0.65)])  # fmt: skip
    groups = phase_verdicts(rule, "s", phase)
    off = next(g for g in groups if g.group == "s: l=1")
    assert not off.agrees and not off.expected and "a finite window" in off.why
    assert combine(find_example("diagonal-bias-paths"), "small", groups, [1]).agrees is True
    assert combine(find_example("diagonal-bias-paths"), "small", [off], [1]).agrees is False


def test_the_finite_d_allowance_adds_6_over_d_to_values_and_only_to_values() -> None:
    """THEORY.md 5.3: R_sim / R_SE = 1 + c/d with c <= 6; an exponent rule refuses it."""
    curve = VerdictRule(kind="curve", allowance=0.10, finite_d=True)
    assert _tolerance(curve, 40) == pytest.approx(0.10 + 6.0 / 40, rel=1e-12)
    assert _tolerance(VerdictRule(kind="curve", allowance=0.10), 40) == 0.10
    with pytest.raises(ValidationError, match="finite_d applies to the curve and spectrum"):
        VerdictRule(kind="phase", finite_d=True)


def test_spectrum_verdict_counts_support_above_the_zero_level_and_compares_spikes() -> None:
    from service.analysis.reports import SpectrumTheory
    from service.analysis.verdict import spectrum_verdicts
    from service.records import RunRecord
    from service.results import Spectrum
    from service.spec import RunConfig

    cfg = RunConfig(model="quadratic", d=10, n=100, weight_decay=0.3)
    run = RunRecord.model_construct(id=1, sweep_id=1, config=cfg)
    predicted = [1.0, 0.5, 0.25, 0.1, 0.05, 0.0, 0.0, 0.0, 0.0, 0.0]
    theory = SpectrumTheory(
        kind="eig_S", predicted_values=predicted, predicted_support=5.0, zeta=0.1,
        predicted_alpha_ww=2.0, measured_tail_alpha=None, measured_rank_exponent=None, gamma=1.0,
    )  # fmt: skip
    # the network's would-be zeros at 1e-5 of the top value do not count as support
    close = Spectrum(kind="eig_S", values=[1.02, 0.51, 0.24, 0.1, 0.052, 1e-5, 1e-6, 0, 0, 0])
    far = Spectrum(kind="eig_S", values=[1.6, 0.9, 0.5, 0.3, 0.2, 0.15, 0.1, 0.08, 0.05, 0.02])
    rule = VerdictRule(kind="spectrum", allowance=0.10)
    (ok,) = spectrum_verdicts(rule, "s", 1, [(run, [close], theory)])
    assert ok.agrees and "support 5.0 vs predicted 5.0" in ok.why
    (bad,) = spectrum_verdicts(rule, "s", 1, [(run, [far], theory)])
    assert not bad.agrees and "outside" in bad.why


def test_spectrum_verdicts_keep_grid_points_apart() -> None:
    """Runs at one weight decay but two sample sizes have different predicted supports: two
    groups, not one average."""
    from service.analysis.reports import SpectrumTheory
    from service.analysis.verdict import spectrum_verdicts
    from service.records import RunRecord
    from service.results import Spectrum
    from service.spec import RunConfig

    runs = []
    for i, (n, support) in enumerate([(100, 3), (400, 6)]):
        cfg = RunConfig(model="quadratic", d=10, n=n, weight_decay=0.3)
        pred = [1.0 / (k + 1) if k < support else 0.0 for k in range(10)]
        theory = SpectrumTheory(
            kind="eig_S", predicted_values=pred, predicted_support=float(support), zeta=0.1,
            predicted_alpha_ww=2.0, measured_tail_alpha=None, measured_rank_exponent=None,
            gamma=1.0,
        )  # fmt: skip
        run = RunRecord.model_construct(id=i, sweep_id=1, config=cfg)
        runs.append((run, [Spectrum(kind="eig_S", values=pred)], theory))
    groups = spectrum_verdicts(VerdictRule(kind="spectrum", allowance=0.05), "s", 1, runs)
    assert [g.group for g in groups] == [
        "s: weight_decay=0.3, d=10, n=100, gamma=1, noise=0",
        "s: weight_decay=0.3, d=10, n=400, gamma=1, noise=0",
    ]
    assert all(g.agrees for g in groups)
