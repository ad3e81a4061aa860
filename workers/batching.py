"""How a task trains its network runs: batches by shape, slots by memory, refinement, OOM.

:func:`train_runs` takes the network runs of one task and

* groups them by shape (:meth:`Problem.shape`) and trains each group with
  :func:`workers.train.train_batch`, in as many slots as the device memory allows
  (:func:`slots_for`: the data, parameters and optimizer state of a slot, against the
  task's :class:`TaskBudget`: its memory on a CPU, its share of a GPU's memory on a GPU),
  or one run at a time with batching off;
* refines every float32 run in float64 from where it stopped (``training.dtype = float32``,
  typically on a GPU: TF32 matmuls allowed), until the float64 certificate is within
  :data:`~workers.certificate.CERTIFIED` or its budget is spent;
* on an out-of-memory error halves the slots and trains the unfinished runs again: a run is
  never lost to memory, and memory is never counted as its failure.

Every outcome is handed to ``on_done`` as soon as its run has finished both phases.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

from workers.certificate import CERTIFIED, Certificate, certificate_tolerance
from workers.data import Dataset
from workers.networks import DEFAULT_CHUNK_BYTES, device_bytes
from workers.problems import Problem, problem_for
from workers.train import (
    Params,
    TrainOutcome,
    TrainRequest,
    history_size,
    resolve_device,
    torch_dtype,
    train_batch,
)

MAX_SLOTS = 64
"""Most runs one batch trains at once."""
GPU_MEMORY_FRACTION = 0.8
"""Share of a GPU's memory (of the task's share of it) one batch may take."""
REFINE_MIN_STEPS = 500
"""A float64 refinement gets the steps left of the run's budget, and at least these."""


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


@dataclass
class RunTraining:
    """One network run of a task: its problem, data and hooks."""

    problem: Problem
    data: Dataset
    certificate: Callable[[Params], Certificate]
    on_step: Callable[[int, float, Params], None] | None = None
    every: int = 0


def task_memory_bytes(device: torch.device, budget: TaskBudget) -> int:
    """What one batch may take: 0.8 x the task's share of the GPU (at most what is free),
    or the task's memory on a CPU."""
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
    requests: Sequence[TrainRequest],
    device: torch.device,
    budget: TaskBudget,
    on_done: Callable[[int, TrainOutcome], None],
) -> None:
    """Train requests (of one shape) in slots that fit, halving them on out-of-memory."""
    left = list(range(len(requests)))
    slots = slots_for(requests[0].problem, len(left), device, budget)
    while left:
        finished: list[int] = []

        def done(
            j: int, outcome: TrainOutcome, batch: list[int] = left, ended: list[int] = finished
        ) -> None:
            ended.append(batch[j])
            on_done(batch[j], outcome)

        try:
            train_batch([requests[i] for i in left], device=device, slots=slots, on_done=done)
        except Exception as exc:
            if not is_out_of_memory(exc) or slots == 1:
                raise
            if device.type == "cuda":
                torch.cuda.empty_cache()
            slots = max(1, slots // 2)
        left = [i for i in left if i not in set(finished)]


def train_runs(
    runs: Sequence[RunTraining],
    on_done: Callable[[int, TrainOutcome], None],
    budget: TaskBudget | None = None,
) -> None:
    """Train every run (see the module docstring); ``on_done(index, outcome)``."""
    budget = budget or TaskBudget()
    groups: dict[tuple[object, ...], list[int]] = defaultdict(list)
    for i, run in enumerate(runs):
        groups[run.problem.shape()].append(i)
    for members in groups.values():
        _train_group([runs[i] for i in members], members, budget, on_done)


def _train_group(
    group: Sequence[RunTraining],
    index: Sequence[int],
    budget: TaskBudget,
    on_done: Callable[[int, TrainOutcome], None],
) -> None:
    cfg = group[0].problem.cfg
    device = resolve_device(cfg.training.device)
    if device.type == "cuda" and cfg.training.dtype == "float32":
        torch.backends.cuda.matmul.allow_tf32 = True
    refine = cfg.training.dtype != "float64"
    requests = [
        TrainRequest(
            problem=r.problem,
            data=r.data,
            tolerance=certificate_tolerance(cfg.training.dtype),
            certificate=r.certificate,
            on_step=r.on_step,
            every=r.every,
        )
        for r in group
    ]
    if not refine:
        _phase(requests, device, budget, lambda j, out: on_done(index[j], out))
        return
    first: dict[int, TrainOutcome] = {}
    _phase(requests, device, budget, lambda j, out: first.__setitem__(j, out))
    _refine(group, index, first, device, budget, on_done)


def _refine(
    group: Sequence[RunTraining],
    index: Sequence[int],
    first: dict[int, TrainOutcome],
    device: torch.device,
    budget: TaskBudget,
    on_done: Callable[[int, TrainOutcome], None],
) -> None:
    """The float64 phase of float32 runs, from their float32 parameters."""
    todo: list[int] = []
    requests: list[TrainRequest] = []
    for j, run in enumerate(group):
        out = first[j]
        tr = run.problem.cfg.training
        if out.stop_reason in ("diverged", "timeout"):
            on_done(index[j], out)
            continue
        as64 = tr.model_copy(update={"dtype": "float64"})
        double = problem_for(run.problem.cfg.model_copy(update={"training": as64}))
        timeout = None if tr.timeout_s is None else max(1e-3, tr.timeout_s - out.wall_time_s)
        requests.append(
            TrainRequest(
                problem=double,
                data=run.data,
                tolerance=CERTIFIED,
                start=out.params,
                certificate=run.certificate,
                max_steps=max(REFINE_MIN_STEPS, tr.max_steps - out.steps),
                timeout_s=timeout,
            )
        )
        todo.append(j)
    if not requests:
        return

    def done(k: int, out: TrainOutcome) -> None:
        j = todo[k]
        before = first[j]
        on_done(
            index[j],
            replace(
                out,
                steps=before.steps + out.steps,
                wall_time_s=before.wall_time_s + out.wall_time_s,
                evaluations=before.evaluations + out.evaluations,
                corrections=before.corrections + out.corrections,
                batch_size=before.batch_size,
            ),
        )

    _phase(requests, device, budget, done)
