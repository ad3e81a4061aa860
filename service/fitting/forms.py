"""The three scaling forms, each fitted in log space (numpy + scipy.optimize).

* power law ``log y = log C - beta log x``: ordinary least squares, then (``loss="huber"``)
  the Huber minimiser started from it (exact active-set Newton steps, ``_huber_newton``;
  ``scipy.optimize.least_squares(loss="huber")`` as the fallback; both reach the same
  convex optimum, Newton to round-off, least_squares to its 1e-14 tolerances). The Huber
  scale is ``1.345 * 1.4826 * MAD`` of the least-squares log residuals (floored at 1e-6);
  when every least-squares residual lies inside that scale the least-squares solution
  already is the Huber minimiser and is returned as is. ``power_law_exponents`` is the
  same fit vectorised over many datasets (bootstrap replicates).
* plateau ``y = R_inf + C x^-beta``: variable projection. For a fixed beta the model is
  linear in ``(R_inf, C)``; ``scipy.optimize.nnls`` solves it with ``R_inf, C >= 0`` on
  relative residuals ``(model - y) / y`` (log residuals to first order). The profile over
  beta is scanned on a log grid, refined with a bounded ``minimize_scalar`` between the grid
  neighbours of the best grid value, and the three parameters are then polished together on
  the log residuals with ``least_squares`` (Huber or L2, bounds ``R_inf, C >= 0``).
* broken power law: continuous piecewise-linear in log-log with the hinge basis
  ``log y = a + s0 u + sum_j d_j max(0, u - t_j)``, ``u = log x``. For fixed breaks it is
  linear; the breaks minimise the least-squares profile, first over every admissible
  combination of grid positions (data points and quarter points between them; every
  segment keeps at least 2 distinct x, counting a data point at a break in both
  segments), then by bounded ``minimize_scalar`` on each break in turn within its grid
  cell. The linear coefficients at the final breaks are fitted with the chosen loss.
  The least-squares profile is computed on the observations pooled per distinct x (the
  same RSS up to round-off), and along one break in closed form (``_break_profile``).

Every fit also returns an asymptotic standard error of its exponent (least-squares
sandwich ``s^2 (J^T J)^-1``; for the broken form at fixed breaks), used as the fallback
interval when a bootstrap has too few valid replicates.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import least_squares, minimize_scalar

from service.errors import FitError

Array = NDArray[np.float64]
Loss = Literal["huber", "l2"]
FormName = Literal["power_law", "plateau", "broken_power_law"]

HUBER_K = 1.345
MAD_TO_SIGMA = 1.4826
MIN_HUBER_SCALE = 1e-6
BETA_BOUNDS = (1e-3, 12.0)
"""Range of the plateau exponent."""
BETA_GRID = np.geomspace(*BETA_BOUNDS, 64)
_TOL = 1e-14
"""ftol / xtol / gtol of every least_squares polish."""
_NEWTON_STEPS = 30
"""Most active-set Newton steps of a linear Huber fit before falling back to least_squares."""


@dataclass(frozen=True)
class FormFit:
    """One form fitted to (x, y): what the scaling report needs, plus log residuals."""

    form: FormName
    n_params: int
    exponent: float
    prefactor: float
    plateau: float | None
    breaks: tuple[float, ...]
    exponents: tuple[float, ...]
    """Exponent of each segment, smallest x first (one entry unless broken)."""
    resid: Array
    """log y - log model, per observation."""
    exponent_se: float
    """Asymptotic standard error of ``exponent`` (0.0 when it cannot be estimated)."""
    params: tuple[float, ...]
    """Parameters in the form used by ``log_predict``."""
    huber_threshold: float | None = None
    """The Huber threshold of a linear Huber fit (power law), for its sandwich interval."""

    def log_predict(self, x: Array) -> Array:
        """log of the fitted model at x."""
        u = np.log(x)
        if self.form == "power_law":
            log_c, beta = self.params
            return log_c - beta * u
        if self.form == "plateau":
            r_inf, c, beta = self.params
            return np.log(r_inf + c * np.exp(-beta * u))
        k = len(self.breaks)
        a, s0 = self.params[:2]
        d = np.asarray(self.params[2 : 2 + k])
        t = np.log(np.asarray(self.breaks))
        out: Array = a + s0 * u + np.maximum(0.0, u[:, None] - t[None, :]) @ d
        return out


# --------------------------------------------------------------------------------------
# input checks and helpers


def check_xy(x: ArrayLike, y: ArrayLike, min_distinct: int = 3) -> tuple[Array, Array]:
    """x, y as float arrays of the same 1-D shape, finite and positive, >= min_distinct x."""
    try:
        xa = np.asarray(x, dtype=np.float64)
        ya = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FitError(f"x and y must be numeric: {exc}") from exc
    if xa.ndim != 1 or xa.shape != ya.shape:
        raise FitError(f"x and y must be 1-D of the same length, got {xa.shape} and {ya.shape}")
    for name, arr in (("x", xa), ("y", ya)):
        bad = ~np.isfinite(arr) | (arr <= 0)
        if bad.any():
            raise FitError(f"{name} must be finite and positive; {int(bad.sum())} value(s) are not")
    n_distinct = len(np.unique(xa))
    if n_distinct < min_distinct:
        raise FitError(f"need at least {min_distinct} distinct x values, have {n_distinct}")
    return xa, ya


def huber_scale(resid: Array) -> float:
    """Huber threshold from a robust (MAD) estimate of the residual scale."""
    mad = float(np.median(np.abs(resid - np.median(resid))))
    return max(HUBER_K * MAD_TO_SIGMA * mad, MIN_HUBER_SCALE)


def _se(jac: Array, resid: Array, contrast: Array) -> float:
    """Standard error of ``contrast @ params`` from the least-squares covariance."""
    n, p = jac.shape
    if n <= p:
        return 0.0
    s2 = float(resid @ resid) / (n - p)
    try:
        cov = np.linalg.pinv(jac.T @ jac) * s2
    except np.linalg.LinAlgError:
        return 0.0
    var = float(contrast @ cov @ contrast)
    return math.sqrt(var) if math.isfinite(var) and var > 0 else 0.0


def _huber_objective(r: Array, scale: float) -> float:
    """Huber loss of residuals r with threshold scale (0.5 r^2 inside, linear outside)."""
    a = np.abs(r)
    return float(np.sum(np.where(a <= scale, 0.5 * a * a, scale * a - 0.5 * scale * scale)))


def _huber_newton(design: Array, v: Array, coef: Array, scale: float) -> Array | None:
    """Exact Huber minimiser of v ~ design by active-set Newton steps, or None.

    The Huber objective of a linear model is convex and piecewise quadratic; for a fixed
    split of the residuals into the quadratic zone (|r| <= scale) and the linear zone (signs
    fixed) its minimiser solves one linear system. Each step solves that system for the
    split at the current coefficients (a Newton step); when the split at the new
    coefficients is the one it was solved for, they are a stationary point of the convex
    objective, i.e. its minimiser. Accepted only if the gradient there vanishes to
    round-off and the objective is no higher than at the start; otherwise (or without
    such a split within a few steps, or with a singular system) None, and the caller falls
    back to ``least_squares``.
    """
    p = design.shape[1]
    start = _huber_objective(v - design @ coef, scale)
    inside = np.abs(v - design @ coef) <= scale
    for _ in range(_NEWTON_STEPS):
        xi = design[inside]
        if xi.shape[0] < p:
            return None
        psi = np.clip(v - design @ coef, -scale, scale)
        try:
            step = np.linalg.solve(xi.T @ xi, design.T @ psi)
        except np.linalg.LinAlgError:
            return None
        coef = coef + step
        r = v - design @ coef
        now = np.abs(r) <= scale
        if np.array_equal(now, inside):
            grad = design.T @ np.clip(r, -scale, scale)
            tol = 1e-9 * scale * float(np.sum(np.abs(design))) + 1e-300
            if np.all(np.abs(grad) <= tol) and _huber_objective(r, scale) <= start * (1 + 1e-12):
                return coef
            return None
        inside = now
    return None


def _linear_fit(design: Array, v: Array, loss: Loss) -> tuple[Array, float | None]:
    """Coefficients of v ~ design, least squares or Huber (started from least squares), and
    the Huber threshold used (None for least squares).

    Huber: active-set Newton (``_huber_newton``), which lands on the same convex optimum as
    ``least_squares(loss="huber")`` (agreement ~1e-12 measured, tests/service/test_fitting.py)
    at a fraction of its cost; ``least_squares`` remains the fallback.
    """
    coef: Array = np.asarray(np.linalg.lstsq(design, v, rcond=None)[0], dtype=np.float64)
    if loss == "l2":
        return coef, None
    resid = v - design @ coef
    scale = huber_scale(resid)
    if np.all(np.abs(resid) <= scale):
        return coef, scale  # inside the quadratic zone the L2 optimum is the Huber optimum
    fast = _huber_newton(design, v, coef, scale)
    return (fast if fast is not None else _huber_scipy(design, v, coef, scale)), scale


def _huber_scipy(design: Array, v: Array, coef: Array, scale: float) -> Array:
    """Huber coefficients by ``least_squares(loss="huber")`` started from ``coef``."""
    res = least_squares(
        lambda p: design @ p - v,
        coef,
        jac=lambda p: design,
        loss="huber",
        f_scale=scale,
        ftol=_TOL,
        xtol=_TOL,
        gtol=_TOL,
    )
    out: Array = res.x
    return out


# --------------------------------------------------------------------------------------
# power law


def power_law_form(x: Array, y: Array, loss: Loss = "huber") -> FormFit:
    """R = C x^-beta on log residuals."""
    u, v = np.log(x), np.log(y)
    ubar = float(u.mean())
    design = np.column_stack([np.ones_like(u), u - ubar])
    (b, s), threshold = _linear_fit(design, v, loss)
    resid = v - (b + s * (u - ubar))
    log_c = float(b - s * ubar)
    se = _se(design, resid, np.array([0.0, 1.0]))
    return FormFit(
        form="power_law",
        n_params=2,
        exponent=-float(s),
        prefactor=math.exp(log_c),
        plateau=None,
        breaks=(),
        exponents=(-float(s),),
        resid=resid,
        exponent_se=se,
        params=(log_c, -float(s)),
        huber_threshold=threshold,
    )


def power_law_exponents(xs: Sequence[Array], ys: Sequence[Array], loss: Loss = "huber") -> Array:
    """``power_law_form(x, y, loss).exponent`` of many datasets at once (bootstrap replicates).

    The same fit, vectorised across datasets (padded to a common length, padding masked
    out): closed-form least squares on centred log x, the same MAD Huber scale per
    dataset, then active-set Newton steps (see ``_huber_newton``) for all datasets at
    once. A dataset whose Newton steps do not settle (or whose gradient check fails) gets
    NaN; the caller refits it with ``power_law_form``. Agrees with ``power_law_form`` to
    round-off (tests/service/test_fitting.py).
    """
    n_sets = len(xs)
    if n_sets == 0:
        return np.zeros(0)
    sizes = np.array([len(x) for x in xs])
    width = int(sizes.max())
    mask = np.arange(width)[None, :] < sizes[:, None]
    u = np.zeros((n_sets, width))
    v = np.zeros((n_sets, width))
    u[mask] = np.log(np.concatenate(xs))
    v[mask] = np.log(np.concatenate(ys))
    w = mask.astype(np.float64)
    n = sizes.astype(np.float64)
    uc = (u - (u.sum(axis=1) / n)[:, None]) * w
    suu = np.einsum("bm,bm->b", uc, uc)
    with np.errstate(divide="ignore", invalid="ignore"):
        b = v.sum(axis=1) / n
        s = np.einsum("bm,bm->b", uc, v) / suu
    if loss == "l2":
        l2: Array = -s
        return l2
    r = np.where(mask, v - b[:, None] - s[:, None] * uc, np.inf)
    med = _row_medians(r, sizes)
    mad = _row_medians(np.where(mask, np.abs(r - med[:, None]), np.inf), sizes)
    scale = np.maximum(HUBER_K * MAD_TO_SIGMA * mad, MIN_HUBER_SCALE)[:, None]
    r = np.where(mask, r, 0.0)
    inside = (np.abs(r) <= scale) | ~mask
    l2_is_huber = np.all(inside, axis=1)  # all inside: the L2 optimum is the Huber optimum
    todo = ~l2_is_huber
    start = np.sum(_huber_rows(r, scale) * w, axis=1)
    done = np.zeros(n_sets, dtype=bool)
    for _ in range(_NEWTON_STEPS):
        if not todo.any():
            break
        wi = (inside & mask).astype(np.float64)
        h00 = wi.sum(axis=1)
        h01 = np.einsum("bm,bm->b", wi, uc)
        h11 = np.einsum("bm,bm->b", wi, uc * uc)
        psi = np.clip(r, -scale, scale) * w
        g0, g1 = psi.sum(axis=1), np.einsum("bm,bm->b", psi, uc)
        det = h00 * h11 - h01 * h01
        ok = todo & (h00 >= 2) & (det > 1e-12 * np.maximum(h00 * h11, 1e-300))
        todo &= ok
        with np.errstate(divide="ignore", invalid="ignore"):
            db = np.where(ok, (h11 * g0 - h01 * g1) / det, 0.0)
            ds = np.where(ok, (h00 * g1 - h01 * g0) / det, 0.0)
        b, s = b + db, s + ds
        r = (v - b[:, None] - s[:, None] * uc) * w
        now = (np.abs(r) <= scale) | ~mask
        settled = todo & np.all(now == inside, axis=1)
        done |= settled
        todo &= ~settled
        inside = now
    psi = np.clip(r, -scale, scale) * w
    grad = np.abs(np.stack([psi.sum(axis=1), np.einsum("bm,bm->b", psi, uc)], axis=1))
    tol = 1e-9 * scale[:, 0] * (n + np.abs(uc).sum(axis=1))
    obj = np.sum(_huber_rows(r, scale) * w, axis=1)
    checked = np.all(grad <= tol[:, None], axis=1) & (obj <= start * (1 + 1e-12))
    out = np.where(l2_is_huber | (done & checked), -s, np.nan)
    return out


def _row_medians(a: Array, sizes: NDArray[np.int_]) -> Array:
    """np.median of the first sizes[i] entries of each row (the rest are +inf padding)."""
    srt = np.sort(a, axis=1)
    rows = np.arange(a.shape[0])
    lo = srt[rows, (sizes - 1) // 2]
    hi = srt[rows, sizes // 2]
    out: Array = (lo + hi) / 2.0
    return out


def _huber_rows(r: Array, scale: Array) -> Array:
    a = np.abs(r)
    out: Array = np.where(a <= scale, 0.5 * a * a, scale * a - 0.5 * scale * scale)
    return out


def fit_power_law(x: ArrayLike, y: ArrayLike, *, loss: Loss = "huber") -> tuple[float, float]:
    """(exponent beta, prefactor C) of y = C x^-beta fitted on log y vs log x."""
    xa, ya = check_xy(x, y, min_distinct=2)
    f = power_law_form(xa, ya, loss)
    return f.exponent, f.prefactor


# --------------------------------------------------------------------------------------
# plateau


def _plateau_projection(uc: Array, inv_y: Array, betas: Array) -> tuple[Array, Array, Array]:
    """(R_inf, C, squared residual) of the NNLS 1 ~ (R_inf, C) . (1/y, x^-beta/y) for every
    beta at once (``uc``: centred log x, ``inv_y``: 1/y). With two unknowns the solution is
    the unconstrained one when both are >= 0, else the better of the two one-variable fits
    (clamped at 0): what scipy's nnls returns, to round-off."""
    e = np.exp(-betas[:, None] * uc[None, :]) * inv_y[None, :]  # (K, n)
    g11 = float(inv_y @ inv_y)
    g12 = e @ inv_y
    g22 = np.einsum("kn,kn->k", e, e)
    t1 = float(inv_y.sum())
    t2 = e.sum(axis=1)
    det = g11 * g22 - g12 * g12
    with np.errstate(divide="ignore", invalid="ignore"):
        r_u = (g22 * t1 - g12 * t2) / det
        c_u = (g11 * t2 - g12 * t1) / det
    both = (det > 0) & (r_u >= 0) & (c_u >= 0)
    r_only = max(t1 / g11, 0.0)  # C = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        c_only = np.maximum(np.where(g22 > 0, t2 / g22, 0.0), 0.0)  # R_inf = 0
    res_r = 1.0 - r_only * inv_y[None, :]
    rss_r = np.full(len(betas), float(res_r[0] @ res_r[0]))
    res_c = 1.0 - c_only[:, None] * e
    rss_c = np.einsum("kn,kn->k", res_c, res_c)
    r = np.where(rss_r <= rss_c, r_only, 0.0)
    c = np.where(rss_r <= rss_c, 0.0, c_only)
    r = np.where(both, r_u, r)
    c = np.where(both, c_u, c)
    res = 1.0 - r[:, None] * inv_y[None, :] - c[:, None] * e
    return r, c, np.einsum("kn,kn->k", res, res)


