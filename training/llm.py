"""OpenAI-compatible endpoints for the generation scripts: round-robin fleets, the client's own retries, usage.

A :class:`Role` is one role's model, sampling and list of base URLs (a fleet: several ``python -m app`` or
``vllm serve`` processes, or one Kubernetes Service in front of replicas). Each call goes to the endpoint its caller
asks for (``start``; callers keep one conversation on one endpoint so its prompt prefix stays cached there) and
fails over to the next one. Transient HTTP errors (408, 409, 429, 5xx, timeouts, connection errors) are retried by
the official ``openai`` client itself (``max_retries``, exponential backoff with jitter, ``Retry-After``
honoured); nothing here sleeps. A 200 answer that is not a chat completion ("garbage") moves on to the next
endpoint like a failed call. When every attempt fails the call raises :class:`CallFailed`, which callers count and
survive; a bad key or an unknown model raises :class:`FatalApiError`, which stops a run.

Token usage, latency, retries and errors are summed per role in :class:`ApiStats`. Message text is never logged.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openai import AsyncOpenAI

logger = logging.getLogger(__name__)

Message = dict[str, str]
TRANSIENT_STATUS = (408, 409, 429)


@dataclass(frozen=True)
class Sampling:
    """Sampling settings of one role."""

    temperature: float
    top_p: float
    max_tokens: int


@dataclass
class Usage:
    """Calls, tokens and seconds spent waiting for answers."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0

    def add(self, other: Usage) -> None:
        self.calls += other.calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.latency_s += other.latency_s

    def as_dict(self) -> dict[str, int | float]:
        return {
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "latency_s": round(self.latency_s, 3),
        }


@dataclass
class ApiStats:
    """What the endpoints did during a run (successful calls in ``usage``; failures in ``errors``)."""

    usage: dict[str, Usage] = field(default_factory=dict)
    retries: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    failovers: int = 0
    endpoints: Counter[str] = field(default_factory=Counter)

    def total(self) -> Usage:
        total = Usage()
        for usage in self.usage.values():
            total.add(usage)
        return total

    def as_dict(self) -> dict[str, Any]:
        return {
            "usage": {role: usage.as_dict() for role, usage in sorted(self.usage.items())},
            "total": self.total().as_dict(),
            "client_retries": dict(sorted(self.retries.items())),
            "errors": dict(sorted(self.errors.items())),
            "failovers": self.failovers,
            "calls_per_endpoint": dict(sorted(self.endpoints.items())),
        }


@dataclass(frozen=True)
class Reply:
    """One answer: its text, whether it hit ``max_tokens``, the server's safety verdict (if any), its cost."""

    content: str
    truncated: bool
    usage: Usage
    endpoint: str
    safety: Mapping[str, Any] | None = None

    @property
    def safety_action(self) -> str:
        """What a SweetieChat server did to the reply because of the crisis screen; "none" elsewhere."""
        action = (self.safety or {}).get("action", "none")
        return action if isinstance(action, str) else "none"


