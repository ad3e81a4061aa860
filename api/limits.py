"""Request limits: body size (413) and sweep submissions per token per minute (429).

* :class:`BodySizeLimit` is ASGI middleware: a declared ``Content-Length`` above
  SCALESWEEP_MAX_BODY_BYTES is refused before a byte is read, and a body without one
  (chunked) is counted as it streams in and refused as soon as it passes the limit. The
  app only ever sees a body within the limit, so a refusal stores nothing.
* :func:`limit_submissions` is a dependency of POST /v1/sweeps: a sliding window of 60 s
  per token (per client address with auth off); above SCALESWEEP_SUBMISSIONS_PER_MINUTE
  it answers 429 with ``Retry-After`` before anything is stored. Submissions are counted in
  the database (``store.record_submission``), so the limit holds across several API
  processes on one database, and across restarts.
"""

from __future__ import annotations

import math

from fastapi import Request
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import AuthDep, SettingsDep, StoreDep
from service.errors import LimitError

WINDOW_S = 60.0


class BodyTooLarge(LimitError):
    """A request body above the configured size (HTTP 413)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            f"request body larger than {max_bytes} bytes (SCALESWEEP_MAX_BODY_BYTES)", 413
        )


class RateLimited(LimitError):
    """Too many submissions in the window (HTTP 429); ``retry_after`` in whole seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, 429)
        self.retry_after = retry_after


class BodySizeLimit:
    """ASGI middleware refusing request bodies above ``max_bytes`` with 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = {"detail": str(BodyTooLarge(self.max_bytes))}
        await JSONResponse(body, status_code=413, headers={"Connection": "close"})(
            scope, receive, send
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                size = -1
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
        elif "transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body at all (GET, SSE)
            return
        chunks: list[bytes] = []
        total = 0
        while True:  # read (and count) the actual body, whatever the header said
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # e.g. http.disconnect, for streaming responses

        await self.app(scope, replay, send)


def limit_submissions(
    request: Request, principal: AuthDep, store: StoreDep, settings: SettingsDep
) -> None:
    """429 with Retry-After above SCALESWEEP_SUBMISSIONS_PER_MINUTE per token (or address)."""
    if principal is not None:
        key = f"token:{principal.token_id if principal.token_id is not None else principal.name}"
    else:
        key = f"addr:{request.client.host if request.client else 'unknown'}"
    limit = settings.submissions_per_minute
    wait = store.record_submission(key, limit=limit, window_s=WINDOW_S)
    if wait is not None:
        raise RateLimited(
            f"too many submissions: at most {limit} per minute "
            f"(SCALESWEEP_SUBMISSIONS_PER_MINUTE); retry in {math.ceil(wait)} s",
            max(1, math.ceil(wait)),
        )
