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


def stream(seed: int, name: StreamName, index: int = 0) -> np.random.Generator:
    """The generator of stream ``name`` for run seed ``seed``; ``index`` > 0: the index-th
    independent variant of it (a narrow network's restarts draw ``init`` 1, 2, ...; index 0
    is the stream itself, so the first training is the same with or without restarts)."""
    key = (_STREAM_IDS[name],) if index == 0 else (_STREAM_IDS[name], index)
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=key))
