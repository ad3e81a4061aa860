"""Structured logs: one JSON object per line, through the stdlib ``logging`` module.

Every line has ``ts`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger`` and ``msg``;
ids and other context passed with ``extra=`` become fields of their own, e.g.
``log.info("run recorded", extra={"run_id": 7, "sweep_id": 2})`` ->
``{"ts": "...", "level": "INFO", "logger": "scalesweep.runner", "msg": "run recorded",
"run_id": 7, "sweep_id": 2}``. ``scalesweep serve`` and ``python -m workers`` call
:func:`configure_logging`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

ID_FIELDS = ("sweep_id", "run_id", "runner_id")
"""The ids a record may carry (``extra=``); written right after ``msg``."""

_STANDARD = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
    | {"message", "asctime", "taskName"}
)
"""Attributes every LogRecord has: anything else on a record came from ``extra=``."""


def _plain(value: Any) -> Any:
    """JSON-able as is, or its ``str``."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


class JsonFormatter(logging.Formatter):
    """A LogRecord as one JSON line: ts, level, logger, msg, the ids, other extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC)
        doc: dict[str, Any] = {
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ID_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                doc[key] = _plain(value)
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in doc and not key.startswith("_"):
                doc[key] = _plain(value)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        # allow_nan=False would raise on a stray inf; a log line must never fail
        return json.dumps(doc, ensure_ascii=False, default=str)


def configure_logging(level: str | int | None = None, *, stream: TextIO | None = None) -> None:
    """JSON lines on ``stream`` (stderr) for every logger; replaces the root's handlers.

    ``level`` defaults to SCALESWEEP_LOG_LEVEL (INFO). Uvicorn's own loggers propagate here
    too (their handlers are removed; pass ``log_config=None`` to ``uvicorn.run`` so that it
    does not install them again), so a server's output is JSON throughout; uvicorn's access
    log is off (the API logs every request itself); alembic and httpx stay at WARNING.
    """
    if level is None:
        level = os.environ.get("SCALESWEEP_LOG_LEVEL", "INFO")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for quiet in ("alembic", "httpx", "httpcore"):  # migrations; client calls (e.g. health)
        logging.getLogger(quiet).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        uv = logging.getLogger(name)
        uv.handlers.clear()
        uv.propagate = True
    # the API's middleware logs every request (scalesweep.api); uvicorn's access log repeats it
    logging.getLogger("uvicorn.access").disabled = True
