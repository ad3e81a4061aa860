"""What a run needs, estimated from its configuration alone: memory on its device and time.

One place for the numbers that packing (:mod:`service.orchestration.packing`), the Ray
executor (the share of a GPU a task asks for) and admission control (:func:`admit`) agree on.
The worker itself checks against the device's real free memory (``workers.training.batching``)
and halves its batch on an out-of-memory error, so these estimates decide plans, never
correctness.

**Admission control.** Before a sweep is stored (``POST /v1/sweeps``, ``extend``) or a run is
started (``scalesweep run-one``), every distinct run shape is checked against what the
deployment has (:class:`Capacity`, from the settings): the memory the run must hold at once
(:func:`memory_need`: its data, the optimizer's state, the d x d matrices of the quadratic
model's certificate and spectra, an evaluation chunk, the test-error chunk) against the
largest worker's memory (``device: cuda``: the GPU's), and the least time it can take
(:func:`time_need`: a floor of :data:`MIN_EVALUATIONS` passes over the data, one certificate,
the spectra's eigen-decomposition and the test error, at a deliberately fast nominal rate)
against the per-run time limit. Both are lower bounds: a run refused here could not have
finished; a run admitted may still stop at the time limit (``stop_reason: timeout``).
``device: auto`` is checked against a CPU worker (a run only a GPU can hold says ``cuda``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.errors import LimitError
from service.spec import RunConfig, SweepSpec, expand, width_axis_name

if TYPE_CHECKING:
    from service.config import Settings

HISTORY_PAIRS = 20
"""L-BFGS pairs a run keeps (preconditioned nets keep 20; at most 50 otherwise)."""
CHUNK_BYTES = 256 * 2**20
"""The intermediates of one evaluation chunk on a GPU (once per batch)."""


def n_params(cfg: RunConfig) -> int:
    """The network's parameters: 2d (diagonal: a and w) or width x d (quadratic)."""
    return 2 * cfg.d if cfg.model == "diagonal" else cfg.width * cfg.d


def run_bytes(cfg: RunConfig) -> int:
    """Device memory of one run in a batch: the float64 data the certificate reads, the
    training copy of the data in the training dtype (the same tensor in float64), the
    parameters and the optimizer's state (gradient, trial point, best point, L-BFGS history)."""
    width = 8 if cfg.training.dtype == "float64" else 4
    data = cfg.n * (cfg.d + 1)
    training_copy = 0 if width == 8 else width * data
    return 8 * data + training_copy + width * n_params(cfg) * (6 + 2 * HISTORY_PAIRS)


def batch_bytes(cfgs: Sequence[RunConfig]) -> int:
    """Device memory of these runs trained as one batch (one chunk of intermediates)."""
    return sum(run_bytes(c) for c in cfgs) + CHUNK_BYTES


def gpu_share(cfgs: Sequence[RunConfig], gpus_per_task: float, gpu_memory_bytes: int) -> float:
    """The share of a GPU a task of these runs asks for: ``gpus_per_task`` while the batch
    fits in that share of the GPU's memory (two small batches share a GPU), the whole GPU
    otherwise (fractional GPUs only where they pay)."""
    return gpus_per_task if batch_bytes(cfgs) <= gpus_per_task * gpu_memory_bytes else 1.0


# -- admission control ------------------------------------------------------------------------

MIN_EVALUATIONS = 20
"""Passes over the data no run finishes in fewer of (measured: 22-92 L-BFGS steps for the
quadratic net, 60-1,990 for the diagonal, 130 FISTA iterations for a warm certificate)."""
PROCESS_BYTES = 400 * 2**20
"""A worker process before its run: Python, numpy, torch (measured: about 400 MB RSS)."""
CPU_CHUNK_BYTES = 2 * 2**20
"""The evaluation chunk on a CPU (``workers.networks.CPU_CHUNK_BYTES``)."""
OPERATOR_ROWS = 8192
"""Rows of X per block of the sensing operator (``workers.operators.CHUNK_ROWS``)."""
TEST_CHUNK = 20_000
"""Fresh samples per block of the test error (``workers.tasks``)."""
QUADRATIC_MATRICES = 8
"""d x d float64 matrices a quadratic run holds at once: the estimate S, the dual matrix,
X'X, the eigen-decomposition's input and output, FISTA's momentum and gradient, the
spectrum's."""
EIGH_FLOPS = 9.0
"""Flops of a symmetric eigen-decomposition per d^3."""


