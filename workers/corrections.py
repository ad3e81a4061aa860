"""Support corrections: exact line searches that fix the slow directions of a network.

Near its global minimum a network trained from a small initialisation can crawl for
thousands of steps (THEORY.md 5.4; measured: one seed in six of a d = 30 quadratic sweep took
3,912 L-BFGS steps instead of ~110, and a d = 500, n = 128 diagonal net stopped uncertified
after 20,000). The cause is a few *near-threshold* directions, which any first-order or
quasi-Newton method in the factored parameters moves only multiplicatively:

* a direction that must **grow** from ~0 (a teacher component just above the threshold): at
  w = 0 the objective is ``g w^2 + c w^4`` with a tiny negative ``g``, a saddle with almost no
  gradient;
* a direction that must **decay** to 0 (just below the threshold): ``g w^2`` with a tiny
  positive ``g``, a valley with almost no curvature.

The certificate's dual point names both: the matrix ``G = -A'(r)/n + (lam/2) I`` (quadratic;
``|X'r/n|`` against lam for the diagonal net) is negative along a direction that must grow
and positive along one that must decay. A correction moves the network's *own parameters*
along such directions, by an exact line search on the network's objective (a polynomial of
degree 4 along any line, since the prediction is quadratic in the parameters):

* growth: add ``eps * u v'`` to W (v the most negative eigenvector of G, u the weakest left
  singular direction of W; diagonal: ``eps * (1, sign c_i) sqrt(|c_i| - lam)`` to
  ``(a_i, w_i)`` of every violating coordinate), ``eps`` the global minimiser of the quartic;
* decay: scale the offending directions by ``1 - t`` (W <- W (I - t P), P the projector on
  the eigen-directions of S where G is positive; diagonal: ``(a_i, w_i) <- (1 - t)(a_i, w_i)``),
  which is a quadratic in ``u = 1 - (1 - t)^2``, minimised exactly on [0, 1].

A correction never raises the objective (both searches include 0), and it is the network's
own parameters that move: the convex solution is never copied in. All arithmetic is float64
numpy; the trainer calls :meth:`workers.problems.Problem.correct` when a certificate refuses.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from workers.operators import quadratic_form, sensing_adjoint

Array = NDArray[np.float64]

PRUNE_MARGIN = 1e-3
"""Diagonal: a non-zero coordinate with |c_i| < (1 - this) lam decays."""
SMALL_DIRECTION = 1e-2
"""Quadratic: only eigen-directions of S below this fraction of its largest decay."""


def minimize_quartic(c: Array) -> float:
    """The global minimiser over the reals of ``sum_k c[k] eps^k`` (k = 0..4), 0 included."""
    cand = [0.0]
    deriv = np.array([4.0 * c[4], 3.0 * c[3], 2.0 * c[2], c[1]])
    if np.any(deriv != 0.0):
        lead = np.flatnonzero(deriv)[0]
        for root in np.roots(deriv[lead:]):
            if abs(root.imag) <= 1e-9 * max(1.0, abs(root.real)):
                cand.append(float(root.real))
    values = [float(np.polyval(c[::-1], e)) for e in cand]
    return cand[int(np.argmin(values))]


def minimize_on_unit(slope: float, curvature: float) -> float:
    """argmin over u in [0, 1] of ``slope u + curvature u^2 / 2`` (curvature >= 0)."""
    if curvature <= 0.0:
        return 1.0 if slope < 0 else 0.0
    return float(np.clip(-slope / curvature, 0.0, 1.0))


def quartic_of_line(
    r: Array, p1: Array, p2: Array, n: int, lam: float, pen1: float, pen2: float
) -> Array:
    """Coefficients of ``F(eps) - F(0)`` when the residual is ``r - eps p1 - eps^2 p2`` and the
    squared parameter norm grows by ``pen1 eps + pen2 eps^2``."""
    c = np.zeros(5)
    c[1] = -(r @ p1) / n + lam / 2 * pen1
    c[2] = (p1 @ p1 - 2.0 * (r @ p2)) / (2 * n) + lam / 2 * pen2
    c[3] = (p1 @ p2) / n
    c[4] = (p2 @ p2) / (2 * n)
    return c


def diagonal_correction(
    x: Array, y: Array, lam: float, a: Array, w: Array
) -> tuple[Array, Array] | None:
    """The diagonal net's growth and decay corrections, or None when neither helps."""
    n = len(y)
    a, w = a.copy(), w.copy()
    moved = False
    # decay: non-zero coordinates whose correlation is below the threshold
    r = y - x @ (a * w)
    c = x.T @ r / n
    prune = (a * w != 0.0) & (np.abs(c) < (1.0 - PRUNE_MARGIN) * lam)
    if prune.any():
        q = x[:, prune] @ (a * w)[prune]
        ab2 = float(np.sum(a[prune] ** 2 + w[prune] ** 2))
        frac = minimize_on_unit((r @ q) / n - lam / 2 * ab2, (q @ q) / n)
        if frac > 0.0:
            scale = np.sqrt(1.0 - frac)
            a[prune] *= scale
            w[prune] *= scale
            moved = True
            r = y - x @ (a * w)
            c = x.T @ r / n
    # growth: coordinates whose correlation exceeds the threshold
    grow = np.abs(c) > lam
    if grow.any():
        s = np.sign(c[grow])
        u = np.sqrt(np.abs(c[grow]) - lam)
        xg = x[:, grow]
        b = u * (a[grow] * s + w[grow])  # theta_i(eps) = theta_i + eps b_i + eps^2 s_i u_i^2
        p1, p2 = xg @ b, xg @ (s * u * u)
        pen1 = 2.0 * float(np.sum(u * (a[grow] + s * w[grow])))
        pen2 = 2.0 * float(np.sum(u * u))
        eps = minimize_quartic(quartic_of_line(r, p1, p2, n, lam, pen1, pen2))
        if eps != 0.0:
            a[grow] += eps * u
            w[grow] += eps * s * u
            moved = True
    return (a, w) if moved else None


