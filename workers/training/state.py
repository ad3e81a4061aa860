"""The host-side state of one slot of a batch (one run while it trains), and what a run's
training produced (:class:`TrainOutcome`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from torch import Tensor

TrainStopReason = Literal["gradient", "objective", "max_steps", "diverged", "timeout"]

CERTIFICATE_FIRST_WAIT = 5
CERTIFICATE_MAX_WAIT = 640


@dataclass
class TrainOutcome:
    """What training did to one run; metrics are float64 Python floats, the parameters a
    float64 row on the run's device."""

    params: dict[str, Tensor]
    steps: int
    stop_reason: TrainStopReason
    objective: float
    train_loss: float
    """(1/n) sum (y - f)^2."""
    grad_norm: float
    wall_time_s: float
    device: str
    batch_size: int
    """Slots of the batch the run trained in."""
    error: str | None = None
    evaluations: int = 0
    corrections: int = 0
    """Support corrections applied (workers.corrections)."""


@dataclass
class SlotState:
    """The host-side state of one slot (one run)."""

    run: int
    """Index of the run in the batch's list."""
    started: float
    f_cap: float
    max_steps: int
    timeout_s: float | None
    batch_size: int
    """Slots of the batch when the run took its slot."""
    tol_f: float
    """The objective rule's relative change: max(training.tol, 10 eps)."""
    grad_factor: float
    """The gradient rule's factor: sqrt(training.tol)."""
    tolerance: float
    """Largest relative gap of the certificate that stops the run (this phase's)."""
    k: int = 0
    prev_f: float | None = None
    calm: int = 0
    polishing: bool = False
    stale: int = 0
    best_g: float = math.inf
    f_ref: float = math.inf
    next_certificate: int = 0
    wait: int = CERTIFICATE_FIRST_WAIT // 2
    refused: tuple[float, float] | None = None
    """(gradient norm, gap) of the last refused certificate: the next one is asked for when
    the gradient has fallen as far as that gap is above the tolerance (first order)."""
    step_size: float = 1.0
    good: tuple[float, float, float] = (math.nan, math.nan, math.nan)
    best: tuple[float, float, float] = (math.nan, math.nan, math.inf)
    evaluations: int = 0
    corrections: int = 0
    corrected: bool = False
    """A support correction moved this slot during the current visit."""
    search_failed: bool = False
    """The last line search found no decrease."""
    error: str | None = None
