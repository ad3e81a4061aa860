"""The two networks of THEORY.md section 1, in PyTorch, with their training objectives.

* :class:`DiagonalNet`: parameters ``a``, ``w`` (shape (d,)); ``f(x) = sum_i a_i w_i x_i``;
  ``theta() = a * w``.
* :class:`QuadraticNet`: parameter ``W`` (shape (m, d)) and a fixed second layer ``s``
  (buffer, shape (m,)): all +1 (``positive``) or +1 on the first ``ceil(m/2)`` rows and -1 on
  the rest (``signed``); ``f_W(x) = sum_j s_j [(w_j . x)^2 - |w_j|^2] = <x x' - I, S>`` with
  ``S = W' diag(s) W`` (``matrix()``).

Both share the :class:`TwoLayerNet` protocol:

* ``forward(x)`` (shape (n,));
* ``penalty() = (1/2) ||params||^2`` (sum over every trainable parameter), so that
* ``objective(x, y, lam) = (1/2n) sum (y - f)^2 + lam * penalty()``
  ``= (1/2n) sum (y - f)^2 + (lam/2) ||params||^2``;
* ``weight_matrices()``: the trained weights by name (detached), for spectra;
* ``init_from(rng, init_scale)``: i.i.d. ``N(0, init_scale^2)`` entries drawn in float64 with
  numpy (the run's ``init`` stream), then converted to the parameters' dtype/device, so the
  same config gives bit-identical parameters on every machine.

Which network a run trains, and how it is initialised, is its problem's business
(:meth:`workers.problems.Problem.build_net`).

The quadratic forward is matmul-dominated: ``Z = X @ W.T`` (n x m, 2nmd flops), then
``(Z**2) @ s``; nothing of size n*d*d is ever formed, and a hand-written backward
(:class:`_QuadraticForward`) keeps the gradient to one more matmul and one (n, m) product.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

Array = NDArray[np.float64]


class TwoLayerNet(nn.Module, ABC):
    """Common protocol of the diagonal and quadratic networks."""

    @abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """Network output for every row of ``x`` (shape (n, d)) -> shape (n,)."""

    @abstractmethod
    def penalty(self) -> Tensor:
        """(1/2) * (sum of squared entries of every trainable parameter)."""

    @abstractmethod
    def weight_matrices(self) -> dict[str, Tensor]:
        """The trained weights by name (detached), for spectra."""

    @abstractmethod
    def init_from(self, rng: np.random.Generator, init_scale: float) -> None:
        """Reset every parameter to i.i.d. N(0, init_scale^2) entries drawn from ``rng``."""

    def losses(self, x: Tensor, y: Tensor, lam: float) -> tuple[Tensor, Tensor]:
        """(objective, mean squared error (1/n) sum (y - f)^2), both 0-d tensors."""
        r = y - self.forward(x)
        mse = (r @ r) / r.shape[0]
        return 0.5 * mse + lam * self.penalty(), mse

    def squared_norm(self) -> float:
        """||params||^2 over every parameter, computed in float64 (for certificates)."""
        return float(sum(np.sum(_to_numpy64(p) ** 2) for p in self.parameters()))

    def objective(self, x: Tensor, y: Tensor, lam: float) -> Tensor:
        """(1/2n) sum (y - f)^2 + (lam/2) ||params||^2."""
        return self.losses(x, y, lam)[0]

    def _fill(self, p: Tensor, rng: np.random.Generator, init_scale: float) -> None:
        values = init_scale * rng.standard_normal(tuple(p.shape))
        with torch.no_grad():
            p.copy_(torch.as_tensor(values, dtype=torch.float64).to(dtype=p.dtype, device=p.device))


def _to_numpy64(t: Tensor) -> Array:
    return np.asarray(t.detach().to(device="cpu", dtype=torch.float64).numpy(), dtype=np.float64)


class DiagonalNet(TwoLayerNet):
    """f(x) = sum_i a_i w_i x_i (THEORY.md 1.A)."""

    def __init__(
        self, d: int, *, dtype: torch.dtype = torch.float64, device: torch.device | None = None
    ) -> None:
        super().__init__()
        self.d = d
        self.a = nn.Parameter(torch.zeros(d, dtype=dtype, device=device))
        self.w = nn.Parameter(torch.zeros(d, dtype=dtype, device=device))

    def forward(self, x: Tensor) -> Tensor:
        return x @ (self.a * self.w)

    def penalty(self) -> Tensor:
        return 0.5 * (self.a @ self.a + self.w @ self.w)

    def weight_matrices(self) -> dict[str, Tensor]:
        return {"a": self.a.detach(), "w": self.w.detach()}

    def init_from(self, rng: np.random.Generator, init_scale: float) -> None:
        self._fill(self.a, rng, init_scale)  # a first, then w: part of the reproducibility contract
        self._fill(self.w, rng, init_scale)

    def theta(self) -> Array:
        """theta = a * w (float64 numpy, computed in float64)."""
        return _to_numpy64(self.a) * _to_numpy64(self.w)


class _QuadraticForward(torch.autograd.Function):
    """f = (XW')^2 s - |w_j|^2 s with a hand-written backward (gradient in W only).

    Autograd would materialise three (n, m) intermediates in the backward pass; this needs
    one, so the step is dominated by its two matmuls (X W' forward, and the gradient
    2 s * ((z * g)' X) - 2 sum(g) s * W backward). Checked against autograd by gradcheck.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, s: Tensor) -> Tensor:
        z = x @ w.T  # (n, m): the only O(n m d) operations are this and the one in backward
        ctx.save_for_backward(x, w, s, z)
        return torch.mv(z.square(), s) - torch.dot((w * w).sum(dim=1), s)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[None, Tensor, None]:
        x, w, s, z = ctx.saved_tensors
        m, d = w.shape
        # (z * g)' X, choosing the cheaper elementwise product of the two equal forms
        zgx = (z * g[:, None]).T @ x if m <= d else z.T @ (x * g[:, None])
        grad_w = 2.0 * s[:, None] * (zgx - g.sum() * w)
        return None, grad_w, None


class QuadraticNet(TwoLayerNet):
    """f_W(x) = sum_j s_j [(w_j . x)^2 - |w_j|^2] = <x x' - I, W' diag(s) W> (THEORY.md 1.B)."""

    s: Tensor

    def __init__(
        self,
        d: int,
        width: int,
        second_layer: Literal["positive", "signed"] = "positive",
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | None = None,
    ) -> None:
        super().__init__()
        self.d = d
        self.width = width
        self.second_layer = second_layer
        self.W = nn.Parameter(torch.zeros(width, d, dtype=dtype, device=device))
        s = torch.ones(width, dtype=dtype, device=device)
        if second_layer == "signed":
            s[(width + 1) // 2 :] = -1.0
        self.register_buffer("s", s)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = _QuadraticForward.apply(x, self.W, self.s)  # type: ignore[no-untyped-call]
        return out

    def penalty(self) -> Tensor:
        return 0.5 * (self.W * self.W).sum()

    def weight_matrices(self) -> dict[str, Tensor]:
        return {"W": self.W.detach()}

    def init_from(self, rng: np.random.Generator, init_scale: float) -> None:
        self._fill(self.W, rng, init_scale)

    def matrix(self) -> Array:
        """S = W' diag(s) W (float64 numpy, computed in float64, symmetrised), shape (d, d)."""
        w = _to_numpy64(self.W)
        s = _to_numpy64(self.s)
        m = (w.T * s) @ w
        return (m + m.T) / 2.0
