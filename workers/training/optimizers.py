"""The per-slot optimizers of a batch, vectorised over the slots: L-BFGS, gradient descent,
Adam (one class each; :func:`make_optimizer` picks one from ``training.optimizer``).

* :class:`LBFGS`: limited-memory BFGS, :data:`LBFGS_HISTORY` pairs, by the two-loop recursion
  (Nocedal 1980) written as two triangular solves (:meth:`LBFGS.direction`), initial inverse
  Hessian ``(s'y / y'y) I`` -- or, for nets that have one (:meth:`BatchedNets.preconditioner`:
  the diagonal net's 2 x 2 Gauss-Newton blocks, the quadratic net's ``(4 W W' + lam I)^-1``),
  that preconditioner at the current point scaled by ``s'y / y'Py``, with
  :data:`PRECONDITIONED_HISTORY` pairs (P applied to two vectors a step, never to the
  history); a backtracking Armijo line
  search from t = 1 (an unpreconditioned first step from ``min(1, 1/|g|_1)``); a pair enters
  the history only when ``s'y > 0``.
* :class:`GradientDescent`: Armijo backtracking from the last accepted step (grown by 1.25
  after an acceptance), or the fixed ``training.lr`` (no safeguard: a far too large lr
  diverges, which is detected).
* :class:`Adam`: Adam with ``training.lr`` (default :data:`ADAM_DEFAULT_LR`), its lr halved
  whenever the objective rises.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from workers.networks import Preconditioner
from workers.tensors import mv, vm
from workers.training.state import SlotState

ADAM_DEFAULT_LR = 1e-2
ADAM_DECAY = 0.5
ARMIJO_GROW = 1.25
LBFGS_HISTORY = 50
"""Most L-BFGS pairs a run keeps (fewer when they would exceed HISTORY_BYTES)."""
PRECONDITIONED_HISTORY = 20
"""The same for nets with a preconditioner (H0 carries the per-coordinate curvature): on the
diagonal net d = 500, n = 128, lam = 1e-3 (8 seeds) 20 pairs took 370-1,173 steps, 2.8 s in
all, against 386-654 steps, 3.4 s with 50 (10 pairs: 2.7 s)."""
HISTORY_BYTES = 32 * 2**20
"""Memory of one run's L-BFGS history."""


