"""Teachers in the conventions of THEORY.md section 1.

* diagonal: theta*_k = c k^-gamma for k <= rank (0 beyond), random signs, ||theta*||_2 = 1
  (c from the finite sum);
* quadratic: S* = U diag(lam) U', U Haar, lam_k = c k^-gamma for k <= rank, 2||S*||_F^2 = 1;
  the signed variant alternates the signs of lam_k (+, -, +, ...).

The teacher depends on the run's seed only through the ``teacher`` stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from service.spec import RunConfig
from workers.rng import stream

Array = NDArray[np.float64]


def power_law(count: int, gamma: float) -> Array:
    """k^-gamma for k = 1..count."""
    return np.arange(1, count + 1, dtype=np.float64) ** (-gamma)


def diagonal_coefficients(d: int, gamma: float, rank: int | None = None) -> Array:
    """|theta*| sorted decreasing: c k^-gamma (k <= rank), unit l2 norm, length d."""
    r = d if rank is None else rank
    theta = np.zeros(d)
    theta[:r] = power_law(r, gamma)
    return theta / np.linalg.norm(theta)


def quadratic_eigenvalues(
    d: int, gamma: float, rank: int | None = None, signed: bool = False
) -> Array:
    """Teacher eigenvalues lam_k = c k^-gamma (k <= rank), 2 sum lam^2 = 1, length d.

    Signed: lam_k (-1)^(k+1). Sorted by |lam| decreasing.
    """
    r = d if rank is None else rank
    lam = np.zeros(d)
    lam[:r] = power_law(r, gamma)
    lam /= np.sqrt(2.0 * np.sum(lam**2))
    if signed:
        lam[1::2] *= -1.0
    return lam


def haar_orthogonal(d: int, rng: np.random.Generator) -> Array:
    """A Haar-distributed d x d orthogonal matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    out: Array = q * np.sign(np.diag(r))
    return out


@dataclass(frozen=True)
class DiagonalTeacher:
    """theta* (shape (d,))."""

    theta: Array

    def predict(self, x: Array) -> Array:
        """f*(x) = theta* . x for x of shape (n, d)."""
        return x @ self.theta


@dataclass(frozen=True)
class QuadraticTeacher:
    """S* = U diag(eigenvalues) U' (shape (d, d))."""

    eigenvalues: Array
    matrix: Array

    def predict(self, x: Array) -> Array:
        """f*(x) = x'S*x - tr S* for x of shape (n, d)."""
        return quadratic_form(x, self.matrix)


Teacher = DiagonalTeacher | QuadraticTeacher


def quadratic_form(x: Array, s: Array) -> Array:
    """<x x' - I, S> for every row x of ``x`` (shape (n, d)); S symmetric (d, d)."""
    out: Array = np.einsum("ij,ij->i", x @ s, x) - np.trace(s)
    return out


def make_teacher(cfg: RunConfig) -> Teacher:
    """The teacher of a run (seeded by the ``teacher`` stream)."""
    rng = stream(cfg.seed, "teacher")
    t = cfg.teacher
    if cfg.model == "diagonal":
        mags = diagonal_coefficients(cfg.d, t.gamma, t.rank)
        signs = rng.choice(np.array([-1.0, 1.0]), size=cfg.d)
        return DiagonalTeacher(theta=mags * signs)
    lam = quadratic_eigenvalues(cfg.d, t.gamma, t.rank, t.signed)
    u = haar_orthogonal(cfg.d, rng)
    s = (u * lam) @ u.T
    return QuadraticTeacher(eigenvalues=lam, matrix=(s + s.T) / 2.0)
