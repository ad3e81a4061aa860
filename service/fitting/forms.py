"""The three scaling forms, each fitted in log space (numpy + scipy.optimize).

* power law ``log y = log C - beta log x``: ordinary least squares, then (``loss="huber"``)
  ``scipy.optimize.least_squares(loss="huber")`` started from it. The Huber scale is
  ``1.345 * 1.4826 * MAD`` of the least-squares log residuals (floored at 1e-6); when every
  least-squares residual lies inside that scale the least-squares solution already is the
  Huber minimiser and is returned as is.
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

Every fit also returns an asymptotic standard error of its exponent (least-squares
sandwich ``s^2 (J^T J)^-1``; for the broken form at fixed breaks), used as the fallback
interval when a bootstrap has too few valid replicates.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import least_squares, minimize_scalar, nnls

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


def _linear_fit(design: Array, v: Array, loss: Loss) -> Array:
    """Coefficients of v ~ design, least squares or Huber (started from least squares)."""
    coef: Array = np.asarray(np.linalg.lstsq(design, v, rcond=None)[0], dtype=np.float64)
    if loss == "l2":
        return coef
    resid = v - design @ coef
    scale = huber_scale(resid)
    if np.all(np.abs(resid) <= scale):
        return coef  # inside the quadratic zone the L2 optimum is the Huber optimum
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
    b, s = _linear_fit(design, v, loss)
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
    )


def fit_power_law(x: ArrayLike, y: ArrayLike, *, loss: Loss = "huber") -> tuple[float, float]:
    """(exponent beta, prefactor C) of y = C x^-beta fitted on log y vs log x."""
    xa, ya = check_xy(x, y, min_distinct=2)
    f = power_law_form(xa, ya, loss)
    return f.exponent, f.prefactor


# --------------------------------------------------------------------------------------
# plateau


def plateau_form(x: Array, y: Array, loss: Loss = "huber") -> FormFit:
    """R = R_inf + C x^-beta: variable projection over beta, NNLS for (R_inf, C)."""
    u, v = np.log(x), np.log(y)
    ubar = float(u.mean())
    uc = u - ubar  # x / x_ref with x_ref the geometric mean: keeps x^-beta of order 1
    inv_y = 1.0 / y
    ones = np.ones_like(y)

    def project(beta: float) -> tuple[float, float, float]:
        a = np.column_stack([inv_y, np.exp(-beta * uc) * inv_y])
        (r_inf, c), rnorm = nnls(a, ones)
        return float(r_inf), float(c), float(rnorm) ** 2

    profile = np.array([project(float(b))[2] for b in BETA_GRID])
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
    """Admissible break combinations on a grid: data points and points between them."""
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
    return np.array(combos, dtype=np.float64)


def _rss_batch(uc: Array, v: Array, ts: Array) -> Array:
    """Least-squares residual sum of squares of the hinge model for each row of ts."""
    design = _hinge(uc, ts)  # (G, m, p)
    coef = np.linalg.pinv(design) @ v  # (G, p)
    resid = np.einsum("gmp,gp->gm", design, coef) - v
    out: Array = np.sum(resid**2, axis=-1)
    return out


def broken_form(x: Array, y: Array, n_breaks: int, loss: Loss = "huber") -> FormFit:
    """Continuous broken power law with n_breaks breaks (hinge basis in log-log)."""
    if n_breaks < 1:
        raise FitError("n_breaks must be at least 1")
    u, v = np.log(x), np.log(y)
    ubar = float(u.mean())
    uc = u - ubar
    distinct = np.unique(uc)
    combos = _break_grid(distinct, n_breaks)
    rss = _rss_batch(uc, v, combos)
    best = int(np.argmin(rss))
    t = combos[best].copy()
    best_rss = float(rss[best])
    grid_pts = np.unique(combos)

    def rss_at(tt: Array) -> float:
        return float(_rss_batch(uc, v, tt[None, :])[0])

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

            def f(tj: float, j: int = j) -> float:
                tt = t.copy()
                tt[j] = tj
                return rss_at(tt)

            res = minimize_scalar(f, bounds=(lo, hi), method="bounded", options={"xatol": 1e-12})
            if float(res.fun) < best_rss * (1 - 1e-12) - 1e-300:
                t[j], best_rss, improved = float(res.x), float(res.fun), True
        if not improved:
            break

    design = _hinge(uc, t)
    coef = _linear_fit(design, v, loss)
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
