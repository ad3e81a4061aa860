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

Finite width (``SEPoint.width`` m < d)
--------------------------------------
A network of width m has ``S = W'W`` of rank <= m and penalty ``(lambda/2)||W||^2 = (lambda/2)
tr S``: its global minimum is ``min_{S PSD, rank S <= m} (1/2n) sum (y - <A, S>)^2 + (lambda/2)
tr S``. Template of THEORY.md 2 with ``g = (lambda/2) tr + indicator{S PSD, rank S <= m}``:

* Denoiser. The prox of ``beta g`` (S-space, THEORY.md 4.1) is
  ``eta_{zeta,m}(Y) = sum_{i <= m} max(mu_i - zeta, 0) v_i v_i'`` (mu decreasing): by von
  Neumann's trace inequality the minimiser shares Y's eigenvectors, each kept eigenvalue
  becomes ``(mu_i - zeta)_+`` and gains ``(mu_i - zeta)_+^2 / 2`` over dropping it, so the m
  largest are kept. The rank constraint does not scale with beta, so ``zeta = beta lambda/4``
  as before: ``lambda = 4 zeta (1 - df/n)``, ``sigma^2 = (Delta + R)/(4n)``,
  ``R = 2 E||eta_{zeta,m}(Y) - S*||_F^2``. The width enters through eta only.
