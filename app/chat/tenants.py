"""What one tenant may use: its limits, the defaults derived from the global pool, and the table of both.

A tenant is the name an API key maps to (every caller shares ``public`` in open dev mode). Each limit is optional:

    rpm           requests per minute          counted in Redis (shared by every replica), else in this process
    tpm           tokens per minute            prompt + completion, counted like rpm
    max_streams   generations at once          in this replica (admission slots are per replica)
    max_queued    requests waiting for a slot  in this replica
    max_sessions  live stored sessions         in the session store (shared)

A key line may set them (``key tenant rpm=60 tpm=20000 max_streams=4``); settings give every other tenant's
(``SWEETIE_TENANT_RPM`` ...). ``max_streams`` and ``max_queued`` default to a share of the global pool, so that no
tenant can take it all: with one tenant (or none configured) the whole pool, with two or more half of it, rounded up.
Reloading the key file (SIGHUP) replaces the table in one step.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields, replace

LIMIT_FIELDS = ("rpm", "tpm", "max_streams", "max_queued", "max_sessions")
"""The names a key line may set, in the order the README documents them."""

_MINIMUM = {"rpm": 1, "tpm": 1, "max_streams": 1, "max_queued": 0, "max_sessions": 1}
_MAXIMUM = 10**12


@dataclass(frozen=True)
class TenantLimits:
    """One tenant's limits; None means "not limited" (or, before :meth:`over`, "use the default")."""

    rpm: int | None = None
    """Requests per minute."""
    tpm: int | None = None
    """Prompt + completion tokens per minute."""
    max_streams: int | None = None
    """Generations running at once in one replica."""
    max_queued: int | None = None
    """Requests waiting for a generation slot in one replica."""
    max_sessions: int | None = None
    """Live stored sessions (conversations) in the session store."""

    def over(self, defaults: TenantLimits) -> TenantLimits:
        """These limits, each unset one taken from ``defaults``."""
        return replace(
            defaults, **{f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        )

    def set_fields(self) -> dict[str, int]:
        """The limits that are set, by name."""
        return {f.name: value for f in fields(self) if (value := getattr(self, f.name)) is not None}


def parse_limit(name: str, value: str) -> int:
    """The value of one ``name=value`` limit; ``ValueError`` says what is wrong (the caller adds file and line)."""
    if name not in _MINIMUM:
        raise ValueError(f"unknown limit; use one of {', '.join(LIMIT_FIELDS)}")
    least = _MINIMUM[name]
    if not value.isascii() or not value.isdigit() or not least <= int(value) <= _MAXIMUM:
        raise ValueError(f"expected a whole number >= {least}, got {value[:20]!r}")
    return int(value)


def pool_defaults(configured: TenantLimits, *, max_inflight: int, max_queued: int, tenants: int) -> TenantLimits:
    """Every tenant's defaults: the configured ones (settings), else a share of the global pool.

    One tenant (or open dev mode) may use the whole pool; with two or more, each may hold at most half of the slots
    and half of the queue (rounded up), so one tenant can never take everything from another.
    """
    share = 0.5 if tenants > 1 else 1.0
    derived = TenantLimits(
        max_streams=max(1, math.ceil(max_inflight * share)), max_queued=math.ceil(max_queued * share)
    )
    return configured.over(derived)


class TenantDirectory:
    """The limits in force, per tenant, over the defaults; :meth:`update` (a key-file reload) swaps them whole.

    ``configured`` are the settings' limits for every tenant; ``max_inflight``/``max_queued`` the global pool the
    stream and queue defaults are derived from.
    """

    def __init__(
        self,
        *,
        configured: TenantLimits = TenantLimits(),
        max_inflight: int,
        max_queued: int,
        limits: Mapping[str, TenantLimits] | None = None,
        tenants: Collection[str] = (),
    ) -> None:
        self.configured = configured
        self.max_inflight = max_inflight
        self.max_queued = max_queued
        self._table: tuple[dict[str, TenantLimits], TenantLimits] = ({}, TenantLimits())
        self.update(limits or {}, tenants)

    def update(self, limits: Mapping[str, TenantLimits], tenants: Collection[str]) -> None:
        """Replace every tenant's limits (``limits``: what the key lines set; ``tenants``: all configured tenants)."""
        defaults = pool_defaults(
            self.configured,
            max_inflight=self.max_inflight,
            max_queued=self.max_queued,
            tenants=len(set(tenants) | set(limits)),
        )
        resolved = {tenant: own.over(defaults) for tenant, own in limits.items()}
        self._table = (resolved, defaults)  # one assignment: readers see the old table or the new one

    @property
    def defaults(self) -> TenantLimits:
        return self._table[1]

    def limits_for(self, tenant: str) -> TenantLimits:
        """The tenant's own limits over the defaults."""
        resolved, defaults = self._table
        return resolved.get(tenant, defaults)

    def max_sessions(self, tenant: str) -> int | None:
        """The tenant's live-session quota (None: none); the session stores call this."""
        return self.limits_for(tenant).max_sessions


@dataclass(frozen=True)
class Budget:
    """One rate limit's state after a decision: OpenAI's ``x-ratelimit-{limit,remaining,reset}-*`` values."""

    limit: int
    remaining: int
    reset_s: float
    """Seconds until the budget is full again."""


@dataclass(frozen=True)
class RateStatus:
    """The tenant's request and token budgets (None where the tenant has no such limit)."""

    requests: Budget | None = None
    tokens: Budget | None = None


@dataclass(frozen=True)
class RateDecision:
    """A rate limiter's answer: admitted (``refused`` None) or refused on requests or tokens, with the wait."""

    status: RateStatus = RateStatus()
    refused: str | None = None
    """``requests`` (rpm) or ``tokens`` (tpm) when refused."""
    retry_after_s: float = 0.0
