"""Packing: which runs go in one task, from a rough cost and memory model of a run.

Two reasons to put several runs in one Ray task:

* **Tiny runs.** Ray pays a few milliseconds per task, so runs cheaper than
  ``pack_below_s`` (see :func:`estimate_cost_s`) are grouped, up to that much estimated work
  per task: 2,000 runs of 50 ms become about 200 tasks, not 2,000.
* **Batching** (``batching = on``). Network runs of one shape (:meth:`RunConfig.batch_shape`:
  a sweep's seeds and weight decays) train as one batched tensor program in the worker, so
  they share a task: up to ``batch_max_runs`` runs, ``batch_budget_s`` of estimated batched
  work (:func:`estimate_batch_cost_s`: the per-step overhead is paid once per batch) and
  ``task_memory_mb`` of data. A group larger than one task is split evenly, and over at
  least as many tasks as the cluster runs at once (``spread``) while each keeps
  :data:`MIN_SPREAD_RUNS` runs, so a sweep uses every worker; the parts are dealt
  round-robin, so that each holds a share of every weight decay.

**GPUs.** A shape whose runs ask for ``cuda`` is packed by the GPU's numbers instead: its
cost model (:data:`GPU_FLOP_RATE`, a kernel launch per step) and its memory
(``gpu_memory_mb``; the float32 data of the batch, the float64 master copy, the parameters
and L-BFGS history), up to ``gpu_batch_max_runs`` runs: a GPU task holds several large runs
or many small ones, enough to keep the GPU busy, and is not split to spread over CPUs.
:func:`gpu_share` says what share of a GPU a task asks for: the configured fraction while its
batch fits in that share of the memory, the whole GPU above it (fractional GPUs only where
they pay).

Convex runs, and network runs with batching off, are packed as tiny runs or go alone. Runs
for different devices never share a task.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from service.config import Settings
from service.records import Claim
from service.resources import CHUNK_BYTES, run_bytes
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
MIN_SPREAD_RUNS = 4
"""A batch is split over more workers only while each part keeps this many runs."""
DATA_COPIES = 2
"""Copies of a run's data a task holds (its float64 data, and the batch's device copy)."""
GPU_FLOP_RATE = 2e13
"""Effective flop/s of a batched step on one GPU (TF32 matmuls, a fraction of the peak)."""
GPU_STEP_OVERHEAD_S = 2e-3
"""Launch and host-round-trip cost of one batched step on a GPU."""


@dataclass(frozen=True)
class PackingRules:
    """The settings packing follows (see the module docstring)."""

    pack_below_s: float = 0.5
    batching: bool = True
    batch_max_runs: int = 32
    batch_budget_s: float = 300.0
    task_memory_bytes: int = 4096 * 2**20
    max_per_task: int = 256
    gpu_memory_bytes: int = 40960 * 2**20
    gpu_batch_max_runs: int = 256

    @classmethod
    def from_settings(cls, settings: Settings) -> PackingRules:
        return cls(
            pack_below_s=settings.pack_below_s,
            batching=settings.batching == "on",
            batch_max_runs=settings.batch_max_runs,
            batch_budget_s=settings.batch_budget_s,
            task_memory_bytes=settings.task_memory_mb * 2**20,
            gpu_memory_bytes=settings.gpu_memory_mb * 2**20,
            gpu_batch_max_runs=settings.gpu_batch_max_runs,
        )


def _steps(cfg: RunConfig) -> tuple[int, float]:
    typical, overhead = STEPS.get(cfg.training.optimizer, (None, 3e-4))
    steps = cfg.training.max_steps if typical is None else min(cfg.training.max_steps, typical)
    return steps, overhead


def _step_flops(cfg: RunConfig) -> float:
    width = 1 if cfg.model == "diagonal" else cfg.width
    return 6.0 * cfg.n * cfg.d * width


def estimate_cost_s(cfg: RunConfig) -> float:
    """Rough seconds one run takes on one CPU core; decides packing only.

    cost = RUN_OVERHEAD_S + steps (step_overhead + 6 n d width / FLOP_RATE) + 10 d^3 / FLOP_RATE
    with steps = min(max_steps, typical steps of the optimizer) and step_overhead from
    :data:`STEPS`; width = 1 for the diagonal net (its forward pass is one n x d product),
    the hidden width for the quadratic net (forward and backward through X W' are about
    6 n d m flops); 10 d^3 is the final spectrum and certificate.
    """
    return estimate_batch_cost_s(cfg, 1)


def estimate_batch_cost_s(cfg: RunConfig, runs: int) -> float:
    """Rough seconds ``runs`` runs of this shape take trained as one batch: the per-step
    overhead once, everything else per run (see :func:`estimate_cost_s`)."""
    steps, overhead = _steps(cfg)
    per_run = RUN_OVERHEAD_S + 10.0 * cfg.d**3 / FLOP_RATE
    return runs * per_run + steps * (overhead + runs * _step_flops(cfg) / FLOP_RATE)


def gpu_batch_cost_s(cfg: RunConfig, runs: int) -> float:
    """Rough seconds ``runs`` runs of this shape take as one batch on a GPU."""
    steps, _ = _steps(cfg)
    per_run = RUN_OVERHEAD_S + 10.0 * cfg.d**3 / GPU_FLOP_RATE
    return runs * per_run + steps * (GPU_STEP_OVERHEAD_S + runs * _step_flops(cfg) / GPU_FLOP_RATE)


def on_gpu(cfg: RunConfig) -> bool:
    """Whether a run asks for a GPU (``auto`` is decided by the cluster, at submit time)."""
    return cfg.training.device == "cuda"


def data_bytes(cfg: RunConfig) -> int:
    """Memory of one run's data in a task (float64 inputs and labels, :data:`DATA_COPIES`)."""
    return DATA_COPIES * 8 * cfg.n * (cfg.d + 1)


