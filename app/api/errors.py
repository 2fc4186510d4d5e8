"""OpenAI-shaped HTTP errors, and the mapping of every domain error to them, in one place.

Every error body is ``{"error": {"message", "type", "param", "code"}}``. Client mistakes are 4xx with a message that
says what was wrong and which parameter; unexpected failures are a 500 with no traceback in the body. The chat
pipeline raises domain errors (``app/chat/errors.py``, ``app/sessions/base.py``); :func:`to_api_error` turns them into
HTTP errors, for responses and for in-band stream errors alike.
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from app.api.protocol import ErrorInfo, ErrorResponse
from app.chat.errors import (
    ChatError,
    ContextTooLong,
    GenerationFailed,
    InvalidChatRequest,
    NotFound,
    Overloaded,
    RateLimited,
    Unavailable,
    UnknownModel,
)
from app.chat.tenants import RateStatus
from app.observability import TENANT_REJECTED, tenant_label
from app.sessions.base import (
    InvalidHistory,
    InvalidSessionId,
    SessionBusy,
    SessionConflict,
    SessionError,
    SessionQuotaExceeded,
    SessionStoreUnavailable,
)

log = structlog.get_logger("app.errors")


class APIError(Exception):
    """An error with an HTTP status and an OpenAI error body."""

    status_code = 400
    error_type = "invalid_request_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status_code: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}
        if status_code is not None:
            self.status_code = status_code

    def info(self) -> ErrorInfo:
        return ErrorInfo(message=self.message, type=self.error_type, param=self.param, code=self.code)

    def body(self) -> dict[str, Any]:
        return ErrorResponse(error=self.info()).model_dump()


class InvalidRequestError(APIError):
    """400: the request is malformed or asks for something impossible."""


class NotFoundError(APIError):
    status_code = 404


class ServiceUnavailableError(APIError):
    """503: not ready, draining or a dependency is down; the client should retry later."""

    status_code = 503
    error_type = "service_unavailable"

    def __init__(self, message: str, *, retry_after: int = 1, code: str | None = "service_unavailable") -> None:
        super().__init__(message, code=code, headers={"Retry-After": str(retry_after)})


class TooManyRequestsError(APIError):
    status_code = 429
    error_type = "rate_limit_error"


class EngineFailureError(APIError):
    status_code = 500
    error_type = "server_error"


def to_api_error(exc: ChatError | SessionError) -> APIError:
    """The HTTP error for a domain error of the chat pipeline or the session store."""
    if isinstance(exc, ChatError):
        return _chat_error(exc)
    return _session_error(exc)


def _chat_error(exc: ChatError) -> APIError:
    if isinstance(exc, InvalidChatRequest | ContextTooLong):
        return InvalidRequestError(exc.message, param=exc.param, code=exc.code)
    if isinstance(exc, UnknownModel | NotFound):
        return NotFoundError(exc.message, param=exc.param, code=exc.code)
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after_s), **rate_limit_headers(exc.status)}
        error = TooManyRequestsError(exc.message, code=exc.code, headers=headers)
        error.error_type = "tokens" if exc.reason == "tpm" else "requests"  # as OpenAI's rate-limit errors
        return error
    if isinstance(exc, Overloaded):
        return TooManyRequestsError(exc.message, code=exc.code, headers={"Retry-After": str(exc.retry_after_s)})
    if isinstance(exc, Unavailable):
        return ServiceUnavailableError(exc.message, retry_after=exc.retry_after_s)
    if isinstance(exc, GenerationFailed):
        return EngineFailureError(exc.message, code=exc.code)
    return EngineFailureError("The server had an error while processing your request.")


def _session_error(exc: SessionError) -> APIError:
    if isinstance(exc, InvalidSessionId):
        return InvalidRequestError(str(exc), param="session_id", code="invalid_session_id")
    if isinstance(exc, InvalidHistory):
        return InvalidRequestError(str(exc), param="messages", code="invalid_history")
    if isinstance(exc, SessionBusy):
        retry = str(max(1, round(exc.retry_after)))
        return APIError(
            "Another turn of this session is in progress; retry when it has finished.",
            status_code=409,
            code="session_busy",
            headers={"Retry-After": retry},
        )
    if isinstance(exc, SessionConflict):
        return APIError(str(exc), status_code=409, param="messages", code="session_conflict")
    if isinstance(exc, SessionQuotaExceeded):
        error = TooManyRequestsError(str(exc), code="session_quota_exceeded", headers={"x-should-retry": "false"})
        error.error_type = "insufficient_quota"  # as OpenAI's quota errors; not worth an automatic retry
        return error
    if isinstance(exc, SessionStoreUnavailable):
        return ServiceUnavailableError(
            "Session memory is temporarily unavailable; retry shortly (requests without a session still work).",
            retry_after=max(1, round(exc.retry_after)),
            code="session_store_unavailable",
        )
    return APIError("Session error.", status_code=500, code="session_error")


def rate_limit_headers(status: RateStatus | None) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` headers for a tenant's rpm/tpm budgets
    (none for a limit the tenant does not have)."""
    headers: dict[str, str] = {}
    if status is None:
        return headers
    for kind, budget in (("requests", status.requests), ("tokens", status.tokens)):
        if budget is not None:
            headers[f"x-ratelimit-limit-{kind}"] = str(budget.limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(budget.remaining)
            headers[f"x-ratelimit-reset-{kind}"] = duration(budget.reset_s)
    return headers


def duration(seconds: float) -> str:
    """A wait the way OpenAI's reset headers write it: ``20ms``, ``1s``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


async def send_error(send: Send, error: APIError) -> None:
    """Send ``error`` as a complete response from pure-ASGI middleware."""
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _AsciiJSONResponse(JSONResponse):
    """Error bodies may echo client input; ASCII escapes keep any such input from breaking the response."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode()


def error_response(error: APIError) -> JSONResponse:
    return _AsciiJSONResponse(error.body(), status_code=error.status_code, headers=error.headers)


_TYPE_SEGMENTS = {"str", "int", "float", "bool", "list", "dict", "none", "literal"}


def _param_from_loc(loc: tuple[int | str, ...]) -> str | None:
    """``('body', 'messages', 0, 'role')`` -> ``messages[0].role``; union-branch names are dropped."""
    parts: list[str] = []
    for segment in loc[1:] if loc and loc[0] in {"body", "path", "query", "header"} else loc:
        if isinstance(segment, int):
            parts.append(f"[{segment}]")
            continue
        if segment.lower() in _TYPE_SEGMENTS or any(ch in segment for ch in "[]-"):
            break
        parts.append(f".{segment}" if parts else segment)
    return "".join(parts) or None


def validation_error(exc: RequestValidationError) -> APIError:
    """Turn FastAPI's validation error into one clear OpenAI-style message."""
    errors = list(exc.errors())
    first = errors[0] if errors else {"type": "invalid", "loc": (), "msg": "invalid request"}
    kind = str(first.get("type", ""))
    param = _param_from_loc(tuple(first.get("loc", ())))
    if kind == "json_invalid":
        return InvalidRequestError(
            "We could not parse the JSON body of your request. The body must be a valid JSON object.",
            code="invalid_json",
        )
    if kind in {"model_attributes_type", "dict_type", "missing"} and param is None:
        return InvalidRequestError("The request body must be a JSON object.", code="invalid_type")
    if kind == "missing":
        return InvalidRequestError(
            f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
        )
    if kind == "too_short" and param == "messages":
        return InvalidRequestError("'messages' must contain at least one message.", param=param, code="empty_array")
    message = str(first.get("msg", "invalid value"))
    number = "integer" if isinstance(first.get("input"), int) else "decimal"
    code = {
        "literal_error": "invalid_value",
        "greater_than_equal": f"{number}_below_min_value",
        "greater_than": f"{number}_below_min_value",
        "less_than_equal": f"{number}_above_max_value",
        "less_than": f"{number}_above_max_value",
        "too_long": "array_above_max_length",
    }.get(kind, "invalid_type" if kind.endswith(("_type", "_parsing")) else "invalid_value")
    return InvalidRequestError(f"Invalid value for '{param}': {message}.", param=param, code=code)


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, APIError)
        return error_response(exc)

    async def on_validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(validation_error(exc))

    async def on_http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        kind = "not_found" if exc.status_code == 404 else "invalid_request_error"
        error = APIError(str(exc.detail), status_code=exc.status_code, code=kind, headers=dict(exc.headers or {}))
        return error_response(error)

    async def on_domain_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ChatError | SessionError)
        if isinstance(exc, SessionQuotaExceeded):
            tenant = str(getattr(request.state, "tenant", ""))
            TENANT_REJECTED.labels(tenant=tenant_label(tenant), reason="session_quota").inc()
        return error_response(to_api_error(exc))

    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled_error", error_type=type(exc).__name__)
        return error_response(EngineFailureError("The server had an error while processing your request."))

    app.add_exception_handler(APIError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(ChatError, on_domain_error)
    app.add_exception_handler(SessionError, on_domain_error)
    app.add_exception_handler(Exception, on_unexpected)
