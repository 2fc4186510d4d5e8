"""Wire the application once: ``build_app(settings)`` and a lifespan that owns the engine.

The engine loads before the server accepts connections (as ``vllm serve`` does); Kubernetes covers that window with
a startupProbe. Tests may pass ready-made components (a fake engine for API-layer unit tests).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.api import chat, health, models, sessions
from app.api.auth import ApiKeyMiddleware, parse_api_keys
from app.api.errors import install_error_handlers
from app.api.middleware import DrainGate, RequestContextMiddleware
from app.chat.admission import Admission
from app.chat.prompt import PromptBuilder, load_tokenizer
from app.chat.safety import LexicalSafetyScreen, SafetyPolicy
from app.chat.service import ChatOptions, ChatService
from app.config import Settings
from app.engine.base import Engine
from app.manifest import Manifest, find_manifest
from app.observability import observe_store_op
from app.sessions.base import SessionStore, SessionStoreUnavailable
from app.sessions.memory_store import MemorySessionStore
from app.sessions.redis_store import RedisSessionStore
from training.strategies import load_catalogue

log = structlog.get_logger("app.server")


@dataclass
class Components:
    """What a running server needs; built by :func:`load_components` or handed in by tests."""

    manifest: Manifest
    engine: Engine
    prompts: PromptBuilder


def load_components(settings: Settings) -> Components:
    """Resolve the manifest, materialise weights if needed, load tokenizer and engine (blocking)."""
    from app.engine.vllm_engine import VllmEngine
    from app.materialize import resolve_source

    manifest = find_manifest(settings.model, settings.model_repo)
    model_path = resolve_source(manifest, settings.cache_dir)
    log.info("loading_model", model=manifest.name, source=manifest.source, path=model_path)
    prompts = PromptBuilder(load_tokenizer(model_path), manifest.system_prompt)
    engine = VllmEngine.start(
        model_path,
        manifest.engine,
        device=settings.device,
        kv_cache_gb=settings.kv_cache_gb,
        max_model_len=settings.max_model_len,
        seed=settings.seed,
    )
    return Components(manifest=manifest, engine=engine, prompts=prompts)


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


def build_chat_service(settings: Settings, parts: Components, store: SessionStore) -> ChatService:
    options = ChatOptions(
        max_messages=settings.max_messages,
        max_n=settings.max_n,
        session_lock_wait_s=settings.session_lock_wait_s,
        session_lock_ttl_s=settings.session_lock_ttl_s,
        session_block_turns=settings.session_block_turns,
        log_content=settings.log_content,
    )
    max_inflight = settings.max_inflight or parts.manifest.engine.max_num_seqs
    admission = Admission(
        max_inflight=max_inflight,
        max_queued=max_inflight if settings.max_queued is None else settings.max_queued,
        queue_timeout_s=settings.queue_timeout_s,
    )
    policy = (
        SafetyPolicy.from_yaml(settings.safety_policy_file) if settings.safety_policy_file else SafetyPolicy.default()
    )
    return ChatService(
        parts.engine,
        parts.prompts,
        parts.manifest,
        options,
        store=store,
        catalogue=load_catalogue(settings.strategies_file),
        screen=LexicalSafetyScreen(),
        safety_policy=policy,
        admission=admission,
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


def build_app(settings: Settings, components: Components | None = None) -> FastAPI:
    """Create the FastAPI app; the lifespan starts and stops the engine and the session store."""
    api_keys = parse_api_keys(settings.api_keys, settings.api_keys_file)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        parts = components or load_components(settings)
        store = build_store(settings)
        app.state.chat = build_chat_service(settings, parts, store)
        await _check_store(store, settings)
        if not api_keys:
            log.warning("open_dev_mode", detail="no API keys configured: /v1 is open and all callers share a tenant")
        log.info("ready", model=parts.manifest.name, max_model_len=parts.engine.max_model_len)
        try:
            yield
        finally:
            app.state.chat.admission.draining = True
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
    app.add_middleware(ApiKeyMiddleware, keys=api_keys)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_request_bytes)
    return app
