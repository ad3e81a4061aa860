"""The exception tree of scalesweep.

::

    SweepServiceError
    ├── SpecError            invalid sweep spec or run configuration (HTTP 422)
    ├── NotFoundError        unknown id (HTTP 404)
    │   ├── SweepNotFound
    │   └── RunNotFound
    ├── ConflictError        the request contradicts stored state (HTTP 409)
    ├── LimitError           a configured limit was exceeded (HTTP 413/422/429)
    ├── StorageError         the database failed (HTTP 503)
    ├── FitError             a fit cannot be made from the data given
    ├── RunFailed            a run ended without a trustworthy result (diverged, timed out, ...)
    └── ExecutionError       a run did not come back from its executor (the runner retries it)
        ├── WorkerLost       the worker process or its node died while the task ran
        ├── TaskRaised       the task function raised (or returned the wrong number of results)
        └── TaskCancelled    the task was cancelled before it returned
"""

from __future__ import annotations


class SweepServiceError(Exception):
    """Base class of every error scalesweep raises on purpose."""


class SpecError(SweepServiceError, ValueError):
    """A sweep spec or run configuration is invalid; ``field`` names the offending field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFoundError(SweepServiceError, KeyError):
    """An id that is not in the store."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain message
        return str(self.args[0]) if self.args else ""


class SweepNotFound(NotFoundError):
    """No sweep with that id."""


class RunNotFound(NotFoundError):
    """No run with that id."""


class ConflictError(SweepServiceError):
    """The request contradicts the stored state (e.g. extending a cancelled sweep)."""


class LimitError(SweepServiceError):
    """A configured limit was exceeded; ``status_code`` is the HTTP status to answer with."""

    def __init__(self, message: str, status_code: int = 422, field: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.field = field


class StorageError(SweepServiceError):
    """The database operation failed."""


class FitError(SweepServiceError, ValueError):
    """A fit cannot be made (too few points, non-positive values, ...)."""


class RunFailed(SweepServiceError):
    """A run ended without a trustworthy result; the message says why."""

    def __init__(self, message: str, stop_reason: str = "failed") -> None:
        super().__init__(message)
        self.stop_reason = stop_reason


class ExecutionError(SweepServiceError):
    """A run did not come back from its executor; the runner hands it back for a retry."""


class WorkerLost(ExecutionError):
    """The worker process or its node died while the task ran."""


class TaskRaised(ExecutionError):
    """The task function raised (or returned the wrong number of results)."""


class TaskCancelled(ExecutionError):
    """The task was cancelled before it returned."""