def plateau_form(x: Array, y: Array, loss: Loss = "huber") -> FormFit:
    """R = R_inf + C x^-beta: variable projection over beta, NNLS for (R_inf, C)."""
    u, v = np.log(x), np.log(y)
    ubar = float(u.mean())
    uc = u - ubar  # x / x_ref with x_ref the geometric mean: keeps x^-beta of order 1
    inv_y = 1.0 / y

    def project(beta: float) -> tuple[float, float, float]:
        r, c, rss = _plateau_projection(uc, inv_y, np.array([beta]))
        return float(r[0]), float(c[0]), float(rss[0])

    profile = _plateau_projection(uc, inv_y, np.asarray(BETA_GRID, dtype=np.float64))[2]
    i = int(np.argmin(profile))
    lo = float(BETA_GRID[max(i - 1, 0)])
    hi = float(BETA_GRID[min(i + 1, len(BETA_GRID) - 1)])
    beta = float(BETA_GRID[i])
    ref = minimize_scalar(
        lambda b: project(float(b))[2], bounds=(lo, hi), method="bounded", options={"xatol": 1e-12}
    )
    if float(ref.fun) < profile[i]:
        beta = float(ref.x)
    r_inf, c, _ = project(beta)
    if c <= 0.0:
        raise FitError("plateau fit degenerate: no decaying part (C = 0)")

    def resid_fn(p: Array) -> Array:
        model = p[0] + p[1] * np.exp(-p[2] * uc)
        out: Array = v - np.log(np.maximum(model, 1e-300))
        return out

    def jac_fn(p: Array) -> Array:
        e = np.exp(-p[2] * uc)
        model = np.maximum(p[0] + p[1] * e, 1e-300)
        return np.column_stack([-1.0 / model, -e / model, p[1] * uc * e / model])

    p0 = np.array([r_inf, c, beta])
    r0 = resid_fn(p0)
    res = least_squares(
        resid_fn,
        p0,
        jac=jac_fn,
        bounds=([0.0, 0.0, BETA_BOUNDS[0]], [np.inf, np.inf, BETA_BOUNDS[1]]),
        loss="huber" if loss == "huber" else "linear",
        f_scale=huber_scale(r0),
        ftol=_TOL,
        xtol=_TOL,
        gtol=_TOL,
    )
    p = res.x
    r_inf, c, beta = (float(q) for q in p)
    if c <= 0.0:
        raise FitError("plateau fit degenerate: no decaying part (C = 0)")
    resid = resid_fn(p)
    se = _se(jac_fn(p), resid, np.array([0.0, 0.0, 1.0]))
    c_orig = c * math.exp(beta * ubar)
    return FormFit(
        form="plateau",
        n_params=3,
        exponent=beta,
        prefactor=c_orig,
        plateau=r_inf,
        breaks=(),
        exponents=(beta,),
        resid=resid,
        exponent_se=se,
        params=(r_inf, c_orig, beta),
    )


