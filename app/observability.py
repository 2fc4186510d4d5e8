"""Logs and metrics.

Logs: structlog, JSON lines (console renderer on a TTY), request id bound through contextvars, one canonical line per
request. Conversation text never goes to the logs unless ``SWEETIE_LOG_CONTENT=true``.

Metrics: Prometheus text at ``/metrics`` from the default registry, so vLLM's own ``vllm:*`` metrics (registered by
the in-process engine) are exported next to ours. Names are documented in README.md.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from contextvars import ContextVar
from typing import Any

import structlog
from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)
_TOKEN_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)

REQUESTS = Counter("sweetie_requests", "HTTP requests finished, by route and status.", ["route", "status"])
REQUEST_LATENCY = Histogram(
    "sweetie_request_duration_seconds", "End-to-end request latency.", ["route"], buckets=_LATENCY_BUCKETS
)
TTFT = Histogram("sweetie_time_to_first_token_seconds", "Time to first generated token.", buckets=_LATENCY_BUCKETS)
ITL = Histogram("sweetie_inter_token_latency_seconds", "Time between streamed deltas.", buckets=_ITL_BUCKETS)
PROMPT_TOKENS = Histogram("sweetie_prompt_tokens", "Prompt tokens per request.", buckets=_TOKEN_BUCKETS)
COMPLETION_TOKENS = Histogram("sweetie_completion_tokens", "Completion tokens per request.", buckets=_TOKEN_BUCKETS)
INFLIGHT = Gauge("sweetie_inflight_requests", "Generations in progress in this replica.")
ABORTED = Counter("sweetie_aborted_requests", "Generations aborted because the client went away.")
ENGINE_ERRORS = Counter("sweetie_engine_errors", "Generations that failed inside the engine.")
ENGINE_UNFINISHED = Gauge(
    "sweetie_engine_unfinished_requests", "Requests the engine is working on (read from vLLM at scrape time)."
)

# One mutable dict per request; the middleware creates it, handlers add fields, the middleware logs it at the end.
# A dict (not contextvars bindings) so fields set inside a streaming task reach the canonical line.
REQUEST_LOG: ContextVar[dict[str, Any] | None] = ContextVar("sweetie_request_log", default=None)


def annotate(**fields: Any) -> None:
    """Add fields to the current request's canonical log line (never put message text here)."""
    record = REQUEST_LOG.get()
    if record is not None:
        record.update(fields)


def configure_logging(log_format: str = "auto", level: str = "info") -> None:
    """Set up structlog (and route stdlib logging through the same renderer)."""
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.getLevelName(level.upper()))


SAFETY_FLAGS = Counter("sweetie_safety_screens", "User messages screened, by risk level.", ["level"])
STRATEGIES = Counter("sweetie_strategies", "Replies by support strategy ('none' when there was none).", ["strategy"])
ESCALATIONS = Counter("sweetie_escalations", "High-risk turns reported for follow-up (Redis stream or log).")
ESCALATION_ERRORS = Counter("sweetie_escalation_errors", "High-risk events the Redis stream did not take (logged).")
COUNSELOR_INVALID = Counter(
    "sweetie_counselor_invalid", "Counselor picks that named no catalogue strategy (the turn went on without one)."
)
SENTENCE_LIMITED = Counter("sweetie_sentence_limited_replies", "Replies ended early by the model's sentence limit.")
STORE_LATENCY = Histogram(
    "sweetie_session_store_seconds",
    "Session store latency per operation.",
    ["op"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
STORE_ERRORS = Counter("sweetie_session_store_errors", "Session store operations that failed (backend down).", ["op"])


def observe_store_op(op: str, seconds: float, ok: bool) -> None:
    """``on_op`` hook for session stores."""
    STORE_LATENCY.labels(op=op).observe(seconds)
    if not ok:
        STORE_ERRORS.labels(op=op).inc()


QUEUED = Gauge("sweetie_queued_requests", "Requests waiting for a generation slot (admission control).")
REJECTED = Counter("sweetie_rejected_requests", "Requests refused before generation, by reason.", ["reason"])

# Per tenant. The label is a hash prefix (tenant names may be customer names; never the API key), and at most
# TENANT_LABEL_LIMIT distinct tenants get their own label: later ones share "other", so a key file with thousands
# of tenants cannot blow up the metric's cardinality.
TENANT_LABEL_LIMIT = 100
TENANT_ADMITTED = Counter("sweetie_tenant_admitted", "Requests given a generation slot, by tenant.", ["tenant"])
TENANT_REJECTED = Counter(
    "sweetie_tenant_rejected", "Requests refused before generation, by tenant and reason.", ["tenant", "reason"]
)
TENANT_TOKENS = Counter(
    "sweetie_tenant_tokens", "Tokens of finished requests, by tenant and kind (prompt, completion).", ["tenant", "kind"]
)
RATE_LIMITER_FALLBACKS = Counter(
    "sweetie_rate_limiter_fallbacks", "Rate-limit decisions made in this process because Redis did not answer."
)
_tenant_labels: dict[str, str] = {}


def tenant_label(tenant: str) -> str:
    """The tenant's metric label: the first 8 hex digits of sha256(tenant), or ``other`` past the cap."""
    label = _tenant_labels.get(tenant)
    if label is None:
        if len(_tenant_labels) >= TENANT_LABEL_LIMIT:
            return "other"
        label = _tenant_labels[tenant] = hashlib.sha256(tenant.encode()).hexdigest()[:8]
    return label
