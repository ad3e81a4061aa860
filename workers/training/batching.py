"""How a task trains its network runs: batches by shape, slots by memory, refinement, OOM.

:func:`train` takes the network runs of one task and

* groups them by shape (:meth:`Problem.shape`) and trains each group in a
  :class:`~workers.training.scheduler.Batch` of as many slots as the device memory allows
  (:func:`slots_for`: the data, parameters and optimizer state of a slot, against the
  task's :class:`TaskBudget`: its memory on a CPU, its share of a GPU's real free memory on
  a GPU), or one run at a time with batching off;
* refines every float32 run in float64 from where it stopped (``training.dtype = float32``,
  typically on a GPU: TF32 matmuls allowed), until the float64 certificate is within
  :data:`~workers.certificate.CERTIFIED` or its budget is spent;
* on an out-of-memory error halves the slots and trains the unfinished runs again: a run is
  never lost to memory, and memory is never counted as its failure.

It yields ``(index, outcome)`` as runs finish both phases.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from workers.certificate import CERTIFIED, certificate_tolerance
from workers.devices import torch_dtype
from workers.networks import DEFAULT_CHUNK_BYTES, device_bytes
from workers.problems import Problem, problem_for
from workers.training.optimizers import history_size
from workers.training.run import Run
from workers.training.scheduler import Batch, Phase
from workers.training.state import TrainOutcome

MAX_SLOTS = 64
"""Most runs one batch trains at once."""
GPU_MEMORY_FRACTION = 0.8
"""Share of a GPU's free memory (of the task's share of it) one batch may take."""


@dataclass(frozen=True)
class TaskBudget:
    """What one task may use (from the settings ``batching``, ``task_memory_mb`` and
    ``gpus_per_task``, handed to the task function by the composition root)."""

    batched: bool = True
    """False: every run trains alone (a batch of one)."""
    memory_mb: int = 4096
    """Memory of one CPU batch."""
    gpu_share: float = 1.0
    """The share of its GPU the task holds (Ray's fractional ``num_gpus``)."""
    run_time_limit_s: float | None = None
    """Wall-time limit of a run that sets no ``training.timeout_s`` (None: none)."""
    width_restarts: int = 5
    """Restarts of a narrow network whose gap stays open, when it sets no
    ``training.restarts`` (:mod:`workers.second_order`)."""


def task_memory_bytes(device: torch.device, budget: TaskBudget) -> int:
    """What one batch may take: 0.8 x the task's share of the GPU (at most what is free
    now), or the task's memory on a CPU."""
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return int(GPU_MEMORY_FRACTION * min(free, budget.gpu_share * total))
    return budget.memory_mb * 2**20


def slots_for(problem: Problem, n_runs: int, device: torch.device, budget: TaskBudget) -> int:
    """How many runs of this shape train together within the task's memory (1 unbatched)."""
    if not budget.batched:
        return 1
    c = problem.cfg
    dtype = torch_dtype(c.training.dtype)
    bits = torch.finfo(dtype).bits
    nets = problem.nets(torch.device("cpu"), dtype)
    history = history_size(nets.n_params, dtype, nets.preconditioned)
    per_run = device_bytes(c.n, c.d, nets.n_params, bits, history)
    room = max(per_run, task_memory_bytes(device, budget) - DEFAULT_CHUNK_BYTES)
    return max(1, min(MAX_SLOTS, n_runs, room // per_run))


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA out-of-memory error, or a failed CPU allocation."""
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", ())
    if oom and isinstance(exc, oom):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError | MemoryError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def _phase(
    runs: Sequence[Run], device: torch.device, budget: TaskBudget, phase: Phase
) -> Iterator[tuple[int, TrainOutcome]]:
    """Train runs (of one shape) in slots that fit, halving them on out-of-memory."""
    left = list(range(len(runs)))
    slots = slots_for(runs[0].ready[0], len(left), device, budget)
    while left:
        done: set[int] = set()
        try:
            for j, outcome in Batch([runs[i] for i in left], device, slots, phase).outcomes():
                done.add(left[j])
                yield left[j], outcome
        except Exception as exc:
            if not is_out_of_memory(exc) or slots == 1:
                raise
            if device.type == "cuda":
                torch.cuda.empty_cache()
            slots = max(1, slots // 2)
        left = [i for i in left if i not in done]


def train(
    runs: Sequence[Run], budget: TaskBudget | None = None, *, certify: bool = True
) -> Iterator[tuple[int, TrainOutcome]]:
    """Train every prepared run (see the module docstring); yields (index, outcome) as runs
    finish. ``certify=False``: no certificates (the optimizer alone, in tests)."""
    budget = budget or TaskBudget()
    groups: dict[tuple[object, ...], list[int]] = defaultdict(list)
    for i, run in enumerate(runs):
        groups[run.ready[0].shape()].append(i)
    for members in groups.values():
        group = [runs[i] for i in members]
        for j, outcome in _train_group(group, budget, certify):
            yield members[j], outcome


def _train_group(
    group: Sequence[Run], budget: TaskBudget, certify: bool
) -> Iterator[tuple[int, TrainOutcome]]:
    problem = group[0].ready[0]
    cfg = problem.cfg
    device = problem.device
    if device.type == "cuda" and cfg.training.dtype == "float32":
        torch.backends.cuda.matmul.allow_tf32 = True
    dtype = torch_dtype(cfg.training.dtype)
    first = Phase(dtype, certificate_tolerance(cfg.training.dtype), certify)
    if cfg.training.dtype == "float64":
        yield from _phase(group, device, budget, first)
        return
    outcomes = dict(_phase(group, device, budget, first))
    todo: list[int] = []
    for j, run in enumerate(group):
        out = outcomes[j]
        if out.stop_reason in ("diverged", "timeout"):
            yield j, out
            continue
        run.start, run.steps_done, run.time_used = out.params, out.steps, out.wall_time_s
        as64 = cfg.training.model_copy(update={"dtype": "float64"})
        run.problem = problem_for(run.cfg.model_copy(update={"training": as64}))
        todo.append(j)
    if not todo:
        return
    refine = Phase(torch.float64, CERTIFIED, certify)
    for k, out in _phase([group[j] for j in todo], device, budget, refine):
        j = todo[k]
        before = outcomes[j]
        out.steps += before.steps
        out.wall_time_s += before.wall_time_s
        out.evaluations += before.evaluations
        out.corrections += before.corrections
        out.batch_size = before.batch_size
        yield j, out
