"""Typed dependencies: one per resource on ``app.state``, plus the caller's identity.

``build_app``'s lifespan puts ``pipeline``, ``store``, ``conversations``, ``engine``, ``manifest`` and ``admission`` on
``app.state``; before that (the model is loading) every dependency answers 503.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Request

from app.api.auth import OPEN_TENANT
from app.api.errors import ServiceUnavailableError
from app.chat.admission import Admission
from app.chat.conversations import ConversationService
from app.chat.turn import Caller, ChatPipeline
from app.core.manifest import Manifest
from app.engine.base import Engine
from app.sessions.base import SessionStore


def _state(request: Request, name: str) -> Any:
    value = getattr(request.app.state, name, None)
    if value is None:
        raise ServiceUnavailableError("The server is starting; retry shortly.", retry_after=5)
    return value


def get_pipeline(request: Request) -> ChatPipeline:
    pipeline: ChatPipeline = _state(request, "pipeline")
    return pipeline


def get_store(request: Request) -> SessionStore:
    store: SessionStore = _state(request, "store")
    return store


def get_engine(request: Request) -> Engine:
    engine: Engine = _state(request, "engine")
    return engine


def get_manifest(request: Request) -> Manifest:
    manifest: Manifest = _state(request, "manifest")
    return manifest


def get_conversations(request: Request) -> ConversationService:
    conversations: ConversationService = _state(request, "conversations")
    return conversations


def get_admission(request: Request) -> Admission:
    admission: Admission = _state(request, "admission")
    return admission


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


PipelineDep = Annotated[ChatPipeline, Depends(get_pipeline)]
StoreDep = Annotated[SessionStore, Depends(get_store)]
EngineDep = Annotated[Engine, Depends(get_engine)]
ManifestDep = Annotated[Manifest, Depends(get_manifest)]
ConversationsDep = Annotated[ConversationService, Depends(get_conversations)]
AdmissionDep = Annotated[Admission, Depends(get_admission)]
TenantDep = Annotated[str, Depends(get_tenant)]
CallerDep = Annotated[Caller, Depends(get_caller)]