def batchable(cfg: RunConfig, rules: PackingRules) -> bool:
    """Trained by the network's own parameters in a batch (batching on, not convex)."""
    return rules.batching and cfg.training.optimizer != "convex"


def pack(
    claims: Sequence[Claim], rules: PackingRules | None = None, *, spread: int = 1
) -> list[list[Claim]]:
    """Group claims into tasks (see the module docstring); ``spread``: tasks the cluster
    runs at once."""
    rules = rules or PackingRules()
    tasks: list[list[Claim]] = []
    groups: dict[tuple[object, ...], list[Claim]] = defaultdict(list)
    loose: list[Claim] = []
    for claim in claims:
        cfg = claim.config
        if batchable(cfg, rules):
            groups[cfg.batch_shape()].append(claim)
        else:
            loose.append(claim)
    for group in groups.values():
        tasks.extend(_split_batch(group, rules, spread))
    tasks.extend(_pack_loose(loose, rules))
    return tasks


def _split_batch(group: list[Claim], rules: PackingRules, spread: int) -> list[list[Claim]]:
    """One shape's claims in even parts within the rules (at least ``spread`` parts of
    :data:`MIN_SPREAD_RUNS` runs each, when there are that many; GPU shapes by the GPU's
    numbers, not spread over CPUs)."""
    cfg = group[0].config
    if on_gpu(cfg):
        return _split_gpu_batch(group, rules)
    fit = 1
    while (
        fit < min(len(group), rules.batch_max_runs)
        and estimate_batch_cost_s(cfg, fit + 1) <= rules.batch_budget_s
        and (fit + 1) * data_bytes(cfg) <= rules.task_memory_bytes
    ):
        fit += 1
    parts = max(math.ceil(len(group) / fit), min(spread, len(group) // MIN_SPREAD_RUNS))
    # dealt round-robin: claims come in grid order (a weight decay's seeds together), and the
    # runs of one weight decay cost alike, so contiguous parts would give one worker all the
    # slow runs (measured: 8.3 s vs 4.1 s for the two halves of a d = 30 sweep)
    return [group[i::parts] for i in range(parts)]


def _split_gpu_batch(group: list[Claim], rules: PackingRules) -> list[list[Claim]]:
    """A GPU shape's claims in even parts, each within the GPU's memory, the GPU batch's run
    limit and the batch budget (seconds of estimated GPU work)."""
    cfg = group[0].config
    fit = 1
    while (
        fit < min(len(group), rules.gpu_batch_max_runs)
        and gpu_batch_cost_s(cfg, fit + 1) <= rules.batch_budget_s
        and (fit + 1) * run_bytes(cfg) + CHUNK_BYTES <= rules.gpu_memory_bytes
    ):
        fit += 1
    parts = math.ceil(len(group) / fit)
    return [group[i::parts] for i in range(parts)]


def _pack_loose(claims: Sequence[Claim], rules: PackingRules) -> list[list[Claim]]:
    """A run costing >= ``pack_below_s`` alone; cheaper ones fill tasks greedily, in claim
    order, up to that much estimated work and ``max_per_task`` runs, one device per task."""
    tasks: list[list[Claim]] = []
    open_: dict[str, tuple[list[Claim], float]] = {}
    for claim in claims:
        cost = estimate_cost_s(claim.config)
        if cost >= rules.pack_below_s:
            tasks.append([claim])
            continue
        key = claim.config.training.device
        batch, total = open_.get(key, ([], 0.0))
        if batch and (total + cost > rules.pack_below_s or len(batch) >= rules.max_per_task):
            tasks.append(batch)
            batch, total = [], 0.0
        batch.append(claim)
        open_[key] = (batch, total + cost)
    tasks.extend(batch for batch, _ in open_.values() if batch)
    return tasks
