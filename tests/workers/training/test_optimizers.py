"""workers.training.optimizers: the L-BFGS direction is -H g for the BFGS matrix of each slot's
own pairs, with or without a preconditioner, whatever the slots' history lengths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor

from workers.training.optimizers import LBFGS

F64 = torch.float64
CPU = torch.device("cpu")


def _bfgs_matrix(pairs: list[tuple[Tensor, Tensor]], h0: Tensor) -> Tensor:
    """The inverse-Hessian approximation of BFGS from H0 through ``pairs`` (oldest first),
    written out densely: H <- V'HV + rho s s', V = I - rho y s'."""
    h = h0.clone()
    eye = torch.eye(h0.shape[0], dtype=F64)
    for s, y in pairs:
        rho = 1.0 / float(s @ y)
        v = eye - rho * torch.outer(y, s)
        h = v.T @ h @ v + rho * torch.outer(s, s)
    return h


@pytest.mark.parametrize("preconditioned", [False, True])
def test_the_direction_is_minus_h_g_for_each_slots_own_pairs(preconditioned: bool) -> None:
    """Three slots with 0, 3 and 7 pairs (7 > the 4 kept: the oldest half is dropped when the
    history is full) on convex quadratics (y = A s, so s'y > 0); H0 = (s'y / y'H0y) P of the
    last pair with P a dense SPD matrix per slot (not preconditioned: P = I); 1e-10
    relative."""
    rng = np.random.default_rng(3)
    k, p, h = 3, 6, 4
    opt = LBFGS(k, p, F64, CPU)
    opt.h = h
    for name in ("s", "y"):
        setattr(opt, name, torch.zeros(k, h, p, dtype=F64))
    opt.sy = torch.zeros(k, h, h, dtype=F64)
    counts = (0, 3, 7)
    hess = [torch.as_tensor(_spd(rng, p)) for _ in range(k)]
    kept: list[list[tuple[Tensor, Tensor]]] = [[] for _ in range(k)]
    x = torch.as_tensor(rng.normal(size=(k, p)))
    for step in range(max(counts)):
        s_vec = torch.as_tensor(rng.normal(size=(k, p)))
        y_vec = torch.stack([hess[j] @ s_vec[j] for j in range(k)])
        ok = torch.tensor([step < c for c in counts])
        g = torch.zeros(k, p, dtype=F64)
        opt.accepted(x, x + s_vec, g, y_vec, ok, torch.ones(k, dtype=F64), [None] * k)
        for j in range(k):
            if step < counts[j]:
                if len(kept[j]) == h:  # a full history drops its oldest half at once
                    kept[j] = kept[j][h // 2 :]
                kept[j].append((s_vec[j], y_vec[j]))
    assert opt.count.tolist() == [len(kp) for kp in kept] == [0, 3, 3]

    pre = [torch.as_tensor(_spd(rng, p)) for _ in range(k)]

    def apply(v: Tensor) -> Tensor:  # (k, p)
        return torch.stack([v[j] @ pre[j] for j in range(k)])

    g = torch.as_tensor(rng.normal(size=(k, p)))
    d, _ = opt.direction(x, g, [None] * k, apply if preconditioned else None)
    for j in range(k):
        base = pre[j] if preconditioned else torch.eye(p, dtype=F64)
        if kept[j]:
            s_last, y_last = kept[j][-1]
            base = float(s_last @ y_last) / float(y_last @ base @ y_last) * base
        want = -_bfgs_matrix(kept[j], base) @ g[j]
        if not kept[j] and not preconditioned:  # a first plain step: the gradient itself
            want = -g[j]
        torch.testing.assert_close(d[j], want, rtol=1e-10, atol=1e-12, msg=f"slot {j}")


def _spd(rng: np.random.Generator, p: int) -> np.ndarray:
    a = rng.normal(size=(p, p))
    out: np.ndarray = a @ a.T / p + 0.5 * np.eye(p)
    return out


def test_a_history_resized_past_zero_coordinates_gives_the_same_direction() -> None:
    """Pairs and gradient zero on their last coordinates: the optimizer resized to drop them
    (a narrowed batch) gives the first coordinates of the same direction, and resized back,
    the same direction with zeros; 1e-12 relative."""
    rng = np.random.default_rng(5)
    k, p, live = 2, 8, 5
    opt = LBFGS(k, p, F64, CPU)
    hess = torch.as_tensor(_spd(rng, live))
    x = torch.zeros(k, p, dtype=F64)
    for _ in range(4):
        s_vec = torch.zeros(k, p, dtype=F64)
        s_vec[:, :live] = torch.as_tensor(rng.normal(size=(k, live)))
        y_vec = torch.zeros(k, p, dtype=F64)
        y_vec[:, :live] = s_vec[:, :live] @ hess
        ok = torch.ones(k, dtype=torch.bool)
        opt.accepted(x, x + s_vec, torch.zeros(k, p, dtype=F64), y_vec, ok, ok.to(F64), [None] * k)
    g = torch.zeros(k, p, dtype=F64)
    g[:, :live] = torch.as_tensor(rng.normal(size=(k, live)))
    full, _ = opt.direction(x, g, [None] * k)
    assert bool(full[:, live:].eq(0.0).all())
    opt.resize(lambda t: t[..., :live].contiguous(), live)
    narrow, _ = opt.direction(x[:, :live], g[:, :live], [None] * k)
    torch.testing.assert_close(narrow, full[:, :live], rtol=1e-12, atol=0.0)
    opt.resize(lambda t: torch.cat([t, t.new_zeros(*t.shape[:-1], p - live)], dim=-1), p)
    again, _ = opt.direction(x, g, [None] * k)
    torch.testing.assert_close(again, full, rtol=1e-12, atol=0.0)


def test_a_history_carried_through_a_rotation_gives_the_rotated_direction() -> None:
    """The pairs of a slot mapped by an orthogonal Q (a rotation of the nets' units): the
    direction at Q g is Q times the one at g (BFGS is invariant under orthogonal changes of
    variables; 1e-10 relative). A map that leaves a pair with s'y <= 0 restarts the slot."""
    rng = np.random.default_rng(8)
    k, p = 2, 6
    opt = LBFGS(k, p, F64, CPU)
    hess = torch.as_tensor(_spd(rng, p))
    x = torch.zeros(k, p, dtype=F64)
    for _ in range(3):
        s_vec = torch.as_tensor(rng.normal(size=(k, p)))
        ok = torch.ones(k, dtype=torch.bool)
        opt.accepted(x, x + s_vec, torch.zeros_like(x), s_vec @ hess, ok, ok.to(F64), [None] * k)
    q = torch.linalg.qr(torch.as_tensor(rng.normal(size=(p, p))))[0]
    g = torch.as_tensor(rng.normal(size=(k, p)))
    before, _ = opt.direction(x, g, [None] * k)
    opt.carry(torch.tensor([True, False]), lambda t: t @ q.T)
    after, _ = opt.direction(x, g @ q.T, [None] * k)
    torch.testing.assert_close(after[0], before[0] @ q.T, rtol=1e-10, atol=1e-12)
    assert opt.count.tolist() == [3, 3]
    opt.carry(torch.tensor([False, True]), lambda t: torch.zeros_like(t))
    assert opt.count.tolist() == [3, 0]  # zeroed pairs have s'y = 0: slot 1 restarts
