"""Wire the application once: check the configuration, load the model, ``build_app(settings)`` with a lifespan.

Start-up order, so that a mistake costs seconds, not a model load: :func:`check_config` reads and validates every
file and setting (API keys, the model manifest, the strategy catalogue, the safety policy and screen, the Redis URL's
syntax) and raises :class:`ConfigError` naming what to fix; only then :func:`load_components` loads the tokenizer and
the engine (seconds to minutes). The engine loads before the server accepts connections, as ``vllm serve`` does;
Kubernetes covers that window with a startupProbe. Tests may hand in ready-made components (a fake engine for
API-layer unit tests).

Key rotation: SIGHUP re-reads the API keys (:func:`reload_api_keys`) and swaps keys and tenant limits in one step;
a malformed file keeps the old keys and logs why (the file, line and field; never a key).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from redis.asyncio.connection import parse_url

from app.api import chat, conversations, health, models, responses, sessions
from app.api.auth import ApiKeyError, ApiKeyMiddleware, ApiKeys, KeyTable, parse_api_keys
from app.api.errors import install_error_handlers
from app.api.middleware import DrainGate, RequestContextMiddleware
from app.chat.admission import Admission
from app.chat.conversations import ConversationService
from app.chat.prompt import PromptRenderer, load_tokenizer
from app.chat.rate_limit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from app.chat.safety import LexicalSafetyScreen, SafetyPolicy, SafetyScreen
from app.chat.safety.classifier import LearnedSafetyScreen, SafetyModelError
from app.chat.safety.escalation import Escalations, LogEscalations, RedisEscalations
from app.chat.safety.gate import SafetyGate
from app.chat.strategy import Counselor
from app.chat.strategy_planner import PLANNER_FILE, PlannerError, StrategyPlanner
from app.chat.tenants import TenantDirectory, TenantLimits
from app.chat.turn import ChatPipeline, TurnOptions
from app.config import Settings
from app.core.manifest import Manifest, ManifestError, find_manifest
from app.core.strategies import CatalogueError, StrategyCatalogue, load_catalogue
from app.engine.base import Engine
from app.observability import observe_store_op
from app.sessions.base import SessionStore, SessionStoreUnavailable
from app.sessions.memory_store import MemorySessionStore
from app.sessions.redis_store import RedisSessionStore

log = structlog.get_logger("app.server")


class ConfigError(Exception):
    """A setting or configuration file is invalid; the message names it and says what to fix."""


@dataclass(frozen=True)
class Config:
    """Everything read from settings and files before the model loads."""

    settings: Settings
    manifest: Manifest
    api_keys: ApiKeys
    catalogue: StrategyCatalogue
    policy: SafetyPolicy
    screen: SafetyScreen
    tenants: TenantDirectory
    """Every tenant's limits (key lines over settings over a share of the pool); reloads update it."""
    planner: StrategyPlanner | None = None
    """The learned Strategy Planner of a ``strategy_tag: planner`` model."""


@dataclass
class Components:
    """The loaded model: built by :func:`load_components`, or handed in by tests."""

    manifest: Manifest
    engine: Engine
    renderer: PromptRenderer


