"""What a worker returns for one run: metrics, spectra with their tail fits, learning curve.

The JSON field names here are the contract (DESIGN.md, "Run metrics"): API, CLI and
exports all use them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
StopReason = Literal[
    "gradient",  # gradient-norm criterion met
    "objective",  # relative objective change below tol
    "duality_gap",  # convex solver: relative duality gap below tol
    "max_steps",  # step budget exhausted before any criterion
    "diverged",  # non-finite loss
    "timeout",  # wall-time limit exceeded
    "error",  # anything else that went wrong
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TailFit(_Model):
    """Continuous power-law fit p(x) ~ x^-alpha of the largest values (Clauset et al. 2009)."""

    alpha: float
    """Heavy-tail exponent (WeightWatchers' alpha); theory: 1 + 1/gamma."""
    xmin: float
    """Lower cut-off chosen by the minimal Kolmogorov-Smirnov distance."""
    n_tail: int
    """Number of values >= xmin that the fit used."""
    ks_distance: float
    sigma: float
    """Asymptotic standard error (alpha - 1)/sqrt(n_tail)."""
    alpha_ci: tuple[float, float]
    """95% bootstrap interval (percentile), xmin re-chosen in every replicate."""
    n_bootstrap: int
    p_value: float | None = None
    """Goodness of fit: Clauset et al.'s bootstrap p-value of the KS distance (a fit with
    p < 0.1 is refused, so a stored fit has p >= 0.1; None: not tested)."""
    n_gof: int = 0
    """Synthetic data sets behind ``p_value``."""
    floor: float = 0.0
    """Only values above this (the certificate's resolution) were fitted."""


class RankFit(_Model):
    """Rank-ordered fit value_k ~ C k^-exponent of the top of the spectrum."""

    exponent: float
    prefactor: float
    n_points: int
    """Ranks 1..n_points were used."""
    r2: float


class Spectrum(_Model):
    """One spectrum of the trained weights, sorted in decreasing order."""

    kind: Literal["eig_S", "sv_W", "abs_theta", "eig_S_raw", "sv_W_raw", "abs_theta_raw"]
    """Of the certified minimum (workers.screening: what the certificate proves zero is
    zero): eig_S, eigenvalues of S = W' diag(s) W; sv_W, singular values of W; abs_theta,
    |a * w| of the diagonal net. ``<kind>_raw``: the same of the trained parameters as they
    are (the optimiser's residue included), not fitted."""
    values: list[float]
    resolution: float | None = None
    """The certificate's resolution: a value at or below it may be zero at the minimum, and
    is not fitted (None: not computed)."""
    tail_fit: TailFit | None = None
    tail_fit_error: str | None = None
    """Why there is no tail fit (e.g. fewer than 10 positive values)."""
    rank_fit: RankFit | None = None
    rank_fit_error: str | None = None


class CurvePoint(_Model):
    """One point of the learning curve."""

    step: int
    train_loss: float
    excess_risk: float


CertificateKind = Literal["duality_gap", "second_order"]
"""How a run's point is certified (:attr:`RunMetrics.certificate`)."""


class RunMetrics(_Model):
    """The metrics of a finished run (DESIGN.md field names, plus certificates)."""

    excess_risk: float
    """Exact excess risk from the weights (THEORY.md section 1)."""
    train_loss: float
    """Mean squared error on the training set, (1/n) sum (y - f)^2."""
    objective: float
    """The training objective (1/2n) sum (y - f)^2 + penalty, at the returned parameters."""
    grad_norm: float
    """Euclidean norm of the gradient of the objective w.r.t. the trained parameters
    (for the convex optimizer: the prox-gradient fixed-point residual)."""
    converged: bool
    """A stop criterion was met *and* the run's certificate holds: the duality gap of the
    equivalent convex problem is small (``certificate: duality_gap``, a global minimum) or,
    for a network narrower than the convex solution's rank, the point is second-order
    stationary and the restarts agree (``certificate: second_order``, not a global-minimum
    certificate)."""
    steps: int
    stop_reason: StopReason
    wall_time_s: float
    device: str
    test_error: float | None = None
    """Mean of (f_hat(x) - f*(x))^2 over ``test_samples`` fresh inputs (no label noise)."""
    test_error_se: float | None = None
    duality_gap: float
    """Relative duality gap (P - D)/|P| of the equivalent convex problem at the solution."""
    support: int
    """Non-zero coefficients (diagonal) or rank of S (quadratic) of the certified minimum:
    what ``support_method`` proves zero is zero (the raw trained weights are in the spectra
    ``<kind>_raw``)."""
    penalty_norm: float
    """l1 norm of theta (diagonal) or nuclear norm of S (quadratic) of the certified minimum."""
    support_method: str | None = None
    """The estimator behind ``support``, ``penalty_norm`` and the spectra (None: a run stored
    before screening, whose support counted values above 1e-10 (diagonal) / 1e-8
    (quadratic) of the largest)."""
    screened: int | None = None
    """Coordinates / eigen-directions the certificate proves zero at the minimum."""
    resolution: float | None = None
    """The certificate's resolution: a value of the certified solution at or below it may be
    zero at the minimum (not fitted); None: not computed."""
    unique_minimizer: bool | None = None
    """False when the objective has many global minima (weight_decay = 0 with fewer samples
    than parameters): the certificate holds for all of them, the risk is the optimiser's."""
    minimizer_note: str | None = None
    """Why the minimiser is not unique."""
    batch_size: int | None = None
    """Runs trained together in the batch this run trained in (1: alone; None: convex)."""
    corrections: int | None = None
    """Support corrections applied during training (workers.corrections)."""
    certificate: CertificateKind | None = None
    """What certifies the reported point: ``duality_gap`` (the convex problem's gap: a global
    minimum; every full-width run, and a narrow one whose minimum has rank <= its width),
    ``second_order`` (a width below the convex solution's rank: the rank-constrained problem
    is non-convex; gradient and the Hessian's smallest eigenvalue checked, and ``restarts``
    runs from other initialisations reached the same objective within ``restart_spread``).
    None: stored before certificates had kinds (a duality gap)."""
    hessian_min_eig: float | None = None
    """``second_order``: the smallest eigenvalue of the objective's Hessian in the network's
    parameters at the reported point (Lanczos; >= minus the tolerance at a second-order
    stationary point; the rotations of W give exact zeros)."""
    restarts: int | None = None
    """``second_order``: training runs from independent initialisations compared (this one
    included)."""
    restarts_at_best: int | None = None
    """``second_order``: restarts that reached the lowest objective (within the agreement
    tolerance); the certificate needs two."""
    restart_spread: float | None = None
    """``second_order``: relative spread (max - min)/|min| of the restarts' objectives; the
    restarts agree when it is at most the run's agreement tolerance (the reported point is the
    lowest)."""
    timings: dict[str, float] | None = None
    """Seconds per phase of the run: ``data`` (teacher and data onto the device), ``train``
    (the training loop or the convex solve, certificates and corrections apart),
    ``certificate`` (every certificate, warm solves and the final screening included),
    ``corrections`` and ``spectra`` (None: a run stored before they were kept)."""


class RunResult(_Model):
    """What a worker sends back for one run."""

    config_hash: str
    status: Literal["succeeded", "failed"]
    error: str | None = None
    metrics: RunMetrics | None = None
    spectra: list[Spectrum] = Field(default_factory=list)
    curve: list[CurvePoint] = Field(default_factory=list)
