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
  singular direction of W: its first zero row where it has one; diagonal:
  ``eps * (1, sign c_i) sqrt(|c_i| - lam)`` to ``(a_i, w_i)`` of every violating
  coordinate), ``eps`` the global minimiser of the quartic;
* decay: scale the offending directions by ``1 - t`` (W <- W (I - t P), P the projector on
  the eigen-directions of S where G is positive; diagonal: ``(a_i, w_i) <- (1 - t)(a_i, w_i)``),
  which is a quadratic in ``u = 1 - (1 - t)^2``, minimised exactly on [0, 1].

A correction never raises the objective (both searches include 0), and it is the network's
own parameters that move: the convex solution is never copied in. All arithmetic is float64
torch on the data's device (the five coefficients of a quartic go to the host for its roots);
the trainer calls :meth:`workers.problems.Problem.correct` when a certificate refuses.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

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
    r: Tensor, p1: Tensor, p2: Tensor, n: int, lam: float, pen1: float, pen2: float
) -> Array:
    """Coefficients of ``F(eps) - F(0)`` when the residual is ``r - eps p1 - eps^2 p2`` and the
    squared parameter norm grows by ``pen1 eps + pen2 eps^2`` (four dot products, one
    transfer)."""
    dots = torch.stack([r @ p1, p1 @ p1, r @ p2, p1 @ p2, p2 @ p2]).cpu().numpy()
    c = np.zeros(5)
    c[1] = -dots[0] / n + lam / 2 * pen1
    c[2] = (dots[1] - 2.0 * dots[2]) / (2 * n) + lam / 2 * pen2
    c[3] = dots[3] / n
    c[4] = dots[4] / (2 * n)
    return c


def diagonal_correction(
    x: Tensor, y: Tensor, lam: float, a: Tensor, w: Tensor
) -> tuple[Tensor, Tensor] | None:
    """The diagonal net's growth and decay corrections, or None when neither helps."""
    n = y.shape[0]
    a, w = a.clone(), w.clone()
    moved = False
    # decay: non-zero coordinates whose correlation is below the threshold
    r = y - x @ (a * w)
    c = x.T @ r / n
    prune = (a * w != 0.0) & (c.abs() < (1.0 - PRUNE_MARGIN) * lam)
    if bool(prune.any()):
        q = x[:, prune] @ (a * w)[prune]
        ab2 = float((a[prune] ** 2 + w[prune] ** 2).sum())
        frac = minimize_on_unit(float(r @ q) / n - lam / 2 * ab2, float(q @ q) / n)
        if frac > 0.0:
            scale = float(np.sqrt(1.0 - frac))
            a[prune] *= scale
            w[prune] *= scale
            moved = True
            r = y - x @ (a * w)
            c = x.T @ r / n
    # growth: coordinates whose correlation exceeds the threshold
    grow = c.abs() > lam
    if bool(grow.any()):
        s = torch.sign(c[grow])
        u = torch.sqrt(c[grow].abs() - lam)
        xg = x[:, grow]
        b = u * (a[grow] * s + w[grow])  # theta_i(eps) = theta_i + eps b_i + eps^2 s_i u_i^2
        p1, p2 = xg @ b, xg @ (s * u * u)
        pen1 = 2.0 * float((u * (a[grow] + s * w[grow])).sum())
        pen2 = 2.0 * float((u * u).sum())
        eps = minimize_quartic(quartic_of_line(r, p1, p2, n, lam, pen1, pen2))
        if eps != 0.0:
            a[grow] += eps * u
            w[grow] += eps * s * u
            moved = True
    return (a, w) if moved else None


def _prune_block(
    x: Tensor, r: Tensor, lam: float, w: Tensor, sign: float, g: Tensor, n: int
) -> Tensor | None:
    """Decay of one sign block ``w`` (its rows) along the directions where G is positive."""
    s_blk = w.T @ w
    ev, vec = torch.linalg.eigh((s_blk + s_blk.T) / 2.0)
    top = float(ev[-1]) if ev.numel() else 0.0
    if top <= 0.0:
        return None
    gk = torch.einsum("ik,ij,jk->k", vec, g, vec)
    pick = (ev > 0.0) & (ev <= SMALL_DIRECTION * top) & (gk > 0.0)
    if not bool(pick.any()):
        return None
    v = vec[:, pick]
    s_p = (v * ev[pick]) @ v.T  # the part of the block's S in those directions
    q = sign * quadratic_form(x, s_p)  # A(S_P), signed
    tr = float(torch.trace(s_p))
    u = minimize_on_unit(float(r @ q) / n - lam / 2 * tr, float(q @ q) / n)
    if u <= 0.0:
        return None
    t = 1.0 - float(np.sqrt(1.0 - u))
    out: Tensor = w - t * (w @ v) @ v.T
    return out


def _grow_block(
    x: Tensor, r: Tensor, lam: float, w: Tensor, sign: float, g: Tensor, n: int
) -> tuple[Tensor, Tensor] | None:
    """Growth of one sign block along the most negative eigenvector of G: (new block, r)."""
    ev, vec = torch.linalg.eigh(g)
    if float(ev[0]) >= 0.0 or w.shape[0] == 0:
        return None
    v = vec[:, 0]
    zero = torch.nonzero(~w.ne(0.0).any(dim=1)).squeeze(1)
    if zero.numel():  # a zero row is a weakest direction, and the growth stays in one row
        u = torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
        u[zero[0]] = 1.0
    else:
        u = torch.linalg.svd(w, full_matrices=True)[0][:, -1]  # the weakest direction
    q = w.T @ u
    xv, xq = x @ v, x @ q
    qv = float(q @ v)
    p1 = sign * (2.0 * xq * xv - 2.0 * qv)  # A(q v' + v q')
    p2 = sign * (xv * xv - 1.0)  # A(v v')
    eps = minimize_quartic(quartic_of_line(r, p1, p2, n, lam, 2.0 * qv, 1.0))
    if eps == 0.0:
        return None
    return w + eps * torch.outer(u, v), r - eps * p1 - eps * eps * p2


def quadratic_correction(
    x: Tensor,
    y: Tensor,
    lam: float,
    w: Tensor,
    s: Tensor,
    adjoint: Callable[[Tensor], Tensor] | None = None,
) -> Tensor | None:
    """The quadratic net's growth and decay corrections of W (rows signed by ``s``);
    ``adjoint``: ``r -> A'(r)/n`` on these inputs, when the caller keeps one."""
    adj = adjoint if adjoint is not None else (lambda v: sensing_adjoint(x, v))
    n = y.shape[0]
    w = w.clone()
    eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    moved = False
    for sign in (1.0, -1.0):
        rows = s == sign
        if not bool(rows.any()):
            continue
        big_s = (w.T * s) @ w
        r = y - quadratic_form(x, (big_s + big_s.T) / 2.0)
        g = -sign * adj(r) + lam / 2.0 * eye
        pruned = _prune_block(x, r, lam, w[rows], sign, g, n)
        if pruned is not None:
            w[rows] = pruned
            moved = True
            big_s = (w.T * s) @ w
            r = y - quadratic_form(x, (big_s + big_s.T) / 2.0)
            g = -sign * adj(r) + lam / 2.0 * eye
        grown = _grow_block(x, r, lam, w[rows], sign, g, n)
        if grown is not None:
            w[rows] = grown[0]
            moved = True
    return w if moved else None