def check_config(settings: Settings, manifest: Manifest | None = None) -> Config:
    """Read and validate every configured file and setting; raise :class:`ConfigError` on the first problem.

    ``manifest`` skips the manifest lookup (tests that hand in their own model).
    """
    try:
        api_keys = parse_api_keys(settings.api_keys, settings.api_keys_file)
        manifest = manifest or find_manifest(settings.model, settings.model_repo)
        catalogue = load_catalogue(settings.strategies_file)
        policy = (
            SafetyPolicy.from_yaml(settings.safety_policy_file)
            if settings.safety_policy_file
            else SafetyPolicy.default()
        )
    except (ApiKeyError, ManifestError, CatalogueError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    if settings.redis_url:
        try:
            parse_url(settings.redis_url)
        except ValueError as exc:
            raise ConfigError(f"SWEETIE_REDIS_URL: {exc}") from None
    try:
        screen: SafetyScreen = (
            LearnedSafetyScreen.load() if settings.safety_screen == "learned" else LexicalSafetyScreen()
        )
    except SafetyModelError as exc:
        raise ConfigError(f"SWEETIE_SAFETY_SCREEN=learned: {exc}") from None
    planner = None
    if manifest.strategy_mode == "model" and manifest.strategy_tag == "planner":
        try:
            planner = StrategyPlanner.load(manifest.folder / PLANNER_FILE, catalogue.names)
        except PlannerError as exc:
            raise ConfigError(f"model {manifest.name!r} (strategy_tag: planner): {exc}") from None
    max_inflight = settings.max_inflight or manifest.engine.max_num_seqs
    tenants = TenantDirectory(
        configured=TenantLimits(
            rpm=settings.tenant_rpm,
            tpm=settings.tenant_tpm,
            max_streams=settings.tenant_max_streams,
            max_queued=settings.tenant_max_queued,
            max_sessions=settings.tenant_max_sessions,
        ),
        max_inflight=max_inflight,
        max_queued=max_inflight if settings.max_queued is None else settings.max_queued,
        limits=api_keys.limits,
        tenants=api_keys.tenant_names,
    )
    return Config(settings, manifest, api_keys, catalogue, policy, screen, tenants, planner)


def load_components(config: Config) -> Components:
    """Materialise the weights if needed, load tokenizer and engine (blocking: seconds to minutes)."""
    from app.engine.vllm_engine import VllmEngine
    from app.materialize import resolve_source

    settings, manifest = config.settings, config.manifest
    model_path = resolve_source(manifest, settings.cache_dir)
    log.info("loading_model", model=manifest.name, source=manifest.source, path=model_path)
    renderer = PromptRenderer(load_tokenizer(model_path), manifest.system_prompt)
    engine = VllmEngine.start(
        model_path,
        manifest.engine,
        device=settings.device,
        kv_cache_gb=settings.kv_cache_gb,
        max_model_len=settings.max_model_len,
        seed=settings.seed,
        drain_s=settings.drain_grace_s,
    )
    return Components(manifest=manifest, engine=engine, renderer=renderer)


def build_store(settings: Settings, tenants: TenantDirectory | None = None) -> SessionStore:
    """Redis when ``SWEETIE_REDIS_URL`` is set, else the in-process store (one replica only); ``tenants`` gives
    the live-session quotas."""
    quota = tenants.max_sessions if tenants is not None else None
    if settings.redis_url:
        return RedisSessionStore.from_url(
            settings.redis_url,
            connect_timeout_s=settings.redis_timeout_s,
            op_timeout_s=settings.redis_timeout_s,
            ttl_s=settings.session_ttl_s,
            response_ttl_s=settings.response_ttl_s,
            max_turns=settings.session_max_turns,
            on_op=observe_store_op,
            session_quota=quota,
        )
    return MemorySessionStore(
        ttl_s=settings.session_ttl_s,
        response_ttl_s=settings.response_ttl_s,
        max_turns=settings.session_max_turns,
        on_op=observe_store_op,
        session_quota=quota,
    )


def build_rate_limiter(settings: Settings) -> RateLimiter:
    """rpm/tpm in Redis when ``SWEETIE_REDIS_URL`` is set (shared by replicas), else in this process."""
    if settings.redis_url:
        return RedisRateLimiter.from_url(settings.redis_url, timeout_s=settings.redis_timeout_s)
    return MemoryRateLimiter()


def build_escalations(settings: Settings) -> Escalations:
    """The Redis stream when Redis is configured, else structured log lines."""
    if settings.redis_url:
        return RedisEscalations.from_url(
            settings.redis_url,
            stream=settings.escalation_stream,
            maxlen=settings.escalation_maxlen,
            timeout_s=settings.redis_timeout_s,
        )
    return LogEscalations()


def build_pipeline(
    config: Config,
    parts: Components,
    store: SessionStore,
    escalations: Escalations,
    limiter: RateLimiter | None = None,
) -> ChatPipeline:
    settings = config.settings
    return ChatPipeline(
        engine=parts.engine,
        renderer=parts.renderer,
        manifest=parts.manifest,
        catalogue=config.catalogue,
        counselor=Counselor(parts.engine, parts.renderer, config.catalogue),
        planner=config.planner,
        safety=SafetyGate(
            config.screen, config.policy.with_high_action(parts.manifest.safety_high_action), escalations
        ),
        store=store,
        admission=Admission(
            max_inflight=config.tenants.max_inflight,
            max_queued=config.tenants.max_queued,
            queue_timeout_s=settings.queue_timeout_s,
            tenants=config.tenants,
            limiter=limiter,
            fair=settings.fair_admission,
        ),
        options=TurnOptions(
            max_messages=settings.max_messages,
            max_n=settings.max_n,
            session_lock_wait_s=settings.session_lock_wait_s,
            session_lock_ttl_s=settings.session_lock_ttl_s,
            session_block_turns=settings.session_block_turns,
            log_content=settings.log_content,
        ),
    )


def reload_api_keys(settings: Settings, table: KeyTable, tenants: TenantDirectory) -> bool:
    """Re-read the API keys and swap keys and tenant limits in one step (SIGHUP). A malformed file, or one that
    would leave no keys (opening the API to everyone), keeps the old keys; either way one log line says what
    happened, with counts and reasons, never a key. True if the new keys are in force."""
    old = table.keys
    try:
        new = parse_api_keys(settings.api_keys, settings.api_keys_file)
    except ApiKeyError as exc:
        log.error("api_keys_reload_failed", reason=str(exc), kept_keys=len(old.tenants))
        return False
    if old and not new:
        log.error(
            "api_keys_reload_failed",
            reason="the reloaded configuration has no keys, which would open /v1 to everyone",
            kept_keys=len(old.tenants),
        )
        return False
    table.replace(new)
    tenants.update(new.limits, new.tenant_names)  # no await between the two: no request sees half a reload
    log.info(
        "api_keys_reloaded",
        keys=len(new.tenants),
        tenants=len(new.tenant_names),
        added=len(new.tenants.keys() - old.tenants.keys()),
        removed=len(old.tenants.keys() - new.tenants.keys()),
    )
    return True


def _on_sighup(settings: Settings, table: KeyTable, tenants: TenantDirectory) -> bool:
    """Reload the keys on SIGHUP; False where signals cannot be handled (not the main thread, e.g. tests)."""
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload_api_keys, settings, table, tenants)
    except (ValueError, RuntimeError, NotImplementedError):
        return False
    return True


