"""Pure history functions for session turns: what to append, and what to keep in the prompt.

``split_persona`` takes leading system messages off a request's messages; ``reconcile`` finds the new suffix to
store when a client sends either only its new message(s) or its whole history; ``trim_to_budget`` drops whole
oldest turns, in fixed blocks, so consecutive prompts share a byte-identical prefix (vLLM prefix-cache hits).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from app.core.messages import Message
from app.sessions.base import InvalidHistory, SessionConflict

T = TypeVar("T")


def split_persona(messages: Sequence[Message]) -> tuple[str | None, list[Message]]:
    """Split leading ``system`` messages (joined with a blank line) from the conversation messages.

    Returns ``(persona or None, rest)``. A system message after the first user/assistant message raises
    ``InvalidHistory``: a session stores one persona, not system messages inside the conversation.
    """
    index = 0
    while index < len(messages) and messages[index].role == "system":
        index += 1
    for position in range(index, len(messages)):
        if messages[position].role == "system":
            raise InvalidHistory(
                f"message {position}: system messages must come before all user and assistant messages"
            )
    persona = "\n\n".join(m.content for m in messages[:index]) if index else None
    return persona, list(messages[index:])


def reconcile(
    stored: Sequence[Message],
    incoming: Sequence[Message],
    *,
    trimmed: bool = False,
) -> list[Message]:
    """Return the part of ``incoming`` that is new relative to the ``stored`` history.

    ``incoming`` is the request's user/assistant messages (persona already split off), oldest first, ending with a
    user message (the chat pipeline's ``validate`` step checks that for every request). Messages are compared by
    role and content with surrounding whitespace stripped; the returned messages are the client's own, unstripped.

    - One incoming message, or no stored history: all of ``incoming`` is new.
    - ``incoming`` starts with the whole stored history: the rest is new.
    - ``trimmed`` (the store dropped older turns, ``SessionRecord.trimmed``): a full-history client still holds
      those turns, so the stored history may start later in ``incoming``; the latest place where it fits is used.
    - Otherwise ``SessionConflict`` names the first incoming index that contradicts the stored history.

    Raises ``InvalidHistory`` for an empty list or a system message (the persona belongs in front).
    """
    new = _validated(incoming)
    if len(new) == 1 or not stored:
        return new
    stored_keys = [(message.role, message.content.strip()) for message in stored]
    incoming_keys = [(message.role, message.content.strip()) for message in new]
    size = len(stored_keys)
    if incoming_keys[:size] == stored_keys and len(incoming_keys) > size:
        return new[size:]
    if trimmed:
        for offset in range(len(incoming_keys) - size - 1, 0, -1):
            if incoming_keys[offset : offset + size] == stored_keys:
                return new[offset + size :]
        raise SessionConflict(
            f"history conflicts with the stored session: its {size} stored messages (older turns already "
            "trimmed) do not appear in the sent history; send only the new user message, or the full history",
            index=None,
        )
    index = next(
        (i for i, (sent, kept) in enumerate(zip(incoming_keys, stored_keys, strict=False)) if sent != kept),
        min(len(incoming_keys), size),
    )
    if index < min(len(incoming_keys), size):
        sent_role, kept_role = incoming_keys[index][0], stored_keys[index][0]
        detail = f"role {sent_role!r} vs stored {kept_role!r}" if sent_role != kept_role else "content differs"
    else:
        detail = f"the sent history has {len(incoming_keys)} messages, the stored one {size}"
    raise SessionConflict(
        f"history diverges from the stored session at message {index} ({detail}); send only the new user "
        "message, or the full history as stored",
        index=index,
    )


def trim_to_budget(
    turns: Sequence[T],
    count_tokens: Callable[[T], int],
    budget_tokens: int,
    block_turns: int = 4,
    *,
    reserved_tokens: int = 0,
    already_dropped: int = 0,
) -> tuple[list[T], int]:
    """Drop the oldest whole turns, in blocks of ``block_turns``, until the rest fits ``budget_tokens``.

    ``turns`` is oldest first and ends with the turn being answered (the new user message(s)), which is always
    kept. ``reserved_tokens`` is what is always in the prompt besides the turns: the persona/system prompt (never
    dropped), template overhead and room for the reply. ``already_dropped`` is the number of the session's turns
    that precede ``turns[0]`` (``record.turns - record.stored_turns`` after store trimming); cuts are aligned to
    multiples of ``block_turns`` counted from the session's first turn, so the prompt's first kept turn, and with it
    the byte prefix of the prompt, changes only once every ``block_turns`` turns, even while the store trims one
    turn per commit.

    Returns ``(kept_turns, dropped)`` with ``dropped`` the number of turns removed from the front of ``turns``.
    If no aligned cut fits, the smallest unaligned cut that fits is used; if even the newest turn alone does not
    fit, only it is returned and the caller decides (e.g. reject the request as too long).
    """
    if block_turns < 1:
        raise ValueError(f"block_turns must be >= 1, got {block_turns}")
    if budget_tokens < 1:
        raise ValueError(f"budget_tokens must be >= 1, got {budget_tokens}")
    if already_dropped < 0:
        raise ValueError(f"already_dropped must be >= 0, got {already_dropped}")
    count = len(turns)
    if count == 0:
        return [], 0
    # suffix[i] = tokens of turns[i:]
    suffix = [0] * (count + 1)
    for index in range(count - 1, -1, -1):
        suffix[index] = suffix[index + 1] + count_tokens(turns[index])
    available = budget_tokens - reserved_tokens
    first_aligned = -already_dropped % block_turns
    for cut in range(first_aligned, count, block_turns):
        if suffix[cut] <= available:
            return list(turns[cut:]), cut
    for cut in range(count):
        if suffix[cut] <= available:
            return list(turns[cut:]), cut
    return list(turns[count - 1 :]), count - 1


def _validated(incoming: Sequence[Message]) -> list[Message]:
    if not incoming:
        raise InvalidHistory("no messages: a session turn needs at least one user message")
    for index, message in enumerate(incoming):
        if message.role == "system":
            raise InvalidHistory(
                f"message {index}: system messages are the session persona; split them off first (split_persona)"
            )
    return list(incoming)