* Divergence. Away from ``{mu_m = mu_{m+1} > zeta}`` eta is the spectral function
  ``f(mu) = (mu - zeta)_+ 1{mu > t}`` for any t in ``(mu_{m+1}, mu_m)``, so THEORY.md 4.2 with
  ``f_i = (mu_i - zeta)_+`` for i <= m and 0 beyond gives, with ``p' = min(#{mu_i > zeta}, m)``,
  ``df = p' + p'(p'-1)/2 + sum_{i <= p' < j} (mu_i - zeta)/(mu_i - mu_j)``: pairs of retained
  eigenvalues count 1, pairs of dropped ones 0, and the mixed pairs now include j above zeta
  beyond rank m (each > 1). The prefix tables ``b0``, ``b1`` sum over all ``j >= p'`` whatever
  ``mu_j``, so ``b1[p'] - zeta b0[p']`` is this sum as it stands. This is the divergence
  Stein's lemma needs: the crossing set ``mu_m = mu_{m+1}`` has codimension 2 in Sym(d)
  (real symmetric eigenvalue crossings), eta is continuous around it (``v v'`` has no sign)
  and its derivative O(1/gap) is integrable over the two transverse dimensions, so there is
  no jump term. GOE level repulsion (gap density ~ s) keeps ``E[1/gap]`` finite, but its
  variance diverges logarithmically: the Monte-Carlo df and R are noisier than at full width
  near ``df/n -> 1`` (bench ``draws`` study).
* One root. Per draw, df is non-increasing in zeta: where ``#{mu > zeta} <= m`` it is the
  convex df (linear pieces, a drop of 1 when an eigenvalue crosses zeta); where more than m
  are above zeta, ``p' = m`` and df is linear with slope ``-b0[m] < 0``, continuous when a
  ``mu_j`` (j > m) crosses zeta (its term does not depend on the side). Hence
  ``4 zeta (1 - df/n) - lambda`` is negative where ``df >= n`` and increasing where ``df < n``:
  at most one admissible root, and ``_solve_zeta``'s bracket is unchanged. Checked on a
  400-point zeta grid and for a single sign change of the outer ``F(u)`` on 120 points over
  ``sigma e^-6..e^6`` in all 240 cases of ``bench/bench_width_theory.py roots`` (d = 20, 40,
  alpha = 1/4-4, lambda = 1e-3-0.1, Delta = 0, 0.25, m = 1, 3, d/4, d/2, d).
* Full width. ``m >= #{mu > zeta}`` in every draw gives the convex numbers exactly; ``m >= d``
  is stored as None (the same cache entry, the same result).

This is the AMP / state-evolution heuristic applied to a non-convex denoiser: it describes the
replica-symmetric fixed point the SE picks, not provably the global minimum, and it was
verified by simulation (``bench/bench_width_theory.py``; simulated minima by
:mod:`service.theory.rank_sensing`, lowest objective over random and warm starts):

* d = 20 and 40, alpha = 1, 2, 4, lambda = 0.01-0.1, Delta = 0.01, 0.25, m = 1, 2, 3, 5, 8,
  d/2, d, 8 seeds: 107 of 108 narrow points (m < d) within ``0 <= R/R_SE - 1 <=
  min(max(1.7 d/n, 2/d), 0.2)`` plus 3 standard errors (the convex case's finite-size rule);
  median R/R_SE = 1.011, the excess grows with m from +0.1-1 % (m = 1) to +2-7 % (m = 8-10):
  narrow networks sit closer to the SE than the full-width one.
* At n < d(d+1)/2 (alpha = 1/2, lambda = 1e-3, Delta = 0.25, d = 20, 30), where R(m) has its
  bump, GOE sensing (the SE's Gaussian design) agrees with the SE at every width within 1-2
  standard errors (R/R_SE = 0.87-1.06), while the network's x x' - I data sit +7-34 % above
  it (more at m = 2-6 than at full width: the finite-size excess is width dependent).
* In noise fitting (df/n >= 0.9; alpha = 1/4 at d = 30, the top of the bump) neither agrees:
  R/R_SE from 0.55 to 1.8, as for the convex problem there; the SE's R at the bump's top is
  also ill-conditioned (a factor 30 between draw sets at d = 400).
* The rank-constrained landscape has many local minima at n < D: at d = 20, alpha = 1/4-1/2
  a random start reaches the lowest objective found in 2.5-100 % of starts, so a trained
  network is compared with the SE's global-minimum prediction only through its certificate.
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


def _risk_df(
    e: _Eig, zeta: float, lam_sq: float, width: int | None = None
) -> tuple[float, float, float]:
    """``(R, df, rank)`` averaged over the draws at threshold zeta (THEORY.md 4.2, 4.3), for
    ``eta_zeta`` or, with ``width`` m, ``eta_{zeta,m}`` (only the m largest eigenvalues kept)."""
    f = np.maximum(e.mu - zeta, 0.0)
    p_int = np.sum(e.mu > zeta, axis=1)
    if width is not None and width < f.shape[1]:
        f[:, width:] = 0.0
        p_int = np.minimum(p_int, width)
    err = np.sum(f * f, axis=1) - 2.0 * np.sum(f * e.o, axis=1) + lam_sq
    rows = np.arange(e.mu.shape[0])
    # sum_{i < p' <= j}: with p' = m < p the pairs include the j above zeta beyond rank m
    mixed = e.b1[rows, p_int] - zeta * e.b0[rows, p_int]
    p = p_int.astype(np.float64)
    df = p + p * (p - 1.0) / 2.0 + np.maximum(mixed, 0.0)
    return 2.0 * float(np.mean(err)), float(np.mean(df)), float(np.mean(p))


@dataclass(frozen=True)
class QuadraticSolution:
    """Fixed point of the model-B state evolution (``mu``: (2K, d) spectra at the solution;
    ``width``: the rank constraint m, None at full width)."""

    sigma: float
    zeta: float
    excess_risk: float
    df: float
    rank: float
    draws: int
    mu: Array
    width: int | None = None

    def spectrum(self) -> Array:
        """Average over draws of sorted ``max(mu_i - zeta, 0)`` (THEORY.md 4.5), the
        ``d - m`` smallest set to 0 at width m (rank <= m), shape (d,)."""
        f = np.maximum(self.mu - self.zeta, 0.0)
        if self.width is not None:
            f[:, self.width :] = 0.0
        out: Array = np.mean(f, axis=0)
        return out


def _solve_zeta(e: _Eig, n: int, lam: float, lam_sq: float, width: int | None = None) -> float:
    """``4 zeta (1 - df/n) = lambda`` on the admissible branch (df decreasing in zeta)."""

    def g(z: float) -> float:
        return 4.0 * z * (1.0 - _risk_df(e, z, lam_sq, width)[1] / n) - lam

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
    d, n, lam, delta, width = p.d, p.n, p.lam, p.delta, p.width
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
            zeta = _solve_zeta(e, n, lam, lam_sq, width)
            r, df, rk = _risk_df(e, zeta, lam_sq, width)
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
        sigma=math.exp(u), zeta=zeta, excess_risk=r, df=df, rank=rk, draws=draws, mu=e.mu,
        width=width,
    )  # fmt: skip