def _prune_block(
    x: Array, r: Array, lam: float, w: Array, sign: float, g: Array, n: int
) -> Array | None:
    """Decay of one sign block ``w`` (its rows) along the directions where G is positive."""
    s_blk = w.T @ w
    ev, vec = np.linalg.eigh((s_blk + s_blk.T) / 2.0)
    top = float(ev[-1]) if ev.size else 0.0
    if top <= 0.0:
        return None
    gk = np.einsum("ik,ij,jk->k", vec, g, vec)
    pick = (ev > 0.0) & (ev <= SMALL_DIRECTION * top) & (gk > 0.0)
    if not pick.any():
        return None
    v = vec[:, pick]
    s_p = (v * ev[pick]) @ v.T  # the part of the block's S in those directions
    q = sign * (np.einsum("ij,jk,ik->i", x, s_p, x) - np.trace(s_p))  # A(S_P), signed
    u = minimize_on_unit((r @ q) / n - lam / 2 * float(np.trace(s_p)), (q @ q) / n)
    if u <= 0.0:
        return None
    t = 1.0 - np.sqrt(1.0 - u)
    out: Array = w - t * (w @ v) @ v.T
    return out


def _grow_block(
    x: Array, r: Array, lam: float, w: Array, sign: float, g: Array, n: int
) -> tuple[Array, Array] | None:
    """Growth of one sign block along the most negative eigenvector of G: (new block, r)."""
    ev, vec = np.linalg.eigh(g)
    if ev[0] >= 0.0:
        return None
    v = vec[:, 0]
    left = np.linalg.svd(w, full_matrices=True)[0] if w.shape[0] else np.zeros((0, 0))
    if left.size == 0:
        return None
    u = left[:, -1]  # the weakest direction of the block's rows
    q = w.T @ u
    xv, xq = x @ v, x @ q
    p1 = sign * (2.0 * xq * xv - 2.0 * float(q @ v))  # A(q v' + v q')
    p2 = sign * (xv * xv - 1.0)  # A(v v')
    eps = minimize_quartic(quartic_of_line(r, p1, p2, n, lam, 2.0 * float(q @ v), 1.0))
    if eps == 0.0:
        return None
    return w + eps * np.outer(u, v), r - eps * p1 - eps * eps * p2


def quadratic_correction(x: Array, y: Array, lam: float, w: Array, s: Array) -> Array | None:
    """The quadratic net's growth and decay corrections of W (rows signed by ``s``)."""
    n = len(y)
    w = w.copy()
    moved = False
    for sign in (1.0, -1.0):
        rows = s == sign
        if not rows.any():
            continue
        big_s = (w.T * s) @ w
        r = y - quadratic_form(x, (big_s + big_s.T) / 2.0)
        g = -sign * sensing_adjoint(x, r) + lam / 2.0 * np.eye(x.shape[1])
        pruned = _prune_block(x, r, lam, w[rows], sign, g, n)
        if pruned is not None:
            w[rows] = pruned
            moved = True
            big_s = (w.T * s) @ w
            r = y - quadratic_form(x, (big_s + big_s.T) / 2.0)
            g = -sign * sensing_adjoint(x, r) + lam / 2.0 * np.eye(x.shape[1])
        grown = _grow_block(x, r, lam, w[rows], sign, g, n)
        if grown is not None:
            w[rows] = grown[0]
            moved = True
    return w if moved else None
