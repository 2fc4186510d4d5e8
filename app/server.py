"""Wire the application once: check the configuration, load the model, ``build_app(settings)`` with a lifespan.

Start-up order, so that a mistake costs seconds, not a model load: :func:`check_config` reads and validates every
file and setting (API keys, the model manifest, the strategy catalogue, the safety policy and screen, the Redis URL's
syntax) and raises :class:`ConfigError` naming what to fix; only then :func:`load_components` loads the tokenizer and
the engine (seconds to minutes). The engine loads before the server accepts connections, as ``vllm serve`` does;
Kubernetes covers that window with a startupProbe. Tests may hand in ready-made components (a fake engine for
API-layer unit tests).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from redis.asyncio.connection import parse_url

from app.api import chat, health, models, sessions
from app.api.auth import ApiKeyError, ApiKeyMiddleware, parse_api_keys
from app.api.errors import install_error_handlers
from app.api.middleware import DrainGate, RequestContextMiddleware
from app.chat.admission import Admission
from app.chat.prompt import PromptRenderer, load_tokenizer
from app.chat.safety import LexicalSafetyScreen, SafetyPolicy, SafetyScreen
from app.chat.strategy import Counselor
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
    api_keys: dict[str, str]
    catalogue: StrategyCatalogue
    policy: SafetyPolicy
    screen: SafetyScreen


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
    return Config(settings, manifest, api_keys, catalogue, policy, LexicalSafetyScreen())


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
    )
    return Components(manifest=manifest, engine=engine, renderer=renderer)


def build_store(settings: Settings) -> SessionStore:
    """Redis when ``SWEETIE_REDIS_URL`` is set, else the in-process store (one replica only)."""
    if settings.redis_url:
        return RedisSessionStore.from_url(
            settings.redis_url,
            connect_timeout_s=settings.redis_timeout_s,
            op_timeout_s=settings.redis_timeout_s,
            ttl_s=settings.session_ttl_s,
            max_turns=settings.session_max_turns,
            on_op=observe_store_op,
        )
    return MemorySessionStore(
        ttl_s=settings.session_ttl_s, max_turns=settings.session_max_turns, on_op=observe_store_op
    )


def build_pipeline(config: Config, parts: Components, store: SessionStore) -> ChatPipeline:
    settings = config.settings
    max_inflight = settings.max_inflight or parts.manifest.engine.max_num_seqs
    return ChatPipeline(
        engine=parts.engine,
        renderer=parts.renderer,
        manifest=parts.manifest,
        catalogue=config.catalogue,
        counselor=Counselor(parts.engine, parts.renderer.tokenizer, config.catalogue),
        screen=config.screen,
        policy=config.policy,
        store=store,
        admission=Admission(
            max_inflight=max_inflight,
            max_queued=max_inflight if settings.max_queued is None else settings.max_queued,
            queue_timeout_s=settings.queue_timeout_s,
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

    ``app.state`` then holds one object per resource: ``pipeline``, ``store``, ``engine``, ``manifest`` and
    ``admission`` (the typed dependencies in ``app/api/deps.py`` read them).
    """
    config = config or check_config(settings, components.manifest if components else None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        parts = components or load_components(config)
        store = build_store(settings)
        pipeline = build_pipeline(config, parts, store)
        state = app.state
        state.pipeline, state.store, state.engine = pipeline, store, parts.engine
        state.manifest, state.admission = parts.manifest, pipeline.admission
        await _check_store(store, settings)
        if not config.api_keys:
            log.warning("open_dev_mode", detail="no API keys configured: /v1 is open and all callers share a tenant")
        log.info("ready", model=parts.manifest.name, max_model_len=parts.engine.max_model_len)
        try:
            yield
        finally:
            pipeline.admission.draining = True
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
    app.include_router(models.router)
    app.include_router(sessions.router)
    app.include_router(health.router)
    app.add_middleware(DrainGate)
    app.add_middleware(ApiKeyMiddleware, keys=config.api_keys)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_request_bytes)
    return app