def fit_plateau(x: ArrayLike, y: ArrayLike, *, loss: Loss = "huber") -> tuple[float, float, float]:
    """(R_inf, C, beta) of y = R_inf + C x^-beta (R_inf, C >= 0)."""
    xa, ya = check_xy(x, y, min_distinct=3)
    f = plateau_form(xa, ya, loss)
    assert f.plateau is not None
    return f.plateau, f.prefactor, f.exponent


# --------------------------------------------------------------------------------------
# broken power law


def _hinge(uc: Array, t: Array) -> Array:
    """Hinge design [1, u, max(0, u - t_1), ...] for breaks t of shape (..., k)."""
    t = np.asarray(t, dtype=np.float64)
    lead = t.shape[:-1]
    ones = np.broadcast_to(np.ones_like(uc), (*lead, uc.size))
    ub = np.broadcast_to(uc, (*lead, uc.size))
    hinges = np.maximum(0.0, uc[..., :, None] - t[..., None, :])
    return np.concatenate([ones[..., None], ub[..., None], hinges], axis=-1)


def _admissible(t: Array, distinct: Array) -> bool:
    """Every closed segment between consecutive breaks holds at least 2 distinct x."""
    edges = np.concatenate([[-np.inf], t, [np.inf]])
    if np.any(np.diff(edges) <= 0):
        return False
    return all(
        np.count_nonzero((distinct >= edges[j]) & (distinct <= edges[j + 1])) >= 2
        for j in range(len(edges) - 1)
    )


