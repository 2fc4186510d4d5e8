"""API keys: when configured, every ``/v1/*`` route needs ``Authorization: Bearer <key>``; the key names a tenant.

Sessions are namespaced by tenant, so one tenant can never read, continue or delete another's session. With no keys
configured the server runs in open dev mode (one shared tenant) and says so at start-up.

Key file (``SWEETIE_API_KEYS_FILE``), one key per line, ``#`` starts a comment::

    # key                     tenant     limits (each optional; the rest come from settings)
    sk-team-a-0001            team-a     rpm=600 tpm=200000 max_streams=8 max_queued=16 max_sessions=5000
    sk-team-a-0002            team-a
    sk-team-b-0001            team-b     rpm=60

A key has at least 8 characters; without a tenant it is its own tenant. Limits belong to the tenant: they may be
written on any of its lines, and two lines may not give one tenant different values. ``SWEETIE_API_KEYS`` takes the
same entries, comma-separated, with ``key:tenant`` (``k1:team-a rpm=600,k2:team-b``). A malformed entry is an
error naming the file, line and field, never the key. The table is swapped whole on reload (``KeyTable.replace``):
a removed key is refused from the next request on, while requests already admitted finish.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, field
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.errors import APIError, send_error
from app.chat.tenants import LIMIT_FIELDS, TenantLimits, parse_limit

OPEN_TENANT = "public"
_SHOWN_NAME = re.compile(r"[a-z_]{1,20}")  # a field name safe to echo (a pasted key is never echoed)


class ApiKeyError(ValueError):
    """The key configuration is malformed; the message names the source, line and field (never a key)."""


@dataclass(frozen=True)
class ApiKeys:
    """The parsed key configuration: key -> tenant, and the limits each tenant's key lines set."""

    tenants: dict[str, str] = field(default_factory=dict)
    limits: dict[str, TenantLimits] = field(default_factory=dict)

    @property
    def tenant_names(self) -> set[str]:
        return set(self.tenants.values())

    def __bool__(self) -> bool:
        return bool(self.tenants)


def parse_api_keys(inline: str | None, file: Path | None) -> ApiKeys:
    """Keys from ``SWEETIE_API_KEYS`` and/or the key file (format in the module docstring)."""
    entries: list[tuple[str, str]] = []
    if inline:
        entries += [("SWEETIE_API_KEYS", item.strip().replace(":", " ", 1)) for item in inline.split(",")]
    if file is not None:
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ApiKeyError(f"cannot read API key file {file}: {reason}") from exc
        entries += [(f"{file}:{n}", line.split("#", 1)[0].strip()) for n, line in enumerate(lines, 1)]
    tenants: dict[str, str] = {}
    seen: dict[str, str] = {}  # key -> where it was given
    limits: dict[str, dict[str, int]] = {}
    limit_source: dict[tuple[str, str], str] = {}  # (tenant, field) -> where it was given
    for source, entry in entries:
        if not entry:
            continue
        key, *rest = entry.split()
        names = [token for token in rest if "=" not in token]
        if len(key) < 8 or len(names) > 1 or (names and rest[0] != names[0]):
            raise ApiKeyError(
                f"{source}: expected 'key [tenant] [limit=value ...]' with a key of at least 8 characters"
            )
        if key in seen:
            raise ApiKeyError(f"{source}: the same key is already given at {seen[key]}; give each key once")
        tenant = names[0] if names else key
        own = _parse_limits(source, rest[1:] if names else rest)
        for name, value in own.items():
            before = limits.setdefault(tenant, {}).get(name)
            if before is not None and before != value:
                raise ApiKeyError(
                    f"{source}: field '{name}': tenant {tenant!r} already has {name}={before} "
                    f"({limit_source[tenant, name]}); a tenant's limits must agree on all its lines"
                )
            limits[tenant][name] = value
            limit_source.setdefault((tenant, name), source)
        seen[key] = source
        tenants[key] = tenant
    return ApiKeys(tenants, {tenant: TenantLimits(**values) for tenant, values in limits.items() if values})


def _parse_limits(source: str, tokens: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for position, token in enumerate(tokens, 1):
        name, _, value = token.partition("=")
        shown = f"'{name}'" if _SHOWN_NAME.fullmatch(name) else f"#{position} of the limits"
        if name not in LIMIT_FIELDS:
            raise ApiKeyError(f"{source}: field {shown}: unknown limit; use one of {', '.join(LIMIT_FIELDS)}")
        if name in out:
            raise ApiKeyError(f"{source}: field {shown}: given twice")
        try:
            out[name] = parse_limit(name, value)
        except ValueError as exc:
            raise ApiKeyError(f"{source}: field {shown}: {exc}") from None
    return out


class KeyTable:
    """The keys in force. ``replace`` swaps the whole table in one assignment (a reload)."""

    def __init__(self, keys: ApiKeys) -> None:
        self.keys = keys

    def replace(self, keys: ApiKeys) -> None:
        self.keys = keys

    def tenant_for(self, token: str) -> str | None:
        tenant = None
        for key, owner in self.keys.tenants.items():  # constant-time compare against every key
            if hmac.compare_digest(key.encode(), token.encode()):
                tenant = owner
        return tenant


class ApiKeyMiddleware:
    """Pure-ASGI Bearer check for ``/v1/*``; sets ``scope["state"]["tenant"]``."""

    def __init__(self, app: ASGIApp, keys: KeyTable) -> None:
        self.app = app
        self.table = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        if not self.table.keys:
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
        return self.table.tenant_for(token.strip())

    async def _reject(self, scope: Scope, send: Send) -> None:
        has_header = any(k == b"authorization" for k, _ in scope.get("headers", []))
        message = (
            "Incorrect API key provided."
            if has_header
            else "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'."
        )
        error = APIError(message, status_code=401, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        await send_error(send, error)
