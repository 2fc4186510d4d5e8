"""Typed dependencies: routers take services and caller identity from the request through these."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from app.api.auth import OPEN_TENANT
from app.api.errors import ServiceUnavailableError
from app.chat.service import Caller, ChatService


def get_chat_service(request: Request) -> ChatService:
    service: ChatService | None = getattr(request.app.state, "chat", None)
    if service is None:
        raise ServiceUnavailableError("The server is starting; retry shortly.", retry_after=5)
    return service


def get_tenant(request: Request) -> str:
    return str(getattr(request.state, "tenant", OPEN_TENANT))


def get_caller(
    request: Request,
    x_session_id: Annotated[str | None, Header(description="Continue this stored session.")] = None,
) -> Caller:
    return Caller(
        tenant=get_tenant(request),
        request_id=str(getattr(request.state, "request_id", "")),
        session_id=x_session_id or None,
    )


ChatServiceDep = Annotated[ChatService, Depends(get_chat_service)]
TenantDep = Annotated[str, Depends(get_tenant)]
CallerDep = Annotated[Caller, Depends(get_caller)]
