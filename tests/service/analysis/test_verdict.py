"""The verdict rules (service.analysis.verdict) on hand-made reports."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.analysis.reports import FamilyPhase, PhaseDiagram
from service.analysis.verdict import allowance_at, combine, curve_verdicts, phase_verdicts
from service.examples import Disagreement, VerdictRule, find_example


def _family(decay: float, measured: float, ci: tuple[float, float], se: float) -> FamilyPhase:
    return FamilyPhase(
        power=-decay, decay=decay, group={"link_power": -decay}, measured_exponent=measured,
        measured_ci=ci, measured_form="power_law", se_exponent=se, heuristic_exponent=measured,
        heuristic_regime="bias-dominated", regime="bias-dominated", df_over_n=0.1,
        x_window=(100.0, 800.0), n_runs=12, n_left_out=0,
    )  # fmt: skip


def test_se_inside_the_widened_interval_agrees_and_outside_does_not() -> None:
    rule = VerdictRule(kind="phase", allowance=0.05, allowance_why="a finite window")
    phase = PhaseDiagram(
        sweep_id=3, x="n", regime_rule="r",
        families=[_family(0.5, 0.70, (0.66, 0.74), 0.80), _family(0.25, 0.35, (0.33, 0.37), 0.40),
                  _family(0.75, 1.0, (0.9, 1.1), 1.05)],
    )  # fmt: skip
    inside, outside, raw = phase_verdicts(rule, "s", phase)
    assert inside.group == "s: l=0.25" and inside.agrees  # 0.40 <= 0.37 + 0.05
    # it agrees only through the allowance, and says so, with the allowance's source
    assert not inside.raw_agrees and inside.allowance == 0.05
    assert "0.05 (a finite window)" in inside.allowance_source
    assert not outside.agrees and not outside.raw_agrees and "outside" in outside.why
    assert raw.agrees and raw.raw_agrees and raw.allowance == 0.0
    assert raw.allowance_source == "none"
    verdict = combine(find_example("diagonal-bias-paths"), "small", [inside, raw], [3])
    assert verdict.agrees and (verdict.raw_agrees, verdict.n_expected) == (1, 2)
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


def test_the_finite_size_allowance_is_the_measured_excess_above_only() -> None:
    """service.theory.finite_size: 0 <= R/R_SE - 1 <= min(max(1.7 d/n, 2/d), 0.2) for the
    quadratic model's data; none for the diagonal model; an exponent rule refuses it."""
    curve = VerdictRule(kind="curve", allowance=0.0, finite_d=True)
    # max(1.7 d/n, 2/d): the d/n term below alpha ~ 1, THEORY 5.3's c/d above
    assert allowance_at(curve, "quadratic", 40, 400) == (0.0, pytest.approx(0.17, rel=1e-12))
    assert allowance_at(curve, "quadratic", 40, 6400) == (0.0, pytest.approx(0.05, rel=1e-12))
    assert allowance_at(curve, "quadratic", 16, 64) == (0.0, 0.2)  # the cap
    assert allowance_at(curve, "diagonal", 40, 100) == (0.0, 0.0)
    with_reason = VerdictRule(kind="curve", allowance=0.1, allowance_why="seed noise")
    assert allowance_at(with_reason, "quadratic", 40, 1600) == (0.1, 0.1)
    with pytest.raises(ValidationError, match="finite_d applies to the curve, spectrum and width"):
        VerdictRule(kind="phase", finite_d=True)
    with pytest.raises(ValidationError, match="allowance_why"):
        VerdictRule(kind="phase", allowance=0.05)


