"""workers.networks: the two networks' conventions, gradients, initialisation (by their
problem's build_net)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from service.spec import RunConfig, TeacherSpec, TrainingSpec
from workers.networks import DiagonalNet, QuadraticNet, TwoLayerNet
from workers.operators import quadratic_form
from workers.problems import problem_for

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Tiny problems: intra-op threads only add contention on a shared machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _data(n: int, d: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    rng = np.random.default_rng(seed)
    return torch.as_tensor(rng.standard_normal((n, d))), torch.as_tensor(rng.standard_normal(n))


class _Objective(nn.Module):
    def __init__(self, net: TwoLayerNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, y: Tensor, lam: float) -> Tensor:
        return self.net.objective(x, y, lam)


def _random_init(net: TwoLayerNet, seed: int = 1) -> None:
    net.init_from(np.random.default_rng(seed), 0.7)


@pytest.mark.parametrize(
    "net",
    [DiagonalNet(5), QuadraticNet(4, 4, "positive"), QuadraticNet(4, 5, "signed")],
    ids=["diagonal", "quadratic", "quadratic-signed"],
)
def test_gradcheck_objective(net: TwoLayerNet) -> None:
    _random_init(net)
    x, y = _data(7, next(iter(net.parameters())).shape[-1])
    wrapper = _Objective(net)
    names = [f"net.{name}" for name, _ in net.named_parameters()]
    start = tuple(p.detach().clone().requires_grad_(True) for p in net.parameters())

    def fn(*params: Tensor) -> Tensor:
        out: Tensor = torch.func.functional_call(
            wrapper, dict(zip(names, params, strict=True)), (x, y, 0.3)
        )
        return out

    # gradcheck's default float64 tolerances (atol 1e-5, rtol 1e-3) on finite differences
    assert torch.autograd.gradcheck(fn, start)


def test_objective_formula() -> None:
    net = QuadraticNet(3, 4, "signed")
    _random_init(net)
    x, y = _data(6, 3)
    f = net(x)
    expected = ((y - f) ** 2).sum() / (2 * 6) + 0.25 / 2 * (net.W**2).sum()
    obj, mse = net.losses(x, y, 0.25)
    # float64 rounding only: 1e-14 relative
    torch.testing.assert_close(obj, expected, rtol=1e-14, atol=0.0)
    torch.testing.assert_close(mse, ((y - f) ** 2).mean(), rtol=1e-14, atol=0.0)
    torch.testing.assert_close(net.objective(x, y, 0.25), obj, rtol=0.0, atol=0.0)


@pytest.mark.parametrize("second_layer", ["positive", "signed"])
def test_quadratic_forward_is_teacher_form(second_layer: str) -> None:
    net = QuadraticNet(6, 9, second_layer)  # type: ignore[arg-type]
    _random_init(net)
    x, _ = _data(20, 6)
    s = net.matrix()
    np.testing.assert_array_equal(s, s.T)
    expected = quadratic_form(x.numpy(), s)
    # two float64 evaluation orders of the same sum: 1e-12 relative to the output scale
    np.testing.assert_allclose(
        net(x).detach().numpy(), expected, rtol=0, atol=1e-12 * np.abs(expected).max()
    )
    ev = np.linalg.eigvalsh(s)
    if second_layer == "positive":
        assert ev.min() >= -1e-12 * ev.max()  # PSD up to rounding (1e-12 relative)
    else:
        assert ev.min() < 0 < ev.max()


def test_diagonal_forward_is_linear_in_theta() -> None:
    net = DiagonalNet(8)
    _random_init(net)
    x, _ = _data(10, 8)
    theta = net.theta()
    np.testing.assert_allclose(theta, (net.a * net.w).detach().numpy(), rtol=1e-15, atol=0)
    # float64 rounding only: 1e-13 absolute on O(1) outputs
    np.testing.assert_allclose(net(x).detach().numpy(), x.numpy() @ theta, rtol=0, atol=1e-13)
    assert set(net.weight_matrices()) == {"a", "w"}


def test_signed_second_layer_layout() -> None:
    net = QuadraticNet(3, 5, "signed")
    assert net.s.tolist() == [1.0, 1.0, 1.0, -1.0, -1.0]
    assert QuadraticNet(3, 4, "positive").s.tolist() == [1.0] * 4
    assert set(net.weight_matrices()) == {"W"}
    assert [name for name, _ in net.named_parameters()] == ["W"]  # s is a buffer


def _cfg(model: str, seed: int = 0, **training: object) -> RunConfig:
    return RunConfig(
        model=model,
        d=6,
        n=30,
        weight_decay=0.01,
        seed=seed,
        training=TrainingSpec.model_validate(training),
    )


@pytest.mark.parametrize("model", ["diagonal", "quadratic"])
def test_init_reproducible_and_seeded(model: str) -> None:
    a = problem_for(_cfg(model, seed=3)).build_net(CPU, torch.float64)
    b = problem_for(_cfg(model, seed=3)).build_net(CPU, torch.float64)
    c = problem_for(_cfg(model, seed=4)).build_net(CPU, torch.float64)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pb)  # bit-identical
        assert not torch.equal(pa, pc)


def test_init_scale_dtype_and_width() -> None:
    cfg = _cfg("quadratic", init_scale=0.5)
    net64 = problem_for(cfg).build_net(CPU, torch.float64)
    net32 = problem_for(cfg).build_net(CPU, torch.float32)
    assert isinstance(net64, QuadraticNet) and isinstance(net32, QuadraticNet)
    assert net64.W.shape == (6, 6) and net32.W.dtype == torch.float32
    # float32 parameters are exactly the float64 draws rounded
    assert torch.equal(net32.W, net64.W.to(torch.float32))
    # 36 N(0, 0.25) draws: sample std within 40% of 0.5 (a > 5-sigma band)
    assert abs(float(net64.W.detach().std()) - 0.5) < 0.2
    signed = RunConfig(
        model="quadratic",
        d=6,
        n=30,
        weight_decay=0.01,
        teacher=TeacherSpec(signed=True),
        training=TrainingSpec(second_layer="signed"),
    )
    net = problem_for(signed).build_net(CPU, torch.float64)
    assert isinstance(net, QuadraticNet) and net.W.shape == (12, 6)
    assert float(net.s.sum()) == 0.0
    diag = problem_for(_cfg("diagonal")).build_net(CPU, torch.float64)
    assert isinstance(diag, DiagonalNet) and diag.a.shape == (6,)
