"""The shapes of the analysis answers (what the API serves and the CLI prints), apart from
the code that computes them: exponents, theory next to measurement, the phase diagram, and
spectra next to generalisation. Frozen pydantic models; field names are the contract."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from service.fitting import Segment


class Report(BaseModel):
    """Base of every answer: frozen, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class CurvePoint(Report):
    """One point of a group's fitted curve with the band of its exponent's 95% interval."""

    x: float
    fit: float
    lo: float
    hi: float


class GroupFit(Report):
    """The fit of one group."""

    group: dict[str, float | None]
    form: str | None = None
    """power_law, plateau or broken_power_law: the form the model choice picked."""
    exponent: float | None = None
    """beta of R ~ C x^-beta (broken form: the last segment's, at the largest x)."""
    exponent_ci: tuple[float, float] | None = None
    """95% interval (how: ``ci_method``)."""
    ci_method: str | None = None
    """How the interval was made (bootstrap unit, small-sample widening, fallbacks)."""
    prefactor: float | None = None
    plateau: float | None = None
    """R_inf of R = R_inf + C x^-beta, where that form was chosen."""
    plateau_onset: float | None = None
    """The crossover x* = (C/R_inf)^(1/beta) where the decaying part meets the plateau."""
    breaks: list[float] = []
    """Crossover locations in x, where a broken power law was chosen."""
    segments: list[Segment] = []
    goodness: float | None = None
    """Root-mean-square log error of the chosen form on the points."""
    candidates: dict[str, float] = {}
    """Score of every form tried (lower is better)."""
    selection_notes: list[str] = []
    """What this group's selection left out and why (forms not fitted, forms the data do not
    support); the report's ``selection`` is the rule every group followed."""
    n_points: int
    """Distinct x values used."""
    n_runs: int
    """Runs behind those points."""
    n_left_out: int
    """Runs left out: failed, unconverged, with a non-positive risk, or (unless asked) with
    many global minima."""
    n_non_unique: int = 0
    """Runs left out because their minimiser is not unique (weight_decay = 0, n < p)."""
    n_failed: int
    n_unconverged: int
    n_pending: int
    """Runs still queued or running."""
    error: str | None = None
    """Why there is no fit."""
    curve: list[CurvePoint] = []
    """The chosen form on a log grid over the window, with the exponent band
    (``service.analysis.curves``): what plots draw next to the points."""


class ExponentReport(Report):
    """Answer to GET /v1/sweeps/{id}/exponents."""

    sweep_id: int
    x: str
    by: list[str]
    selection: str
    """How the form of each group was chosen."""
    bootstrap: int
    bootstrap_seed: int
    groups: list[GroupFit]


class PointTheory(Report):
    """One grid point: prediction, measurement, relative difference."""

    model: str
    d: int
    n: int
    alpha: float
    weight_decay: float
    gamma: float
    noise: float
    rank: int | None
    link_power: float | None
    width: int | None = None
    """The effective hidden width m of the point's runs (``RunPoint.width``; None: not
    given): plots and the phase diagram match points to groups on it like on every axis."""
    predicted: dict[str, float | int | str | None] | None
    """R (excess_risk), tau or sigma, zeta, df, support, train_mse, draws, finite_size_note."""
    prediction_error: str | None = None
    measured_mean: float | None
    measured_se: float | None
    """Standard error of the mean over seeds (None with one seed)."""
    n_seeds: int
    rel_diff: float | None
    """(measured mean - predicted R) / predicted R."""

    @property
    def predicted_risk(self) -> float | None:
        """The state evolution's excess risk R at this point (None without a positive one)."""
        r = self.predicted.get("excess_risk") if self.predicted else None
        return r if isinstance(r, float) and r > 0 else None


