"""The sensing operator of the quadratic network, ``A_mu = x_mu x_mu' - I`` (THEORY.md 1.B).

``forward``: ``S -> (<A_mu, S>)_mu = (x_mu' S x_mu - tr S)_mu``, shape (n,);
``adjoint``: ``r -> A'(r)/n = (1/n) sum_mu r_mu (x_mu x_mu' - I)``, symmetric (d, d).
Both cost O(n d^2); the D x D quadratic form (D = d(d+1)/2) is never formed, and neither is
any other n x d temporary: rows go through in chunks of :data:`CHUNK_ROWS`.

:class:`Sensing` holds one design for the many applications of a solve:

* ``forward_factors(V, f)``: the forward map of a low-rank ``S = V diag(f) V'`` (what the
  proximal step returns) in O(n d k) instead of O(n d^2);
* ``adjoint(r)``: one symmetric rank-n update (``B'B``, which numpy hands to BLAS ``syrk``:
  half the flops of a product)
  on the rows weighted by ``sqrt(r + c)``, with ``c = max(0, -min r)`` so that every weight is
  real, minus ``c X'X`` (the Gram matrix, computed once). The shift costs a relative error
  of about ``eps sqrt(n) max|r| / rms(r)`` (1e-13 at n = 3e4), far below any tolerance.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]

CHUNK_ROWS = 8192
"""Rows of X per block of the forward and adjoint maps (their workspace: CHUNK_ROWS x d)."""


def quadratic_form(x: Array, s: Array) -> Array:
    """``<x x' - I, S>`` for every row x of ``x`` (shape (n, d)); S symmetric (d, d)."""
    n = x.shape[0]
    out: Array = np.empty(n)
    buf = np.empty((min(CHUNK_ROWS, n), x.shape[1]))
    for i in range(0, n, CHUNK_ROWS):
        xc = x[i : i + CHUNK_ROWS]
        b = buf[: len(xc)]
        np.matmul(xc, s, out=b)
        np.einsum("ij,ij->i", b, xc, out=out[i : i + len(xc)])
    out -= np.trace(s)
    return out


def quadratic_form_factors(x: Array, v: Array, f: Array) -> Array:
    """:func:`quadratic_form` of ``S = V diag(f) V'`` (V (d, k), f (k,)) in O(n d k)."""
    if v.shape[1] == 0:
        return np.zeros(x.shape[0])
    out: Array = np.square(x @ v) @ f - float(f.sum())
    return out


def sensing_adjoint(x: Array, r: Array) -> Array:
    """``A'(r)/n = (1/n) sum_mu r_mu (x_mu x_mu' - I)``, symmetric (d, d)."""
    n, d = x.shape
    acc = np.zeros((d, d))
    buf = np.empty((min(CHUNK_ROWS, n), d))
    for i in range(0, n, CHUNK_ROWS):
        xc = x[i : i + CHUNK_ROWS]
        b = buf[: len(xc)]
        np.multiply(xc, r[i : i + len(xc), None], out=b)
        acc += b.T @ xc
    acc /= n
    acc -= (r.sum() / n) * np.eye(d)
    out: Array = (acc + acc.T) / 2.0
    return out


class Sensing:
    """The sensing operator on one design X (n, d), for the many applications of a solve."""

    def __init__(self, x: Array) -> None:
        self.x = np.ascontiguousarray(x, dtype=np.float64)
        n, d = self.x.shape
        self.n, self.d = n, d
        self._buf = np.empty((min(CHUNK_ROWS, n), d))
        self._gram: Array | None = None

    @property
    def gram(self) -> Array:
        """X'X (computed on first use)."""
        if self._gram is None:
            self._gram = self.x.T @ self.x
        return self._gram

    def forward(self, s: Array) -> Array:
        """``<A_mu, S>`` for every row."""
        return quadratic_form(self.x, s)

    def forward_factors(self, v: Array, f: Array) -> Array:
        """``<A_mu, V diag(f) V'>`` for every row, in O(n d k)."""
        return quadratic_form_factors(self.x, v, f)

    def adjoint(self, r: Array) -> Array:
        """``A'(r)/n`` by a shifted symmetric rank-n update (see the module docstring)."""
        shift = max(0.0, -float(r.min()))
        w = np.sqrt(r + shift)
        full = np.zeros((self.d, self.d))
        for i in range(0, self.n, CHUNK_ROWS):
            xc = self.x[i : i + CHUNK_ROWS]
            b = self._buf[: len(xc)]
            np.multiply(xc, w[i : i + len(xc), None], out=b)
            full += b.T @ b  # numpy hands B'B to BLAS syrk: symmetric, half the flops
        if shift > 0.0:
            full -= shift * self.gram
        full /= self.n
        full -= (r.sum() / self.n) * np.eye(self.d)
        out: Array = full
        return out
