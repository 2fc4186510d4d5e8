"""Cursor pagination in OpenAI's list shape: ``after`` (an item id), ``limit`` (1-100) and ``order``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from fastapi import Query

from app.api.errors import InvalidRequestError
from app.api.responses_protocol import ItemList, MessageItem
from app.core.messages import Message

Limit = Annotated[int, Query(ge=1, le=100, description="Items per page (1-100).")]
Order = Annotated[Literal["asc", "desc"], Query(description="asc: oldest first; desc: newest first.")]
After = Annotated[str | None, Query(max_length=128, description="List the items after this item id.")]


def page(messages: Sequence[Message], *, after: str | None, limit: int, order: str) -> ItemList:
    """One page of ``messages`` (oldest first as given) as items; an unknown ``after`` id is a 400."""
    ordered = list(messages) if order == "asc" else list(reversed(messages))
    start = 0
    if after is not None:
        ids = [m.id for m in ordered]
        if after not in ids:
            raise InvalidRequestError(f"No item with id '{after}' in this list.", param="after", code="invalid_value")
        start = ids.index(after) + 1
    chosen = ordered[start : start + limit]
    data = [MessageItem.of(m) for m in chosen]
    return ItemList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=start + limit < len(ordered),
    )