@dataclass(frozen=True)
class Capacity:
    """What the deployment has, from the settings (``SCALESWEEP_WORKER_MEMORY_MB``,
    ``SCALESWEEP_GPU_MEMORY_MB``, ``SCALESWEEP_RUN_TIME_LIMIT_S``, ``SCALESWEEP_WORKER_GFLOPS``,
    ``SCALESWEEP_GPU_TFLOPS``)."""

    worker_memory_bytes: int
    gpu_memory_bytes: int
    run_time_limit_s: float
    cpu_flops: float
    gpu_flops: float
    width_restarts: int = 5
    """Restarts a narrow run makes when it sets none (``SCALESWEEP_WIDTH_RESTARTS``)."""
    max_restarts: int = 8
    """The most restarts a spec may ask for (``SCALESWEEP_WIDTH_RESTARTS_MAX``)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Capacity:
        """From the settings (``worker_memory_mb`` None: the physical memory of this
        machine)."""
        worker_mb = settings.worker_memory_mb
        return cls(
            worker_memory_bytes=worker_mb * 2**20 if worker_mb else physical_memory_bytes(),
            gpu_memory_bytes=settings.gpu_memory_mb * 2**20,
            run_time_limit_s=settings.run_time_limit_s,
            cpu_flops=settings.worker_gflops * 1e9,
            gpu_flops=settings.gpu_tflops * 1e12,
            width_restarts=settings.width_restarts,
            max_restarts=settings.width_restarts_max,
        )


def physical_memory_bytes() -> int:
    """This machine's physical memory (the default worker memory)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_need(cfg: RunConfig) -> dict[str, int]:
    """Bytes a run must hold at once, by what holds them (its process apart): ``data`` (the
    float64 data, plus the training copy in float32), ``optimizer`` (parameters, gradient,
    trial and best points, L-BFGS history; none for ``convex``), ``matrices`` (quadratic:
    :data:`QUADRATIC_MATRICES` d x d; diagonal: a few d-vectors), ``chunk`` (an evaluation's
    and the sensing operator's blocks) and ``test`` (a block of fresh test samples)."""
    d, n = cfg.d, cfg.n
    width = 8 if cfg.training.dtype == "float64" else 4
    data = 8 * n * (d + 1) + (0 if width == 8 else width * n * (d + 1))
    optimizer = 0
    if cfg.training.optimizer != "convex":
        optimizer = width * n_params(cfg) * (6 + 2 * HISTORY_PAIRS)
    matrices = 8 * d * (QUADRATIC_MATRICES * d if cfg.model == "quadratic" else 8)
    on_gpu = cfg.training.device == "cuda"
    chunk = CHUNK_BYTES if on_gpu else CPU_CHUNK_BYTES
    if cfg.model == "quadratic":
        chunk += 8 * min(n, OPERATOR_ROWS) * d  # a block of the sensing operator
    test = 8 * 3 * min(cfg.measure.test_samples, TEST_CHUNK) * d
    return {"data": data, "optimizer": optimizer, "matrices": matrices, "chunk": chunk,
            "test": test}  # fmt: skip


def time_need_flops(cfg: RunConfig) -> float:
    """The least floating-point work of a run (see :data:`MIN_EVALUATIONS`): the passes over
    the data (a network's forward and backward matmuls, or a FISTA iteration's forward map,
    adjoint and eigen-decomposition), one certificate, the spectra and the test error."""
    d, n, m = float(cfg.d), float(cfg.n), float(cfg.width)
    quadratic = cfg.model == "quadratic"
    if cfg.training.optimizer == "convex":
        per_pass = (4.0 * n * d * d + EIGH_FLOPS * d**3) if quadratic else 4.0 * n * d
    else:
        per_pass = 4.0 * n * d * (m if quadratic else 1.0)
    certificate = (2.0 * n * d * d + EIGH_FLOPS * d**3) if quadratic else 2.0 * n * d
    spectra = EIGH_FLOPS * d**3 if quadratic and cfg.measure.spectrum else 0.0
    test = 2.0 * cfg.measure.test_samples * d * (m if quadratic else 1.0)
    return MIN_EVALUATIONS * per_pass + certificate + spectra + test


def _gib(nbytes: float) -> str:
    """Bytes in the largest binary unit that keeps the number below 1,024."""
    value, unit = float(nbytes), "bytes"
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            break
        value /= 1024
    return f"{value:.3g} {unit}"


def _duration(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.3g} days"
    return f"{seconds / 3600:.3g} h" if seconds >= 3600 else f"{seconds:.3g} s"