async def _check_store(store: SessionStore, settings: Settings) -> None:
    if not settings.redis_url:
        log.warning("session_store_in_process", detail="sessions live in this process only; set SWEETIE_REDIS_URL")
        return
    try:
        await store.ping()
        log.info("session_store_ready", backend="redis")
    except SessionStoreUnavailable:
        log.warning("session_store_unreachable", detail="session requests get 503 until Redis answers")


def openapi_schema(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, minus its default 422 responses: validation errors here are OpenAI-style 400s."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        app.openapi_schema = schema
    return app.openapi_schema


def build_app(settings: Settings, components: Components | None = None, config: Config | None = None) -> FastAPI:
    """Create the FastAPI app; the lifespan starts and stops the engine and the session store.

    ``app.state`` then holds one object per resource: ``pipeline``, ``store``, ``conversations``, ``engine``,
    ``manifest`` and ``admission`` (the typed dependencies in ``app/api/deps.py`` read them).
    """
    config = config or check_config(settings, components.manifest if components else None)
    keys = KeyTable(config.api_keys)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        parts = components or load_components(config)
        store = build_store(settings, config.tenants)
        escalations = build_escalations(settings)
        pipeline = build_pipeline(config, parts, store, escalations, build_rate_limiter(settings))
        reloads = _on_sighup(settings, keys, config.tenants)
        state = app.state
        state.keys = keys
        state.pipeline, state.store, state.engine = pipeline, store, parts.engine
        state.manifest, state.admission = parts.manifest, pipeline.admission
        state.conversations = ConversationService(
            store, lock_wait_s=settings.session_lock_wait_s, lock_ttl_s=settings.session_lock_ttl_s
        )
        await _check_store(store, settings)
        if not config.api_keys:
            log.warning("open_dev_mode", detail="no API keys configured: /v1 is open and all callers share a tenant")
        log.info("ready", model=parts.manifest.name, max_model_len=parts.engine.max_model_len)
        try:
            yield
        finally:
            pipeline.admission.draining = True
            if reloads:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            await pipeline.admission.close()
            await escalations.close()
            await store.close()
            await parts.engine.close()
            log.info("stopped")

    app = FastAPI(
        title="SweetieChat",
        version="0.1.0",
        description="OpenAI-compatible emotional-support chat API.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.openapi = lambda: openapi_schema(app)  # type: ignore[method-assign]
    app.include_router(chat.router)
    app.include_router(responses.router)
    app.include_router(conversations.router)
    app.include_router(models.router)
    app.include_router(sessions.router)
    app.include_router(health.router)
    app.add_middleware(DrainGate)
    app.add_middleware(ApiKeyMiddleware, keys=keys)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_request_bytes)
    return app