class GroupTheory(Report):
    """Measured and predicted exponents of one group over the same x-window: the measured one
    is the exponents query's (one estimator, ``TheoryReport.estimator``), the predicted one
    the state-evolution curve at the same x fitted with the same form."""

    group: dict[str, float | None]
    x_window: tuple[float, float] | None
    measured_exponent: float | None
    measured_ci: tuple[float, float] | None = None
    """95% interval of the measured exponent (the exponents query's)."""
    form: str | None = None
    """The form the measured fit chose; the predicted exponent is fitted with it."""
    predicted_exponent: float | None
    n_points: int
    n_runs: int = 0
    n_left_out: int = 0
    error: str | None = None


class TheoryReport(Report):
    """Answer to GET /v1/sweeps/{id}/theory."""

    sweep_id: int
    x: str
    by: list[str]
    points: list[PointTheory]
    groups: list[GroupTheory]
    estimator: str = ""
    """How a group's measured exponent is estimated (the same in every answer)."""
    note: str | None = None


class FamilyPhase(Report):
    """One family (one power l) of the scaling path."""

    power: float
    """The link's power p (lambda = coef * n^p)."""
    decay: float
    """l = -p, the decay power of THEORY.md 7 (lambda = lambda0 n^-l)."""
    group: dict[str, float | None]
    measured_exponent: float | None
    measured_ci: tuple[float, float] | None
    measured_form: str | None
    se_exponent: float | None
    """The SE curve over the same x-window, fitted with the measured fit's form (se_form)."""
    se_form: str | None = None
    """The form the SE exponent was fitted with (power_law where the measured form failed)."""
    heuristic_exponent: float | None
    """None where lambda grows with n (``regime`` "growing weight decay")."""
    heuristic_regime: str
    regime: str | None
    """parametric, noise fitting (interpolation without noise), plateau, tuned,
    bias-dominated or towards noise fitting (``PhaseDiagram.regime_rule``)."""
    df_over_n: float | None
    """Predicted df/n at the largest n of the window."""
    kappa_slope: float | None = None
    """d log(zeta/tau) / d log n over the window (zeta/sigma for the quadratic model)."""
    x_window: tuple[float, float] | None
    n_runs: int
    n_left_out: int
    error: str | None = None


class PhaseDiagram(Report):
    """Answer to GET /v1/sweeps/{id}/phase-diagram."""

    sweep_id: int
    x: str
    families: list[FamilyPhase]
    regime_rule: str


class SpectraPoint(Report):
    """One grid point: excess risk and spectral exponents, averaged over seeds."""

    d: int
    n: int
    weight_decay: float
    gamma: float
    noise: float
    link_power: float | None
    width: int | None = None
    """The effective hidden width m of the point's runs (``RunPoint.width``): a width sweep
    has one point per width."""
    kind: str
    n_runs: int
    excess_risk_mean: float | None
    excess_risk_se: float | None
    tail_alpha_mean: float | None
    """Mean over the runs with a tail fit (None: no run has one; see n_tail_fits)."""
    tail_alpha_se: float | None
    n_tail_fits: int = 0
    """Runs whose certified spectrum has a tail fit (the others: too few values above the
    certificate's resolution, or a tail the goodness-of-fit test rejects)."""
    n_tail_mean: float | None
    rank_exponent_mean: float | None
    rank_exponent_se: float | None
    predicted_alpha_ww: float
    """1 + 1/gamma: the heavy-tail exponent of a power-law spectrum with exponent gamma."""


class SpectraSummary(Report):
    """Answer to GET /v1/sweeps/{id}/spectra/summary."""

    sweep_id: int
    points: list[SpectraPoint]
    note: str


class SpectrumTheory(Report):
    """The SE prediction for one run's main spectrum."""

    kind: str
    predicted_values: list[float]
    """Predicted sorted spectrum (THEORY.md 3.1 / 4.5), decreasing."""
    predicted_support: float
    """Predicted number of non-zeros (diagonal) or rank (quadratic)."""
    zeta: float
    predicted_alpha_ww: float
    measured_tail_alpha: float | None
    measured_rank_exponent: float | None
    gamma: float
    note: str | None = None
