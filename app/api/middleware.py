"""Pure-ASGI middleware: request id, body-size limit and the canonical log line.

Pure ASGI (not ``@app.middleware("http")``) so client disconnects reach streaming handlers untouched.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import APIError, ServiceUnavailableError, send_error
from app.observability import REJECTED, REQUEST_LATENCY, REQUEST_LOG, REQUESTS

log = structlog.get_logger("app.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
_SKIP_LOG = {"/health", "/ready", "/metrics"}


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class RequestContextMiddleware:
    """Bind a request id (honouring ``X-Request-Id``), enforce the body limit, log one line per request."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _REQUEST_ID.match(incoming) else f"req-{uuid.uuid4().hex}"
        path = scope.get("path", "")
        route = path if path.startswith("/v1/") or path in _SKIP_LOG else "other"
        record: dict[str, Any] = {"method": scope.get("method"), "path": path}
        scope.setdefault("state", {})["request_id"] = request_id
        token = REQUEST_LOG.set(record)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            length = _header(scope, b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
                await self._reject_too_large(send_with_id)
            else:
                await self.app(scope, self._limited(receive, send_with_id), send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            outcome = record.pop("outcome", None) or str(status)
            REQUESTS.labels(route=route, status=outcome).inc()
            REQUEST_LATENCY.labels(route=route).observe(elapsed)
            if path not in _SKIP_LOG:
                log.info("request", status=status, outcome=outcome, duration_ms=round(elapsed * 1000, 1), **record)
            structlog.contextvars.unbind_contextvars("request_id")
            REQUEST_LOG.reset(token)

    def _limited(self, receive: Receive, send: Send) -> Receive:
        """Stop reading a chunked body once it exceeds the limit (Content-Length is checked up front)."""
        seen = 0
        limit = self.max_body_bytes

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _BodyTooLarge(limit)
            return message

        return wrapped

    async def _reject_too_large(self, send: Send) -> None:
        REJECTED.labels(reason="body_too_large").inc()
        await send_error(send, _BodyTooLarge(self.max_body_bytes))


class _BodyTooLarge(APIError):
    status_code = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"Request body too large: the limit is {limit} bytes.", code="request_too_large")


class DrainGate:
    """While the server drains, new ``/v1`` requests get a 503 (in-flight ones carry on)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        admission = getattr(scope["app"].state, "admission", None) if "app" in scope else None
        path = str(scope.get("path", ""))
        if scope["type"] == "http" and path.startswith("/v1/") and admission is not None and admission.draining:
            REJECTED.labels(reason="draining").inc()
            await send_error(send, ServiceUnavailableError("The server is shutting down; retry on another replica."))
            return
        await self.app(scope, receive, send)
