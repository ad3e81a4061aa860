"""Teacher spectra in the conventions of THEORY.md section 1, shared by workers and theory.

* diagonal: ``|theta*_k| = c k^-gamma`` for ``k <= rank``, 0 beyond, ``||theta*||_2 = 1``;
* quadratic: ``lam_k = c k^-gamma`` for ``k <= rank``, 0 beyond, ``2 sum lam_k^2 = 1``
  (the signed variant alternates the signs: +, -, +, ...).

The constant ``c`` comes from the *finite* sum (THEORY.md pitfall 8.7). The workers build
their teachers from these (random signs, a Haar basis) and the state-evolution solvers their
predictions: one formula, so the two can never drift apart. numpy only, part of the contract
the workers import.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


def checked_rank(d: int, gamma: float, rank: int | None) -> int:
    if d < 1:
        raise ValueError(f"d must be >= 1, got {d}")
    if not math.isfinite(gamma) or gamma <= 0:
        raise ValueError(f"gamma must be finite and > 0, got {gamma}")
    r = d if rank is None else rank
    if not 1 <= r <= d:
        raise ValueError(f"rank must be in [1, d], got {rank} (d={d})")
    return r


def power_law(count: int, gamma: float) -> Array:
    """``k^-gamma`` for ``k = 1..count``, shape (count,)."""
    out: Array = np.arange(1, count + 1, dtype=np.float64) ** (-gamma)
    return out


def diagonal_coefficients(d: int, gamma: float, rank: int | None = None) -> Array:
    """``|theta*|`` sorted decreasing, unit l2 norm.

    Returns
    -------
    ndarray, shape (d,)
        ``c k^-gamma`` for ``k <= rank`` (default ``rank = d``), zeros beyond.
    """
    r = checked_rank(d, gamma, rank)
    theta = np.zeros(d)
    theta[:r] = power_law(r, gamma)
    out: Array = theta / np.linalg.norm(theta)
    return out


def quadratic_eigenvalues(
    d: int, gamma: float, rank: int | None = None, signed: bool = False
) -> Array:
    """Teacher eigenvalues ``lam_k = c k^-gamma``, ``2 sum lam^2 = 1``.

    Returns
    -------
    ndarray, shape (d,)
        Sorted by ``|lam|`` decreasing, zeros beyond ``rank``; ``signed``: ``lam_k (-1)^(k+1)``
        (the signed teacher), else all >= 0 (the PSD teacher).
    """
    r = checked_rank(d, gamma, rank)
    lam = np.zeros(d)
    lam[:r] = power_law(r, gamma)
    out: Array = lam / np.sqrt(2.0 * np.sum(lam**2))
    if signed:
        out[1::2] *= -1.0
    return out


def haar_orthogonal(d: int, rng: np.random.Generator) -> Array:
    """A Haar-distributed d x d orthogonal matrix (QR of a Gaussian matrix, signs fixed): the
    quadratic teacher's eigenbasis."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    out: Array = q * np.sign(np.diag(r))
    return out
