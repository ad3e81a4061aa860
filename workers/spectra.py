"""Spectra of the trained weights and their power-law fits (THEORY.md section 6, PEERS.md 5.1).

Two fits are attached to every spectrum:

* :func:`fit_tail` -- the WeightWatchers / Clauset-Shalizi-Newman (2009) continuous power-law
  fit ``p(x) ~ x^-alpha`` of the largest values, ``x_min`` chosen by the minimal
  Kolmogorov-Smirnov distance, with a percentile bootstrap interval on ``alpha``;
* :func:`fit_rank` -- a least-squares line through the rank-ordered profile
  ``value_k ~ C k^-exponent``.

For a rank profile ``lambda_k = C k^-gamma`` the two are linked by
``alpha = 1 + 1/gamma`` (THEORY.md section 6); finite ranges bias both (see the caveats there).

Only numpy is needed: callers convert torch tensors to numpy arrays first.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from service.errors import FitError
from service.results import RankFit, Spectrum, TailFit

Array = NDArray[np.float64]
SpectrumKind = Literal["eig_S", "sv_W", "abs_theta"]

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

_CHUNK_ELEMENTS = 1 << 16  # working-set size of one block of the KS matrix (float64 elements)
_BATCH_MAX_VALUES = 48  # fit_tail bootstraps spectra up to this long all replicates at once
_Z95 = 1.959963984540054  # standard-normal 97.5% quantile (fallback interval only)


# --------------------------------------------------------------------------------------------
# input handling


def _as_vector(values: ArrayLike) -> Array:
    """``values`` as a finite float64 vector of shape (n,); FitError on NaN/inf."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D array of values, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise FitError(f"{bad} of {arr.size} values are not finite (NaN or inf)")
    return arr


def _positive_sorted(arr: Array) -> Array:
    """The values ``> TINY_RELATIVE * max(arr)``, sorted increasing; shape (n_pos,)."""
    if arr.size == 0:
        return arr
    top = float(arr.max())
    if not top > 0.0:
        return np.empty(0, dtype=np.float64)
    return np.sort(arr[arr > TINY_RELATIVE * top])


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


def _bootstrap_alphas(samples: Array, min_tail: int) -> Array:
    """The exponent :func:`_fit_sorted` picks for each row of ``samples``; NaN where it has none.

    ``samples`` has shape (B, n), rows sorted increasing. The same fit as :func:`_fit_sorted`
    (every distinct value a candidate, minimal KS distance, smallest x_min on ties), for all
    rows at once on (B, n, n) arrays: positions stand for distinct values. With ``p`` the first
    position of a tie group and ``q`` any position, ``Delta_pq = max(ln(x_q/x_p), 0)``,
    ``m_p = n - p``; a tie group's largest ``n - q`` is its ``above`` and its smallest
    ``n - q - 1`` its ``above_strict``, so the maxima over positions equal those over distinct
    values, and positions left of the candidate contribute at most 0, as there.
    """
    out = np.full(samples.shape[0], np.nan)
    b_all, n = samples.shape
    if n < min_tail:
        return out
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
    return out


