"""Typed dependencies: routers take services from ``app.state`` through these."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.api.errors import ServiceUnavailableError
from app.chat.service import ChatService


def get_chat_service(request: Request) -> ChatService:
    service: ChatService | None = getattr(request.app.state, "chat", None)
    if service is None:
        raise ServiceUnavailableError("The server is starting; retry shortly.", retry_after=5)
    return service


def get_request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


ChatServiceDep = Annotated[ChatService, Depends(get_chat_service)]
RequestIdDep = Annotated[str, Depends(get_request_id)]