def test_curve_points_in_noise_fitting_are_shown_but_not_judged() -> None:
    from service.analysis.reports import GroupTheory, PointTheory, TheoryReport

    def point(n: int, ratio: float, df: float) -> PointTheory:
        return PointTheory(
            model="quadratic", d=32, n=n, alpha=n / 1024, weight_decay=0.01, gamma=1.0,
            noise=0.25, rank=None, link_power=None, measured_mean=0.1 * ratio,
            measured_se=0.001, n_seeds=8, rel_diff=ratio - 1,
            predicted={"excess_risk": 0.1, "df": df},
        )  # fmt: skip

    theory = TheoryReport(
        sweep_id=1, x="alpha", by=["d"],
        points=[point(256, 1.40, 0.95 * 256), point(512, 1.06, 0.7 * 512),
                point(1024, 1.01, 0.4 * 1024)],
        groups=[GroupTheory(group={"d": 32.0}, x_window=(0.25, 1.0), measured_exponent=1.0,
                            predicted_exponent=1.0, n_points=3)],
    )  # fmt: skip
    rule = VerdictRule(kind="curve", allowance=0.0, finite_d=True)
    (g,) = curve_verdicts(rule, "s", theory)
    # alpha = 0.25 is in noise fitting: not judged, listed; 0.5 agrees through the measured
    # excess (0.06 <= max(1.7 x 32/512, 2/32) = 0.10625), 1.0 within three standard errors
    assert g.agrees and not g.raw_agrees and g.allowance == pytest.approx(0.10625, rel=1e-12)
    assert "not judged (noise fitting" in g.why and "alpha=0.25 (R/R_SE = 1.400" in g.why
    assert "1 of 2 grid points within 3 standard errors" in g.why
    assert "bench_finite_size" in g.allowance_source


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
    # the certified spectrum: what the certificate proves zero is exactly zero
    close = Spectrum(kind="eig_S", values=[1.02, 0.51, 0.24, 0.1, 0.052, 0, 0, 0, 0, 0])
    far = Spectrum(kind="eig_S", values=[1.6, 0.9, 0.5, 0.3, 0.2, 0.15, 0.1, 0.08, 0.05, 0.02])
    rule = VerdictRule(kind="spectrum", allowance=0.0, finite_d=True)
    (ok,) = spectrum_verdicts(rule, "s", 1, [(run, [close], theory)])
    # one seed: no scatter, so only the measured allowance (spikes 2/d = 0.2 at d = 10)
    assert ok.agrees and not ok.raw_agrees and "support 5.0 vs predicted 5.0" in ok.why
    assert ok.allowance == pytest.approx(0.2, rel=1e-12) and "spectra" in ok.allowance_source
    (bad,) = spectrum_verdicts(rule, "s", 1, [(run, [far], theory)])
    assert not bad.agrees and "outside even with the allowance" in bad.why


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
    groups = spectrum_verdicts(VerdictRule(kind="spectrum", allowance=0.0), "s", 1, runs)
    assert [g.group for g in groups] == [
        "s: weight_decay=0.3, d=10, n=100, gamma=1, noise=0",
        "s: weight_decay=0.3, d=10, n=400, gamma=1, noise=0",
    ]
    assert all(g.agrees and g.raw_agrees for g in groups)


def _width_theory(curves: dict[int, list[tuple[int, float, float]]]) -> object:
    """A width sweep's /theory answer at d = 40: per n, (width, measured mean, SE risk), each
    mean with a standard error of 1 % and a prediction outside noise fitting."""
    from service.analysis.reports import GroupTheory, PointTheory, TheoryReport

    points = [
        PointTheory(
            model="quadratic", d=40, n=n, alpha=n / 1600, weight_decay=0.01, gamma=1.0,
            noise=0.25, rank=None, link_power=None, width=m, measured_mean=mean,
            measured_se=0.01 * mean, n_seeds=6, rel_diff=mean / pred - 1,
            predicted={"excess_risk": pred, "df": 0.3 * n},
        )
        for n, rows in curves.items()
        for m, mean, pred in rows
    ]  # fmt: skip
    groups = [
        GroupTheory(group={"n": float(n), "weight_decay": 0.01}, x_window=(1.0, 40.0),
                    measured_exponent=None, predicted_exponent=None, n_points=len(rows))
        for n, rows in curves.items()
    ]  # fmt: skip
    return TheoryReport(sweep_id=2, x="width", by=["n", "weight_decay"], points=points,
                        groups=groups)  # fmt: skip


# n = 800 at d = 40 (the width example): best width 3, bump at 13, full width 1.25x the best
BUMPY = [(1, 0.42, 0.42), (3, 0.27, 0.264), (8, 0.34, 0.334), (13, 0.38, 0.373),
         (20, 0.35, 0.348), (40, 0.33, 0.330)]  # fmt: skip
# n = 1600: the full width is best, no bump
MONOTONE = [(1, 0.40, 0.402), (3, 0.20, 0.201), (8, 0.16, 0.160), (40, 0.127, 0.127)]


