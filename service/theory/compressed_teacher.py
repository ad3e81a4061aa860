"""The diagonal teacher in compressed form, for the very large d of the scaling study.

:func:`compressed_diagonal` keeps the head of ``|theta*|`` (:mod:`service.teachers`) exactly
and groups the tail in geometric bins (THEORY.md 3.2), with :func:`power_sum` for the sums.
"""

from __future__ import annotations

import math

import numpy as np

from service.teachers import Array, checked_rank, power_law

#: Coordinates kept exactly by :func:`compressed_diagonal`.
EXACT_HEAD = 4000
#: Relative width of the tail bins ``[a, BIN_RATIO a)`` (THEORY.md 3.2).
BIN_RATIO = 1.001


def power_sum(s: float, a: Array, b: Array) -> Array:
    """``sum_{k=a}^{b} k^-s`` for integer arrays ``a <= b`` with ``a >= 1000`` (Euler-Maclaurin).

    Integral plus end corrections up to the B4 term; the truncation error is of relative
    order ``a^-6`` (< 1e-17 for ``a >= 1000``).

    Parameters
    ----------
    s : float
        Exponent (any real value).
    a, b : ndarray, shape (m,)
        First and last index of each range (float arrays holding integers).

    Returns
    -------
    ndarray, shape (m,)
    """
    la = np.log(a)
    ratio = np.log(b) - la
    if abs(1.0 - s) < 1e-12:
        integral = ratio
    else:
        integral = np.exp((1.0 - s) * la) * np.expm1((1.0 - s) * ratio) / (1.0 - s)

    def f(x: Array) -> Array:
        return np.exp(-s * np.log(x))

    def f1(x: Array) -> Array:
        return -s * np.exp((-s - 1.0) * np.log(x))

    def f3(x: Array) -> Array:
        return -s * (s + 1.0) * (s + 2.0) * np.exp((-s - 3.0) * np.log(x))

    out: Array = integral + 0.5 * (f(a) + f(b)) + (f1(b) - f1(a)) / 12.0 - (f3(b) - f3(a)) / 720.0
    return out


def compressed_diagonal(d: int, gamma: float, rank: int | None = None) -> tuple[Array, Array]:
    """The diagonal teacher as (values, multiplicities) for very large d (THEORY.md 3.2).

    The first :data:`EXACT_HEAD` coordinates are exact; the rest of the power-law part is grouped
    in bins ``[a, 1.001 a)`` represented by their root-mean-square value (so ``sum theta*^2`` is
    exact), and the ``d - rank`` zero coordinates form one entry.

    Returns
    -------
    values : ndarray, shape (m,)
        ``|theta*|`` representatives, decreasing (the zero entry last).
    weights : ndarray, shape (m,)
        Multiplicities, summing to ``d``.
    """
    r = checked_rank(d, gamma, rank)
    if r <= 2 * EXACT_HEAD:
        head = power_law(r, gamma)
        sq_tail = np.zeros(0)
        w_tail = np.zeros(0)
    else:
        head = power_law(EXACT_HEAD, gamma)
        # k-boundaries of the bins: #{k : k^-gamma >= v} = floor(v^(-1/gamma)).
        v_max = float(EXACT_HEAD + 1) ** (-gamma)
        v_min = float(r) ** (-gamma)
        n_bins = int(math.ceil(math.log(v_max / v_min) / math.log(BIN_RATIO))) + 1
        edges_v = v_min * BIN_RATIO ** np.arange(n_bins + 1, dtype=np.float64)
        k_edges = np.floor(edges_v ** (-1.0 / gamma) * (1.0 + 1e-15))
        k_edges = np.clip(k_edges, EXACT_HEAD, r)
        k_edges[0] = r
        k_edges[-1] = EXACT_HEAD
        hi = k_edges[:-1]
        lo = k_edges[1:] + 1.0
        keep = hi >= lo
        hi, lo = hi[keep], lo[keep]
        w_tail = hi - lo + 1.0
        sq_tail = power_sum(2.0 * gamma, lo, hi)
    head_sq = float(np.sum(head**2))
    norm2 = head_sq + float(np.sum(sq_tail))
    c = 1.0 / math.sqrt(norm2)
    tail_vals = c * np.sqrt(sq_tail / np.maximum(w_tail, 1.0))
    order = np.argsort(-tail_vals)
    values = [c * head, tail_vals[order]]
    weights = [np.ones(head.size), w_tail[order]]
    if d > r:
        values.append(np.zeros(1))
        weights.append(np.array([float(d - r)]))
    return np.concatenate(values), np.concatenate(weights)