def _break_grid(distinct: Array, k: int, max_combos: int = 4000) -> Array:
    """Admissible break combinations on a grid: data points and points between them.

    Cached on (distinct, k, max_combos): bootstrap replicates over seeds mostly share
    their distinct x. The returned array is read-only.
    """
    return _break_grid_cached(distinct.tobytes(), k, max_combos)


@functools.lru_cache(maxsize=256)
def _break_grid_cached(distinct_bytes: bytes, k: int, max_combos: int) -> Array:
    distinct = np.frombuffer(distinct_bytes, dtype=np.float64)
    for fractions in ((0.0, 0.25, 0.5, 0.75), (0.0, 0.5), (0.0,)):
        pts = np.unique(
            np.concatenate(
                [distinct[:-1] + f * np.diff(distinct) for f in fractions] + [distinct[-1:]]
            )
        )
        inner = pts[(pts >= distinct[1]) & (pts <= distinct[-2])]
        if math.comb(len(inner), k) <= max_combos:
            break
    combos = [c for c in itertools.combinations(inner, k) if _admissible(np.array(c), distinct)]
    if not combos:
        raise FitError(f"too few distinct x for {k} break(s) with 2 distinct x per segment")
    out = np.array(combos, dtype=np.float64)
    out.flags.writeable = False
    return out


