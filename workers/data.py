"""Training data on the run's device: Gaussian inputs, labels y = f*(x) + sqrt(Delta) xi.

The draws come from the run's seeded host stream (``workers.rng``), the only generator that
gives the same numbers on every machine and device (torch's CPU and CUDA generators differ),
and are copied to the device once: the same seed gives the same data on any device. The
labels are computed on the host in float64 from the same arrays, so they are the same bits
everywhere too. Everything after that happens on the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from workers.operators import Sensing

Array = NDArray[np.float64]


class _Target(Protocol):
    def predict(self, x: Array) -> Array: ...


@dataclass(frozen=True)
class Dataset:
    """x: shape (n, d); y: shape (n,); float64 on the run's device."""

    x: Tensor
    y: Tensor

    @property
    def device(self) -> torch.device:
        return self.x.device

    @cached_property
    def sensing(self) -> Sensing:
        """The quadratic model's sensing operator on these inputs (its X'X kept)."""
        return Sensing(self.x)


def sample(
    teacher: _Target,
    n: int,
    d: int,
    noise: float,
    rng: np.random.Generator,
    device: torch.device | str = "cpu",
) -> Dataset:
    """n samples x ~ N(0, I_d), y = f*(x) + sqrt(noise) xi (x drawn before xi), on ``device``."""
    x = rng.standard_normal((n, d))
    xi = rng.standard_normal(n)
    y = teacher.predict(x) + np.sqrt(noise) * xi
    dev = torch.device(device)
    return Dataset(x=torch.as_tensor(x, dtype=torch.float64).to(dev), y=torch.as_tensor(y).to(dev))
