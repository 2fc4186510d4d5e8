"""``GET /v1/sessions/{id}`` (export) and ``DELETE /v1/sessions/{id}`` (erase now)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from app.api.deps import StoreDep, TenantDep
from app.api.errors import NotFoundError
from app.api.protocol import ErrorResponse
from app.core.messages import SESSION_ID_RE

router = APIRouter()
SessionId = Annotated[str, Path(pattern=SESSION_ID_RE, description="The session id.")]
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (400, 401, 404, 503)}


def _not_found(session_id: str) -> NotFoundError:
    return NotFoundError(
        f"No session {session_id!r} (it never existed, expired or was deleted).", code="session_not_found"
    )


@router.get("/v1/sessions/{session_id}", responses=_ERRORS)
async def export_session(session_id: SessionId, store: StoreDep, tenant: TenantDep) -> dict[str, Any]:
    """The stored session: persona, messages (with strategies), turns, created/updated, token usage, and the
    tenant's storage quota (``quota``: live sessions and the cap on them, stored turns and the cap per session)."""
    record = await store.get(tenant, session_id)
    if record is None:
        raise _not_found(session_id)
    quota = {**(await store.usage(tenant)).to_dict(), "stored_turns": record.stored_turns}
    return {"object": "session", **record.to_dict(), "quota": quota}


@router.delete("/v1/sessions/{session_id}", status_code=204, response_class=Response, responses=_ERRORS)
async def delete_session(session_id: SessionId, store: StoreDep, tenant: TenantDep) -> Response:
    """Erase the session now; a second delete (or any later read) is a 404."""
    if not await store.delete(tenant, session_id):
        raise _not_found(session_id)
    return Response(status_code=204)
