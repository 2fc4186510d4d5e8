"""Escalation: every high-risk turn becomes an event that an operator's on-call tooling can follow up.

With Redis, each event is appended to a capped Redis stream (``SWEETIE_ESCALATION_STREAM``, default
``sweetie:escalations``), so any consumer can read it, e.g. ``redis-cli XREAD BLOCK 0 STREAMS sweetie:escalations $``.
Without Redis, the event is a structured log line (``high_risk_escalation``). Either way it is also counted in
``sweetie_escalations_total``. An event never holds message text: tenant hash, session id, request id, level,
categories, time. Reporting never fails a turn: a Redis error is logged and counted, and the turn goes on.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Protocol

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.observability import ESCALATION_ERRORS, ESCALATIONS

log = structlog.get_logger("app.safety.escalation")

DEFAULT_STREAM = "sweetie:escalations"
DEFAULT_MAXLEN = 100_000
"""Entries kept in the stream (approximately: Redis trims whole radix-tree nodes)."""


@dataclass(frozen=True)
class EscalationEvent:
    """One high-risk turn, without any message text."""

    tenant: str
    session_id: str | None
    request_id: str
    level: str
    categories: tuple[str, ...]
    time: float

    def fields(self) -> dict[str, str]:
        """The stream entry: the tenant as a hash (an API key's tenant name may be sensitive), never text."""
        return {
            "tenant": hashlib.sha256(self.tenant.encode()).hexdigest()[:16],
            "session_id": self.session_id or "",
            "request_id": self.request_id,
            "level": self.level,
            "categories": ",".join(self.categories),
            "time": f"{self.time:.3f}",
        }


def event_now(
    tenant: str, session_id: str | None, request_id: str, level: str, categories: tuple[str, ...]
) -> EscalationEvent:
    return EscalationEvent(tenant, session_id, request_id, level, categories, time.time())


class Escalations(Protocol):
    """Where high-risk events go."""

    async def report(self, event: EscalationEvent) -> None: ...

    async def close(self) -> None: ...


class LogEscalations:
    """Without Redis: one structured log line per event."""

    async def report(self, event: EscalationEvent) -> None:
        ESCALATIONS.inc()
        fields = event.fields()
        fields["risk_level"] = fields.pop("level")  # "level" in a log line is the log record's own level
        log.warning("high_risk_escalation", **fields)

    async def close(self) -> None:
        return None


class RedisEscalations:
    """A capped Redis stream (XADD ... MAXLEN ~ n), one entry per event."""

    def __init__(self, client: Redis, stream: str = DEFAULT_STREAM, maxlen: int = DEFAULT_MAXLEN) -> None:
        self.client = client
        self.stream = stream
        self.maxlen = maxlen

    @classmethod
    def from_url(cls, url: str, *, stream: str, maxlen: int, timeout_s: float) -> RedisEscalations:
        client = Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s, decode_responses=True)
        return cls(client, stream, maxlen)

    async def report(self, event: EscalationEvent) -> None:
        ESCALATIONS.inc()
        fields = event.fields()
        try:
            await self.client.xadd(self.stream, fields, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
        except (RedisError, OSError) as exc:
            ESCALATION_ERRORS.inc()
            log.error("escalation_not_stored", error_type=type(exc).__name__, **fields)

    async def close(self) -> None:
        await self.client.aclose()