@dataclass(frozen=True)
class _Pooled:
    """Observations pooled at their distinct x: enough for least-squares RSS of any model
    that depends on x only (weighted LS on the x-means, plus the within-x sum of squares)."""

    uc: Array
    """Distinct centred log x."""
    sw: Array
    """sqrt of the number of observations at each."""
    target: Array
    """sw * mean log y at each."""
    within: float
    """Sum over observations of (log y - mean log y at its x)^2."""

    @classmethod
    def of(cls, uc: Array, v: Array) -> _Pooled:
        distinct, inv = np.unique(uc, return_inverse=True)
        w = np.bincount(inv).astype(np.float64)
        vbar = np.bincount(inv, weights=v) / w
        sw = np.sqrt(w)
        return cls(distinct, sw, sw * vbar, float(np.sum((v - vbar[inv]) ** 2)))


def _rss_batch(pooled: _Pooled, ts: Array) -> Array:
    """Least-squares residual sum of squares of the hinge model for each row of ts.

    Computed on the observations pooled per distinct x (``_Pooled``): the same RSS as on
    every observation, up to round-off, at the cost of a fit to the distinct x.
    """
    design = _hinge(pooled.uc, ts) * pooled.sw[:, None]  # (G, n_x, p)
    coef = np.linalg.pinv(design) @ pooled.target  # (G, p)
    resid = np.einsum("gmp,gp->gm", design, coef) - pooled.target
    out: Array = np.sum(resid**2, axis=-1) + pooled.within
    return out


