"""Packing: how many runs go in one task, from a rough cost model of a run.

Ray pays a few milliseconds per task, so runs cheaper than ``settings.pack_below_s`` (see
:func:`estimate_cost_s`) are grouped, up to that much estimated work per task: 2,000 runs of
50 ms become about 200 tasks, not 2,000. Runs for different devices never share a task.
"""

from __future__ import annotations

from collections.abc import Sequence

from service.records import Claim
from service.spec import RunConfig

RUN_OVERHEAD_S = 0.02
"""Fixed cost of one run: teacher, data, certificate, spectrum, result (CPU, small d)."""
FLOP_RATE = 2e9
"""Effective flop/s of the small dense kernels of one step on one CPU core."""
STEPS: dict[str, tuple[int | None, float]] = {
    "convex": (300, 1e-4),  # numpy proximal-gradient iterations
    "lbfgs": (100, 1e-3),  # each L-BFGS step evaluates the objective several times
    "gd": (None, 3e-4),  # runs up to max_steps unless the tolerance stops it earlier
    "adam": (None, 3e-4),
}
"""Per optimizer: steps a run usually needs (None: ``max_steps``) and the interpreter and
torch dispatch cost of one step. Measured on small diagonal/quadratic runs (d 10-100),
where these estimates were 1.5-4x the wall time: packing errs on the side of fewer runs."""


def estimate_cost_s(cfg: RunConfig) -> float:
    """Rough seconds one run takes on one CPU core; decides packing only.

    cost = RUN_OVERHEAD_S + steps (step_overhead + 6 n d width / FLOP_RATE) + 10 d^3 / FLOP_RATE
    with steps = min(max_steps, typical steps of the optimizer) and step_overhead from
    :data:`STEPS`; width = 1 for the diagonal net (its forward pass is one n x d product),
    the hidden width for the quadratic net (forward and backward through X W' are about
    6 n d m flops); 10 d^3 is the final spectrum and certificate.
    """
    typical, overhead = STEPS.get(cfg.training.optimizer, (None, 3e-4))
    steps = cfg.training.max_steps if typical is None else min(cfg.training.max_steps, typical)
    width = 1 if cfg.model == "diagonal" else cfg.width
    per_step = overhead + 6.0 * cfg.n * cfg.d * width / FLOP_RATE
    return RUN_OVERHEAD_S + steps * per_step + 10.0 * cfg.d**3 / FLOP_RATE


def pack(claims: Sequence[Claim], *, budget_s: float, max_per_task: int = 256) -> list[list[Claim]]:
    """Group claims into tasks: a run costing >= ``budget_s`` alone, cheaper ones together.

    Cheap runs fill tasks greedily, in claim order, up to ``budget_s`` of estimated work and
    ``max_per_task`` runs; runs for different devices never share a task.
    """
    tasks: list[list[Claim]] = []
    open_: dict[str, tuple[list[Claim], float]] = {}
    for claim in claims:
        cost = estimate_cost_s(claim.config)
        if cost >= budget_s:
            tasks.append([claim])
            continue
        key = claim.config.training.device
        batch, total = open_.get(key, ([], 0.0))
        if batch and (total + cost > budget_s or len(batch) >= max_per_task):
            tasks.append(batch)
            batch, total = [], 0.0
        batch.append(claim)
        open_[key] = (batch, total + cost)
    tasks.extend(batch for batch, _ in open_.values() if batch)
    return tasks
