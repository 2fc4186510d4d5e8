"""``GET /v1/models`` and ``GET /v1/models/{model}``."""

from __future__ import annotations

import time

from fastapi import APIRouter

from app.api.deps import EngineDep, ManifestDep
from app.api.errors import to_api_error
from app.api.protocol import ErrorResponse, ModelCard, ModelList
from app.chat.errors import UnknownModel

router = APIRouter()
_STARTED = int(time.time())


def _card(manifest: ManifestDep, engine: EngineDep) -> ModelCard:
    return ModelCard(id=manifest.name, created=_STARTED, max_model_len=engine.max_model_len)


@router.get("/v1/models", response_model=ModelList, responses={401: {"model": ErrorResponse}})
async def list_models(manifest: ManifestDep, engine: EngineDep) -> ModelList:
    return ModelList(data=[_card(manifest, engine)])


@router.get(
    "/v1/models/{model:path}",
    response_model=ModelCard,
    responses={404: {"model": ErrorResponse}, 401: {"model": ErrorResponse}},
)
async def retrieve_model(model: str, manifest: ManifestDep, engine: EngineDep) -> ModelCard:
    if model != manifest.name:
        raise to_api_error(UnknownModel(model))
    return _card(manifest, engine)