def test_width_verdict_reads_best_width_and_bump_and_says_how_the_best_width_moves() -> None:
    from service.analysis.verdict import width_verdicts

    rule = VerdictRule(kind="width", x="width", by=["n", "weight_decay"], finite_d=True)
    bumpy, monotone = width_verdicts(rule, "w", _width_theory({800: BUMPY, 1600: MONOTONE}))  # type: ignore[arg-type]
    assert bumpy.agrees and bumpy.raw_agrees, bumpy.why
    assert (bumpy.measured_exponent, bumpy.se_exponent, bumpy.form) == (3.0, 3.0, "best width")
    assert "bump at width 13" in bumpy.why and "widest (40) / best" in bumpy.why
    assert monotone.agrees and "no bump predicted" in monotone.why, monotone.why
    assert monotone.measured_exponent == 40.0
    # the largest n's group says how the best width moved (a summary, not a verdict of its own)
    assert "best width against n = 800, 1600: measured 3 -> 40, predicted 3 -> 40" in monotone.why
    assert "best width against n" not in bumpy.why


def test_width_verdict_refuses_a_missing_bump_and_a_wrong_best_width() -> None:
    from service.analysis.verdict import width_verdicts

    rule = VerdictRule(kind="width", x="width", by=["n", "weight_decay"])
    # measured flat from width 8 on: no bump where the SE has one 13 % above the widest (the
    # points at 13 and 20 also sit 11 % and 5 % below their SE values)
    flat = [(m, 0.33 if m >= 8 else mean, pred) for m, mean, pred in BUMPY]
    (g,) = width_verdicts(rule, "w", _width_theory({800: flat}))  # type: ignore[arg-type]
    assert not g.agrees and "bump at width 13" in g.why and "(NO)" in g.why
    # the measured minimum at the full width while the SE says 3: best width refused
    wrong = [(m, 0.2 if m == 40 else mean, pred) for m, mean, pred in BUMPY]
    (g,) = width_verdicts(rule, "w", _width_theory({800: wrong}))  # type: ignore[arg-type]
    assert not g.agrees and g.measured_exponent == 40.0 and g.se_exponent == 3.0


def test_a_narrow_width_below_d_squared_over_2_has_the_measured_width_excess() -> None:
    from service.theory.finite_size import WIDTH_EXCESS

    rule = VerdictRule(kind="width", x="width", finite_d=True)
    assert allowance_at(rule, "quadratic", 40, 800, 3) == (0.0, WIDTH_EXCESS)
    # full width, or n >= d(d+1)/2: the convex rule
    assert allowance_at(rule, "quadratic", 40, 800, 40) == (0.0, pytest.approx(0.085))
    assert allowance_at(rule, "quadratic", 40, 1640, 3) == allowance_at(rule, "quadratic", 40, 1640)


def test_a_narrow_width_beyond_the_measured_d_is_left_unjudged() -> None:
    """Below d(d+1)/2 samples the narrow-width excess is measured up to d = 40 only: at d = 80
    a narrow point far above the SE is named as not judged, not passed by the allowance nor
    failed by the convex rule; the full width at the same n is judged."""
    from service.analysis.reports import GroupTheory, PointTheory, TheoryReport
    from service.analysis.verdict import width_verdicts

    rows = [(3, 1.3, 1.0), (8, 1.0, 1.0), (80, 0.9, 0.9)]
    points = [
        PointTheory(
            model="quadratic", d=80, n=1600, alpha=0.25, weight_decay=0.01, gamma=1.0,
            noise=0.25, rank=None, link_power=None, width=m, measured_mean=mean,
            measured_se=0.01 * mean, n_seeds=6, rel_diff=mean / pred - 1,
            predicted={"excess_risk": pred, "df": 0.3 * 1600},
        )
        for m, mean, pred in rows
    ]  # fmt: skip
    group = GroupTheory(group={"n": 1600.0}, x_window=(3.0, 80.0), measured_exponent=None,
                        predicted_exponent=None, n_points=3)  # fmt: skip
    theory = TheoryReport(sweep_id=3, x="width", by=["n"], points=points, groups=[group])
    rule = VerdictRule(kind="width", x="width", by=["n"], finite_d=True)
    (g,) = width_verdicts(rule, "w", theory)
    assert "1 of 1 grid points" in g.why, g.why
    assert "width=3 (R/R_SE = 1.300, narrow width at d = 80)" in g.why
    assert "width=8 (R/R_SE = 1.000, narrow width at d = 80)" in g.why
    with pytest.raises(ValidationError, match="x: the width verdict"):
        VerdictRule(kind="width", x="n")
