"""The sensing operator of the quadratic network, ``A_mu = x_mu x_mu' - I`` (THEORY.md 1.B).

``forward``: ``S -> (<A_mu, S>)_mu = (x_mu' S x_mu - tr S)_mu``, shape (n,);
``adjoint``: ``r -> A'(r)/n = (1/n) sum_mu r_mu (x_mu x_mu' - I)``, symmetric (d, d).
Both cost O(n d^2); the D x D quadratic form (D = d(d+1)/2) is never formed.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


def quadratic_form(x: Array, s: Array) -> Array:
    """``<x x' - I, S>`` for every row x of ``x`` (shape (n, d)); S symmetric (d, d)."""
    out: Array = np.einsum("ij,ij->i", x @ s, x) - np.trace(s)
    return out


def sensing_adjoint(x: Array, r: Array) -> Array:
    """``A'(r)/n = (1/n) sum_mu r_mu (x_mu x_mu' - I)``, symmetric (d, d)."""
    n = len(r)
    m = (x.T * r) @ x / n - (r.sum() / n) * np.eye(x.shape[1])
    out: Array = (m + m.T) / 2.0
    return out