def _field(cfg: RunConfig, part: str, grid_field: str, width_field: str) -> str:
    """The spec field a need comes from: the one the researcher would change."""
    if part == "test":
        return "measure.test_samples"
    if part == "optimizer" and cfg.training.width is not None:
        return width_field
    if part in ("matrices", "optimizer") or (part == "data" and cfg.d >= cfg.n):
        return "grid.d"
    return grid_field


def check_run(
    cfg: RunConfig,
    capacity: Capacity,
    *,
    n_field: str = "grid.n",
    width_field: str = "training.width",
) -> None:
    """LimitError (422) naming the field when the run cannot fit the deployment's memory or
    finish within its time limit (module docstring); ``n_field``: where the run's n comes
    from (``grid.n`` or ``grid.alpha``), ``width_field`` its width (``training.width``,
    ``grid.width`` or ``grid.width_ratio``)."""
    asked = cfg.training.restarts
    if asked is not None and asked > capacity.max_restarts:
        raise LimitError(
            f"training.restarts = {asked} is more than this deployment allows "
            f"({capacity.max_restarts}, SCALESWEEP_WIDTH_RESTARTS_MAX)",
            422,
            "training.restarts",
        )
    on_gpu = cfg.training.device == "cuda"
    what = f"{cfg.model} d = {cfg.d}, n = {cfg.n}"
    if cfg.model == "quadratic":
        what += f", width {cfg.width}"
    need = memory_need(cfg)
    total = sum(need.values())
    have = capacity.gpu_memory_bytes if on_gpu else capacity.worker_memory_bytes - PROCESS_BYTES
    if total > have:
        part = max(need, key=lambda k: need[k])
        where = (
            f"the GPU has {_gib(capacity.gpu_memory_bytes)} (SCALESWEEP_GPU_MEMORY_MB)"
            if on_gpu
            else f"the largest worker has {_gib(capacity.worker_memory_bytes)} "
            "(SCALESWEEP_WORKER_MEMORY_MB)"
        )
        parts = ", ".join(f"{k} {_gib(v)}" for k, v in need.items() if v)
        raise LimitError(
            f"{what} needs at least {_gib(total)} of memory ({parts}); {where}",
            422,
            _field(cfg, part, n_field, width_field),
        )
    rate = capacity.gpu_flops if on_gpu else capacity.cpu_flops
    trainings = 1
    if cfg.model == "quadratic" and cfg.width < cfg.d:  # a narrow run may train its restarts
        trainings = asked if asked is not None else capacity.width_restarts
    seconds = trainings * time_need_flops(cfg) / rate
    if seconds > capacity.run_time_limit_s:
        field = (
            "measure.test_samples"
            if cfg.measure.test_samples * cfg.d > cfg.n * cfg.d
            else ("grid.d" if cfg.d * cfg.d > cfg.n else n_field)
        )
        raise LimitError(
            f"{what} takes at least {_duration(seconds)} ({MIN_EVALUATIONS} passes over its "
            f"data at {rate / 1e9:g} GFLOP/s"
            + (f", {trainings} restarts of a narrow network" if trainings > 1 else "")
            + f"); the per-run time limit is "
            f"{_duration(capacity.run_time_limit_s)} (SCALESWEEP_RUN_TIME_LIMIT_S)",
            422,
            field,
        )


def admit(
    cfgs: Iterable[RunConfig],
    capacity: Capacity,
    *,
    n_field: str = "grid.n",
    width_field: str = "training.width",
) -> None:
    """:func:`check_run` on every distinct shape of ``cfgs`` (seeds, weight decays and
    teachers cost the same), the largest first: the first refusal is raised."""
    shapes: dict[tuple[object, ...], RunConfig] = {}
    for cfg in cfgs:
        t = cfg.training
        key = (cfg.model, cfg.d, cfg.n, cfg.width, t.optimizer, t.dtype, t.device,
               cfg.measure.test_samples, cfg.measure.spectrum)  # fmt: skip
        shapes.setdefault(key, cfg)
    for cfg in sorted(shapes.values(), key=lambda c: -sum(memory_need(c).values())):
        check_run(cfg, capacity, n_field=n_field, width_field=width_field)


def admit_spec(spec: SweepSpec, capacity: Capacity, *, max_runs: int) -> None:
    """:func:`admit` on the runs of a sweep spec (at most ``max_runs + 1`` of them: a larger
    sweep is refused by the store for its size)."""
    n_field = "grid.alpha" if spec.grid.alpha is not None else "grid.n"
    width_axis = width_axis_name(spec.grid)
    width_field = "training.width" if width_axis is None else f"grid.{width_axis}"
    admit(
        itertools.islice(expand(spec), max_runs + 1),
        capacity,
        n_field=n_field,
        width_field=width_field,
    )
