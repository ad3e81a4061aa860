"""workers.tensors: the batched matrix-vector products equal the plain ones."""

from __future__ import annotations

import pytest
import torch

from workers.tensors import mv, vm


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_mv_and_vm_are_the_batched_products(k: int, dtype: torch.dtype) -> None:
    """Against einsum, 1e-12 (float64) / 1e-5 (float32) relative."""
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(k, 5, 7, generator=gen, dtype=dtype)
    v, u = (
        torch.randn(k, 7, generator=gen, dtype=dtype),
        torch.randn(k, 5, generator=gen, dtype=dtype),
    )
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    got_mv, got_vm = mv(a, v), vm(u, a)
    assert got_mv.shape == (k, 5) and got_vm.shape == (k, 7)
    torch.testing.assert_close(got_mv, torch.einsum("khp,kp->kh", a, v), rtol=tol, atol=tol)
    torch.testing.assert_close(got_vm, torch.einsum("kh,khp->kp", u, a), rtol=tol, atol=tol)
