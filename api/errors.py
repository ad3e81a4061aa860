"""Domain errors to HTTP, in one table; routes raise service errors, never HTTPException.

Starlette resolves handlers along the exception's MRO, so one entry covers every subclass
(``NotFoundError`` covers ``SweepNotFound`` and ``RunNotFound``). Bodies have FastAPI's
shape: ``{"detail": "..."}``, and for 422 a list of ``{loc, msg, type}`` naming the field.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pydantic
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from api.deps import Forbidden, Unauthorized
from service.errors import (
    ConflictError,
    FitError,
    LimitError,
    NotFoundError,
    SpecError,
    StorageError,
)

log = logging.getLogger(__name__)

ERROR_STATUS: dict[type[Exception], int] = {
    NotFoundError: 404,  # SweepNotFound, RunNotFound
    SpecError: 422,
    FitError: 422,
    LimitError: 422,  # default; a LimitError carries its own status_code (413, 429)
    ConflictError: 409,
    StorageError: 503,
    Unauthorized: 401,
    Forbidden: 403,  # a read token on a write route
    pydantic.ValidationError: 422,  # a merged spec (e.g. extend) that fails validation
}

_SOURCES = ("query", "path", "body")


def _loc(request: Request, field: str | None) -> list[str]:
    """FastAPI-style location: GET routes take query parameters, POST routes a body."""
    parts = field.split(".") if field else []
    if parts and parts[0] in _SOURCES:
        return parts
    return ["query" if request.method == "GET" else "body", *parts]


def _status(exc: Exception) -> int:
    if isinstance(exc, LimitError):
        return exc.status_code
    for cls in type(exc).__mro__:
        if cls in ERROR_STATUS:
            return ERROR_STATUS[cls]
    return 500  # pragma: no cover - only registered types reach the handler


def _json_safe(obj: Any) -> Any:
    """What an error body may echo of an invalid input, made writable as JSON: inf/nan as
    strings, and text that is not UTF-8 (a lone surrogate such as ``"\\ud800"``) with its
    bad characters escaped; rendering either would fail and turn a 422 into a 500."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, str):
        return obj.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


async def handle_request_validation(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 body, safe for inputs such as 1e999 that parse to inf."""
    assert isinstance(exc, RequestValidationError)
    errors = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":  # FastAPI says only "JSON decode error"
            reason = (err.get("ctx") or {}).get("error", "")
            where = err["loc"][1] if len(err["loc"]) > 1 else "?"
            err = {**err, "msg": f"the body is not valid JSON: {reason} at character {where}"}
        errors.append(err)
    return JSONResponse({"detail": _json_safe(jsonable_encoder(errors))}, status_code=422)


async def handle_domain_error(request: Request, exc: Exception) -> JSONResponse:
    """Answer a domain error with the status from ERROR_STATUS and a ``detail`` body."""
    status = _status(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    retry_after = getattr(exc, "retry_after", None)
    if status == 429 and retry_after is not None:
        headers = {"Retry-After": str(retry_after)}
    detail: object
    if isinstance(exc, pydantic.ValidationError):
        detail = _json_safe(jsonable_encoder(exc.errors(include_url=False, include_context=False)))
    elif status == 422:
        kind = "limit_error" if isinstance(exc, LimitError) else "value_error"
        detail = [
            {"type": kind, "loc": _loc(request, getattr(exc, "field", None)), "msg": str(exc)}
        ]
    else:
        detail = str(exc)
    if status >= 500:
        log.warning("%s %s -> %d: %s", request.method, request.url.path, status, exc)
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


_UNPARSABLE_BODY = "There was an error parsing the body"


def _unparsable_message(cause: BaseException | None) -> str:
    """Why a body could not be read, from what the JSON decoder raised."""
    if isinstance(cause, RecursionError):
        return (
            "the body nests too deeply to be read (JSON arrays and objects more than about "
            "1,000 levels deep; a sweep spec nests at most 5)"
        )
    if isinstance(cause, UnicodeDecodeError):
        return f"the body is not UTF-8 text (byte {cause.start}: {cause.reason})"
    return "the body is not valid JSON"


async def handle_http_error(request: Request, exc: Exception) -> JSONResponse | Response:
    """FastAPI's answer, except a body it could not parse (not UTF-8, nested too deeply).

    FastAPI answers those with an undocumented 400; they are invalid input like malformed
    JSON, so they get the same 422 ``json_invalid`` body that a JSON decode error gets, with
    a message saying what was wrong (FastAPI chains the decoder's exception as the cause).
    """
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400 and exc.detail == _UNPARSABLE_BODY:
        msg = _unparsable_message(exc.__cause__)
        detail = [{"type": "json_invalid", "loc": ["body"], "msg": msg}]
        return JSONResponse({"detail": detail}, status_code=422)
    return await http_exception_handler(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    """Register handle_domain_error for every type in ERROR_STATUS."""
    for exc_type in ERROR_STATUS:
        app.add_exception_handler(exc_type, handle_domain_error)
    app.add_exception_handler(RequestValidationError, handle_request_validation)
    app.add_exception_handler(HTTPException, handle_http_error)
