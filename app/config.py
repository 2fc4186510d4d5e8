"""Server settings: one pydantic-settings class, read once at start-up.

Every field can be set by an environment variable with the ``SWEETIE_`` prefix (``SWEETIE_PORT=8080``) or by the
matching ``python -m app`` flag. A bad value fails fast with a message naming the variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.materialize import default_cache_dir

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Runtime configuration of the SweetieChat server."""

    model_config = SettingsConfigDict(env_prefix="SWEETIE_", extra="ignore", frozen=True)

    model: str = Field("sweetiechat", description="Served model: a manifest name under model_repo, or a folder.")
    model_repo: Path = Field(REPO_ROOT / "model_repo", description="Folder of model manifests (<name>/model.yaml).")
    cache_dir: Path = Field(
        default_factory=default_cache_dir,
        description="Where materialised base models (e.g. the embedded GGUF) are cached.",
    )
    host: str = Field("127.0.0.1", description="Interface to bind.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port to bind.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Engine device; auto picks CUDA if present.")
    kv_cache_gb: float = Field(
        2.0, gt=0, description="CPU KV cache size in GiB (sets VLLM_CPU_KVCACHE_SPACE when unset)."
    )
    max_model_len: int | None = Field(None, ge=64, description="Override the manifest's context length.")
    seed: int = Field(0, description="Engine seed (per-request `seed` still wins).")
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: console on a TTY, JSON otherwise."
    )
    log_level: str = Field("info", description="Log level for the app's own logs.")
    log_content: bool = Field(False, description="Log conversation text. Off by default: conversations are sensitive.")
    max_request_bytes: int = Field(1_000_000, ge=1024, description="Largest accepted request body (413 beyond).")
    max_messages: int = Field(512, ge=1, description="Most messages accepted in one request (400 beyond).")
    max_n: int = Field(8, ge=1, le=128, description="Largest `n` (choices per request) accepted.")

    max_inflight: int | None = Field(
        None, ge=1, description="Most generations at once (default: the engine's max_num_seqs); more wait in a queue."
    )
    max_queued: int | None = Field(None, ge=0, description="Most requests waiting for a slot (default: max_inflight).")
    queue_timeout_s: float = Field(30.0, gt=0, description="Longest wait for a slot before a 429.")
    drain_grace_s: float = Field(30.0, ge=0, description="On SIGTERM: how long in-flight streams may finish.")

    # Per-tenant limits: a key line's own values (`key tenant rpm=60 ...`) win over these, which apply to every
    # other tenant. Unset rpm/tpm/max_sessions: no limit. See app/chat/tenants.py and README "API keys and tenants".
    fair_admission: bool = Field(
        True,
        description="Per-tenant stream/queue caps and a round-robin queue across tenants; false: one first-come queue.",
    )
    tenant_rpm: int | None = Field(None, ge=1, description="Requests per minute per tenant (all replicas together).")
    tenant_tpm: int | None = Field(
        None, ge=1, description="Prompt + completion tokens per minute per tenant (all replicas together)."
    )
    tenant_max_streams: int | None = Field(
        None,
        ge=1,
        description="Generations at once per tenant and replica (default: the whole pool with one tenant, else half).",
    )
    tenant_max_queued: int | None = Field(
        None,
        ge=0,
        description="Requests waiting per tenant and replica (default: like tenant_max_streams, of max_queued).",
    )
    tenant_max_sessions: int | None = Field(None, ge=1, description="Live stored sessions per tenant.")

    redis_url: str | None = Field(
        None, description="Session store, e.g. redis://redis:6379/0. Unset: in-process store (one replica only)."
    )
    redis_timeout_s: float = Field(0.5, gt=0, description="Redis connect/operation timeout; beyond it: 503.")
    session_ttl_s: int = Field(7 * 24 * 3600, ge=1, description="Sliding expiry of idle sessions, in seconds.")
    response_ttl_s: int = Field(
        30 * 24 * 3600, ge=1, description="How long a stored response (Responses API) can be retrieved or continued."
    )
    session_max_turns: int = Field(200, ge=1, description="Most turns kept per session (oldest dropped).")
    session_lock_wait_s: float = Field(2.0, ge=0, description="How long a turn waits for a busy session (then 409).")
    session_lock_ttl_s: float = Field(300.0, gt=0, description="Lock expiry, above the longest turn.")
    session_block_turns: int = Field(4, ge=1, description="Prompt trimming drops oldest turns in blocks of this.")

    api_keys: str | None = Field(
        None, description="Comma-separated 'key:tenant [limit=N ...]' entries. Set: /v1/* needs a Bearer key."
    )
    api_keys_file: Path | None = Field(
        None,
        description="File with one 'key [tenant] [rpm=N tpm=N max_streams=N max_queued=N max_sessions=N]' per line; "
        "# comments. Reloaded on SIGHUP.",
    )

    strategies_file: Path | None = Field(None, description="Strategy catalogue YAML (default: the ESConv eight).")
    safety_policy_file: Path | None = Field(None, description="Crisis safety policy YAML (default: shipped policy).")
    safety_screen: Literal["learned", "lexical"] = Field(
        "learned", description="Crisis screen: the shipped learned classifier, or the lexical rules."
    )
    escalation_stream: str = Field(
        "sweetie:escalations",
        min_length=1,
        description="Redis stream that gets a text-free event per high-risk turn (without Redis: a log line).",
    )
    escalation_maxlen: int = Field(100_000, ge=100, description="Approximate cap on the escalation stream's length.")
