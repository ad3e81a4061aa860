"""Training and test data: Gaussian inputs, labels y = f*(x) + sqrt(Delta) xi."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


class _Target(Protocol):
    def predict(self, x: Array) -> Array: ...


@dataclass(frozen=True)
class Dataset:
    """x: shape (n, d); y: shape (n,)."""

    x: Array
    y: Array


def sample(teacher: _Target, n: int, d: int, noise: float, rng: np.random.Generator) -> Dataset:
    """n samples x ~ N(0, I_d), y = f*(x) + sqrt(noise) xi (x drawn before xi)."""
    x = rng.standard_normal((n, d))
    xi = rng.standard_normal(n)
    return Dataset(x=x, y=teacher.predict(x) + np.sqrt(noise) * xi)
