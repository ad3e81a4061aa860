"""What a run needs, estimated from its configuration alone: memory on its device.

One place for the numbers that packing (:mod:`service.orchestration.packing`), the Ray
executor (the share of a GPU a task asks for) and admission control agree on. The worker
itself checks against the device's real free memory (``workers.training.batching``) and
halves its batch on an out-of-memory error, so these estimates decide plans, never
correctness.
"""

from __future__ import annotations

from collections.abc import Sequence

from service.spec import RunConfig

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
