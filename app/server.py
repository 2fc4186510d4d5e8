"""Wire the application once: ``build_app(settings)`` and a lifespan that owns the engine.

The engine loads before the server accepts connections (as ``vllm serve`` does); Kubernetes covers that window with
a startupProbe. Tests may pass ready-made components (a fake engine for API-layer unit tests).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog
from fastapi import FastAPI

from app.api import chat, health, models
from app.api.errors import install_error_handlers
from app.api.middleware import RequestContextMiddleware
from app.chat.prompt import PromptBuilder, load_tokenizer
from app.chat.service import ChatService, Limits
from app.config import Settings
from app.engine.base import Engine
from app.manifest import Manifest, find_manifest

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


def build_app(settings: Settings, components: Components | None = None) -> FastAPI:
    """Create the FastAPI app; the lifespan starts and stops the engine."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        parts = components or load_components(settings)
        limits = Limits(max_messages=settings.max_messages, max_n=settings.max_n)
        app.state.chat = ChatService(parts.engine, parts.prompts, parts.manifest, limits)
        app.state.draining = False
        log.info("ready", model=parts.manifest.name, max_model_len=parts.engine.max_model_len)
        try:
            yield
        finally:
            app.state.draining = True
            await parts.engine.close()
            log.info("stopped")

    app = FastAPI(
        title="SweetieChat",
        version="0.1.0",
        description="OpenAI-compatible emotional-support chat API.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(chat.router)
    app.include_router(models.router)
    app.include_router(health.router)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_request_bytes)
    return app
