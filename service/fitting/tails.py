"""Power-law fits of a spectrum's largest values (THEORY.md section 6, PEERS.md 5.1).

* :func:`fit_tail` -- the WeightWatchers / Clauset-Shalizi-Newman (2009) continuous power-law
  fit ``p(x) ~ x^-alpha`` of the largest values, ``x_min`` chosen by the minimal
  Kolmogorov-Smirnov distance, with a percentile bootstrap interval on ``alpha`` and
  Clauset et al.'s goodness-of-fit test (section 4.1: the semi-parametric bootstrap p-value
  of the KS distance, the fit refused when ``p < GOF_P_MIN``);
* :func:`fit_rank` -- a least-squares line through the rank-ordered profile
  ``value_k ~ C k^-exponent``.

Both take ``floor``: values at or below it are not used (the certificate's resolution,
:mod:`workers.screening`: a value there may be zero at the minimum). For a rank profile
``lambda_k = C k^-gamma`` the two are linked by ``alpha = 1 + 1/gamma`` (THEORY.md section 6);
finite ranges bias both (see the caveats there). numpy only.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from service.errors import FitError
from service.results import RankFit, TailFit

Array = NDArray[np.float64]

MIN_TAIL_VALUES = 10
"""Fewest positive values :func:`fit_tail` accepts, and the default smallest tail."""
MIN_RANK_POINTS = 3
"""Fewest ranks :func:`fit_rank` accepts."""
TINY_RELATIVE = 1e-8
"""Values ``<= TINY_RELATIVE * max`` are treated as zeros by :func:`fit_tail`: a network
certified to a relative gap of 1e-6 leaves the components the convex minimum sets to zero at
1e-10 to 1e-16 of the top value (a tail fit on them chose x_min = 5e-11 on a d = 12 run);
the power-law spectra of the paper span at most about 1e7 (d^gamma)."""
RANK_FLOOR_RELATIVE = 1e-8
"""Default floor of :func:`fit_rank`: ranks with ``value >= RANK_FLOOR_RELATIVE * max``."""
DEFAULT_N_BOOTSTRAP = 200
DEFAULT_N_GOF = 100
"""Synthetic data sets of the goodness-of-fit test: the p-value's standard error is about
0.03 near GOF_P_MIN (Clauset et al. use 2,500 for +-0.01; 100 keeps a spectrum's fits
under a second at d = 1000)."""
GOF_P_MIN = 0.1
"""Clauset et al.'s rule: a power law is ruled out when p <= 0.1."""

_CHUNK_ELEMENTS = 1 << 16  # working-set size of one block of the KS matrix (float64 elements)
_BATCH_MAX_VALUES = 48  # fit_tail bootstraps spectra up to this long all replicates at once
_Z95 = 1.959963984540054  # standard-normal 97.5% quantile (fallback interval only)


# --------------------------------------------------------------------------------------------
# input handling


