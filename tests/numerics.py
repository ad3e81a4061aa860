"""Numerical references shared by tests: quantities computed the slow, obvious way."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np


def symmetric_divergence(
    f: Callable[[np.ndarray], np.ndarray], y: np.ndarray, h: float = 1e-6
) -> float:
    """The divergence of a map of symmetric matrices at ``y`` by central differences of step
    ``h`` over an orthonormal basis of Sym(d) (``E_ii``; ``(E_ij + E_ji)/sqrt 2``)."""
    d = y.shape[0]
    out = 0.0
    for i in range(d):
        for j in range(i, d):
            e = np.zeros((d, d))
            if i == j:
                e[i, i] = 1.0
            else:
                e[i, j] = e[j, i] = 1.0 / math.sqrt(2.0)
            out += float(np.sum((f(y + h * e) - f(y - h * e)) * e)) / (2 * h)
    return out
