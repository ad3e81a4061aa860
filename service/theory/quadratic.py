"""Monte-Carlo state evolution of model B (quadratic network = PSD nuclear-norm sensing).

THEORY.md sections 0, 4: with ``Y = diag(lam) + sigma G`` (``S* = diag(lam)``, U irrelevant),

* ``sigma^2 = (Delta + R) / (4 n)``,
* ``lambda = 4 zeta (1 - df / n)``,
* ``R = 2 E||eta_zeta(Y) - S*||_F^2``, ``df = E div eta_zeta(Y)`` (Daleckii-Krein, THEORY.md 4.2).

Expectations are Monte-Carlo averages over K GOE draws fixed for the whole solve (common random
numbers, ``numpy.random.default_rng(seed)``, ``G_ii ~ N(0, 2)``, ``G_ij ~ N(0, 1)``), each rescaled
to ``||G||_F^2 = d(d+1)`` (THEORY.md 4.3). Each draw also enters with its free antithetic partner
``G - (2 tr G / d) I`` (the reflection of the trace direction: same law, same norm, same
eigenvectors, eigenvalues shifted), so the trace component averages to zero exactly; in the
regime where nothing is thresholded this makes R exact (THEORY.md section 0, special case B).

For a given sigma each draw is diagonalised once and ``(mu, o)`` cached
(``o_i = sum_j lam_j V_ji^2``) together with prefix tables of the mixed-pair sums, built in
O(K d^2), after which each zeta costs only O(K d). Inner Brent in zeta, outer secant steps in
``u = log sigma`` from a fixed-point start until F(u) = log sqrt((Delta+R)/(4n)) - u changes
sign, then Brent on that bracket: 6-10 batches of eigendecompositions per solve. Measured on
one core: ~40-70 ms at d = 40 (K = 25), ~0.35 s with K = 200; ~40-70 ms at d = 80 (K = 7),
~0.4 s with K = 60; ~1.5-3 s at d = 1000 (K = 1, dominated by the eigendecompositions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from service.teachers import Array, quadratic_eigenvalues
from service.theory.point import SEPoint


def default_draws(d: int, *, sensitive: bool = False) -> int:
    """Draws K: ``(200/d)^2`` for ~1 %, ``(600/d)^2`` near ``df/n -> 1`` (THEORY.md 4.3)."""
    scale = 600.0 if sensitive else 200.0
    return max(1, math.ceil((scale / d) ** 2))


def goe_draws(d: int, k: int, seed: int) -> Array:
    """K symmetric GOE matrices, ``G_ii ~ N(0,2)``, ``G_ij ~ N(0,1)``, ``||G||_F^2 = d(d+1)``.

    Returns
    -------
    ndarray, shape (k, d, d)
    """
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((k, d, d))
    g: Array = (h + np.swapaxes(h, 1, 2)) / math.sqrt(2.0)
    norms = np.sqrt(np.sum(g * g, axis=(1, 2)))
    g *= (math.sqrt(d * (d + 1.0)) / norms)[:, None, None]
    return g


@dataclass(frozen=True)
class _Eig:
    """Cached spectra at one sigma, for 2K draws (each draw and its antithetic partner).

    ``mu`` (2K, d) sorted decreasing; overlaps ``o`` (2K, d); divergence tables ``b0``, ``b1``
    (2K, d + 1): with ``p`` eigenvalues above zeta the mixed-pair sum of THEORY.md 4.2 is
    ``sum_{i<p<=j} (mu_i - zeta)/(mu_i - mu_j) = b1[p] - zeta b0[p]``.
    """

    mu: Array
    o: Array
    b0: Array
    b1: Array


def _tables(mu: Array) -> tuple[Array, Array]:
    """``b0[k, p] = sum_{i<p<=j} 1/(mu_i - mu_j)``, ``b1[k, p] = sum_{i<p<=j} mu_i/(mu_i - mu_j)``.

    O(K d^2) once per sigma; afterwards every zeta costs O(K d).
    """
    kk, d = mu.shape
    den = mu[:, :, None] - mu[:, None, :]
    upper = np.triu(np.ones((d, d), dtype=bool), k=1)
    inv = np.where(upper & (den > 0), 1.0 / np.where(den > 0, den, 1.0), 0.0)
    # c[k, i, p] = sum_{j >= p} inv[k, i, j]  (p = 0..d; c[..., d] = 0)
    c = np.zeros((kk, d, d + 1))
    c[:, :, :d] = np.cumsum(inv[:, :, ::-1], axis=2)[:, :, ::-1]
    below = np.arange(d)[:, None] < np.arange(d + 1)[None, :]
    cm = np.where(below[None, :, :], c, 0.0)
    b0: Array = np.sum(cm, axis=1)
    b1: Array = np.einsum("ki,kip->kp", mu, cm)
    return b0, b1


def _eig(lam: Array, g: Array, traces: Array, sigma: float) -> _Eig:
    d = lam.size
    y = sigma * g
    y[:, np.arange(d), np.arange(d)] += lam
    mu, v = np.linalg.eigh(y)
    mu = mu[:, ::-1]
    v = v[:, :, ::-1]
    o = np.einsum("j,kji->ki", lam, v * v)
    shift = 2.0 * sigma * traces / d
    b0, b1 = _tables(mu)
    # The partner's spectrum is shifted by -shift: same gaps, so b0 is shared.
    return _Eig(
        mu=np.concatenate([mu, mu - shift[:, None]]),
        o=np.concatenate([o, o]),
        b0=np.concatenate([b0, b0]),
        b1=np.concatenate([b1, b1 - shift[:, None] * b0]),
    )


def _risk_df(e: _Eig, zeta: float, lam_sq: float) -> tuple[float, float, float]:
    """``(R, df, rank)`` averaged over the draws at threshold zeta (THEORY.md 4.2, 4.3)."""
    f = np.maximum(e.mu - zeta, 0.0)
    err = np.sum(f * f, axis=1) - 2.0 * np.sum(f * e.o, axis=1) + lam_sq
    above = e.mu > zeta
    p_int = np.sum(above, axis=1)
    rows = np.arange(e.mu.shape[0])
    mixed = e.b1[rows, p_int] - zeta * e.b0[rows, p_int]
    p = p_int.astype(np.float64)
    df = p + p * (p - 1.0) / 2.0 + np.maximum(mixed, 0.0)
    return 2.0 * float(np.mean(err)), float(np.mean(df)), float(np.mean(p))


@dataclass(frozen=True)
class QuadraticSolution:
    """Fixed point of the model-B state evolution (``mu``: (2K, d) spectra at the solution)."""

    sigma: float
    zeta: float
    excess_risk: float
    df: float
    rank: float
    draws: int
    mu: Array

    def spectrum(self) -> Array:
        """Average over draws of sorted ``max(mu_i - zeta, 0)`` (THEORY.md 4.5), shape (d,)."""
        out: Array = np.mean(np.maximum(self.mu - self.zeta, 0.0), axis=0)
        return out


def _solve_zeta(e: _Eig, n: int, lam: float, lam_sq: float) -> float:
    """``4 zeta (1 - df/n) = lambda`` on the admissible branch (df decreasing in zeta)."""

    def g(z: float) -> float:
        return 4.0 * z * (1.0 - _risk_df(e, z, lam_sq)[1] / n) - lam

    hi = max(lam / 4.0, float(np.max(e.mu))) * 1.01 + 1e-300
    while g(hi) <= 0.0:
        hi *= 2.0
    z = float(brentq(g, 0.0, hi, xtol=1e-14 * hi, rtol=1e-12, maxiter=200))
    # df jumps where an eigenvalue crosses zeta: make sure the root is on the side df < n.
    while g(z) < 0.0 and z < hi:
        z = min(hi, z * (1.0 + 1e-12) + 1e-300)
    return z


def solve(p: SEPoint, *, draws: int, seed: int = 0) -> QuadraticSolution:
    """Solve the model-B state evolution at ``p`` (``lam > 0``) with ``draws`` GOE draws
    (THEORY.md 4.4), seeded by ``seed`` (``numpy.random.default_rng``)."""
    d, n, lam, delta = p.d, p.n, p.lam, p.delta
    if lam <= 0:
        raise ValueError(f"quadratic model needs weight_decay > 0, got {lam}")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    lam_star = quadratic_eigenvalues(d, p.gamma, p.rank)
    lam_sq = float(np.sum(lam_star**2))
    g = goe_draws(d, draws, seed)
    traces = np.trace(g, axis1=1, axis2=2)
    cache: dict[float, tuple[float, float, float, float, _Eig]] = {}

    def state(u: float) -> tuple[float, float, float, float, _Eig]:
        if u not in cache:
            e = _eig(lam_star, g, traces, math.exp(u))
            zeta = _solve_zeta(e, n, lam, lam_sq)
            r, df, rk = _risk_df(e, zeta, lam_sq)
            cache[u] = (zeta, r, df, rk, e)
        return cache[u]

    def f(u: float) -> float:
        r = state(u)[1]
        return 0.5 * math.log((delta + r) / (4.0 * n)) - u if delta + r > 0 else -math.inf

    u0 = 0.5 * math.log((delta + 0.5) / (4.0 * n))
    f0 = f(u0)
    u1 = u0 + f0 if f0 != 0.0 else u0
    f1 = f(u1)
    # Secant steps while no bracket; then Brent on the bracket (F is decreasing in u).
    for i in range(60):
        if f0 == 0.0 or f1 == 0.0 or (f0 > 0) != (f1 > 0):
            break
        # F decreases through the root: move towards it by a secant step while F is
        # decreasing, and by steps doubling from 0.25 at least (flat or non-monotone F).
        slope = (f1 - f0) / (u1 - u0) if u1 != u0 else 0.0
        secant = -f1 / slope if slope < 0 else 0.0
        step = math.copysign(min(max(abs(secant), 0.25 * 2.0 ** max(i - 2, 0)), 8.0), f1)
        u0, f0 = u1, f1
        u1 = u1 + step
        f1 = f(u1)
    else:
        raise ArithmeticError("quadratic SE: no bracket for sigma")
    if f1 == 0.0:
        u = u1
    elif f0 == 0.0:
        u = u0
    else:
        a, b = min(u0, u1), max(u0, u1)
        u = float(brentq(f, a, b, xtol=1e-7, rtol=1e-10, maxiter=100))
    zeta, r, df, rk, e = state(u)
    return QuadraticSolution(
        sigma=math.exp(u), zeta=zeta, excess_risk=r, df=df, rank=rk, draws=draws, mu=e.mu
    )
