"""The two networks of THEORY.md section 1, batched: K networks of one shape, one tensor program.

Every network of a batch has its own data, its own weight decay and its own parameters; the
parameters of the batch are one tensor ``P`` of shape (K, p), so that training sees a flat
vector per network (the L-BFGS history, the line searches, the stop rules work per row).

* :class:`DiagonalNets`: ``f(x) = sum_i a_i w_i x_i``, p = 2d, a row is ``[a, w]``;
  ``theta = a * w``.
* :class:`QuadraticNets`: ``f_W(x) = sum_j s_j [(w_j . x)^2 - |w_j|^2] = <x x' - I, S>``,
  ``S = W' diag(s) W``, p = m d, a row is W flattened (m, d); the second layer ``s`` is fixed:
  all +1 (``positive``) or +1 on the first ``ceil(m/2)`` rows and -1 on the rest (``signed``).

Both objectives are ``F = (1/2n) sum (y - f)^2 + (lam/2) ||P||^2`` and come with their exact
gradient (:meth:`BatchedNets.evaluate`, written out: one forward matmul and one backward
matmul, no autograd graph). The samples are processed in chunks of at most ``chunk_rows``
rows, so the intermediates of a step never exceed a chunk (memory: the data plus a chunk). On a
CPU a chunk is sized to stay in cache (:data:`CPU_CHUNK_BYTES`): the forward matmul's output
is then read back by the backward matmul from cache rather than from memory.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from workers.tensors import mv, vm

Array = NDArray[np.float64]
Evaluation = tuple[Tensor, Tensor, Tensor]
"""(F (K,), mean squared error (K,), gradient (K, p))."""

DEFAULT_CHUNK_BYTES = 256 * 2**20
"""Largest intermediate of one chunk of an evaluation (on a GPU: fewer, larger kernels)."""
CPU_CHUNK_BYTES = 2 * 2**20
"""The intermediate of one chunk on a CPU, sized for its caches. Measured on a 2-core
machine (one evaluation of 16 float32 quadratic nets, d = 200, n = 8,000): 0.58 of the
float32 matmul peak with one 8,000-row chunk, 0.82-0.84 with 1-4 MiB chunks, 0.68 with
256 KiB; one float64 net at d = 400, n = 26,515: 0.36 -> 0.50."""


def init_values(rng: np.random.Generator, init_scale: float, shape: tuple[int, ...]) -> Array:
    """i.i.d. N(0, init_scale^2) entries drawn in float64 (the same on every machine)."""
    out: Array = init_scale * rng.standard_normal(shape)
    return out


@dataclass(frozen=True)
class Pruned:
    """What :meth:`BatchedNets.prune` proposes: candidate parameters (K, p) -- each net's own,
    rotated so that its non-zero units come first, with its small decaying units set to zero
    -- whether a net lost any unit (K,) and how many leading units each keeps (K,)."""

    params: Tensor
    dropped: Tensor
    live: Tensor
    carry: Callable[[Tensor], Tensor]
    """The same rotation, zeroing and order applied to (K, ..., p) vectors of the nets (an
    optimizer's history)."""


Preconditioner = Callable[[Tensor], Tensor]
"""``v -> P v``: L-BFGS's initial inverse Hessian up to its scale
(:meth:`BatchedNets.preconditioner`)."""


class BatchedNets(ABC):
    """K networks of one shape on one device and dtype (see the module docstring)."""

    n_params: int
    preconditioned = False
    """Whether :meth:`precondition` gives L-BFGS its initial inverse Hessian."""

    def __init__(
        self, d: int, *, device: torch.device, dtype: torch.dtype, chunk_bytes: int | None = None
    ) -> None:
        self.d = d
        self.width = d
        """Units per net (the quadratic net's rows it computes on; d for the diagonal net)."""
        self.full_width = d
        """The net's own width (:meth:`QuadraticNets.narrowed` computes on fewer rows)."""
        self.device = device
        self.dtype = dtype
        default = CPU_CHUNK_BYTES if device.type == "cpu" else DEFAULT_CHUNK_BYTES
        self.chunk_bytes = chunk_bytes or default

    @abstractmethod
    def evaluate(self, p: Tensor, x: Tensor, y: Tensor, lam: Tensor) -> Evaluation:
        """F, mse and dF/dP of every network: ``p`` (K, p), ``x`` (K, n, d), ``y`` (K, n),
        ``lam`` (K,)."""

    @abstractmethod
    def pack(self, params: dict[str, Tensor]) -> Tensor:
        """One network's named parameters as a row of P (in the nets' dtype)."""

    @abstractmethod
    def unpack(self, row: Tensor) -> dict[str, Tensor]:
        """A row of P as named float64 parameters (on the row's device)."""

    def data_curvature(self, x: Tensor) -> Tensor:
        """(K, d) statistics of the data that :meth:`preconditioner` needs, computed once when
        a run takes its slot (nets with ``preconditioned`` only)."""
        return torch.zeros(x.shape[0], self.d, dtype=x.dtype, device=x.device)

    def preconditioner(self, p: Tensor, lam: Tensor, curvature: Tensor) -> Preconditioner:
        """``v -> P v``: L-BFGS's initial inverse Hessian at ``p`` up to its scale, for ``v`` of
        shape (K, p) (nets with ``preconditioned`` only; factorised once per step)."""
        raise NotImplementedError

    def chunk_rows(self, k: int, n: int, width: int) -> int:
        """Rows per chunk so that a (k, rows, width) intermediate fits in chunk_bytes."""
        per_row = max(1, k * width * torch.finfo(self.dtype).bits // 8)
        return max(1, min(n, self.chunk_bytes // per_row))

    def penalty(self, p: Tensor) -> Tensor:
        """(1/2)||P||^2 per network."""
        return 0.5 * (p * p).sum(dim=1)

    prunable = False
    """Whether :meth:`prune` applies: parameters that decay to exactly zero and then stay
    there, so that a batch may compute on fewer of them (:meth:`narrowed`)."""

    def prune(self, p: Tensor, g: Tensor, below: float) -> Pruned:
        """Candidates with the small decaying parts of each net set to zero (prunable nets)."""
        raise NotImplementedError

    def live(self, p: Tensor) -> Tensor:
        """(K,) how many leading units of each net can be non-zero (prunable nets)."""
        raise NotImplementedError

    def live_units(self, params: dict[str, Tensor]) -> int:
        """How many leading units of one net's named parameters can be non-zero."""
        raise NotImplementedError

    def narrowed(self, width: int) -> BatchedNets:
        """The same nets computing on their first ``width`` units (prunable nets)."""
        raise NotImplementedError

    def resize(self, t: Tensor, width: int) -> Tensor:
        """A (..., n_params) tensor of these nets as one of ``width`` units: trailing units cut
        (they must be zero) or zero units appended (prunable nets)."""
        raise NotImplementedError


class DiagonalNets(BatchedNets):
    """f(x) = sum_i a_i w_i x_i (THEORY.md 1.A); a row of P is ``[a, w]``."""

    preconditioned = True

    def __init__(self, d: int, *, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(d, device=device, dtype=dtype)
        self.n_params = 2 * d

    def evaluate(self, p: Tensor, x: Tensor, y: Tensor, lam: Tensor) -> Evaluation:
        k, n, d = x.shape
        a, w = p[:, :d], p[:, d:]
        theta = a * w  # (k, d)
        corr = torch.zeros(k, d, dtype=p.dtype, device=p.device)
        sq = torch.zeros(k, dtype=p.dtype, device=p.device)
        step = self.chunk_rows(k, n, 1)
        for i in range(0, n, step):
            xc = x[:, i : i + step]
            r = y[:, i : i + step] - mv(xc, theta)
            sq += (r * r).sum(dim=1)
            corr += vm(r, xc)  # X' r, (k, d)
        g_theta = -corr / n
        grad = torch.cat([g_theta * w + lam[:, None] * a, g_theta * a + lam[:, None] * w], dim=1)
        mse = sq / n
        return 0.5 * mse + lam * self.penalty(p), mse, grad

    def data_curvature(self, x: Tensor) -> Tensor:
        """diag(X'X)/n per network, (K, d)."""
        return (x * x).mean(dim=1)

    def preconditioner(self, p: Tensor, lam: Tensor, curvature: Tensor) -> Preconditioner:
        """The inverse of the Gauss-Newton part of each coordinate's 2 x 2 Hessian block.

        For coordinate i with ``u = (w_i, a_i)`` and ``q = (X'X)_ii / n`` the block of the
        Hessian of F in (a_i, w_i) is ``lam I + q u u'`` plus the sign-indefinite
        ``[[0, -c], [-c, 0]]`` (c the coordinate's correlation with the residual), left out
        so that H0 stays positive definite. Its inverse is elementwise (Sherman-Morrison):
        ``(v - q (u.v) u / (lam + q |u|^2)) / lam``; L-BFGS scales it by s'y / y'H0y.
        Why: a coordinate's curvature ranges from lam (at 0) to q theta_i, a spread plain
        L-BFGS (H0 = gamma I) learns only through its history. Measured (lbfgs, 20 runs:
        d = 100-1000, n = 50-3000, lam = 1.7e-4 to 1e-2, 2 seeds each; bench/bench_scale.py,
        ``diagonal_grid_speedup``): 4.6 s in all against
        11.0 s, fewer steps on every configuration (e.g. d = 200, n = 1600: 64-76 steps
        against 369-409); d = 500, n = 128, lam = 1e-3 (16 seeds): 370-1,173 steps against
        1,168-7,597.
        Adding |c| to lam (a majorant of the block) or max(lam, |c|) did worse overall (5.7 s,
        5.1 s); near lam = 0 with n > d (lam = 1e-6) this H0 takes more steps than plain
        L-BFGS (995 against 178) but still converges. ``lam = 0`` would make H0 singular:
        those networks are not preconditioned."""
        k, d = p.shape[0], self.d

        u = p.view(k, 2, d).flip(1)  # (w_i, a_i) = d theta_i/d(a_i, w_i)
        denominator = lam.view(k, 1) + curvature * (u * u).sum(dim=1)

        def apply(v: Tensor) -> Tensor:
            pairs = v.view(k, 2, d)
            c = curvature * (u * pairs).sum(dim=1) / denominator
            return ((pairs - c.unsqueeze(1) * u) / lam.view(k, 1, 1)).view(k, -1)

        return apply

    def pack(self, params: dict[str, Tensor]) -> Tensor:
        return torch.cat([params["a"], params["w"]]).to(self.dtype)

    def unpack(self, row: Tensor) -> dict[str, Tensor]:
        r = row.detach().to(torch.float64)
        return {"a": r[: self.d].clone(), "w": r[self.d :].clone()}


class QuadraticNets(BatchedNets):
    """f_W(x) = sum_j s_j [(w_j . x)^2 - |w_j|^2] (THEORY.md 1.B); a row of P is W flattened."""

    preconditioned = True

    def __init__(
        self,
        d: int,
        width: int,
        second_layer: Literal["positive", "signed"] = "positive",
        *,
        device: torch.device,
        dtype: torch.dtype,
        full_width: int | None = None,
    ) -> None:
        super().__init__(d, device=device, dtype=dtype)
        self.width = width
        """The rows the nets compute on."""
        self.full_width = full_width or width
        """The network's width m: rows past ``width`` are zero (:meth:`narrowed`), and
        :meth:`unpack` gives all m."""
        self.n_params = width * d
        s = torch.ones(width, dtype=dtype, device=device)
        self.positive = (width + 1) // 2 if second_layer == "signed" else width
        """The rows with s_j = +1 come first; the rest have s_j = -1."""
        s[self.positive :] = -1.0
        self.s = s
        self.prunable = second_layer == "positive"

    # -- pruning: a positive second layer's rows, zero rows and narrower nets ----------------
    #
    # With s = +1 on every row, F depends on W only through S = W'W, so every rotation
    # W -> U'W (U orthogonal, m x m) leaves F unchanged and rotates the gradient. A zero row
    # stays exactly zero under every optimizer here: its gradient row is zero (its z = X w_j
    # is), the preconditioner (4 W W' + lam I)^-1 maps it to zero (the Cholesky factor of a
    # matrix with a zero row and column has a zero row and column off the diagonal), and so
    # does every L-BFGS pair (s and y are differences of points and gradients with that row
    # zero). So nets whose trailing rows are zero train exactly as the narrower nets without
    # them, which cost width / m of an evaluation.

    def rows_by_size(self, p: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Each net's W rotated to U'W, U the eigenvectors of W W' (largest first): the same S
        and F, rows ``sqrt(mu_j) v_j'`` (mu_j, v_j the eigenpairs of S). Rows at the rounding
        level of W W' (mu_j <= m eps mu_1) are set to zero. Returns the rows (K, m, d), U
        (K, m, m) and mu (K, m), descending."""
        k, m, d = p.shape[0], self.width, self.d
        w = p.view(k, m, d)
        gram = w @ w.transpose(1, 2)
        mu, u = torch.linalg.eigh((gram + gram.transpose(1, 2)) / 2.0)
        mu, u = mu.flip(-1), u.flip(-1)
        rows = u.transpose(1, 2) @ w
        floor = m * torch.finfo(self.dtype).eps * mu[:, :1].clamp_min(0.0)
        rows = torch.where((mu <= floor)[..., None], torch.zeros_like(rows), rows)
        return rows, u, mu

    def prune(self, p: Tensor, g: Tensor, below: float) -> Pruned:
        """Rows of U'W with ``mu_j <= below mu_1`` along which F decays (G = dF/dS positive:
        ``(U'g)_j . (U'W)_j = 2 mu_j v_j' G v_j > 0``) set to zero, and the non-zero rows
        first. Setting such a row to zero lowers F to first order (a decay correction,
        :mod:`workers.corrections`, taken all the way); the caller keeps it only where F does
        not rise."""
        if not self.prunable:
            raise NotImplementedError("only a positive second layer has rotation-free rows")
        k, m, d = p.shape[0], self.width, self.d
        rows, u, mu = self.rows_by_size(p)
        g_rows = u.transpose(1, 2) @ g.view(k, m, d)
        decays = (g_rows * rows).sum(dim=2) > 0.0
        zero = ~rows.ne(0.0).any(dim=2)
        drop = (mu <= below * mu[:, :1]) & decays & ~zero
        gone = drop | zero
        order = torch.sort(gone.to(torch.int8), dim=1, stable=True).indices

        def carry(t: Tensor) -> Tensor:
            r = u.transpose(1, 2).unsqueeze(1) @ t.reshape(k, -1, m, d)
            r = torch.where(gone[:, None, :, None], torch.zeros_like(r), r)
            r = torch.gather(r, 2, order[:, None, :, None].expand_as(r))
            return r.reshape(t.shape)

        rows = torch.where(gone[..., None], torch.zeros_like(rows), rows)
        rows = torch.gather(rows, 1, order[..., None].expand(k, m, d))
        return Pruned(rows.reshape(k, -1), drop.any(dim=1), (~gone).sum(dim=1), carry)

    def live(self, p: Tensor) -> Tensor:
        """(K,) one past each net's last non-zero row."""
        return _live_rows(p.view(p.shape[0], self.width, self.d))

    def live_units(self, params: dict[str, Tensor]) -> int:
        return int(_live_rows(params["W"]))

    def narrowed(self, width: int) -> QuadraticNets:
        if not self.prunable:
            raise NotImplementedError("only a positive second layer is narrowed")
        return QuadraticNets(
            self.d, width, "positive", device=self.device, dtype=self.dtype,
            full_width=self.full_width,
        )  # fmt: skip

    def resize(self, t: Tensor, width: int) -> Tensor:
        lead, m, d = t.shape[:-1], self.width, self.d
        rows = t.reshape(*lead, m, d)
        if width <= m:
            return _cut_rows(rows, width).reshape(*lead, width * d)
        pad = torch.zeros(*lead, width - m, d, dtype=t.dtype, device=t.device)
        return torch.cat([rows, pad], dim=-2).reshape(*lead, width * d)

    def _signed_squares(self, z: Tensor) -> Tensor:
        """sum_j s_j z_j^2 over the last axis, as squared norms (no (k, c, m) temporary)."""
        h = self.positive
        out: Tensor = torch.linalg.vector_norm(z[..., :h], dim=-1).square_()
        if h < self.width:
            out -= torch.linalg.vector_norm(z[..., h:], dim=-1).square_()
        return out

    def evaluate(self, p: Tensor, x: Tensor, y: Tensor, lam: Tensor) -> Evaluation:
        k, n, d = x.shape
        m = self.width
        w = p.view(k, m, d)
        s = self.s
        bias = ((w * w).sum(dim=2) @ s).unsqueeze(1)  # sum_j s_j |w_j|^2, (k, 1)
        zgx = torch.zeros(k, m, d, dtype=p.dtype, device=p.device)
        sq = torch.zeros(k, dtype=p.dtype, device=p.device)
        g_sum = torch.zeros(k, dtype=p.dtype, device=p.device)
        step = self.chunk_rows(k, n, m)
        for i in range(0, n, step):
            xc = x[:, i : i + step]
            z = torch.bmm(xc, w.transpose(1, 2))  # (k, c, m): the forward matmul
            r = y[:, i : i + step] - (self._signed_squares(z) - bias)
            sq += (r * r).sum(dim=1)
            g_sum -= r.sum(dim=1)
            z.mul_(r.unsqueeze(-1))  # in place: (z * r), the chunk's only other intermediate
            zgx -= torch.bmm(z.transpose(1, 2), xc)  # the backward matmul
        # dF/dW = 2 s * ((z g)' X - sum(g) W) + lam W with g = -r/n
        grad = (2.0 / n) * s[None, :, None] * (zgx - g_sum[:, None, None] * w)
        grad += lam[:, None, None] * w
        mse = sq / n
        return 0.5 * mse + lam * self.penalty(p), mse, grad.reshape(k, -1)

    def preconditioner(self, p: Tensor, lam: Tensor, curvature: Tensor) -> Preconditioner:
        """The inverse of the Gauss-Newton part of the Hessian in W, ``(4 W W' + lam I)^-1``
        acting on the rows (ScaledGD's preconditioner, Tong, Ma and Chi 2021, with the weight
        decay), factorised once per step (Cholesky of the (m, m) matrix).

        For Gaussian x, ``E <x x' - I, W'V + V'W>^2 = 2 |W'V + V'W|^2``, whose part
        ``4 |W'V|^2 = 4 tr(V' W W' V)`` gives the Hessian block ``4 W W'`` (the rest couples V
        with its transpose and is left out so that H0 stays positive definite); the weight
        decay adds ``lam I``. Why: the eigenvalues of S = W'W spread from the spikes down to
        the directions at the threshold, and the curvature in W along each scales with it,
        a spread plain L-BFGS learns only through its history. Measured (lbfgs, float64, one
        thread): d = 200, n = 8,000, lambda = 0.01: 124 steps against 415; d = 60,
        n = 3,600, lambda = 1e-3: 93 against 289; d = 60, n = 1,800, lambda = 0.1: 32 against
        92; the same minimum (R to 1e-5 relative). ``lam = 0`` would make H0 singular where W
        is: those networks are not preconditioned."""
        k, m, d = p.shape[0], self.width, self.d
        w = p.view(k, m, d)
        eye = torch.eye(m, dtype=p.dtype, device=p.device)
        chol = torch.linalg.cholesky(4.0 * (w @ w.transpose(1, 2)) + lam.view(k, 1, 1) * eye)

        def apply(v: Tensor) -> Tensor:
            return torch.cholesky_solve(v.view(k, m, d), chol).reshape(k, -1)

        return apply

    def pack(self, params: dict[str, Tensor]) -> Tensor:
        """W (m' x d, m' >= width) as a row; rows past ``width`` must be zero."""
        return _cut_rows(params["W"], self.width).reshape(-1).to(self.dtype)

    def unpack(self, row: Tensor) -> dict[str, Tensor]:
        """W with all m rows (the zero rows past ``width`` included)."""
        w = row.detach().to(torch.float64).reshape(self.width, self.d)
        out = torch.zeros(self.full_width, self.d, dtype=torch.float64, device=row.device)
        out[: self.width] = w
        return {"W": out}


def _live_rows(w: Tensor) -> Tensor:
    """One past the last non-zero row of (..., m, d) weights, shape (...)."""
    nonzero = w.ne(0.0).any(dim=-1)
    return (nonzero * torch.arange(1, w.shape[-2] + 1, device=w.device)).amax(dim=-1)


def _cut_rows(w: Tensor, width: int) -> Tensor:
    """The first ``width`` rows of (..., m, d) weights, whose other rows must be zero."""
    if bool(w[..., width:, :].ne(0.0).any()):
        raise ValueError(f"cutting the nets to {width} rows would drop non-zero rows")
    return w[..., :width, :]


def flops_per_evaluation(model: str, n: int, d: int, width: int) -> float:
    """Matmul flops of one evaluation of one network (the forward and backward matmuls)."""
    return 4.0 * n * d * (width if model == "quadratic" else 1)


def device_bytes(n: int, d: int, n_params: int, dtype_bits: int, history: int) -> int:
    """Device memory of one network in a batch: its data, its ``n_params`` parameters and
    optimizer state (gradient, direction, trial point, L-BFGS history of ``history`` pairs).
    The chunked intermediates come on top, once per batch (:data:`DEFAULT_CHUNK_BYTES`)."""
    return math.ceil(dtype_bits / 8 * (n * d + n + n_params * (6 + 2 * history)))
