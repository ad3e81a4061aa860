"""Training and test data: Gaussian inputs, labels y = f*(x) + sqrt(Delta) xi."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from service.spec import RunConfig
from workers.rng import stream
from workers.teachers import Teacher, make_teacher

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Dataset:
    """x: shape (n, d); y: shape (n,)."""

    x: Array
    y: Array


def sample(teacher: Teacher, n: int, d: int, noise: float, rng: np.random.Generator) -> Dataset:
    """n samples x ~ N(0, I_d), y = f*(x) + sqrt(noise) xi (x drawn before xi)."""
    x = rng.standard_normal((n, d))
    xi = rng.standard_normal(n)
    return Dataset(x=x, y=teacher.predict(x) + np.sqrt(noise) * xi)


def make_problem(cfg: RunConfig) -> tuple[Teacher, Dataset]:
    """The teacher and the training set of a run (``teacher`` and ``train`` streams)."""
    teacher = make_teacher(cfg)
    data = sample(teacher, cfg.n, cfg.d, cfg.teacher.noise, stream(cfg.seed, "train"))
    return teacher, data