def fit_tail(
    values: ArrayLike,
    *,
    rng: np.random.Generator,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    min_points: int = MIN_TAIL_VALUES,
    min_tail: int = MIN_TAIL_VALUES,
    max_candidates: int | None = None,
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

    Returns
    -------
    TailFit
        ``alpha``, ``xmin``, ``n_tail`` (values ``>= xmin``), ``ks_distance``,
        ``sigma = (alpha - 1)/sqrt(n_tail)``, ``alpha_ci`` and ``n_bootstrap``.

    Raises
    ------
    FitError
        Fewer than ``min_points`` positive values (the message gives the counts), non-finite
        values, or no admissible ``x_min`` (e.g. all tail values equal).
    ValueError
        ``values`` is not one-dimensional or a parameter is out of range.
    """
    if min_points < 2 or min_tail < 2:
        raise ValueError(f"min_points and min_tail must be >= 2, got {min_points}, {min_tail}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    if max_candidates is not None and max_candidates < 1:
        raise ValueError(f"max_candidates must be >= 1 or None, got {max_candidates}")
    arr = _as_vector(values)
    x = _positive_sorted(arr)
    if x.size < min_points:
        raise FitError(
            f"a power-law tail fit needs at least {min_points} positive values; got {x.size} "
            f"(of {arr.size} values given, after dropping non-positive and values <= "
            f"{TINY_RELATIVE:g} * max)"
        )
    fit = _fit_sorted(x, min_tail, max_candidates)
    if fit is None:
        raise FitError(
            f"no admissible x_min among {x.size} positive values: every candidate tail of at "
            f"least {min_tail} values has all its values equal"
        )
    alpha, xmin, n_tail, ks = fit
    sigma = (alpha - 1.0) / math.sqrt(n_tail)

    replicates: list[float] = []
    n = x.size
    if n_bootstrap and n <= _BATCH_MAX_VALUES and (max_candidates is None or max_candidates >= n):
        # short spectra: every replicate at once (same draws, same fits, up to rounding)
        draws = np.sort(rng.integers(0, n, size=(n_bootstrap, n)), axis=1)
        alphas = _bootstrap_alphas(x[draws], min_tail)
        replicates = [float(a) for a in alphas[np.isfinite(alphas)]]
    for _ in range(0 if replicates or n <= _BATCH_MAX_VALUES else n_bootstrap):
        sample = x[np.sort(rng.integers(0, n, size=n))]  # sorted because x is
        rep = _fit_sorted(sample, min_tail, max_candidates)
        if rep is not None:
            replicates.append(rep[0])
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
    )


# --------------------------------------------------------------------------------------------
# rank fit


def fit_rank(
    values: ArrayLike,
    *,
    n_points: int | None = None,
    rel_floor: float = RANK_FLOOR_RELATIVE,
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
    arr = _as_vector(values)
    desc = -np.sort(-arr)  # (n,), decreasing
    n_pos = int(np.count_nonzero(desc > 0.0))
    if n_points is None:
        count = int(np.count_nonzero(desc >= rel_floor * desc[0])) if n_pos else 0
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


# --------------------------------------------------------------------------------------------
# spectra


def make_spectrum(
    kind: SpectrumKind,
    values: ArrayLike,
    *,
    rng: np.random.Generator,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
) -> Spectrum:
    """A :class:`Spectrum` of ``values`` with its tail and rank fits.

    Parameters
    ----------
    kind : {"eig_S", "sv_W", "abs_theta"}
    values : array_like, shape (n,)
        The spectrum in any order (stored sorted decreasing, signed values kept as they are).
    rng : numpy.random.Generator
        Bootstrap source of :func:`fit_tail`.
    n_bootstrap : int, default 200
        Bootstrap replicates of the tail fit.

    Returns
    -------
    Spectrum
        A fit that cannot be made (too few positive values, ...) leaves ``tail_fit`` /
        ``rank_fit`` as None and puts the FitError message in ``tail_fit_error`` /
        ``rank_fit_error``; small or all-zero spectra never raise.

    Raises
    ------
    FitError
        ``values`` contains NaN or inf (a spectrum of a diverged run is not stored).
    ValueError
        ``values`` is not one-dimensional.
    """
    arr = _as_vector(values)
    desc = -np.sort(-arr)
    tail: TailFit | None = None
    tail_err: str | None = None
    rank: RankFit | None = None
    rank_err: str | None = None
    try:
        tail = fit_tail(desc, rng=rng, n_bootstrap=n_bootstrap)
    except FitError as exc:
        tail_err = str(exc)
    try:
        rank = fit_rank(desc)
    except FitError as exc:
        rank_err = str(exc)
    return Spectrum(
        kind=kind,
        values=[float(v) for v in desc],
        tail_fit=tail,
        tail_fit_error=tail_err,
        rank_fit=rank,
        rank_fit_error=rank_err,
    )


def quadratic_spectra(S: ArrayLike, W: ArrayLike, *, rng: np.random.Generator) -> list[Spectrum]:
    """The spectra of a trained quadratic network: ``eig_S`` and ``sv_W``.

    Parameters
    ----------
    S : array_like, shape (d, d)
        The symmetric matrix ``S = W' diag(s) W`` (symmetrised as ``(S + S')/2`` before the
        eigen-decomposition).
    W : array_like, shape (m, d)
        First-layer weights.
    rng : numpy.random.Generator
        Bootstrap source (used by ``eig_S`` first, then ``sv_W``).

    Returns
    -------
    list of Spectrum, length 2
        ``eig_S``: the d eigenvalues of S sorted by value, decreasing (a signed S keeps its
        negative eigenvalues at the end of ``values``; both fits use the positive part only, the
        one that WeightWatchers' ESD of ``W'W`` sees for ``s = +1``). ``sv_W``: the
        ``min(m, d)`` singular values of W, decreasing. Note that the WeightWatchers exponent
        refers to the squared singular values: a tail ``p(s^2) ~ (s^2)^-alpha`` is
        ``p(s) ~ s^-(2 alpha - 1)``, so ``sv_W``'s alpha is ``2 alpha_WW - 1`` (the rank
        exponent halves instead).

    Raises
    ------
    ValueError
        Wrong shapes.
    FitError
        Non-finite entries.
    """
    s_mat = np.asarray(S, dtype=np.float64)
    w_mat = np.asarray(W, dtype=np.float64)
    if s_mat.ndim != 2 or s_mat.shape[0] != s_mat.shape[1]:
        raise ValueError(f"S must be square (d, d), got shape {s_mat.shape}")
    if w_mat.ndim != 2 or w_mat.shape[1] != s_mat.shape[0]:
        raise ValueError(f"W must be (m, d) with d = {s_mat.shape[0]}, got shape {w_mat.shape}")
    if not (np.all(np.isfinite(s_mat)) and np.all(np.isfinite(w_mat))):
        raise FitError("S or W has non-finite entries")
    eig = np.linalg.eigvalsh(0.5 * (s_mat + s_mat.T))
    sv = np.linalg.svd(w_mat, compute_uv=False)
    return [
        make_spectrum("eig_S", eig, rng=rng),
        make_spectrum("sv_W", sv, rng=rng),
    ]


def diagonal_spectra(theta: ArrayLike, *, rng: np.random.Generator) -> list[Spectrum]:
    """The spectrum of a trained diagonal network: ``abs_theta``.

    Parameters
    ----------
    theta : array_like, shape (d,)
        Effective coefficients ``a * w`` of the diagonal net.
    rng : numpy.random.Generator
        Bootstrap source.

    Returns
    -------
    list of Spectrum, length 1
        ``abs_theta``: ``|theta|`` sorted decreasing -- the eigenvalues ``{w_i^2}`` of ``W'W`` at
        a balanced optimum (THEORY.md section 6); exact zeros are kept in ``values`` and ignored
        by the fits.
    """
    return [make_spectrum("abs_theta", np.abs(_as_vector(theta)), rng=rng)]
