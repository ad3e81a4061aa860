"""One configuration as the state evolution sees it, checked once for both models."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class SEPoint:
    """``d``, ``n``, weight decay ``lam``, teacher exponent ``gamma``, label-noise variance
    ``delta``, teacher ``rank`` (None: d) and network ``width`` m (quadratic: None is full
    width, the convex problem; a width >= d is the same and is stored as None), in the
    conventions of THEORY.md section 1.

    Hashable (the solves are cached per point); ValueError for values no solver takes.
    """

    d: int
    n: int
    lam: float
    gamma: float
    delta: float
    rank: int | None = None
    width: int | None = None

    def __post_init__(self) -> None:
        if self.d < 1 or self.n < 1:
            raise ValueError(f"d and n must be >= 1, got d={self.d}, n={self.n}")
        if not (math.isfinite(self.lam) and self.lam >= 0):
            raise ValueError(f"weight_decay must be finite and >= 0, got {self.lam}")
        if not (math.isfinite(self.delta) and self.delta >= 0):
            raise ValueError(f"noise must be finite and >= 0, got {self.delta}")
        if not (math.isfinite(self.gamma) and self.gamma > 0):
            raise ValueError(f"gamma must be finite and > 0, got {self.gamma}")
        if self.rank is not None and not 1 <= self.rank <= self.d:
            raise ValueError(f"rank must be in [1, d], got {self.rank} (d={self.d})")
        if self.width is not None:
            if self.width < 1:
                raise ValueError(f"width must be >= 1, got {self.width}")
            if self.width >= self.d:  # no rank constraint: the convex problem
                object.__setattr__(self, "width", None)
