"""``GET /v1/sessions/{id}`` (export) and ``DELETE /v1/sessions/{id}`` (erase now)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from app.api.deps import ChatServiceDep, TenantDep
from app.api.errors import NotFoundError
from app.sessions.base import validate_session_id

router = APIRouter()


def _not_found(session_id: str) -> NotFoundError:
    return NotFoundError(
        f"No session {session_id!r} (it never existed, expired or was deleted).", code="session_not_found"
    )


@router.get("/v1/sessions/{session_id}")
async def export_session(session_id: str, service: ChatServiceDep, tenant: TenantDep) -> dict[str, Any]:
    """The stored session: persona, messages (with strategies), turns, created/updated, usage."""
    validate_session_id(session_id)
    record = await service.store.get(tenant, session_id)
    if record is None:
        raise _not_found(session_id)
    return {"object": "session", **record.to_dict()}


@router.delete("/v1/sessions/{session_id}", status_code=204, response_class=Response)
async def delete_session(session_id: str, service: ChatServiceDep, tenant: TenantDep) -> Response:
    """Erase the session now; a second delete (or any later read) is a 404."""
    validate_session_id(session_id)
    if not await service.store.delete(tenant, session_id):
        raise _not_found(session_id)
    return Response(status_code=204)
