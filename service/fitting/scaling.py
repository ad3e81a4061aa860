"""fit_scaling: choose among the scaling forms, and a bootstrap interval for the exponent.

Candidates. ``power_law`` (2 parameters), ``plateau`` (3), ``broken_power_law_k`` for
k = 1 .. max_breaks (2 + 2k: intercept, first slope, k slope changes, k break positions).
A candidate is tried only when there are more distinct x than it has parameters (and,
for breaks, 2 distinct x per segment). All are fitted on every (x, y) observation (seeds
pooled, log residuals, Huber loss by default).

Scores (lower is better), reported for every candidate tried:

* ``"aicc"`` (default): ``n ln(RSS/n) + 2p + 2p(p+1)/(n-p-1)`` on the log residuals of the
  fit, n = observations, p = parameters; ``RSS/n`` is floored at 1e-18 (log residuals
  below 1e-9 are round-off, so exact data tie and the simplest form wins). With too few
  observations for AICc of the power law (n <= 3) plain AIC is used and ``selection`` says
  so.
* ``"holdout"``: RMSLE on the observations at the largest ``max(1, round(n_x/5))``
  distinct x, every form fitted on the others; needs >= 6 distinct x, otherwise AICc is
  used and ``selection`` says so.

Rule (guard against over-fitting). A form other than the pure power law is *eligible* only
if the data support it clearly: AICc lower by more than ``AICC_MARGIN`` = 10 and BIC lower
too (or held-out RMSLE lower by more than ``RMSLE_MARGIN`` = 10 %). Among the power law and
the eligible forms, the one with the fewest parameters whose AICc is within
``CHOICE_MARGIN`` = 2 of the best eligible score is chosen (so a second break must also earn
its keep, and a plateau does not take the place of a clearly better break). A chosen plateau
below ``MIN_PLATEAU_FRACTION`` = 5 % of the smallest observed risk, or a break whose
adjacent exponents differ by less than ``MIN_SLOPE_CHANGE`` = 0.05, is one power law (the
next eligible form is taken, and ``selection`` says so).

Why a margin of 10 (chosen by bench/bench_fits.py: synthetic sweeps with 3-20 seeds, 6-12
x values over a factor 2^5-2^11, 5-15 % per-run scatter): the break position is searched,
so on pure power laws the best broken form's AICc gain is not chi-square with 2 degrees
of freedom; it exceeded 2 in 6.7 %, 6 in 1.3 % and 8 in none of 150 sweeps, while real
breaks (exponent ratio 1.5-3, break inside the window) gained 150 at the median and more
than 10 in 97 %. With the old margin of 2 the false-break rate was 5-6 %; with 10 it is
0 in 200 sweeps at a detection rate above 80 %. BIC agreement alone (margin 2) and a
bootstrap interval on the slope change were tried: neither removed the false breaks of
few-seed sweeps, where resampling seeds cannot separate a break from the pooled noise.

Interval. The chosen form (form and number of breaks fixed; no re-selection) is refitted
on ``bootstrap`` resamples: whole seed curves drawn with replacement when ``groups`` has
at least 2 labels, single observations otherwise; the 95 % interval is the 2.5 / 97.5
percentile of the exponents. With few resampling units the plain percentile interval is
too narrow (the bootstrap variance over G clusters is (G-1)/G of the unbiased one, and it
is itself estimated from G units: measured coverage 80 % with 5 seeds); with
``small_sample=True`` (default) its two half-widths about the bootstrap median are
multiplied by ``sqrt(G/dof) t_{dof,0.975} / z_{0.975}``, dof = G - 1 for seeds (G seeds)
and m - p for points (m observations, p parameters): 1.58 for 5 seeds, 1.22 for 10,
-> 1 for many. Resamples the form cannot be fitted to (e.g. too few distinct
x left) are skipped; ``bootstrap`` reports the replicates used. With fewer than half of the
requested replicates valid (or ``bootstrap=0``) the interval falls back to the asymptotic
``exponent +- 1.96 se`` (least-squares covariance; for broken forms at fixed breaks), or to
``(exponent, exponent)`` when not even that is defined; ``ci_method`` says which.

From ``LARGE_G`` = 30 seeds on, the power law's interval is the cluster-robust sandwich
interval over seeds (no refits; the seed bootstrap is normal to good accuracy there), which
keeps the uncached exponents query of a 10,000-run sweep fast; ``ci_method`` says so.
With fewer than ``SMALL_G`` = 10 seeds the power law's interval is the union of that
bootstrap interval and a t interval of the seeds' own exponents' spread around the pooled
estimate (+- t_{G-1} sd / sqrt G): with 3-5 seeds the widened bootstrap alone covered the
true exponent in 87-89 % of synthetic sweeps (a one-off measurement), the union in 94.5 %
(bench/bench_fits.py measures the union).
Runtime with 200 replicates on 8 x * 4 seeds (one core): ~0.15 s power law, ~0.7 s plateau,
~1.0 s broken.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel
from scipy.stats import norm
from scipy.stats import t as student_t

from service.errors import FitError
from service.fitting.forms import (
    BETA_BOUNDS,
    Array,
    FormFit,
    FormName,
    Loss,
    broken_form,
    check_xy,
    plateau_form,
    power_law_exponents,
    power_law_form,
)

SPARE_X = 2
"""A form with k parameters is fitted only to at least k + SPARE_X distinct x: with k + 1 a
plateau's three parameters went through four seed means (a README sweep's 1e-3 group:
beta 2.80 [2.46, 4.06], prefactor 2.6e5) and its interval said nothing of the form."""
AICC_MARGIN = 10.0
"""AICc gain over the power law that makes another form eligible (module docstring)."""
CHOICE_MARGIN = 2.0
"""Among eligible forms, the simplest within this AICc of the best is chosen."""
RMSLE_MARGIN = 0.10
RSS_FLOOR = 1e-18
HOLDOUT_MIN_X = 6
MIN_VALID_FRACTION = 0.5

Selection = Literal["aicc", "holdout"]
Candidate = tuple[str, int, Callable[[Array, Array, Loss], FormFit]]
"""(key, number of parameters, fitter) of a candidate form."""


class Segment(BaseModel, frozen=True):
    """One power-law segment: R ~ x^-exponent for x_from <= x <= x_to."""

    x_from: float
    x_to: float
    exponent: float


class ScalingFit(BaseModel, frozen=True):
    """The chosen scaling form with its exponent, interval and the scores of all forms."""

    form: FormName
    exponent: float
    """beta in R ~ C x^-beta; broken: the last segment (largest x); plateau: of C x^-beta."""
    exponent_ci: tuple[float, float]
    """95 % interval (see ``ci_method``)."""
    ci_method: str
    """How exponent_ci was obtained: bootstrap over seeds / points, or a fallback."""
    prefactor: float
    """C; for the broken form that of the last segment."""
    plateau: float | None
    breaks: list[float]
    segments: list[Segment]
    n_points: int
    n_observations: int
    selection: str
    """The selection rule (the same for every fit with the same options)."""
    notes: list[str] = []
    """What this fit's selection left out and why (forms not fitted, forms the data do not
    support)."""
    candidates: dict[str, float]
    goodness: float
    """RMSLE of the chosen form on all observations."""
    bootstrap: int
    bootstrap_seed: int


def _candidate_keys(forms: Sequence[str], max_breaks: int, n_x: int) -> list[Candidate]:
    """(key, parameters, fitter) of every candidate that is identifiable with n_x distinct x."""
    known = {"power_law", "plateau", "broken_power_law"}
    unknown = set(forms) - known
    if unknown:
        raise FitError(f"unknown form(s) {sorted(unknown)}; use {sorted(known)}")
    out: list[Candidate] = []
    if "power_law" in forms and n_x >= 2 + SPARE_X:
        out.append(("power_law", 2, power_law_form))
    if "plateau" in forms and n_x >= 3 + SPARE_X:
        out.append(("plateau", 3, plateau_form))
    if "broken_power_law" in forms:
        for k in range(1, max_breaks + 1):
            if n_x >= 2 + 2 * k + SPARE_X:

                def fitter(x: Array, y: Array, loss: Loss, k: int = k) -> FormFit:
                    return broken_form(x, y, k, loss)

                out.append((f"broken_power_law_{k}", 2 + 2 * k, fitter))
    if not out:
        raise FitError(
            f"too few distinct x to fit: {n_x}; a form with k parameters needs k + {SPARE_X} "
            f"(a power law {2 + SPARE_X}, a plateau {3 + SPARE_X}, one break {4 + SPARE_X})"
        )
    return out


def _too_few_x(forms: Sequence[str], max_breaks: int, n_x: int) -> list[str]:
    """A note for each requested form the number of distinct x rules out."""
    wanted = [("plateau", 3)] if "plateau" in forms else []
    if "broken_power_law" in forms and max_breaks > 0:
        wanted.append(("broken_power_law_1", 4))
    return [
        f"{key} not tried: {p} parameters need {p + SPARE_X} distinct x, there are {n_x}"
        for key, p in wanted
        if n_x < p + SPARE_X
    ]


def _aicc(resid: Array, p: int, corrected: bool = True) -> float:
    n = resid.size
    rss = max(float(resid @ resid) / n, RSS_FLOOR)
    if not corrected:
        return n * math.log(rss) + 2 * p
    if n - p - 1 <= 0:
        return math.inf
    return n * math.log(rss) + 2 * p + 2 * p * (p + 1) / (n - p - 1)


def _hopeless(power: FormFit, cands: list[Candidate], xa: Array, ya: Array) -> set[str]:
    """Forms that cannot become eligible, so need not be fitted.

    No function of x has a smaller residual sum of squares than the saturated one (the
    mean log y at each distinct x), so a form with p parameters scores at least
    ``n ln(RSS_sat / n) + 2p + 2p(p+1)/(n-p-1)``; when even that is not ``AICC_MARGIN``
    below the power law's AICc, the form cannot be chosen. Exact, and it saves the plateau
    and broken fits of most groups that are plain power laws (the uncached exponents query)."""
    v = np.log(ya)
    codes = np.unique(xa, return_inverse=True)[1]
    means = np.bincount(codes, weights=v) / np.bincount(codes)
    rss_sat = float(np.sum((v - means[codes]) ** 2))
    n = v.size
    power_score = _aicc(power.resid, 2)
    out = set()
    for key, p, _ in cands:
        if key == "power_law" or n - p - 1 <= 0:
            continue
        best_possible = (
            n * math.log(max(rss_sat / n, RSS_FLOOR)) + 2 * p + 2 * p * (p + 1) / (n - p - 1)
        )
        if not best_possible < power_score - AICC_MARGIN:
            out.add(key)
    return out


def _bic(resid: Array, p: int) -> float:
    n = resid.size
    rss = max(float(resid @ resid) / n, RSS_FLOOR)
    return n * math.log(rss) + p * math.log(n)


MIN_SLOPE_CHANGE = 0.05
"""Adjacent segments whose exponents differ by less than this are one power law."""
MIN_PLATEAU_FRACTION = 0.05
"""A plateau below this fraction of the smallest observed risk is no plateau (a power law)."""
FLAT_SLOPE = 0.05
"""A slope of log R this small is no decay (the phase diagram's number)."""
FLATTEN_RATIO = 1 / 3
"""A plateau's data must flatten: the slope over the upper third of the x values at most
this share of the slope over the lower third (or below FLAT_SLOPE)."""
SMALL_G = 10
"""Below this many seeds the power law's interval is also the t interval over the seeds'
own exponents (the union of the two is reported)."""


def _slope(xa: Array, ya: Array, keep: NDArray[np.bool_]) -> float:
    """Least-squares slope of -log y against log x over the observations ``keep``."""
    u, v = np.log(xa[keep]), np.log(ya[keep])
    uc = u - u.mean()
    return -float(uc @ (v - v.mean()) / (uc @ uc))


def _not_flat(xa: Array, ya: Array) -> str | None:
    """Why the data do not flatten (None when they do): over the upper third of the distinct
    x (at least two) the slope of log R against log x must have fallen to at most
    FLATTEN_RATIO of its value over the lower third, or below FLAT_SLOPE. A curve that only
    bends towards a slower power law (the l = 1/2 path of plateau-crossover: local slopes
    1.10 -> 0.59 over n = 100-1600, R -> 0) is no plateau, whatever a plateau form's
    extrapolated R_inf says; one that approaches its plateau (R_inf + C x^-beta, the local
    slope beta / (1 + (x/x*)^beta)) falls by far more over the same window."""
    xs = np.unique(xa)
    third = max(2, math.ceil(xs.size / 3))
    low = _slope(xa, ya, xa <= xs[third - 1])
    up = _slope(xa, ya, xa >= xs[-third])
    if up > max(FLAT_SLOPE, FLATTEN_RATIO * low):
        return (
            f"the data do not flatten: slope {up:.3f} over the upper third of the x values "
            f"against {low:.3f} over the lower third (a plateau needs <= "
            f"max({FLAT_SLOPE:g}, {FLATTEN_RATIO:.3g} x lower))"
        )
    return None


def _plateau_replicates(fits: Sequence[tuple[float, float | None]]) -> str | None:
    """Why the bootstrap does not support a plateau (None when it does): R_inf's 95 %
    interval must exclude 0 (NNLS puts a replicate without a plateau at exactly 0) and the
    exponent of the approach must stay off the search bounds (an interval reaching them is
    no interval: the approach is not resolved)."""
    if not fits:
        return "no bootstrap replicate of the plateau could be fitted"
    share = 0.025
    r_inf = np.array([p or 0.0 for _, p in fits])
    if np.mean(r_inf <= 0.0) > share:
        return (
            f"R_inf's 95 % interval includes 0 ({np.mean(r_inf <= 0.0):.0%} of the bootstrap "
            "replicates have no plateau)"
        )
    beta = np.array([e for e, _ in fits])
    lo, hi = BETA_BOUNDS
    at_bound = np.mean((beta <= lo * (1 + 1e-6)) | (beta >= hi * (1 - 1e-6)))
    if at_bound > share:
        return (
            f"the approach to the plateau is not resolved: {at_bound:.0%} of the bootstrap "
            f"replicates put its exponent at the search bound ({lo:g} or {hi:g})"
        )
    return None


def _unsupported(chosen: FormFit, xa: Array, ya: Array) -> str | None:
    """Why the data do not support the chosen plateau or break (None when they do).

    A plateau must be a visible part of the risk (at least MIN_PLATEAU_FRACTION of the
    smallest observation); each slope change of a broken power law must exceed
    MIN_SLOPE_CHANGE. (Requiring the slope change's bootstrap interval over seeds to exclude
    0 as well was tried: it rejected a fifth of real breaks, since resampling 3-5 seeds
    cannot tell a break from the pooled noise, and removed no false break the AICc margin
    leaves; bench/bench_fits.py.)"""
    if chosen.form == "plateau":
        if (chosen.plateau or 0.0) < MIN_PLATEAU_FRACTION * float(ya.min()):
            return f"plateau below {MIN_PLATEAU_FRACTION:g} of the smallest risk"
        return _not_flat(xa, ya)
    if chosen.form != "broken_power_law":
        return None
    diffs = np.diff(np.array(chosen.exponents))
    if np.any(np.abs(diffs) < MIN_SLOPE_CHANGE):
        return f"a slope change below {MIN_SLOPE_CHANGE:g}"
    return None


LARGE_G = 30
MIN_SEED_UNITS = 3
"""Fewest seeds the bootstrap resamples whole: two seeds give three distinct resamples, an
interval of no meaning (the examples' 2-seed groups covered the state evolution's exponent
in 85-95 % of draws); with fewer the points are resampled (bench/bench_fits.py)."""
"""From this many seeds the power law's interval is the cluster-robust (sandwich) one."""


def _cluster_interval(
    chosen: FormFit, xa: Array, members: list[NDArray[np.intp]]
) -> tuple[tuple[float, float], str]:
    """The power law's 95 % interval from the cluster-robust sandwich over seeds.

    With many seeds the seed bootstrap of the pooled (Huber) estimator is normal to good
    accuracy, and its variance is the sandwich A^-1 B A^-1 with A = sum psi'(r) z z' and
    B = G/(G-1) sum_g (sum_{i in g} psi(r_i) z_i)(...)' over the seeds, z = (1, log x - mean):
    the same interval in O(n) instead of 200 refits (what made the uncached exponents query
    of a 10,000-run sweep take 0.6 s). ``t_{G-1}`` quantile; coverage in bench/bench_fits.py.
    """
    u = np.log(xa)
    z = np.column_stack([np.ones_like(u), u - u.mean()])
    r = chosen.resid
    c = chosen.huber_threshold
    if c is not None:  # the Huber fit's own threshold
        psi, dpsi = np.clip(r, -c, c), (np.abs(r) <= c).astype(np.float64)
    else:
        psi, dpsi = r, np.ones_like(r)
    a = z.T @ (z * dpsi[:, None])
    g = len(members)
    scores = np.array([psi[m] @ z[m] for m in members])  # (G, 2)
    b = scores.T @ scores * (g / (g - 1))
    try:
        a_inv = np.linalg.inv(a)
    except np.linalg.LinAlgError:
        return (chosen.exponent, chosen.exponent), "none: singular sandwich"
    se = math.sqrt(max(float((a_inv @ b @ a_inv)[1, 1]), 0.0))
    half = float(student_t.ppf(0.975, g - 1)) * se
    return (
        (chosen.exponent - half, chosen.exponent + half),
        f"cluster-robust sandwich over {g} seeds (t_{g - 1})",
    )


def _with_seed_t_interval(
    chosen: FormFit,
    ci: tuple[float, float],
    method: str,
    xa: Array,
    ya: Array,
    members: list[NDArray[np.intp]],
    loss: Loss,
) -> tuple[tuple[float, float], str]:
    """With few seeds, widen the interval to the t interval over the seeds' own exponents.

    A bootstrap over 3-5 resampling units is too discrete to reach 95 % coverage even
    widened (bench/bench_fits.py measured 0.87-0.89); the t interval on the per-seed
    exponents (centred on the pooled estimate, so not exact, but of the right width) is what
    reaches it. The union of both is reported."""
    g = len(members)
    if g >= SMALL_G or g < 3:
        return ci, method
    per_seed = power_law_exponents([xa[m] for m in members], [ya[m] for m in members], loss)
    if not np.all(np.isfinite(per_seed)):
        return ci, method
    half = float(student_t.ppf(0.975, g - 1)) * float(np.std(per_seed, ddof=1)) / math.sqrt(g)
    lo, hi = min(ci[0], chosen.exponent - half), max(ci[1], chosen.exponent + half)
    return (lo, hi), method + f", and the t interval over the {g} seeds' exponents (union)"


def _widening(n_units: int, dof: int) -> float:
    """Small-sample factor sqrt(n/dof) t_{dof,0.975} / z_{0.975} (1 as n grows)."""
    if dof < 1:
        return 1.0
    return math.sqrt(n_units / dof) * float(student_t.ppf(0.975, dof)) / float(norm.ppf(0.975))


def _choose(
    scores: dict[str, float],
    n_params: dict[str, int],
    selection: Selection,
    bic: dict[str, float] | None = None,
    exclude: Collection[str] = (),
) -> str:
    """The selection rule of the module docstring, among the forms not in ``exclude``."""
    scores = {k: v for k, v in scores.items() if k not in exclude}
    if not scores:
        raise FitError("no form the data support could be fitted")

    def beats(a: float, b: float, margin: float = AICC_MARGIN) -> bool:
        if selection == "aicc":
            return a < b - margin
        return a < b * (1.0 - RMSLE_MARGIN)

    def bic_agrees(k: str, base: str) -> bool:
        return bic is None or bic[k] < bic[base]

    base = "power_law" if "power_law" in scores else min(scores, key=lambda k: n_params[k])
    eligible = [
        k for k in scores if k == base or (beats(scores[k], scores[base]) and bic_agrees(k, base))
    ]
    best = min(scores[k] for k in eligible)
    close = [k for k in eligible if not beats(best, scores[k], CHOICE_MARGIN)]
    return min(close, key=lambda k: (n_params[k], scores[k]))


def _segments(fit: FormFit, x: Array) -> list[Segment]:
    edges = [float(x.min()), *fit.breaks, float(x.max())]
    return [
        Segment(x_from=edges[i], x_to=edges[i + 1], exponent=e) for i, e in enumerate(fit.exponents)
    ]


def _score(
    cands: list[Candidate],
    fits: dict[str, FormFit],
    xa: Array,
    ya: Array,
    selection: Selection,
    loss: Loss,
) -> tuple[dict[str, float], str, Selection]:
    """Scores of every fitted candidate (lower is better), the label and the rule used."""
    n_x = len(np.unique(xa))
    n_params = {key: p for key, p, _ in cands}
    method: Selection = selection
    note = ""
    if selection == "holdout" and n_x < HOLDOUT_MIN_X:
        method, note = "aicc", f" (held-out RMSLE needs >= {HOLDOUT_MIN_X} distinct x)"
    scores: dict[str, float] = {}
    if method == "aicc":
        scores = {k: _aicc(f.resid, n_params[k]) for k, f in fits.items()}
        label = "aicc" + note
        if not math.isfinite(scores.get("power_law", 0.0)):
            scores = {k: _aicc(f.resid, n_params[k], corrected=False) for k, f in fits.items()}
            label = "aic (too few observations for AICc)"
    elif method == "holdout":
        xs = np.unique(xa)
        n_hold = max(1, round(n_x / 5))
        cut = xs[-n_hold]
        train, test = xa < cut, xa >= cut
        n_train_x = n_x - n_hold
        for key, p, fitter in cands:
            if key not in fits or n_train_x <= p:
                continue
            try:
                f = fitter(xa[train], ya[train], loss)
            except (FitError, ValueError, np.linalg.LinAlgError):
                continue
            r = np.log(ya[test]) - f.log_predict(xa[test])
            scores[key] = float(np.sqrt(np.mean(r**2)))
        label = f"held-out RMSLE on the largest {n_hold} x"
    else:
        raise FitError(f"selection must be 'aicc' or 'holdout', not {selection!r}")
    scores = {k: s for k, s in scores.items() if math.isfinite(s)}
    if not scores:
        raise FitError("no form could be scored")
    return scores, label, method


def _replicate_fits(
    xa: Array,
    ya: Array,
    members: list[NDArray[np.intp]] | None,
    n_params: int,
    fitter: Callable[[Array, Array, Loss], FormFit],
    vectorised: bool,
    *,
    bootstrap: int,
    seed: int,
    loss: Loss,
) -> list[tuple[float, float | None]]:
    """The chosen form's (exponent, plateau) on each bootstrap replicate that can be fitted.

    ``members``: the observations of each seed (resampled whole) or None (single points).
    """
    rng = np.random.default_rng(seed)
    n_x = len(np.unique(xa))
    x_code = np.unique(xa, return_inverse=True)[1]  # distinct x of a replicate, by bincount
    replicates: list[NDArray[np.intp]] = []
    for _ in range(bootstrap):
        if members is not None:
            pick = rng.integers(0, len(members), size=len(members))
            idx = np.concatenate([members[i] for i in pick])
        else:
            idx = rng.integers(0, xa.size, size=xa.size)
        if np.count_nonzero(np.bincount(x_code[idx], minlength=n_x)) < n_params + SPARE_X:
            continue
        replicates.append(idx)
    # the power law is refitted on all replicates at once (same fit, vectorised); a
    # replicate that vectorised fit leaves undecided (NaN) is refitted one by one
    batch = np.full(len(replicates), np.nan)
    if vectorised:
        batch = power_law_exponents([xa[i] for i in replicates], [ya[i] for i in replicates], loss)
    out: list[tuple[float, float | None]] = []
    for idx, e in zip(replicates, batch, strict=True):
        if math.isfinite(e):
            out.append((float(e), None))
            continue
        try:
            f = fitter(xa[idx], ya[idx], loss)
        except (FitError, ValueError, np.linalg.LinAlgError):
            continue
        out.append((f.exponent, f.plateau))
    return out


def _interval(
    chosen: FormFit,
    exps: list[float],
    *,
    bootstrap: int,
    unit: str,
    n_units: int,
    dof: int,
    small_sample: bool,
) -> tuple[tuple[float, float], str, int]:
    """The 95 % interval, how it was made (module docstring, "Interval") and how many
    bootstrap replicates it used (0: none)."""
    if bootstrap > 0 and len(exps) >= max(2, MIN_VALID_FRACTION * bootstrap):
        lo, hi, mid = (float(q) for q in np.percentile(np.array(exps), [2.5, 97.5, 50.0]))
        method = f"percentile bootstrap over {unit} ({len(exps)} replicates)"
        if small_sample:
            w = _widening(n_units, dof)
            lo, hi = mid - w * (mid - lo), mid + w * (hi - mid)
            method += f", widened x{w:.3f} about the median for {n_units} {unit}"
        return (lo, hi), method, len(exps)
    valid = f"bootstrap over {unit}: {len(exps)} of {bootstrap} valid"
    if chosen.exponent_se > 0:
        half = 1.96 * chosen.exponent_se
        return (chosen.exponent - half, chosen.exponent + half), f"asymptotic normal ({valid})", 0
    return (chosen.exponent, chosen.exponent), f"none: degenerate ({valid})", 0


def _fit_candidates(
    cands: list[Candidate], xa: Array, ya: Array, selection: Selection, loss: Loss
) -> tuple[dict[str, FormFit], set[str]]:
    """Every candidate form that can be fitted, the power law first; with AICc selection the
    forms that could not gain the margin even with a perfect fit (:func:`_hopeless`) are left
    unfitted and returned as skipped."""
    fits: dict[str, FormFit] = {}
    skipped: set[str] = set()
    for key, _, fitter in sorted(cands, key=lambda c: c[0] != "power_law"):
        if key in skipped:
            continue
        try:
            fits[key] = fitter(xa, ya, loss)
        except (FitError, ValueError, np.linalg.LinAlgError):
            continue
        if key == "power_law" and selection == "aicc":
            skipped = _hopeless(fits[key], cands, xa, ya)
    return fits, skipped


def fit_scaling(
    x: ArrayLike,
    y: ArrayLike,
    groups: ArrayLike | None = None,
    *,
    forms: Sequence[str] = ("power_law", "plateau", "broken_power_law"),
    max_breaks: int = 2,
    bootstrap: int = 200,
    seed: int = 0,
    selection: Selection = "aicc",
    loss: Loss = "huber",
    small_sample: bool = True,
) -> ScalingFit:
    """Fit R against x (pooled seeds), choose the form, bootstrap the exponent (module doc)."""
    xa, ya = check_xy(x, y, min_distinct=1)  # _candidate_keys says what each form needs
    labels: Array | None = None
    if groups is not None:
        g = np.asarray(groups)
        if g.shape != xa.shape:
            raise FitError(f"groups must have the shape of x {xa.shape}, got {g.shape}")
        labels = np.unique(g, return_inverse=True)[1].astype(np.float64)
    if bootstrap < 0:
        raise FitError("bootstrap must be >= 0")
    n_x = len(np.unique(xa))
    cands = _candidate_keys(forms, max_breaks, n_x)
    fits, skipped = _fit_candidates(cands, xa, ya, selection, loss)
    cands = [c for c in cands if c[0] not in skipped]
    if not fits:
        raise FitError("no form could be fitted")
    n_params = {key: p for key, p, _ in cands}
    scores, label, method = _score(cands, fits, xa, ya, selection, loss)
    bic = {k: _bic(f.resid, n_params[k]) for k, f in fits.items()} if method == "aicc" else None
    if method == "aicc":
        label += " with BIC agreement"
    notes = _too_few_x(forms, max_breaks, n_x)
    if skipped:
        notes.append(f"{', '.join(sorted(skipped))} not fitted (no fit could gain {AICC_MARGIN:g})")
    by_seed = labels is not None and len(np.unique(labels)) >= MIN_SEED_UNITS
    members = None
    if by_seed:
        assert labels is not None
        members = [np.flatnonzero(labels == lab) for lab in np.unique(labels)]
    unsupported = {k: why for k in scores if (why := _unsupported(fits[k], xa, ya)) is not None}
    preferred = _choose(scores, n_params, method, bic)
    chosen_key = _choose(scores, n_params, method, bic, exclude=unsupported)
    reps: list[tuple[float, float | None]] | None = None
    if chosen_key == "plateau":  # its R_inf and approach must be resolved by the bootstrap
        reps = _replicate_fits(
            xa, ya, members, 3, plateau_form, False, bootstrap=bootstrap, seed=seed, loss=loss
        )
        why = _plateau_replicates(reps) if bootstrap else None
        if why is not None:
            unsupported["plateau"] = why
            chosen_key, reps = _choose(scores, n_params, method, bic, exclude=unsupported), None
    chosen = fits[chosen_key]
    if preferred != chosen_key:
        notes.append(f"{chosen_key} instead of {preferred}: {unsupported[preferred]}")
    fitter = next(f for k, _, f in cands if k == chosen_key)
    used = 0  # bootstrap replicates behind the interval
    if chosen_key == "power_law" and members is not None and len(members) >= LARGE_G:
        ci, ci_method = _cluster_interval(chosen, xa, members)
    else:
        if reps is None:
            reps = _replicate_fits(
                xa, ya, members, n_params[chosen_key], fitter, chosen_key == "power_law",
                bootstrap=bootstrap, seed=seed, loss=loss,
            )  # fmt: skip
        n_units = len(members) if members is not None else int(xa.size)
        ci, ci_method, used = _interval(
            chosen,
            [e for e, _ in reps],
            bootstrap=bootstrap,
            unit="seeds" if by_seed else "points",
            n_units=n_units,
            dof=n_units - 1 if by_seed else n_units - n_params[chosen_key],
            small_sample=small_sample,
        )
        if chosen_key == "power_law" and members is not None and small_sample:
            ci, ci_method = _with_seed_t_interval(chosen, ci, ci_method, xa, ya, members, loss)
    return ScalingFit(
        form=chosen.form,
        exponent=chosen.exponent,
        exponent_ci=ci,
        ci_method=ci_method,
        prefactor=chosen.prefactor,
        plateau=chosen.plateau,
        breaks=list(chosen.breaks),
        segments=_segments(chosen, xa),
        n_points=n_x,
        n_observations=int(xa.size),
        selection=label,
        notes=notes,
        candidates=scores,
        goodness=float(np.sqrt(np.mean(chosen.resid**2))),
        bootstrap=used,
        bootstrap_seed=seed,
    )
