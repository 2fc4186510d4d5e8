"""``GET /v1/models`` and ``GET /v1/models/{model}``."""

from __future__ import annotations

import time

from fastapi import APIRouter

from app.api.deps import ChatServiceDep
from app.api.errors import ModelNotFoundError
from app.api.protocol import ErrorResponse, ModelCard, ModelList

router = APIRouter()
_STARTED = int(time.time())


def _card(service: ChatServiceDep) -> ModelCard:
    return ModelCard(id=service.model_name, created=_STARTED, max_model_len=service.engine.max_model_len)


@router.get("/v1/models", response_model=ModelList, responses={401: {"model": ErrorResponse}})
async def list_models(service: ChatServiceDep) -> ModelList:
    return ModelList(data=[_card(service)])


@router.get(
    "/v1/models/{model:path}",
    response_model=ModelCard,
    responses={404: {"model": ErrorResponse}, 401: {"model": ErrorResponse}},
)
async def retrieve_model(model: str, service: ChatServiceDep) -> ModelCard:
    if model != service.model_name:
        raise ModelNotFoundError(model)
    return _card(service)
