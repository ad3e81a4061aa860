"""Named, independent random streams derived from a run's seed.

Every random draw of a run comes from ``stream(seed, name)``: the same (seed, name) gives
the same numbers on every machine, and different names give independent streams
(numpy's SeedSequence spawn keys), so e.g. more test samples never change the training data.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

StreamName = Literal["teacher", "train", "init", "test", "bootstrap"]
_STREAM_IDS: dict[str, int] = {"teacher": 1, "train": 2, "init": 3, "test": 4, "bootstrap": 5}


def stream(seed: int, name: StreamName) -> np.random.Generator:
    """The generator of stream ``name`` for run seed ``seed``."""
    return np.random.default_rng(
        np.random.SeedSequence(entropy=seed, spawn_key=(_STREAM_IDS[name],))
    )
