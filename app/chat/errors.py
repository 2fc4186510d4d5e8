"""Errors of the chat pipeline, raised where they happen and mapped to HTTP in one place (``app/api/errors.py``).

    ChatError
    ├── InvalidChatRequest      the request asks for something impossible (400); ``param`` names the field
    │   └── ContextTooLong      prompt + completion over the model's context (400 context_length_exceeded)
    ├── UnknownModel            (404 model_not_found)
    ├── NotFound                a conversation or stored response that does not exist for this tenant (404)
    ├── Overloaded              admission refused before any stream started (429, Retry-After)
    │   └── RateLimited         the caller's tenant is over one of its limits (429 rate_limit_exceeded, x-ratelimit-*)
    ├── Unavailable             not ready or draining (503, Retry-After)
    └── GenerationFailed        the engine failed while generating (500; in-band once a stream started)

Session errors (``app/sessions/base.py``) are the other domain family the pipeline lets through.
"""

from __future__ import annotations

from app.chat.tenants import RateStatus


class ChatError(Exception):
    """Base of the chat pipeline's errors. ``code`` and ``param`` follow OpenAI's error fields."""

    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class InvalidChatRequest(ChatError):
    """The request is well-formed JSON but asks for something this server cannot do."""

    code = "invalid_value"


class ContextTooLong(InvalidChatRequest):
    code = "context_length_exceeded"


class UnknownModel(ChatError):
    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(
            f"The model `{model}` does not exist or you do not have access to it.", param="model", code=self.code
        )


class NotFound(ChatError):
    """A conversation, stored response or item this tenant does not have (never created, expired, deleted, another
    tenant's, or a ``store: false`` response)."""

    code = "not_found"


class Overloaded(ChatError):
    """No generation slot: the queue is full (``server_overloaded``) or the wait ran out (``queue_timeout``)."""

    def __init__(self, message: str, *, code: str, retry_after_s: int) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s


class RateLimited(Overloaded):
    """The tenant is over its rpm or tpm, or has its most generations running and waiting (``reason`` says which:
    ``requests``, ``tokens``, ``streams``, ``fair_share``); other tenants are unaffected. ``status`` holds the
    tenant's budgets for the ``x-ratelimit-*`` headers."""

    def __init__(self, message: str, *, reason: str, retry_after_s: int, status: RateStatus | None = None) -> None:
        super().__init__(message, code="rate_limit_exceeded", retry_after_s=retry_after_s)
        self.reason = reason
        self.status = status


class Unavailable(ChatError):
    """The server cannot take generations now (model loading, draining)."""

    code = "service_unavailable"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class GenerationFailed(ChatError):
    """The engine failed mid-generation; not the client's fault."""

    code = "engine_error"
