"""Direct solver of rank-constrained PSD nuclear-norm sensing on simulated data: the
simulation the finite-width state evolution (:mod:`service.theory.quadratic`) is checked
against (``bench/bench_width_theory.py``, ``tests/service/theory``).

The quadratic network of width m at a global minimum solves (THEORY.md 1.B, ``S = W' W``)::

    min_{S PSD, rank S <= m}  L(S) = (1/2n) sum_mu (y_mu - <A_mu, S>)^2 + (lambda/2) tr S,
    A_mu = x_mu x_mu' - I,   y_mu = x_mu' S* x_mu - tr S* + sqrt(Delta) xi_mu.

In the orthonormal coordinates ``svec`` of Sym(d) (THEORY.md 4.1) the data part is the
quadratic form ``1/2 s'Qs - b's + c`` with ``Q = (1/n) sum svec(A) svec(A)'`` (D x D,
``D = d(d+1)/2``), so that after one O(n D^2) build every evaluation costs O(D^2 + m d^2).

Non-convex for ``m < rank`` of the convex solution, so a global minimum is searched, not
certified: from every start (random ``W`` and the given warm starts, e.g. the convex solution
truncated to rank m) L-BFGS on the factor ``W`` (m x d, the network's own parametrisation),
then non-convex proximal-gradient steps ``S <- eta_{t lambda/2, m}(S - t grad)`` (``t = 1/L``,
L the largest eigenvalue of Q; ``eta_{zeta,m}`` keeps the m largest soft-thresholded
eigenvalues, the exact prox of ``(lambda/2) tr`` on the PSD matrices of rank <= m) until the
fixed-point residual is small; the lowest objective is kept and the spread of the starts'
objectives reported. At ``m >= d`` the problem is convex and a prox-gradient fixed point is
its global minimum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.optimize import minimize

from service.teachers import Array, haar_orthogonal, quadratic_eigenvalues


def rank_prox(y: Array, zeta: float, width: int | None = None) -> Array:
    """``eta_{zeta,m}(Y) = sum_{i <= m} max(mu_i - zeta, 0) v_i v_i'`` (mu decreasing;
    ``width`` None: every eigenvalue, the convex prox)."""
    mu, v = np.linalg.eigh(y)
    f = np.maximum(mu[::-1] - zeta, 0.0)
    if width is not None:
        f[width:] = 0.0
    vv = v[:, ::-1]
    out: Array = (vv * f) @ vv.T
    return out


@dataclass(frozen=True)
class SensingData:
    """One simulated data set reduced to its quadratic form (``Q``, ``b``, ``c``)."""

    d: int
    n: int
    s_star: Array
    q: Array
    b: Array
    c: float
    lipschitz: float
    """Largest eigenvalue of Q (the gradient's Lipschitz constant in Frobenius norm)."""

    def excess_risk(self, s: Array) -> float:
        """``R = 2 ||S - S*||_F^2`` (THEORY.md 1.B)."""
        return 2.0 * float(np.sum((s - self.s_star) ** 2))


class _Svec:
    """``svec``/``smat`` of Sym(d): diagonal, then sqrt(2) times the upper triangle."""

    def __init__(self, d: int) -> None:
        self.d = d
        self.iu = np.triu_indices(d)
        self.w = np.where(self.iu[0] == self.iu[1], 1.0, math.sqrt(2.0))

    def vec(self, m: Array) -> Array:
        out: Array = m[self.iu] * self.w
        return out

    def mat(self, v: Array) -> Array:
        m = np.zeros((self.d, self.d))
        m[self.iu] = v / self.w
        out: Array = m + m.T - np.diag(np.diag(m))
        return out


def simulate(
    d: int,
    n: int,
    gamma: float,
    noise: float,
    seed: int,
    rank: int | None = None,
    *,
    sensing: Literal["network", "goe"] = "network",
) -> SensingData:
    """Draw ``S* = U diag(lam) U'`` (U Haar, lam from
    :func:`service.teachers.quadratic_eigenvalues`), the sensing matrices and the labels
    ``y = <A, S*> + sqrt(noise) xi``, seeded by ``seed`` (``numpy.random.default_rng``).

    ``sensing``: ``network``, the network's ``A = x x' - I`` with ``x ~ N(0, I_d)``; ``goe``,
    GOE matrices of the same covariance (diagonal variance 2, off-diagonal 1: i.i.d.
    ``N(0, 2)`` in svec coordinates), the Gaussian design the state evolution describes
    (THEORY.md 5.3's universality control)."""
    rng = np.random.default_rng(seed)
    lam = quadratic_eigenvalues(d, gamma, rank)
    u = haar_orthogonal(d, rng)
    s_star: Array = (u * lam) @ u.T
    sv = _Svec(d)
    if sensing == "network":
        x = rng.standard_normal((n, d))
        phi = x[:, sv.iu[0]] * x[:, sv.iu[1]] * sv.w - sv.vec(np.eye(d))
    elif sensing == "goe":
        phi = math.sqrt(2.0) * rng.standard_normal((n, sv.iu[0].size))
    else:
        raise ValueError(f"sensing must be 'network' or 'goe', got {sensing!r}")
    y = phi @ sv.vec(s_star) + math.sqrt(noise) * rng.standard_normal(n)
    q: Array = phi.T @ phi / n
    b: Array = phi.T @ y / n
    lip = float(np.linalg.eigvalsh(q)[-1])
    return SensingData(d=d, n=n, s_star=s_star, q=q, b=b, c=float(y @ y) / (2 * n), lipschitz=lip)


@dataclass(frozen=True)
class RankSolution:
    """The lowest objective found over the starts, with its fixed-point residual."""

    s: Array
    objective: float
    residual: float
    """``||S - eta(S - t grad)||_F / max(||S||_F, 1e-12)`` at the reported point."""
    spread: float
    """(max - min)/|min| of the starts' final objectives (0 with one start)."""
    objectives: tuple[float, ...]


class RankSensing:
    """The objective of one data set at one (lambda, width)."""

    def __init__(self, data: SensingData, lam: float, width: int | None) -> None:
        self.data, self.lam = data, lam
        self.width = None if width is None or width >= data.d else width
        self.sv = _Svec(data.d)

    def objective(self, s: Array) -> float:
        v = self.sv.vec(s)
        return float(0.5 * v @ self.data.q @ v - self.data.b @ v + self.data.c) + 0.5 * (
            self.lam * float(np.trace(s))
        )

    def gradient(self, s: Array) -> Array:
        """Frobenius gradient of the data part."""
        v = self.sv.vec(s)
        return self.sv.mat(self.data.q @ v - self.data.b)

    def _factor_fun(self, wflat: Array, m: int) -> tuple[float, Array]:
        w = wflat.reshape(m, self.data.d)
        s = w.T @ w
        v = self.sv.vec(s)
        qv = self.data.q @ v
        val = 0.5 * v @ qv - self.data.b @ v + self.data.c + 0.5 * self.lam * float(np.sum(w * w))
        g = self.sv.mat(qv - self.data.b)
        grad = 2.0 * w @ g + self.lam * w
        return float(val), grad.ravel()

    def _prox_step(self, s: Array, t: float) -> Array:
        return rank_prox(s - t * self.gradient(s), t * self.lam / 2.0, self.width)

    def polish(self, s: Array, *, tol: float = 1e-9, max_iter: int = 20_000) -> tuple[Array, float]:
        """Monotone proximal-gradient steps until the relative fixed-point residual < tol."""
        t = 1.0 / self.data.lipschitz
        res = math.inf
        for _ in range(max_iter):
            nxt = self._prox_step(s, t)
            res = float(np.linalg.norm(nxt - s)) / max(float(np.linalg.norm(s)), 1e-12)
            s = nxt
            if res < tol:
                break
        return s, res

    def from_start(self, w0: Array) -> tuple[Array, float, float]:
        """L-BFGS on the factor from ``w0`` (m x d), then :meth:`polish`."""
        m = w0.shape[0]
        out = minimize(
            self._factor_fun, w0.ravel(), args=(m,), jac=True, method="L-BFGS-B",
            options={"maxiter": 20_000, "maxcor": 30, "gtol": 1e-12, "ftol": 1e-15},
        )  # fmt: skip
        w = out.x.reshape(m, self.data.d)
        s, res = self.polish(w.T @ w)
        return s, self.objective(s), res

    def solve(self, *, restarts: int, seed: int, starts: Sequence[Array] = ()) -> RankSolution:
        """Lowest objective over ``restarts`` random factors and the warm ``starts`` (PSD
        matrices, truncated to rank m by their eigen-decomposition)."""
        d = self.data.d
        m = d if self.width is None else self.width
        rng = np.random.default_rng(seed)
        inits: list[Array] = []
        scale = math.sqrt(0.5 / (m * math.sqrt(d)))
        inits += [scale * rng.standard_normal((m, d)) for _ in range(restarts)]
        for s0 in starts:
            mu, v = np.linalg.eigh(s0)
            mu, v = np.maximum(mu[::-1][:m], 0.0), v[:, ::-1][:, :m]
            w0 = (v * np.sqrt(mu)).T + 1e-6 * rng.standard_normal((m, d))
            inits.append(w0)
        results = [self.from_start(w0) for w0 in inits]
        objs = tuple(r[1] for r in results)
        best = min(range(len(results)), key=lambda i: objs[i])
        lo, hi = min(objs), max(objs)
        s, obj, res = results[best]
        return RankSolution(
            s=s, objective=obj, residual=res, spread=(hi - lo) / abs(lo), objectives=objs
        )
