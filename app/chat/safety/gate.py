"""The chat turn's safety step: risk across a conversation, the policy's decision, and escalation of high risk.

:class:`SafetyGate` is what the turn pipeline calls (one call per turn): it screens the turn's user message in the
context of the conversation (:func:`screen_conversation`), lets the policy decide how the reply is framed, and reports
a high-risk turn for on-call follow-up (``escalation.py``). The screen, the policy and where events go are its parts.

Risk across a conversation: the latest message judged with the recent ones, and high risk that stays.

Risk can be spread over messages that are each harmless alone ("gave my dog to my sister", "cancelled my phone
contract", "won't need any of it after friday"), so the screen sees the latest user message together with the
conversation's recent user messages. And once a session reached high risk, it stays at least elevated for its next
:data:`HIGH_RISK_HOLD_TURNS` turns (the counter is stored with the session), so the resources stay in front of the
person even when the next message sounds calmer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from app.chat.safety.escalation import Escalations, event_now
from app.chat.safety.policy import SafetyDecision, SafetyPolicy
from app.chat.safety.types import RiskLevel, SafetyResult, SafetyScreen
from app.core.messages import Message
from app.observability import SAFETY_FLAGS

HIGH_RISK_HOLD_TURNS = 3
"""Turns after a high-risk turn that stay at least elevated."""
CONTEXT_MESSAGES = 4
"""Earlier user messages screened together with the latest."""


def screen_conversation(
    screen: SafetyScreen, earlier: Sequence[Message], new: Sequence[Message], hold: int
) -> tuple[SafetyResult | None, int]:
    """Screen this turn's new user message(s) in the context of the earlier ones; apply the session's hold.

    Returns the verdict (None when the turn has no user text) and the session's new hold counter.
    """
    text = "\n".join(m.content for m in new if m.role == "user" and m.content)
    if not text:
        return None, hold
    said = [m for m in earlier if m.role == "user" and m.content]
    recent = said[-CONTEXT_MESSAGES:]
    if any(_was_high(m) for m in recent):
        # A calmer message after a high one is judged without it: that message was answered with the vetted text,
        # and the hold below keeps the resources up, so it must not make every calmer message after it high again
        # (each reply replaced with the same vetted text). A message that is flagged even so goes on with the
        # risk, and is judged with everything said, the high message included.
        calm = screen.screen(text, [m.content for m in said if not _was_high(m)][-CONTEXT_MESSAGES:])
        result = screen.screen(text, [m.content for m in recent]) if calm.flagged else calm
    else:
        result = screen.screen(text, [m.content for m in recent])
    if result.level is RiskLevel.HIGH:
        return result, HIGH_RISK_HOLD_TURNS
    if hold > 0 and result.level is RiskLevel.NONE:
        result = replace(result, level=RiskLevel.ELEVATED, categories=_held_categories(earlier))
    return result, max(0, hold - 1)


def _was_high(message: Message) -> bool:
    return message.safety is not None and message.safety.get("level") == "high"


def _held_categories(earlier: Sequence[Message]) -> tuple[str, ...]:
    """Categories of the latest high-risk user message (what the held resources are about)."""
    for message in reversed(earlier):
        if message.role == "user" and message.safety is not None and _was_high(message):
            return tuple(message.safety.get("categories", ()))
    return ()


class SafetyGate:
    """Screen a turn in the context of its conversation, decide the framing, and report high risk."""

    def __init__(self, screen: SafetyScreen, policy: SafetyPolicy, escalations: Escalations) -> None:
        self.screen = screen
        self.policy = policy
        self.escalations = escalations

    async def check(
        self,
        messages: Sequence[Message],
        hold: int,
        locale: str | None,
        *,
        tenant: str,
        request_id: str,
        session_id: str | None,
    ) -> tuple[SafetyDecision | None, int]:
        """The decision for the last of ``messages`` (None: nothing to screen) and the session's new hold counter.

        A high-risk turn becomes a text-free escalation event (tenant, request and session ids, never the text);
        reporting it never fails the turn."""
        if not messages:
            return None, hold
        *earlier, latest = messages
        result, hold = screen_conversation(self.screen, earlier, [latest], hold)
        if result is None:
            return None, hold
        SAFETY_FLAGS.labels(level=result.level.value).inc()
        decision = self.policy.decide(result, locale)
        if decision.level is RiskLevel.HIGH:
            event = event_now(tenant, session_id, request_id, decision.level.value, decision.categories)
            await self.escalations.report(event)
        return decision, hold
