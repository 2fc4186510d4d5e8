"""The one message type used from request to store to prompt.

A request's wire messages (``api/protocol.py``) become :class:`Message` objects once, at the API edge (where the
``developer`` role becomes ``system``); sessions store them; the prompt renders them (``app/core/format.py``). A
training dialogue's utterances become the same type, so training and serving render conversations the same way.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeAlias

Role: TypeAlias = Literal["system", "user", "assistant"]
ROLES: frozenset[str] = frozenset({"system", "user", "assistant"})
WireRole: TypeAlias = Literal["system", "developer", "user", "assistant"]
"""The roles an OpenAI client may send: ``developer`` is OpenAI's newer name for ``system``."""

SESSION_ID_RE = r"^[A-Za-z0-9._:-]{1,128}$"
"""Valid session, conversation and response ids: 1 to 128 letters, digits, ``.``, ``_``, ``:`` or ``-``."""
SESSION_ID_PATTERN = re.compile(SESSION_ID_RE)


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message.

    ``strategy`` is the support strategy of an assistant reply; ``safety`` the crisis screen's verdict on a user
    message (``{"level", "categories", "action"}``); ``tokens`` the content's length in the model's tokens
    (counted once, when the message is first rendered, so that trimming a stored history need not re-tokenize it);
    ``created`` the Unix time of the commit that stored it (0 before it is stored).
    """

    role: Role
    content: str
    strategy: str | None = None
    safety: Mapping[str, Any] | None = None
    tokens: int | None = None
    created: float = 0.0
    id: str | None = None
    """The item id (``msg_...``) under which conversations and responses list this message."""

    def stored(self, created: float) -> Message:
        """This message as committed at ``created``, with an item id."""
        return replace(self, created=created, id=self.id or new_item_id())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; also the stored form."""
        return {
            "role": self.role,
            "content": self.content,
            "strategy": self.strategy,
            "created": self.created,
            "tokens": self.tokens,
            **({"safety": dict(self.safety)} if self.safety else {}),
            **({"id": self.id} if self.id else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        """Inverse of :meth:`to_dict` (trusts the JSON types it wrote; checks the role)."""
        role = data["role"]
        if role not in ROLES:
            raise ValueError(f"stored message has unknown role {role!r}")
        return cls(
            role=role,
            content=data["content"],
            strategy=data.get("strategy"),
            safety=data.get("safety"),
            tokens=data.get("tokens"),
            created=data.get("created", 0.0),
            id=data.get("id"),
        )


def from_wire(role: WireRole, content: str) -> Message:
    """A message as a client sent it (chat completions or Responses input): ``developer`` becomes ``system``."""
    return Message("system" if role == "developer" else role, content)


def new_item_id() -> str:
    """A fresh item id, in OpenAI's shape: ``msg_`` and 32 hex digits."""
    return f"msg_{secrets.token_hex(16)}"


def group_exchanges(messages: list[Message]) -> list[list[Message]]:
    """Split a flat list into exchanges, each ending with an assistant reply (a last open one may not).

    An exchange is what one session turn commits: the new user message(s) and the reply that answered them.
    """
    groups: list[list[Message]] = []
    current: list[Message] = []
    for message in messages:
        current.append(message)
        if message.role == "assistant":
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return groups
