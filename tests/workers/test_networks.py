"""workers.networks: the batched networks' objectives and gradients, against autograd and the
teacher forms; initialisation by each problem's init stream."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor

from service.spec import RunConfig, TeacherSpec, TrainingSpec
from workers.networks import BatchedNets, DiagonalNets, QuadraticNets
from workers.operators import quadratic_form
from workers.problems import problem_for

CPU = torch.device("cpu")
F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batch(k: int, n: int, d: int, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(rng.standard_normal((k, n, d)))
    y = torch.as_tensor(rng.standard_normal((k, n)))
    lam = torch.as_tensor(rng.uniform(0.01, 0.5, k))
    return x, y, lam


def _reference(nets: BatchedNets, p: Tensor, x: Tensor, y: Tensor, lam: Tensor) -> Tensor:
    """F of every network, written the plain way (for autograd)."""
    k, n, d = x.shape
    if isinstance(nets, DiagonalNets):
        f = torch.einsum("knd,kd->kn", x, p[:, :d] * p[:, d:])
    else:
        assert isinstance(nets, QuadraticNets)
        w = p.view(k, nets.width, d)
        f = (torch.einsum("knd,kmd->knm", x, w) ** 2) @ nets.s - (w * w).sum(2) @ nets.s[:, None]
    return ((y - f) ** 2).sum(1) / (2 * n) + lam / 2 * (p * p).sum(1)


NETS = {
    "diagonal": lambda: DiagonalNets(5, device=CPU, dtype=F64),
    "quadratic": lambda: QuadraticNets(5, 5, "positive", device=CPU, dtype=F64),
    "quadratic-signed": lambda: QuadraticNets(5, 7, "signed", device=CPU, dtype=F64),
}


@pytest.mark.parametrize("name", list(NETS))
def test_gradient_equals_autograd_and_finite_differences(name: str) -> None:
    nets = NETS[name]()
    x, y, lam = _batch(3, 11, 5)
    p = torch.as_tensor(np.random.default_rng(1).normal(0, 0.7, (3, nets.n_params)))
    f, mse, g = nets.evaluate(p, x, y, lam)
    q = p.clone().requires_grad_(True)
    ref = _reference(nets, q, x, y, lam)
    (auto,) = torch.autograd.grad(ref.sum(), q)
    torch.testing.assert_close(f, ref.detach(), rtol=1e-12, atol=0.0)  # float64 rounding
    torch.testing.assert_close(g, auto, rtol=1e-10, atol=1e-13)  # two summation orders
    # and the reference itself by finite differences (gradcheck's float64 tolerances)
    assert torch.autograd.gradcheck(lambda v: _reference(nets, v, x, y, lam), (q,))
    assert bool((mse >= 0).all())


@pytest.mark.parametrize("name", list(NETS))
def test_chunks_over_samples_change_nothing(name: str) -> None:
    nets = NETS[name]()
    x, y, lam = _batch(2, 40, 5, seed=3)
    p = torch.as_tensor(np.random.default_rng(4).normal(0, 0.5, (2, nets.n_params)))
    whole = nets.evaluate(p, x, y, lam)
    nets.chunk_bytes = 8 * 2 * 7 * 3  # a few rows per chunk
    assert nets.chunk_rows(2, 40, 7) < 10
    for a, b in zip(whole, nets.evaluate(p, x, y, lam), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)  # summation order only


@pytest.mark.parametrize("second_layer", ["positive", "signed"])
def test_quadratic_networks_predict_the_teacher_form(second_layer: str) -> None:
    nets = QuadraticNets(6, 9, second_layer, device=CPU, dtype=F64)  # type: ignore[arg-type]
    rng = np.random.default_rng(5)
    w = torch.as_tensor(rng.normal(0, 0.7, (9, 6)))
    m = (w.T * nets.s) @ w
    s = (m + m.T) / 2.0
    x = torch.as_tensor(rng.standard_normal((20, 6)))
    y = quadratic_form(x, s)  # the network's own prediction: zero residual
    p = nets.pack({"W": w})[None]
    _, mse, _ = nets.evaluate(p, x[None], y[None], torch.zeros(1, dtype=F64))
    assert float(mse[0]) < 1e-24 * float((y * y).mean())  # float64 rounding of two orders
    ev = np.linalg.eigvalsh(s.numpy())
    if second_layer == "positive":
        assert ev.min() >= -1e-12 * ev.max()  # PSD up to rounding
    else:
        assert ev.min() < 0 < ev.max()
    assert nets.s.tolist() == ([1.0] * 9 if second_layer == "positive" else [1.0] * 5 + [-1.0] * 4)
    assert torch.equal(nets.unpack(nets.pack({"W": w}))["W"], w)


def test_diagonal_networks_are_linear_in_theta() -> None:
    nets = DiagonalNets(8, device=CPU, dtype=F64)
    rng = np.random.default_rng(6)
    a, w = torch.as_tensor(rng.normal(size=8)), torch.as_tensor(rng.normal(size=8))
    x = torch.as_tensor(rng.standard_normal((10, 8)))
    p = nets.pack({"a": a, "w": w})[None]
    y = x @ (a * w)
    _, mse, _ = nets.evaluate(p, x[None], y[None], torch.zeros(1, dtype=F64))
    assert float(mse[0]) < 1e-26  # float64 rounding only
    back = nets.unpack(nets.pack({"a": a, "w": w}))
    assert torch.equal(back["a"], a) and torch.equal(back["w"], w)


def test_the_diagonal_preconditioner_inverts_each_coordinates_gauss_newton_block() -> None:
    """H0 v against the explicit inverse of blockdiag(lam I + q_i u_i u_i'), u_i = (w_i, a_i),
    for a gradient (K, p); 1e-12 relative."""
    d, k = 7, 3
    nets = DiagonalNets(d, device=CPU, dtype=F64)
    assert nets.preconditioned
    rng = np.random.default_rng(8)
    p = torch.as_tensor(rng.normal(size=(k, 2 * d)))
    x = torch.as_tensor(rng.standard_normal((k, 40, d)))
    q = nets.data_curvature(x)
    torch.testing.assert_close(q, (x * x).sum(dim=1) / 40, rtol=1e-12, atol=0.0)
    lam = torch.tensor([1e-3, 0.1, 2.0], dtype=F64)
    v = torch.as_tensor(rng.normal(size=(k, 2 * d)))
    expected = torch.zeros_like(v)
    for j in range(k):
        a, w = p[j, :d], p[j, d:]
        block = torch.zeros(2 * d, 2 * d, dtype=F64)
        idx = torch.arange(d)
        block[idx, idx] = lam[j] + q[j] * w * w
        block[idx + d, idx + d] = lam[j] + q[j] * a * a
        block[idx, idx + d] = block[idx + d, idx] = q[j] * a * w
        expected[j] = torch.linalg.solve(block, v[j])
    apply = nets.preconditioner(p, lam, q)
    torch.testing.assert_close(apply(v), expected, rtol=1e-12, atol=0.0)


def test_the_quadratic_preconditioner_inverts_4_w_wt_plus_lam_on_the_rows() -> None:
    """H0 v = (4 W W' + lam I)^-1 v per slot, against an explicit solve; 1e-12 relative."""
    d, m, k = 5, 4, 3
    nets = QuadraticNets(d, m, device=CPU, dtype=F64)
    assert nets.preconditioned
    rng = np.random.default_rng(9)
    p = torch.as_tensor(rng.normal(size=(k, m * d)))
    lam = torch.tensor([1e-3, 0.1, 2.0], dtype=F64)
    v = torch.as_tensor(rng.normal(size=(k, m * d)))
    apply = nets.preconditioner(p, lam, nets.data_curvature(torch.zeros(k, 3, d, dtype=F64)))
    expected = torch.zeros_like(v)
    for j in range(k):
        w = p[j].view(m, d)
        mat = 4.0 * w @ w.T + lam[j] * torch.eye(m, dtype=F64)
        expected[j] = torch.linalg.solve(mat, v[j].view(m, d)).reshape(-1)
    torch.testing.assert_close(apply(v), expected, rtol=1e-12, atol=0.0)


def _cfg(model: str, seed: int = 0, **training: object) -> RunConfig:
    signed = training.get("second_layer") == "signed"
    return RunConfig(
        model=model,
        d=6,
        n=30,
        weight_decay=0.01,
        seed=seed,
        teacher=TeacherSpec(signed=signed),
        training=TrainingSpec.model_validate(training),
    )


@pytest.mark.parametrize("model", ["diagonal", "quadratic"])
def test_init_is_reproducible_and_seeded(model: str) -> None:
    a = problem_for(_cfg(model, seed=3)).init_params()
    b = problem_for(_cfg(model, seed=3)).init_params()
    c = problem_for(_cfg(model, seed=4)).init_params()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])  # bit-identical
        assert not np.array_equal(a[key], c[key])


