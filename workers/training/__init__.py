"""Training a task's network runs to their certified global minima, as a pipeline.

The stages, one module each, in the order a run meets them:

* :mod:`.run` -- :class:`Run`, the one record of a run from the task function down (its
  problem, data on the device, certificate and corrections, learning curve, timings);
* :mod:`.batching` -- :func:`train`: runs grouped by shape, slots sized by the device's
  memory, out-of-memory halving, the float64 refinement of float32 runs; yields
  ``(index, outcome)`` as runs finish;
* :mod:`.scheduler` -- :class:`Batch`: the slots of one tensor program, continuous batching,
  evaluation, line search, update;
* :mod:`.optimizers` -- L-BFGS, gradient descent and Adam as classes, vectorised over the
  slots;
* :mod:`.stopping` -- the stop rules, polishing, and when to ask for a certificate;
* :mod:`.state` -- a slot's host-side state and a run's :class:`TrainOutcome`.
"""

from workers.training.batching import TaskBudget, train
from workers.training.run import Run, Timings
from workers.training.scheduler import Batch, Phase
from workers.training.state import TrainOutcome, TrainStopReason

__all__ = [
    "Batch",
    "Phase",
    "Run",
    "TaskBudget",
    "Timings",
    "TrainOutcome",
    "TrainStopReason",
    "train",
]
