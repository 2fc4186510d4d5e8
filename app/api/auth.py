"""API keys: when configured, every ``/v1/*`` route needs ``Authorization: Bearer <key>``; the key names a tenant.

Sessions are namespaced by tenant, so one tenant can never read, continue or delete another's session. With no keys
configured the server runs in open dev mode (one shared tenant) and says so at start-up.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.errors import APIError, send_error

OPEN_TENANT = "public"


class ApiKeyError(ValueError):
    """The key configuration is malformed; the message names the source and line."""


def parse_api_keys(inline: str | None, file: Path | None) -> dict[str, str]:
    """Keys from ``SWEETIE_API_KEYS`` (``key:tenant,key2:tenant2``) and/or a file (``key [tenant]`` per line).

    A key without a tenant is its own tenant.
    """
    keys: dict[str, str] = {}
    entries: list[tuple[str, str]] = []
    if inline:
        entries += [("SWEETIE_API_KEYS", item.strip().replace(":", " ", 1)) for item in inline.split(",")]
    if file is not None:
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ApiKeyError(f"cannot read API key file {file}: {exc.strerror}") from exc
        entries += [(f"{file}:{n}", line.split("#", 1)[0].strip()) for n, line in enumerate(lines, 1)]
    for source, entry in entries:
        if not entry:
            continue
        parts = entry.split()
        if len(parts) > 2 or len(parts[0]) < 8:
            raise ApiKeyError(f"{source}: expected 'key [tenant]' with a key of at least 8 characters")
        keys[parts[0]] = parts[1] if len(parts) == 2 else parts[0]
    return keys


class ApiKeyMiddleware:
    """Pure-ASGI Bearer check for ``/v1/*``; sets ``scope["state"]["tenant"]``."""

    def __init__(self, app: ASGIApp, keys: dict[str, str]) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        if not self.keys:
            state["tenant"] = OPEN_TENANT
            await self.app(scope, receive, send)
            return
        if not str(scope.get("path", "")).startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        tenant = self._tenant(scope)
        if tenant is None:
            await self._reject(scope, send)
            return
        state["tenant"] = tenant
        await self.app(scope, receive, send)

    def _tenant(self, scope: Scope) -> str | None:
        header = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"authorization"), "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        token = token.strip()
        for key, tenant in self.keys.items():  # constant-time compare against every key
            if hmac.compare_digest(key.encode(), token.encode()):
                return tenant
        return None

    async def _reject(self, scope: Scope, send: Send) -> None:
        has_header = any(k == b"authorization" for k, _ in scope.get("headers", []))
        message = (
            "Incorrect API key provided."
            if has_header
            else "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'."
        )
        error = APIError(message, status_code=401, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        await send_error(send, error)