def test_init_scale_dtype_and_width() -> None:
    problem = problem_for(_cfg("quadratic", init_scale=0.5))
    w = problem.init_params()["W"]
    assert w.shape == (6, 6)
    assert abs(float(w.std()) - 0.5) < 0.2  # 36 N(0, 0.25) draws: a > 5-sigma band
    nets32 = problem.nets(CPU, torch.float32)
    row = torch.as_tensor(nets32.pack({"W": w})).to(torch.float32)
    # float32 parameters are exactly the float64 draws rounded
    assert torch.equal(row, torch.as_tensor(w.reshape(-1)).to(torch.float32))
    signed = problem_for(_cfg("quadratic", second_layer="signed"))
    assert signed.init_params()["W"].shape == (12, 6)  # width 2d by default
    diag = problem_for(_cfg("diagonal")).init_params()
    assert set(diag) == {"a", "w"} and diag["a"].shape == (6,)


# -- pruning: rotations, zero rows, narrower nets -------------------------------------------


def _low_rank_rows(k: int, m: int, d: int, rank: int, seed: int = 0) -> Tensor:
    """(k, m d) parameters whose W have ``rank`` rows of size 1 and the rest of size 1e-3."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(k, m, d))
    w[:, rank:] *= 1e-3
    return torch.as_tensor(w.reshape(k, m * d))


def test_rows_by_size_rotates_w_leaving_f_and_rotating_the_gradient() -> None:
    """U'W has the same F (1e-12 relative) and the gradient U'g; its rows are sqrt(mu_j) v_j',
    largest first."""
    d, m, k = 5, 6, 3
    nets = QuadraticNets(d, m, device=CPU, dtype=F64)
    x, y, lam = _batch(k, 40, d)
    p = _low_rank_rows(k, m, d, 3)
    rows, u, mu = nets.rows_by_size(p)
    f, _, g = nets.evaluate(p, x, y, lam)
    f_rot, _, g_rot = nets.evaluate(rows.reshape(k, -1), x, y, lam)
    torch.testing.assert_close(f_rot, f, rtol=1e-12, atol=0.0)
    expected = (u.transpose(1, 2) @ g.view(k, m, d)).reshape(k, -1)
    torch.testing.assert_close(g_rot, expected, rtol=1e-9, atol=1e-13)  # rotated sums
    norms = (rows * rows).sum(dim=2)
    torch.testing.assert_close(norms, mu, rtol=1e-10, atol=1e-15)
    assert bool((mu[:, :-1] >= mu[:, 1:]).all())


def test_prune_drops_exactly_the_small_directions_along_which_f_decays() -> None:
    """A row goes when its eigenvalue of S is at most ``below`` of the largest and v'Gv > 0
    (G = dF/dS, checked by autograd); the kept rows come first, the candidate keeps S on
    every other direction (1e-10 relative), and ``carry`` maps vectors as it mapped W."""
    d, m, k = 6, 6, 4
    nets = QuadraticNets(d, m, device=CPU, dtype=F64)
    x, y, lam = _batch(k, 60, d, seed=3)
    p = _low_rank_rows(k, m, d, 3, seed=4)
    _, _, g = nets.evaluate(p, x, y, lam)
    cand = nets.prune(p, g, below=1e-4)
    w = p.view(k, m, d)
    for j in range(k):
        s = w[j].T @ w[j]
        ev, vec = torch.linalg.eigh(s)
        q = w[j].clone().requires_grad_(True)
        (gs,) = torch.autograd.grad(
            ((y[j] - (torch.einsum("nd,de,ne->n", x[j], q.T @ q, x[j]) - (q * q).sum())) ** 2).sum()
            / (2 * x.shape[1])
            + lam[j] / 2 * (q * q).sum(),
            q,
        )
        # dF/dW = 2 W G, so v'Gv = (W v)'(dF/dW v) / (2 |W v|^2)
        wv = w[j] @ vec
        curvature = (wv * (gs @ vec)).sum(0) / (2 * (wv * wv).sum(0))
        drop = (ev <= 1e-4 * ev[-1]) & (curvature > 0)
        kept = int((~drop).sum())
        assert bool(cand.dropped[j]) == bool(drop.any())
        assert int(cand.live[j]) == kept
        rows = cand.params[j].view(m, d)
        assert bool(rows[kept:].eq(0.0).all()) and bool(rows[:kept].ne(0.0).any(dim=1).all())
        keep_s = (vec[:, ~drop] * ev[~drop]) @ vec[:, ~drop].T
        torch.testing.assert_close(rows.T @ rows, keep_s, rtol=1e-10, atol=1e-14)
    assert bool(cand.dropped.any())  # the case is not vacuous
    # the history follows by the same map: the parameters themselves map to the candidate
    torch.testing.assert_close(cand.carry(p), cand.params, rtol=1e-12, atol=0.0)
    stacked = torch.stack([p, 2.0 * p], dim=1)  # (k, h, p) like an L-BFGS history
    torch.testing.assert_close(cand.carry(stacked)[:, 1], 2.0 * cand.params, rtol=1e-12, atol=0.0)


def test_zero_rows_stay_zero_and_a_narrowed_net_computes_the_same() -> None:
    """Trailing zero rows: their gradient and preconditioned rows are exactly zero, and the
    nets narrowed to the other rows give the same F (1e-12 relative) and gradient."""
    d, m, k, live = 5, 7, 3, 4
    nets = QuadraticNets(d, m, device=CPU, dtype=F64)
    x, y, lam = _batch(k, 30, d, seed=5)
    p = _low_rank_rows(k, m, d, m, seed=6).view(k, m, d)
    p[:, live:] = 0.0
    p = p.reshape(k, -1)
    f, _, g = nets.evaluate(p, x, y, lam)
    assert bool(g.view(k, m, d)[:, live:].eq(0.0).all())
    h0 = nets.preconditioner(p, lam, nets.data_curvature(x))
    assert bool(h0(g).view(k, m, d)[:, live:].eq(0.0).all())
    assert nets.live(p).tolist() == [live] * k
    narrow = nets.narrowed(live)
    assert (narrow.width, narrow.full_width) == (live, m)
    f_n, _, g_n = narrow.evaluate(nets.resize(p, live), x, y, lam)
    torch.testing.assert_close(f_n, f, rtol=1e-12, atol=0.0)
    torch.testing.assert_close(g_n, nets.resize(g, live), rtol=1e-12, atol=1e-15)
    assert narrow.unpack(nets.resize(p, live)[0])["W"].shape == (m, d)  # the net's own m rows
    torch.testing.assert_close(narrow.resize(nets.resize(p, live), m), p, rtol=0.0, atol=0.0)
    with pytest.raises(ValueError, match="non-zero rows"):
        nets.resize(p, live - 1)
    with pytest.raises(ValueError, match="non-zero rows"):
        narrow.pack({"W": torch.ones(m, d, dtype=F64)})


def test_only_a_positive_second_layer_prunes() -> None:
    assert QuadraticNets(4, 4, "positive", device=CPU, dtype=F64).prunable
    assert not QuadraticNets(4, 4, "signed", device=CPU, dtype=F64).prunable
    assert not DiagonalNets(4, device=CPU, dtype=F64).prunable
