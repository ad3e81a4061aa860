"""The sensing operator of the quadratic network, ``A_mu = x_mu x_mu' - I`` (THEORY.md 1.B),
in torch on the data's device.

``forward``: ``S -> (<A_mu, S>)_mu = (x_mu' S x_mu - tr S)_mu``, shape (n,);
``adjoint``: ``r -> A'(r)/n = (1/n) sum_mu r_mu (x_mu x_mu' - I)``, symmetric (d, d).
Both cost O(n d^2); the D x D quadratic form (D = d(d+1)/2) is never formed, and no n x d
temporary beyond a chunk of :data:`CHUNK_ROWS` rows.

:class:`Sensing` holds one design for the many applications of a solve or a certificate:

* ``forward_factors(V, f)``: the forward map of a low-rank ``S = V diag(f) V'`` (what the
  proximal step returns) in O(n d k) instead of O(n d^2);
* ``adjoint(r)``: ``X' diag(r) X / n - mean(r) I``. On a GPU one product of the row-weighted
  chunk with the chunk (``(X * r)' X``). On a CPU, where it is the certificate's main cost,
  a symmetric rank-n update ``B'B`` of the rows weighted by ``sqrt(r + c)``
  (``c = max(0, -min r)``) minus ``c X'X``, which numpy hands to BLAS ``syrk`` (half the
  flops of a product; torch has no symmetric update) on the same memory, no copy. The shift
  costs a relative error of about ``eps sqrt(n) max|r| / rms(r)`` (1e-13 at n = 3e4).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

CHUNK_ROWS = 8192
"""Rows of X per block of the forward and adjoint maps (their workspace: CHUNK_ROWS x d)."""


def quadratic_form(x: Tensor, s: Tensor) -> Tensor:
    """``<x x' - I, S>`` for every row x of ``x`` (shape (n, d)); S symmetric (d, d)."""
    n = x.shape[0]
    out = torch.empty(n, dtype=x.dtype, device=x.device)
    for i in range(0, n, CHUNK_ROWS):
        xc = x[i : i + CHUNK_ROWS]
        out[i : i + len(xc)] = (xc @ s).mul_(xc).sum(dim=1)  # in place: no second n x d temporary
    return out - torch.trace(s)


def quadratic_form_factors(x: Tensor, v: Tensor, f: Tensor) -> Tensor:
    """:func:`quadratic_form` of ``S = V diag(f) V'`` (V (d, k), f (k,)) in O(n d k)."""
    if v.shape[1] == 0:
        return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    return torch.square(x @ v) @ f - f.sum()


def sensing_adjoint(x: Tensor, r: Tensor, gram: Tensor | None = None) -> Tensor:
    """``A'(r)/n = (1/n) sum_mu r_mu (x_mu x_mu' - I)``, symmetric (d, d); ``gram``: X'X when
    known (the CPU path's shift needs it)."""
    n, d = x.shape
    if x.device.type == "cpu" and x.dtype == torch.float64:
        return _adjoint_syrk(x, r, gram)
    acc = torch.zeros(d, d, dtype=x.dtype, device=x.device)
    for i in range(0, n, CHUNK_ROWS):
        xc = x[i : i + CHUNK_ROWS]
        acc += (xc * r[i : i + len(xc), None]).T @ xc
    acc /= n
    acc -= (r.sum() / n) * torch.eye(d, dtype=x.dtype, device=x.device)
    return (acc + acc.T) / 2.0


def _adjoint_syrk(x: Tensor, r: Tensor, gram: Tensor | None) -> Tensor:
    """The CPU adjoint by a shifted symmetric rank-n update (module docstring)."""
    n, d = x.shape
    xn, rn = x.numpy(), r.numpy()
    shift = max(0.0, -float(rn.min()))
    w = np.sqrt(rn + shift)
    full = np.zeros((d, d))
    buf = np.empty((min(CHUNK_ROWS, n), d))
    for i in range(0, n, CHUNK_ROWS):
        xc = xn[i : i + CHUNK_ROWS]
        b = buf[: len(xc)]
        np.multiply(xc, w[i : i + len(xc), None], out=b)
        full += b.T @ b  # numpy hands B'B to BLAS syrk: symmetric, half the flops
    if shift > 0.0:
        full -= shift * (gram.numpy() if gram is not None else xn.T @ xn)
    full /= n
    full[np.diag_indices(d)] -= rn.sum() / n
    return torch.from_numpy(full)


class Sensing:
    """The sensing operator on one design X (n, d), for the many applications of a solve."""

    def __init__(self, x: Tensor) -> None:
        self.x = x
        self.n, self.d = x.shape
        self._gram: Tensor | None = None

    def forward(self, s: Tensor) -> Tensor:
        """``<A_mu, S>`` for every row."""
        return quadratic_form(self.x, s)

    def forward_factors(self, v: Tensor, f: Tensor) -> Tensor:
        """``<A_mu, V diag(f) V'>`` for every row, in O(n d k)."""
        return quadratic_form_factors(self.x, v, f)

    def adjoint(self, r: Tensor) -> Tensor:
        """``A'(r)/n`` (X'X computed once, on first use, for the CPU path's shift)."""
        if self._gram is None and self.x.device.type == "cpu":
            self._gram = self.x.T @ self.x
        return sensing_adjoint(self.x, r, self._gram)