class CallFailed(Exception):
    """Every attempt of one call failed (after the client's retries); ``kind`` names the last failure."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class FatalApiError(RuntimeError):
    """An API error that retrying cannot fix (bad key, unknown model): the whole run stops."""


class Clients:
    """One ``AsyncOpenAI`` per (base URL, key), shared by every role that uses it."""

    def __init__(self, max_retries: int, timeout: float) -> None:
        self.max_retries = max_retries
        self.timeout = timeout
        self._clients: dict[tuple[str, str], AsyncOpenAI] = {}

    def get(self, base_url: str, api_key: str) -> AsyncOpenAI:
        from openai import AsyncOpenAI

        key = (base_url, api_key)
        if key not in self._clients:
            self._clients[key] = AsyncOpenAI(
                base_url=base_url, api_key=api_key, max_retries=self.max_retries, timeout=self.timeout
            )
        return self._clients[key]

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()


class Role:
    """One role's endpoints (tried in turn from ``start``), model and sampling."""

    def __init__(
        self,
        name: str,
        base_urls: Sequence[str],
        model: str,
        api_key: str,
        sampling: Sampling,
        clients: Clients,
        stats: ApiStats,
    ) -> None:
        if not base_urls:
            raise ValueError(f"{name}: at least one base URL is needed")
        self.name = name
        self.base_urls = list(base_urls)
        self.model = model
        self._api_key = api_key
        self.sampling = sampling
        self.clients = clients
        self.stats = stats

    @property
    def attempts(self) -> int:
        """Endpoints tried per call: every endpoint of the fleet, and at least two tries with a single one."""
        return max(2, len(self.base_urls))

    def _count_retries(self) -> None:
        """A call that failed after the client's retries used them all."""
        if self.clients.max_retries:
            self.stats.retries[self.name] += self.clients.max_retries

    async def chat(
        self,
        messages: Sequence[Message],
        seed: int,
        *,
        start: int = 0,
        response_format: Mapping[str, Any] | None = None,
    ) -> Reply:
        """One chat completion; raises CallFailed when every attempt fails, FatalApiError on auth/model errors."""
        import openai

        kind = "none"
        for attempt in range(self.attempts):
            url = self.base_urls[(start + attempt) % len(self.base_urls)]
            if attempt:
                self.stats.failovers += 1
            request: dict[str, Any] = {
                "model": self.model,
                "messages": list(messages),
                "temperature": self.sampling.temperature,
                "top_p": self.sampling.top_p,
                "max_tokens": self.sampling.max_tokens,
                "seed": seed,
            }
            if response_format is not None:
                request["response_format"] = dict(response_format)
            client = self.clients.get(url, self._api_key)
            began = time.perf_counter()
            try:
                raw = await client.chat.completions.with_raw_response.create(**request)
                completion = raw.parse()
            except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as exc:
                raise FatalApiError(f"{self.name} endpoint {url} model {self.model!r}: {exc}") from exc
            except openai.APIStatusError as exc:
                kind = type(exc).__name__
                self.stats.errors[f"{self.name}:{kind}"] += 1
                if exc.status_code not in TRANSIENT_STATUS and exc.status_code < 500:
                    raise CallFailed(kind) from exc  # the request itself is wrong (e.g. too long): no failover
                self._count_retries()
                logger.warning("%s call to %s failed after retries: %s", self.name, url, kind)
                continue
            except openai.APIConnectionError as exc:  # includes timeouts
                kind = type(exc).__name__
                self.stats.errors[f"{self.name}:{kind}"] += 1
                self._count_retries()
                logger.warning("%s call to %s failed after retries: %s", self.name, url, kind)
                continue
            except (openai.APIResponseValidationError, ValueError, TypeError, KeyError, AttributeError):
                kind = "garbage"
                self.stats.errors[f"{self.name}:garbage"] += 1
                logger.warning("%s endpoint %s answered something that is not a chat completion", self.name, url)
                continue
            if raw.retries_taken:
                self.stats.retries[self.name] += raw.retries_taken
            reply = _reply(completion, url, time.perf_counter() - began)
            if reply is None:
                kind = "garbage"
                self.stats.errors[f"{self.name}:garbage"] += 1
                logger.warning("%s endpoint %s answered something that is not a chat completion", self.name, url)
                continue
            self.stats.endpoints[url] += 1
            self.stats.usage.setdefault(self.name, Usage()).add(reply.usage)
            return reply
        raise CallFailed(kind)


def _reply(completion: Any, url: str, latency: float) -> Reply | None:
    """The Reply in a parsed completion, or None when it is not a well-formed chat completion."""
    choices = getattr(completion, "choices", None)
    if not isinstance(choices, list) or not choices:
        return None
    choice = choices[0]
    message = getattr(choice, "message", None)
    content = getattr(message, "content", None)
    if not isinstance(content, str):
        return None
    usage = getattr(completion, "usage", None)
    safety = (getattr(completion, "model_extra", None) or {}).get("safety")
    return Reply(
        content=content,
        truncated=getattr(choice, "finish_reason", None) == "length",
        usage=Usage(
            calls=1,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            latency_s=latency,
        ),
        endpoint=url,
        safety=safety if isinstance(safety, dict) else None,
    )


def json_schema_format(name: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAI ``response_format`` asking for JSON that matches ``schema`` (strict structured outputs)."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": dict(schema), "strict": True}}


def derive_seed(*parts: object) -> int:
    """A stable 31-bit seed from any parts (same parts, same seed, on every machine and Python version)."""
    digest = hashlib.sha256("|".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