def as_vector(values: ArrayLike) -> Array:
    """``values`` as a finite float64 vector of shape (n,); FitError on NaN/inf."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D array of values, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise FitError(f"{bad} of {arr.size} values are not finite (NaN or inf)")
    return arr


def _positive_sorted(arr: Array, floor: float = 0.0) -> Array:
    """The values ``> max(TINY_RELATIVE * max(arr), floor)``, sorted increasing."""
    if arr.size == 0:
        return arr
    top = float(arr.max())
    if not top > 0.0:
        return np.empty(0, dtype=np.float64)
    return np.sort(arr[arr > max(TINY_RELATIVE * top, floor)])


# --------------------------------------------------------------------------------------------
# tail fit


def _candidate_rows(
    first: NDArray[np.intp], n: int, min_tail: int, max_candidates: int | None
) -> NDArray[np.intp]:
    """Indices k into the unique values that are admissible x_min candidates."""
    rows = np.flatnonzero(n - first >= min_tail)
    if max_candidates is not None and rows.size > max_candidates:
        pick = np.unique(np.round(np.linspace(0, rows.size - 1, max_candidates)).astype(np.intp))
        rows = rows[pick]
    return rows


def _fit_sorted(
    x: Array, min_tail: int, max_candidates: int | None
) -> tuple[float, float, int, float] | None:
    """Fit the power-law tail of sorted positive values.

    Parameters
    ----------
    x : ndarray, shape (n,)
        Positive values sorted increasing (ties allowed).
    min_tail : int
        Smallest admissible number of values ``>= x_min``.
    max_candidates : int or None
        Keep at most this many x_min candidates (evenly spaced in rank); None keeps all.

    Returns
    -------
    (alpha, xmin, n_tail, ks_distance), or None when no candidate is admissible (fewer than
    ``min_tail`` values, or every admissible tail has all its values equal).

    Notes
    -----
    Works on the distinct values ``u_0 < ... < u_{U-1}`` with multiplicities ``c_j``; ``first_j`` is
    the number of values below ``u_j``. For the candidate ``x_min = u_k`` with tail size
    ``m_k = n - first_k`` and ``Delta_kj = ln(u_j/u_k)`` (j >= k):

    * ``alpha_k = 1 + m_k / sum_j c_j Delta_kj`` (continuous MLE);
    * model survival ``G_kj = exp((1 - alpha_k) Delta_kj)``; empirical survival just below and at
      ``u_j``: ``(n - first_j)/m_k`` and ``(n - first_j - c_j)/m_k``; the KS distance is
      ``D_k = max_j max(G_kj - (n - first_j - c_j)/m_k, (n - first_j)/m_k - G_kj)``, which is the
      exact two-sided ``sup |F_emp - F_model|`` for a step function against a continuous CDF.

    The (candidates x U) matrices are built in row blocks of about ``_CHUNK_ELEMENTS`` elements.
    Logarithms are taken of ``x / max(x)``, so rescaling the input by a power of two gives
    bit-identical results (and any other factor changes them only by rounding).
    """
    n = x.size
    if n < min_tail:
        return None
    new = np.empty(n, dtype=bool)
    new[0] = True
    np.not_equal(x[1:], x[:-1], out=new[1:])
    first = np.flatnonzero(new)  # (U,)
    u = x[first]
    counts = np.diff(np.append(first, n)).astype(np.float64)  # (U,)
    logs = np.log(u / u[-1])  # (U,), <= 0
    above = (n - first).astype(np.float64)  # values >= u_j, (U,)
    above_strict = above - counts  # values > u_j, (U,)

    rows = _candidate_rows(first, n, min_tail, max_candidates)
    if rows.size == 0:
        return None
    n_unique = u.size
    height = max(1, min(rows.size, _CHUNK_ELEMENTS // n_unique))
    buf = np.empty((height, n_unique))  # model survival, reused by every block
    work = np.empty((height, n_unique))
    best: tuple[float, float, int, float] | None = None
    for start in range(0, rows.size, height):
        blk = rows[start : start + height]  # (h,) candidate indices, increasing
        k0 = int(blk[0])
        h = blk.size
        surv = buf[:h, : n_unique - k0]  # (h, w) with w = U - k0
        tmp = work[:h, : n_unique - k0]
        m = above[blk]  # tail sizes, (h,)
        np.subtract(logs[None, k0:], logs[blk, None], out=surv)  # Delta; < 0 left of candidate
        np.maximum(surv, 0.0, out=surv)
        denom = surv @ counts[k0:]  # (h,)
        ok = denom > 0.0
        if not np.any(ok):
            continue
        alpha = 1.0 + m / np.where(ok, denom, 1.0)  # (h,)
        np.multiply(np.where(ok, 1.0 - alpha, 0.0)[:, None], surv, out=surv)
        np.exp(surv, out=surv)  # model survival G; 1 left of the candidate
        np.multiply(surv, m[:, None], out=surv)  # m_k * G_kj
        np.subtract(surv, above_strict[None, k0:], out=tmp)
        d_hi = tmp.max(axis=1)  # (h,); <= 0 left of the candidate
        # left of the candidate min(above_j, m_k) = m_k = m_k * G_kj: contributes 0
        np.minimum(above[None, k0:], m[:, None], out=tmp)
        np.subtract(tmp, surv, out=tmp)
        d_lo = tmp.max(axis=1)
        ks = np.maximum(d_hi, d_lo) / m  # (h,)
        ks[~ok] = np.inf
        i = int(np.argmin(ks))  # first minimum: the smallest x_min among ties
        if best is None or ks[i] < best[3]:
            best = (float(alpha[i]), float(u[blk[i]]), int(m[i]), float(ks[i]))
    return best


def _bootstrap_alphas(samples: Array, min_tail: int) -> tuple[Array, Array]:
    """The exponent and KS distance :func:`_fit_sorted` picks for each row of ``samples``;
    NaN where it has none.

    ``samples`` has shape (B, n), rows sorted increasing. The same fit as :func:`_fit_sorted`
    (every distinct value a candidate, minimal KS distance, smallest x_min on ties), for all
    rows at once on (B, n, n) arrays: positions stand for distinct values. With ``p`` the first
    position of a tie group and ``q`` any position, ``Delta_pq = max(ln(x_q/x_p), 0)``,
    ``m_p = n - p``; a tie group's largest ``n - q`` is its ``above`` and its smallest
    ``n - q - 1`` its ``above_strict``, so the maxima over positions equal those over distinct
    values, and positions left of the candidate contribute at most 0, as there.
    """
    out = np.full(samples.shape[0], np.nan)
    out_ks = np.full(samples.shape[0], np.nan)
    b_all, n = samples.shape
    if n < min_tail:
        return out, out_ks
    pos = np.arange(n)
    m = (n - pos).astype(np.float64)  # (n,) tail size of the candidate at each position
    above = m  # values >= x_q counted from position q
    above_strict = m - 1.0
    step = max(1, (_CHUNK_ELEMENTS * 4) // (n * n))
    for start in range(0, b_all, step):
        x = samples[start : start + step]  # (b, n)
        logs = np.log(x / x[:, -1:])  # (b, n), <= 0
        first = np.empty(x.shape, dtype=bool)
        first[:, 0] = True
        np.not_equal(x[:, 1:], x[:, :-1], out=first[:, 1:])
        cand = first & (m >= min_tail)[None, :]  # (b, n) admissible candidates
        delta = np.maximum(logs[:, None, :] - logs[:, :, None], 0.0)  # (b, p, q)
        denom = delta.sum(axis=2)  # (b, p)
        ok = cand & (denom > 0.0)
        alpha = 1.0 + m[None, :] / np.where(ok, denom, 1.0)  # (b, p)
        mg = np.exp(np.where(ok, 1.0 - alpha, 0.0)[:, :, None] * delta) * m[None, :, None]
        d_hi = (mg - above_strict[None, None, :]).max(axis=2)
        d_lo = (np.minimum(above[None, None, :], m[None, :, None]) - mg).max(axis=2)
        ks = np.where(ok, np.maximum(d_hi, d_lo) / m[None, :], np.inf)
        best = np.argmin(ks, axis=1)  # first minimum: the smallest x_min among ties
        rows = np.arange(x.shape[0])
        found = np.isfinite(ks[rows, best])
        out[start : start + x.shape[0]] = np.where(found, alpha[rows, best], np.nan)
        out_ks[start : start + x.shape[0]] = np.where(found, ks[rows, best], np.nan)
    return out, out_ks


def _refits(samples: Array, min_tail: int, max_candidates: int | None) -> tuple[Array, Array]:
    """(alpha, KS) of the whole fit on each sorted row of ``samples`` (NaN: no fit): all rows
    at once for short spectra (the same fits up to rounding), one at a time otherwise."""
    n = samples.shape[1]
    if n <= _BATCH_MAX_VALUES and (max_candidates is None or max_candidates >= n):
        return _bootstrap_alphas(samples, min_tail)
    alphas = np.full(samples.shape[0], np.nan)
    kss = np.full(samples.shape[0], np.nan)
    for i, row in enumerate(samples):
        rep = _fit_sorted(row, min_tail, max_candidates)
        if rep is not None:
            alphas[i], kss[i] = rep[0], rep[3]
    return alphas, kss


def _gof_p_value(
    x: Array,
    fit: tuple[float, float, int, float],
    *,
    rng: np.random.Generator,
    n_gof: int,
    min_tail: int,
    max_candidates: int | None,
) -> tuple[float, int]:
    """Clauset et al.'s semi-parametric bootstrap p-value of the KS distance (section 4.1):
    synthetic data sets of x.size values, each value drawn with probability n_tail/n from the
    fitted power law above x_min and otherwise from the observed values below x_min, each
    refitted with x_min re-chosen; p = the share of synthetic KS distances >= the observed one.
    Returns (p, data sets that could be refitted)."""
    alpha, xmin, n_tail, ks = fit
    n = x.size
    below = x[x < xmin]
    m = rng.binomial(n, n_tail / n, size=n_gof) if below.size else np.full(n_gof, n)
    u = rng.random((n_gof, n))
    tail = xmin * (1.0 - u) ** (-1.0 / (alpha - 1.0))  # (B, n); the first m_b of a row used
    body = below[rng.integers(0, max(below.size, 1), size=(n_gof, n))] if below.size else tail
    take_tail = np.arange(n)[None, :] < m[:, None]
    synthetic = np.sort(np.where(take_tail, tail, body), axis=1)
    _, kss = _refits(synthetic, min_tail, max_candidates)
    valid = kss[np.isfinite(kss)]
    if not valid.size:
        return math.nan, 0
    return float(np.mean(valid >= ks * (1.0 - 1e-12))), int(valid.size)


def fit_tail(
    values: ArrayLike,
    *,
    rng: np.random.Generator,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    min_points: int = MIN_TAIL_VALUES,
    min_tail: int = MIN_TAIL_VALUES,
    max_candidates: int | None = None,
    floor: float = 0.0,
    n_gof: int = DEFAULT_N_GOF,
    reject: bool = True,
) -> TailFit:
    """Continuous power-law fit ``p(x) ~ x^-alpha`` of the upper tail (Clauset et al. 2009).

    For every candidate ``x_min`` among the distinct positive values that leaves at least
    ``min_tail`` values ``x_i >= x_min``, the maximum-likelihood exponent is
    ``alpha(x_min) = 1 + n_tail / sum ln(x_i / x_min)`` and the Kolmogorov-Smirnov distance is
    ``D(x_min) = max |F_emp(x) - (1 - (x/x_min)^(1 - alpha))|`` over the tail; the fit reports
    the candidate with the smallest ``D`` (the smallest such ``x_min`` on exact ties). This is
    WeightWatchers' default ``fit_powerlaw`` (PEERS.md 5.1), with the standard two-sided KS
    statistic and ties handled exactly.

    Parameters
    ----------
    values : array_like, shape (n,)
        The spectrum, any order. Non-positive values and values ``<= 1e-8 * max(values)``
        (numerical zeros, e.g. the exact zeros of a thresholded spectrum) are dropped before
        fitting; the bootstrap resamples the remaining values only.
    rng : numpy.random.Generator
        Source of the bootstrap resamples (the same generator state gives the same interval).
    n_bootstrap : int, default 200
        Bootstrap replicates: resample the positive values with replacement and redo the whole
        fit, ``x_min`` re-chosen every time; ``alpha_ci`` is the 2.5%-97.5% percentile interval
        of the replicate exponents. Replicates whose fit is impossible (all tail values equal)
        are skipped, and ``TailFit.n_bootstrap`` counts the replicates actually used. If none is
        used (``n_bootstrap=0``), ``alpha_ci`` falls back to the asymptotic interval
        ``alpha +- 1.96 sigma``.
    min_points : int, default 10
        Refuse (FitError) to fit fewer positive values than this.
    min_tail : int, default 10
        Candidates ``x_min`` that leave fewer than this many values in the tail are excluded.
    max_candidates : int or None, default None
        None tries every distinct value as ``x_min`` (WeightWatchers' choice; cost O(n^2) per
        fit: measured about 17 ms for n = 2000 and 60 ms for n = 5000 on one core, a bootstrap
        replicate about half that, so 200 replicates take 1.5 s / 6.4 s). An integer keeps that
        many candidates evenly spaced in rank, always including the smallest value, to bound the
        cost for very long spectra.
    floor : float, default 0
        Values at or below ``floor`` are not used (the certificate's resolution).
    n_gof : int, default 100
        Synthetic data sets of the goodness-of-fit test (0: no test).
    reject : bool, default True
        Raise FitError when the test's p-value is below :data:`GOF_P_MIN` (the fit is "no
        fit"; the message gives its numbers and p).

    Returns
    -------
    TailFit
        ``alpha``, ``xmin``, ``n_tail`` (values ``>= xmin``), ``ks_distance``,
        ``sigma = (alpha - 1)/sqrt(n_tail)``, ``alpha_ci``, ``n_bootstrap``, ``p_value``,
        ``n_gof`` and ``floor``.

    Raises
    ------
    FitError
        Fewer than ``min_points`` values above the floor (the message gives the counts),
        non-finite values, no admissible ``x_min`` (e.g. all tail values equal), or (with
        ``reject``) a fit the goodness-of-fit test rejects.
    ValueError
        ``values`` is not one-dimensional or a parameter is out of range.
    """
    if min_points < 2 or min_tail < 2:
        raise ValueError(f"min_points and min_tail must be >= 2, got {min_points}, {min_tail}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    if max_candidates is not None and max_candidates < 1:
        raise ValueError(f"max_candidates must be >= 1 or None, got {max_candidates}")
    arr = as_vector(values)
    x = _positive_sorted(arr, floor)
    if x.size < min_points:
        where = f"above the certificate's resolution {floor:.3g}" if floor > 0 else "positive"
        raise FitError(
            f"too few values for a power-law tail fit: {x.size} {where}, at least "
            f"{min_points} needed (of {arr.size} values; values <= {TINY_RELATIVE:g} * max "
            f"are zeros)"
        )
    fit = _fit_sorted(x, min_tail, max_candidates)
    if fit is None:
        raise FitError(
            f"no admissible x_min among {x.size} positive values: every candidate tail of at "
            f"least {min_tail} values has all its values equal"
        )
    alpha, xmin, n_tail, ks = fit
    sigma = (alpha - 1.0) / math.sqrt(n_tail)

    n = x.size
    p_value, used_gof = math.nan, 0
    if n_gof:
        p_value, used_gof = _gof_p_value(
            x, fit, rng=rng, n_gof=n_gof, min_tail=min_tail, max_candidates=max_candidates
        )
        if reject and used_gof and p_value < GOF_P_MIN:
            raise FitError(
                f"no power-law tail: the KS goodness-of-fit test rejects the best fit (alpha "
                f"{alpha:.3g} above x_min {xmin:.3g}, {n_tail} values, KS distance {ks:.3f}, "
                f"p = {p_value:.2f} < {GOF_P_MIN:g} over {used_gof} synthetic data sets)"
            )
    replicates: list[float] = []
    if n_bootstrap:
        draws = np.sort(rng.integers(0, n, size=(n_bootstrap, n)), axis=1)  # x is sorted
        alphas, _ = _refits(x[draws], min_tail, max_candidates)
        replicates = [float(a) for a in alphas[np.isfinite(alphas)]]
    if replicates:
        lo, hi = np.percentile(np.asarray(replicates), [2.5, 97.5])
        ci = (float(lo), float(hi))
    else:
        ci = (alpha - _Z95 * sigma, alpha + _Z95 * sigma)
    return TailFit(
        alpha=alpha,
        xmin=xmin,
        n_tail=n_tail,
        ks_distance=ks,
        sigma=sigma,
        alpha_ci=ci,
        n_bootstrap=len(replicates),
        p_value=p_value if used_gof else None,
        n_gof=used_gof,
        floor=floor,
    )


# --------------------------------------------------------------------------------------------
# rank fit


def fit_rank(
    values: ArrayLike,
    *,
    n_points: int | None = None,
    rel_floor: float = RANK_FLOOR_RELATIVE,
    floor: float = 0.0,
) -> RankFit:
    """Least-squares fit ``log value_k = log C - exponent * log k`` over ranks ``k = 1..n_points``.

    Parameters
    ----------
    values : array_like, shape (n,)
        The spectrum, any order; it is sorted decreasing and only its positive part is used.
    n_points : int or None, default None
        Ranks ``1..n_points`` enter the fit. None uses every value ``>= rel_floor * max`` --
        the non-zero part of the spectrum without the numerically-zero tail (for a thresholded
        spectrum the exact zeros, for an eigen-solver the ``1e-16``-relative round-off). An
        explicit ``n_points`` must not exceed the number of positive values.
    rel_floor : float, default 1e-8
        Relative floor for the default ``n_points``; ignored when ``n_points`` is given.
    floor : float, default 0
        Absolute floor for the default ``n_points``: only values above it (the certificate's
        resolution) enter the fit.

    Returns
    -------
    RankFit
        ``exponent`` (minus the slope in log-log), ``prefactor = C``, ``n_points`` and the
        coefficient of determination ``r2`` of the log-log fit (1 for a perfect line, also when
        all values are equal).

    Raises
    ------
    FitError
        Fewer than 3 points to fit, ``n_points`` larger than the number of positive values, or
        non-finite values.
    ValueError
        ``values`` is not one-dimensional or ``rel_floor`` is not in [0, 1].

    Notes
    -----
    On a noise-free power law ``c k^-gamma`` the fit returns ``gamma`` to rounding error; the
    result is unchanged (to rounding) by rescaling the values.
    """
    if not 0.0 <= rel_floor <= 1.0:
        raise ValueError(f"rel_floor must be in [0, 1], got {rel_floor}")
    arr = as_vector(values)
    desc = -np.sort(-arr)  # (n,), decreasing
    n_pos = int(np.count_nonzero(desc > 0.0))
    if n_points is None:
        count = (
            int(np.count_nonzero((desc >= rel_floor * desc[0]) & (desc > floor))) if n_pos else 0
        )
        count = min(count, n_pos)
    else:
        if n_points > n_pos:
            raise FitError(
                f"n_points={n_points} exceeds the {n_pos} positive values (of {arr.size} given)"
            )
        count = n_points
    if count < MIN_RANK_POINTS:
        raise FitError(
            f"a rank fit needs at least {MIN_RANK_POINTS} points; got {max(count, 0)} "
            f"(of {arr.size} values given, {n_pos} positive)"
        )
    y = np.log(desc[:count] / desc[0])  # (count,); normalised so the scale drops out
    t = np.log(np.arange(1, count + 1, dtype=np.float64))  # (count,)
    tc = t - t.mean()
    yc = y - y.mean()
    slope = float(tc @ yc / (tc @ tc))
    intercept = float(y.mean() - slope * t.mean())
    resid = yc - slope * tc
    ss_tot = float(yc @ yc)
    ss_res = float(resid @ resid)
    r2 = 1.0 if ss_tot == 0.0 else 1.0 - ss_res / ss_tot
    return RankFit(
        exponent=0.0 - slope,  # no -0.0 for a flat spectrum
        prefactor=float(desc[0]) * math.exp(intercept),
        n_points=count,
        r2=r2,
    )