def history_size(n_params: int, dtype: torch.dtype, preconditioned: bool = False) -> int:
    """L-BFGS pairs per run: LBFGS_HISTORY (PRECONDITIONED_HISTORY for nets with a
    preconditioner), fewer for large networks (HISTORY_BYTES)."""
    per_pair = 2 * n_params * torch.finfo(dtype).bits // 8
    cap = PRECONDITIONED_HISTORY if preconditioned else LBFGS_HISTORY
    return int(max(10, min(cap, HISTORY_BYTES // max(per_pair, 1))))


class Optimizer:
    """The optimizer state of K slots (rows), and its steps; the defaults are those of a
    stateless optimizer (each subclass gives its ``direction``)."""

    kind: str
    line_search = True
    """Whether its directions are searched (else its steps are taken as they are)."""

    def __init__(self, k: int, p: int, dtype: torch.dtype, device: torch.device) -> None:
        self.k, self.p, self.dtype, self.device = k, p, dtype, device

    def reset(self, i: int, *, new_run: bool = True, lr: float | None = None) -> None:
        """Slot i holds a new run (or a corrected point: the history no longer applies)."""

    def select(self, idx: Tensor) -> None:
        """Keep only these slots (compaction)."""

    def resize(self, to: Callable[[Tensor], Tensor], n_params: int) -> None:
        """Every per-parameter state tensor (..., p) mapped by ``to`` to (..., n_params) (the
        nets narrowed or widened: the units cut are zero in that state)."""
        self.p = n_params

    def carry(self, slots: Tensor, to: Callable[[Tensor], Tensor]) -> None:
        """The slots ``slots`` (K,) moved to parameters ``to`` maps theirs to (a rotation of
        the nets, some units zeroed): their state follows where it still applies, else
        restarts (the default: every state restarts)."""
        for i in torch.nonzero(slots).squeeze(1).tolist():
            self.reset(i, new_run=False)

    def can_polish(self) -> bool:
        """Whether a slot whose objective is flat polishes (unit quasi-Newton or gd steps)."""
        return False

    def lr_of(self, i: int, slot: SlotState) -> float:
        """The step size slot i is using (for messages)."""
        return slot.step_size

    def observe(self, i: int, slot: SlotState, f: float) -> None:
        """The objective of slot i at its new point (Adam halves its lr when it rose)."""

    def direction(
        self,
        p: Tensor,
        g: Tensor,
        slots: Sequence[SlotState | None],
        h0: Preconditioner | None = None,
    ) -> tuple[Tensor, Tensor]:
        """(direction, initial step) per slot."""
        raise NotImplementedError

    def accepted(
        self,
        p: Tensor,
        trial: Tensor,
        g: Tensor,
        g_new: Tensor,
        ok: Tensor,
        t: Tensor,
        slots: Sequence[SlotState | None],
    ) -> None:
        """Record the accepted steps ``ok`` (trial points, their gradients, step sizes)."""


def _steps(slots: Sequence[SlotState | None], p: Tensor) -> Tensor:
    return torch.tensor(
        [s.step_size if s is not None else 0.0 for s in slots], dtype=p.dtype, device=p.device
    )


class GradientDescent(Optimizer):
    """Gradient descent: Armijo from the last accepted step, or a fixed lr."""

    kind = "gd"

    def __init__(
        self, k: int, p: int, dtype: torch.dtype, device: torch.device, *, fixed: bool
    ) -> None:
        super().__init__(k, p, dtype, device)
        self.fixed = fixed
        self.line_search = not fixed

    def can_polish(self) -> bool:
        return not self.fixed

    def direction(
        self,
        p: Tensor,
        g: Tensor,
        slots: Sequence[SlotState | None],
        h0: Preconditioner | None = None,
    ) -> tuple[Tensor, Tensor]:
        return -g, _steps(slots, p)

    def accepted(
        self,
        p: Tensor,
        trial: Tensor,
        g: Tensor,
        g_new: Tensor,
        ok: Tensor,
        t: Tensor,
        slots: Sequence[SlotState | None],
    ) -> None:
        if self.fixed:
            return
        accepted, steps = ok.tolist(), t.tolist()
        for i, s in enumerate(slots):
            if s is not None and accepted[i]:
                s.step_size = steps[i] * (1.0 if s.polishing else ARMIJO_GROW)


class Adam(Optimizer):
    """Adam with a per-slot learning rate, halved whenever the objective rises."""

    kind = "adam"
    line_search = False

    def __init__(self, k: int, p: int, dtype: torch.dtype, device: torch.device) -> None:
        super().__init__(k, p, dtype, device)
        self.m = torch.zeros(k, p, dtype=dtype, device=device)
        self.v = torch.zeros(k, p, dtype=dtype, device=device)
        self.t = torch.zeros(k, dtype=dtype, device=device)
        self.lr = torch.full((k,), ADAM_DEFAULT_LR, dtype=dtype, device=device)

    def reset(self, i: int, *, new_run: bool = True, lr: float | None = None) -> None:
        if not new_run:
            return
        self.m[i].zero_()
        self.v[i].zero_()
        self.t[i] = 0.0
        self.lr[i] = lr if lr is not None else ADAM_DEFAULT_LR

    def select(self, idx: Tensor) -> None:
        for name in ("m", "v", "t", "lr"):
            setattr(self, name, getattr(self, name).index_select(0, idx))

    def resize(self, to: Callable[[Tensor], Tensor], n_params: int) -> None:
        super().resize(to, n_params)
        self.m, self.v = to(self.m), to(self.v)

    def lr_of(self, i: int, slot: SlotState) -> float:
        return float(self.lr[i])

    def observe(self, i: int, slot: SlotState, f: float) -> None:
        if slot.prev_f is not None and f > slot.prev_f:
            self.lr[i] *= ADAM_DECAY

    def direction(
        self,
        p: Tensor,
        g: Tensor,
        slots: Sequence[SlotState | None],
        h0: Preconditioner | None = None,
    ) -> tuple[Tensor, Tensor]:
        self.t += 1.0
        self.m.mul_(0.9).add_(g, alpha=0.1)
        self.v.mul_(0.999).addcmul_(g, g, value=0.001)
        m_hat = self.m / (1.0 - 0.9**self.t)[:, None]
        v_hat = self.v / (1.0 - 0.999**self.t)[:, None]
        return -m_hat / (v_hat.sqrt() + 1e-8), self.lr.clone()


class LBFGS(Optimizer):
    """Limited-memory BFGS (module docstring)."""

    kind = "lbfgs"

    def __init__(
        self,
        k: int,
        p: int,
        dtype: torch.dtype,
        device: torch.device,
        *,
        preconditioned: bool = False,
    ) -> None:
        super().__init__(k, p, dtype, device)
        h = history_size(p, dtype, preconditioned)
        self.h = h
        # the history, oldest first: pairs 0..count-1 of each slot; SY[i, j] = s_i . y_j
        # (kept up to date at each insertion)
        self.s = torch.zeros(k, h, p, dtype=dtype, device=device)
        self.y = torch.zeros(k, h, p, dtype=dtype, device=device)
        self.sy = torch.zeros(k, h, h, dtype=dtype, device=device)
        self.count = torch.zeros(k, dtype=torch.long, device=device)

    def reset(self, i: int, *, new_run: bool = True, lr: float | None = None) -> None:
        self.count[i] = 0
        for t in (self.s, self.y, self.sy):
            t[i].zero_()

    def select(self, idx: Tensor) -> None:
        for name in ("s", "y", "sy", "count"):
            setattr(self, name, getattr(self, name).index_select(0, idx))

    def resize(self, to: Callable[[Tensor], Tensor], n_params: int) -> None:
        """The pairs' vectors resized; S'Y is unchanged (the units cut are zero in them)."""
        super().resize(to, n_params)
        self.s, self.y = to(self.s), to(self.y)

    def carry(self, slots: Tensor, to: Callable[[Tensor], Tensor]) -> None:
        """The carried slots' pairs mapped by ``to`` and their S'Y recomputed; a slot any of
        whose pairs then has s'y <= 0 restarts its history."""
        keep = slots[:, None, None]
        self.s = torch.where(keep, to(self.s), self.s)
        self.y = torch.where(keep, to(self.y), self.y)
        h = self.h
        valid = torch.arange(h, device=self.s.device)[None, :] < self.count[:, None]
        both = (valid[:, :, None] & valid[:, None, :]).to(self.s.dtype)
        sy = (self.s @ self.y.transpose(1, 2)) * both
        self.sy = torch.where(keep, sy, self.sy)
        diag = torch.diagonal(sy, dim1=1, dim2=2)
        bad = slots & ((diag <= 0.0) & valid).any(dim=1)
        for i in torch.nonzero(bad).squeeze(1).tolist():
            self.reset(i, new_run=False)

    def can_polish(self) -> bool:
        return True

    def direction(
        self,
        p: Tensor,
        g: Tensor,
        slots: Sequence[SlotState | None],
        h0: Preconditioner | None = None,
    ) -> tuple[Tensor, Tensor]:
        k = p.shape[0]
        d = -self._inverse_hessian_times(g, h0)
        first = (self.count == 0) & (h0 is None)  # a preconditioned first step has its scale
        l1 = g.abs().sum(dim=1).clamp_min(1e-300)
        t = torch.where(
            first, torch.clamp(1.0 / l1, max=1.0), torch.ones(k, dtype=p.dtype, device=p.device)
        )
        polishing = torch.tensor([s is not None and s.polishing for s in slots], device=p.device)
        # a non-descent direction (rounding): restart from the gradient
        bad = (g * d).sum(dim=1) >= 0
        d = torch.where(bad[:, None], -g, d)
        # polishing slots take unit steps (the line search accepts them whatever F does)
        t = torch.where(polishing, torch.ones_like(t), t)
        return d, t

    def _inverse_hessian_times(self, g: Tensor, h0: Preconditioner | None = None) -> Tensor:
        """H g for every slot, ``H0 = gamma I`` or ``gamma P`` (``P = h0``, the preconditioner
        at the current point), ``gamma = s'y / y'H0y`` of the last pair (Oren-Luenberger).

        The two-loop recursion (Nocedal 1980) with each loop written as one triangular solve
        with R, the upper triangle of S'Y: the first loop's alphas solve ``R alpha = S'g``,
        the second's corrections ``c = alpha - beta`` solve ``R' c = D alpha - Y'(gamma P q)``
        with ``q = g - Y alpha`` and D the diagonal of S'Y; then ``H g = gamma P q + S c``.
        This is the compact form's matrix (Byrd, Nocedal and Schnabel 1994) without its
        ``Y'PY``: P, which changes at every step, is applied to two vectors (q, and the last
        y for gamma), never to the history, and the history is read by four batched products,
        with no loop over the pairs. Measured (one thread): the quadratic nets' triangular P
        on the whole history cost 13 ms a step at d = m = 200 with 20 pairs, about a matmul
        of the data; a Python loop over the pairs 2.0 ms with one slot and 15 ms with four
        at p = 40,000, against 1.4 ms and 5.2 ms here. Pairs past a slot's count get
        identity rows and zero right-hand sides: they weigh 0."""
        k, h = self.count.shape[0], self.h
        ar = torch.arange(k, device=g.device)
        valid = torch.arange(h, device=g.device)[None, :] < self.count[:, None]
        sy = torch.diagonal(self.sy, dim1=1, dim2=2)
        last = (self.count - 1).clamp_min(0)
        y_last = self.y[ar, last]
        ypy = (y_last * (y_last if h0 is None else h0(y_last))).sum(dim=1)
        gamma = torch.where((self.count > 0) & (ypy > 0), sy[ar, last] / ypy.clamp_min(1e-300), 1.0)
        eye = torch.eye(h, dtype=g.dtype, device=g.device)
        r = torch.triu(self.sy) + (~valid).to(g.dtype)[:, :, None] * eye
        alpha = torch.linalg.solve_triangular(r, mv(self.s, g).unsqueeze(-1), upper=True)
        q = g - vm(alpha.squeeze(-1), self.y)
        out = gamma[:, None] * (q if h0 is None else h0(q))
        rhs = (sy * valid.to(g.dtype)).unsqueeze(-1) * alpha - mv(self.y, out).unsqueeze(-1)
        c = torch.linalg.solve_triangular(r.transpose(1, 2), rhs, upper=False)
        out += vm(c.squeeze(-1), self.s)
        return out

    def accepted(
        self,
        p: Tensor,
        trial: Tensor,
        g: Tensor,
        g_new: Tensor,
        ok: Tensor,
        t: Tensor,
        slots: Sequence[SlotState | None],
    ) -> None:
        s_vec, y_vec = trial - p, g_new - g
        sy = (s_vec * y_vec).sum(dim=1)
        store = ok & (sy > 1e-10 * s_vec.norm(dim=1) * y_vec.norm(dim=1))
        if bool(store.any()):
            self._insert(store, s_vec, y_vec)

    def _insert(self, store: Tensor, s_vec: Tensor, y_vec: Tensor) -> None:
        """Append a pair to the history of the slots in ``store``, with its row and column of
        S'Y. A full history drops its oldest half at once (so the shift is paid once
        per h/2 insertions, not at each)."""
        h = self.h
        full = store & (self.count == h)
        if bool(full.any()):
            drop = h // 2
            for t in (self.s, self.y):
                t[full, : h - drop] = t[full, drop:].clone()
                t[full, h - drop :] = 0.0
            self.sy[full, : h - drop, : h - drop] = self.sy[full, drop:, drop:].clone()
            self.sy[full, h - drop :] = 0.0
            self.sy[full, :, h - drop :] = 0.0
            self.count[full] -= drop
        ar = torch.arange(self.count.shape[0], device=s_vec.device)
        idx, pos = ar[store], self.count[store]
        self.s[idx, pos] = s_vec[store]
        self.y[idx, pos] = y_vec[store]
        # dot products with the whole (new) history of every slot, then the stored rows
        s_y = mv(self.y, s_vec)[store]  # y_j . s_new
        y_s = mv(self.s, y_vec)[store]  # s_i . y_new
        keep = (torch.arange(h, device=s_vec.device)[None, :] <= pos[:, None]).to(s_y.dtype)
        self.sy[idx, pos, :] = s_y * keep
        self.sy[idx, :, pos] = y_s * keep
        self.count[store] = pos + 1


def make_optimizer(
    kind: str,
    k: int,
    p: int,
    dtype: torch.dtype,
    device: torch.device,
    *,
    fixed_lr: bool = False,
    preconditioned: bool = False,
) -> Optimizer:
    """The optimizer ``kind`` (lbfgs | gd | adam) for K slots of p parameters."""
    if kind == "lbfgs":
        return LBFGS(k, p, dtype, device, preconditioned=preconditioned)
    if kind == "gd":
        return GradientDescent(k, p, dtype, device, fixed=fixed_lr)
    if kind == "adam":
        return Adam(k, p, dtype, device)
    raise ValueError(f"unknown network optimizer {kind!r} (convex is not a network optimizer)")