def _break_profile(
    pooled: _Pooled, t: Array, j: int, lo: float, hi: float
) -> Callable[[float], float]:
    """RSS as a function of break j alone on [lo, hi], in closed form.

    Between consecutive distinct x the hinge column of break j is affine in it,
    ``c(t_j) = a - t_j b`` (a, b fixed by which x lie above t_j); projecting out the
    other columns once, the RSS on each such piece is ``RSS_0 - (r_0 . c~)^2 / (c~ . c~)``
    with ``c~ = a~ - t_j b~``: the function ``_rss_batch`` evaluates, up to round-off,
    at a few flops per evaluation (the pieces meet continuously at the distinct x).
    """
    u = pooled.uc
    inner = u[(u > lo) & (u < hi)]
    edges = np.concatenate([[lo], inner])
    others = np.delete(t, j)
    x0 = _hinge(u, others) * pooled.sw[:, None]
    above = (u[:, None] > edges[None, :]).astype(np.float64) * pooled.sw[:, None]  # (n_x, q)
    cols = np.column_stack([pooled.target, above * u[:, None], above])
    coef = np.linalg.lstsq(x0, cols, rcond=None)[0]
    res = cols - x0 @ coef
    q = edges.size
    r0, a, b = res[:, 0], res[:, 1 : 1 + q], res[:, 1 + q :]
    rss0 = float(r0 @ r0) + pooled.within
    ra, rb = (r0 @ a).tolist(), (r0 @ b).tolist()
    aa = np.einsum("mq,mq->q", a, a).tolist()
    ab = np.einsum("mq,mq->q", a, b).tolist()
    bb = np.einsum("mq,mq->q", b, b).tolist()
    tiny = [1e-13 * max(p, r, 1e-300) for p, r in zip(aa, bb, strict=True)]
    cuts = inner.tolist()

    def f(tj: float) -> float:
        k = bisect.bisect_left(cuts, tj)  # piece: inner x below tj
        cc = aa[k] - 2.0 * tj * ab[k] + tj * tj * bb[k]
        if cc <= tiny[k]:
            return rss0
        rc = ra[k] - tj * rb[k]
        return float(rss0 - rc * rc / cc)

    return f


