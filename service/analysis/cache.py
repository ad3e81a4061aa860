"""A small LRU cache of query answers keyed by the state of a sweep.

A key holds the store's identity, the sweep id, the number of runs that have ended (so any
new result invalidates it) and the query's parameters; answers are immutable pydantic
models, so a hit is returned as is.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

T = TypeVar("T")


class QueryCache:
    """Thread-safe LRU of computed answers."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._data: OrderedDict[Hashable, object] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_compute(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The cached answer for ``key``, computing (outside the lock) on a miss."""
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                self.hits += 1
                return self._data[key]  # type: ignore[return-value]
            self.misses += 1
        value = compute()
        with self._lock:
            self._data[key] = value
            while len(self._data) > self._size:
                self._data.popitem(last=False)
        return value

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._data.clear()


CACHE = QueryCache()
"""The process-wide cache the API uses."""
