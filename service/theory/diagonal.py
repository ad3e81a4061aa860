"""State evolution of model A (diagonal network = LASSO), THEORY.md sections 0, 3.

Scalar channel ``theta_hat_k ~ soft(theta*_k + tau Z; zeta)`` with

* ``tau^2 = (Delta + R) / n``,
* ``lambda = zeta (1 - df / n)``,
* ``R = sum_k mse_k``, ``df = sum_k p_k`` from the closed forms of THEORY.md 3.1.

Solved by nested 1-D root finding (THEORY.md 3.2): inner Brent in ``zeta`` on the admissible
branch ``df < n``, outer Brent in ``log tau``. The teacher is exact for ``d <= 20 000`` and
compressed (exact head, geometric tail bins) beyond. Measured on one core: ~15-60 ms per
solve at d = 1000, ~0.1-0.2 s at d = 1e6 (~9 500 compressed entries), ~0.3-0.5 s at d = 1e9.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.special import ndtr

from service.teachers import Array, diagonal_coefficients
from service.theory.compressed_teacher import compressed_diagonal
from service.theory.point import SEPoint

#: Above this d the teacher is compressed (THEORY.md 3.2, "very large d").
EXACT_MAX_D = 20_000
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class DiagonalSolution:
    """Fixed point of the model-A state evolution.

    ``values``/``weights`` (shape (m,)) are the teacher magnitudes and multiplicities used.
    """

    tau: float
    zeta: float
    excess_risk: float
    df: float
    values: Array
    weights: Array


def teacher(
    d: int, gamma: float, rank: int | None, *, exact: bool | None = None
) -> tuple[Array, Array]:
    """``|theta*|`` values and multiplicities (each shape (m,)).

    Exact (all d coordinates, unit weights) when ``exact`` is True, or by default when
    ``d <= 20 000``; otherwise compressed
    (:func:`service.theory.compressed_teacher.compressed_diagonal`).
    """
    if exact if exact is not None else d <= EXACT_MAX_D:
        t = diagonal_coefficients(d, gamma, rank)
        return t, np.ones_like(t)
    return compressed_diagonal(d, gamma, rank)


def _phi(x: Array) -> Array:
    out: Array = _INV_SQRT_2PI * np.exp(-0.5 * x * x)
    return out


def coordinate_moments(t: Array, tau: float, zeta: float) -> tuple[Array, Array]:
    """Per-coordinate ``mse_k`` and ``p_k = P(theta_hat_k != 0)`` (THEORY.md 3.1).

    Parameters
    ----------
    t : ndarray, shape (m,)
        ``|theta*_k|``.
    tau, zeta : float
        Effective noise std (> 0) and threshold (>= 0).

    Returns
    -------
    mse, p : ndarray, shape (m,)
    """
    kappa = zeta / tau
    u = t / tau
    a_plus = kappa - u
    a_minus = kappa + u
    q_plus = ndtr(-a_plus)
    q_minus = ndtr(-a_minus)
    p = q_plus + q_minus
    noise = (
        (1.0 + kappa * kappa) * p
        + (a_plus - 2.0 * kappa) * _phi(a_plus)
        + (a_minus - 2.0 * kappa) * _phi(a_minus)
    )
    # Phi(a+) - Phi(-a-), never Phi(a+) + Phi(a-) - 1 (cancellation, THEORY.md pitfall 8.5).
    dead = ndtr(a_plus) - ndtr(-a_minus)
    mse: Array = tau * tau * np.maximum(noise, 0.0) + t * t * dead
    return mse, p


def risk_df(t: Array, w: Array, tau: float, zeta: float) -> tuple[float, float]:
    """``(R, df)`` summed over the (weighted) coordinates."""
    mse, p = coordinate_moments(t, tau, zeta)
    return float(np.dot(w, mse)), float(np.dot(w, p))


def solve_zeta(t: Array, w: Array, n: int, lam: float, tau: float) -> float:
    """Inner problem: ``zeta (1 - df(tau, zeta) / n) = lambda`` on the branch ``df < n``.

    ``g(zeta)`` is ``<= 0`` wherever ``df >= n`` and increasing where ``df < n``, so the sign
    change found by Brent on ``[0, hi]`` is the unique admissible root. ``lambda = 0`` gives the
    interpolation limit (``df = n``) when ``d >= n`` and ``zeta = 0`` otherwise.
    """
    d_total = float(np.sum(w))

    def df_of(z: float) -> float:
        return risk_df(t, w, tau, z)[1]

    if lam == 0.0:
        if d_total < n:
            return 0.0
        if d_total == n:
            raise ValueError(
                "weight_decay = 0 with n = d: the SE is singular (interpolation threshold)"
            )
        hi = tau
        while df_of(hi) >= n:
            hi *= 2.0
        return float(brentq(lambda z: df_of(z) - n + 1e-9 * n, 0.0, hi, xtol=1e-15 * hi))

    def g(z: float) -> float:
        return z * (1.0 - df_of(z) / n) - lam

    hi = max(lam, tau)
    while g(hi) <= 0.0:
        hi *= 2.0
    return float(brentq(g, 0.0, hi, xtol=1e-14 * hi, rtol=1e-13, maxiter=200))


def solve(p: SEPoint, *, exact: bool | None = None) -> DiagonalSolution:
    """Solve the model-A state evolution (THEORY.md 3.2) at ``p``.

    ``exact`` forces the exact (True) or compressed (False) teacher; default: exact iff
    d <= 20 000.
    """
    n, lam, delta = p.n, p.lam, p.delta
    t, w = teacher(p.d, p.gamma, p.rank, exact=exact)

    def state(tau: float) -> tuple[float, float, float]:
        zeta = solve_zeta(t, w, n, lam, tau)
        r, df = risk_df(t, w, tau, zeta)
        return zeta, r, df

    def h(log_tau: float) -> float:
        tau = math.exp(log_tau)
        _, r, _ = state(tau)
        return 2.0 * log_tau - math.log((delta + r) / n) if delta + r > 0 else math.inf

    lo = math.log(1e-12)
    if h(lo) >= 0.0:  # noiseless with nothing to learn (R -> 0): tau -> 0
        tau = 1e-12
    else:
        hi = math.log(10.0 * math.sqrt((delta + 2.0) / n))
        while h(hi) <= 0.0:
            hi += math.log(4.0)
        tau = math.exp(brentq(h, lo, hi, xtol=1e-13, rtol=1e-13, maxiter=300))
    zeta, r, df = state(tau)
    return DiagonalSolution(tau=tau, zeta=zeta, excess_risk=r, df=df, values=t, weights=w)


def spectrum(sol: DiagonalSolution, d: int, *, draws: int = 200, seed: int = 0) -> Array:
    """Predicted sorted profile of ``|theta_hat|`` (THEORY.md 3.1, section 6).

    For the exact teacher: the average over ``draws`` draws of the sorted
    ``|soft(theta* + tau Z; zeta)|``. For the compressed teacher (d > 20 000): the quantiles of
    the predicted law, ``v_k`` with ``E #{|theta_hat| > v_k} = k - 1/2``.

    Returns
    -------
    ndarray, shape (d,)
        Sorted decreasing, non-negative.
    """
    if sol.values.size == d:
        rng = np.random.default_rng(seed)
        acc = np.zeros(d)
        for _ in range(draws):
            v = np.abs(sol.values + sol.tau * rng.standard_normal(d))
            acc += np.sort(np.maximum(v - sol.zeta, 0.0))[::-1]
        out: Array = acc / draws
        return out
    if d > 10_000_000:
        raise ValueError(f"predicted spectrum is limited to d <= 1e7, got {d}")
    top = float(sol.values[0]) + 10.0 * sol.tau
    grid = np.concatenate(([0.0], np.geomspace(1e-6 * sol.tau, top, 4000)))
    counts = np.array(
        [
            float(
                np.dot(
                    sol.weights,
                    ndtr((sol.values - sol.zeta - v) / sol.tau)
                    + ndtr((-sol.values - sol.zeta - v) / sol.tau),
                )
            )
            for v in grid
        ]
    )
    k = np.arange(1, d + 1, dtype=np.float64) - 0.5
    # counts is decreasing in v: interpolate v as a function of the count.
    prof: Array = np.interp(k, counts[::-1], grid[::-1], left=top, right=0.0)
    return prof