def broken_form(x: Array, y: Array, n_breaks: int, loss: Loss = "huber") -> FormFit:
    """Continuous broken power law with n_breaks breaks (hinge basis in log-log)."""
    if n_breaks < 1:
        raise FitError("n_breaks must be at least 1")
    u, v = np.log(x), np.log(y)
    ubar = float(u.mean())
    uc = u - ubar
    distinct = np.unique(uc)
    combos = _break_grid(distinct, n_breaks)
    pooled = _Pooled.of(uc, v)
    rss = _rss_batch(pooled, combos)
    best = int(np.argmin(rss))
    t = combos[best].copy()
    best_rss = float(rss[best])
    grid_pts = np.unique(combos)

    for _ in range(4 * n_breaks):
        improved = False
        for j in range(n_breaks):
            left = t[j - 1] if j > 0 else -np.inf
            right = t[j + 1] if j + 1 < n_breaks else np.inf
            # feasible interval keeping 2 distinct x on both sides, within t_j's grid cell
            lo_f = distinct[distinct >= left][1]
            hi_f = distinct[distinct <= right][-2]
            below, above = grid_pts[grid_pts < t[j]], grid_pts[grid_pts > t[j]]
            lo = max(lo_f, below[-1] if below.size else lo_f)
            hi = min(hi_f, above[0] if above.size else hi_f)
            if not lo < hi:
                continue

            f = _break_profile(pooled, t, j, lo, hi)
            res = minimize_scalar(f, bounds=(lo, hi), method="bounded", options={"xatol": 1e-12})
            if float(res.fun) < best_rss * (1 - 1e-12) - 1e-300:
                t[j], best_rss, improved = float(res.x), float(res.fun), True
        if not improved:
            break

    design = _hinge(uc, t)
    coef, _ = _linear_fit(design, v, loss)
    resid = v - design @ coef
    b, s0, d = float(coef[0]), float(coef[1]), coef[2:]
    slopes = s0 + np.concatenate([[0.0], np.cumsum(d)])
    exponents = tuple(-float(s) for s in slopes)
    a = b - s0 * ubar  # uncentred intercept: log y = a + s0 u + sum d_j max(0, u - tau_j)
    tau = t + ubar
    log_c_last = a - float(d @ tau)
    contrast = np.concatenate([[0.0], np.ones(1 + n_breaks)])
    se = _se(design, resid, contrast)
    params: tuple[Any, ...] = (a, s0, *(float(q) for q in d))
    return FormFit(
        form="broken_power_law",
        n_params=2 + 2 * n_breaks,
        exponent=exponents[-1],
        prefactor=math.exp(log_c_last),
        plateau=None,
        breaks=tuple(float(q) for q in np.exp(tau)),
        exponents=exponents,
        resid=resid,
        exponent_se=se,
        params=params,
    )


def fit_broken(
    x: ArrayLike, y: ArrayLike, n_breaks: int, *, loss: Loss = "huber"
) -> tuple[list[float], list[float], float]:
    """(break x values, exponent of each segment, prefactor C of the last segment).

    The last segment is ``y = C x^-exponents[-1]`` for x above the last break.
    """
    xa, ya = check_xy(x, y, min_distinct=3)
    f = broken_form(xa, ya, n_breaks, loss)
    return list(f.breaks), list(f.exponents), f.prefactor
