"""Plan the reply's support strategy: requested, chosen by the Strategy Counselor, the model's own tag, or none.

Modes (per model manifest, ``strategy_mode``, or per request):

- ``model``: a fine-tuned model writes ``[Strategy] reply`` (the format: :mod:`app.core.format`); the server strips
  the tag and reports the strategy. A requested strategy is forced by prefilling its tag. With the manifest's
  ``strategy_tag: greedy`` (the default) the tag is the model's most likely one (:meth:`Counselor.model_tag`: a
  guided choice over the catalogue's tags on the reply's own prompt, temperature 0), prefilled the same way; a
  sampled tag is a draw at the reply's temperature, which a small model spreads over every strategy.
- ``counselor``: for base models. A short generation constrained to the catalogue names (vLLM structured outputs,
  guided choice) picks the strategy from the conversation (the paper's Strategy Counselor, at inference time); the
  reply is then generated with that strategy in its instructions.
- ``off``: nothing, unless the client requests a strategy: then it goes into the instructions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from app.chat.prompt import PromptRenderer
from app.core.format import tag_prefix
from app.core.messages import Message
from app.core.strategies import StrategyCatalogue
from app.core.template import template_ids, text_ids
from app.engine.base import Engine, GenerationParams

StrategyMode: TypeAlias = Literal["off", "counselor", "model"]

COUNSELOR_CONTEXT_MESSAGES = 6
"""The counselor reads this many of the latest user/assistant messages."""


@dataclass(frozen=True)
class StrategyPlan:
    """What the pipeline does about strategies for one turn."""

    strategy: str | None
    """Known before generation (requested or counselor-chosen); in ``model`` mode the model's tag may set it later."""
    instruction: str | None = None
    """Added to the system message (``off``/``counselor`` modes)."""
    prefill: str | None = None
    """Forced start of the reply (``model`` mode with a requested strategy): the strategy whose tag is prefilled."""
    parse_tags: bool = False
    """Read the strategy from the model's own leading tag."""


def instruction_for(catalogue: StrategyCatalogue, name: str) -> str:
    """The line added to the supporter's system prompt to steer the reply."""
    strategy = catalogue.get(name)
    definition = f" ({strategy.definition})" if strategy else ""
    return f"In your next reply, use the support strategy '{name}'{definition}. Keep it short and specific."


def plan_for(catalogue: StrategyCatalogue, mode: StrategyMode, strategy: str | None) -> StrategyPlan:
    """The plan once the strategy (requested or counselor-chosen, or None) is known."""
    if mode == "model":
        return StrategyPlan(strategy, prefill=strategy, parse_tags=strategy is None)
    return StrategyPlan(strategy, instruction=instruction_for(catalogue, strategy) if strategy else None)


class Counselor:
    """The Strategy Counselor: one short generation constrained to exactly one catalogue name."""

    def __init__(self, engine: Engine, renderer: PromptRenderer, catalogue: StrategyCatalogue) -> None:
        self.engine = engine
        self.renderer = renderer
        self.catalogue = catalogue
        # Guided choice emits one catalogue name and then end-of-sequence: the longest name plus one token.
        self.max_tokens = max(len(text_ids(renderer.tokenizer, name)) for name in catalogue.names) + 1
        self.tags = tuple(tag_prefix(name) for name in catalogue.names)
        """The tags as a fine-tuned model writes them (``[Question]``), the choices of :meth:`model_tag`."""
        self.tag_max_tokens = max(len(text_ids(renderer.tokenizer, t)) for t in self.tags) + 1

    def messages(self, conversation: Sequence[Message]) -> list[dict[str, str]]:
        """The counselor's own prompt: the catalogue, then the latest messages as a transcript."""
        turns = [m for m in conversation if m.role in ("user", "assistant")][-COUNSELOR_CONTEXT_MESSAGES:]
        lines = [f"{'Seeker' if m.role == 'user' else 'Supporter'}: {m.content}" for m in turns]
        system = (
            "You are a Strategy Counselor for an emotional-support conversation. Read the conversation and choose "
            "the one support strategy the Supporter should use next.\nStrategies:\n"
            + self.catalogue.describe(with_examples=False)
        )
        user = "Conversation:\n" + "\n".join(lines) + "\n\nThe best strategy for the Supporter's next reply is:"
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    async def choose(self, conversation: Sequence[Message], request_id: str) -> str | None:
        """A catalogue name, or None when the engine answered something else (never a silent default)."""
        ids = await self.renderer.run(template_ids, self.renderer.tokenizer, self.messages(conversation))
        params = GenerationParams(max_tokens=self.max_tokens, temperature=0.0, choices=tuple(self.catalogue.names))
        text = ""
        async for deltas in self.engine.generate(ids, params, f"{request_id}-counselor"):
            text += "".join(d.text for d in deltas if d.index == 0)
        return self.catalogue.canonical(text)

    async def model_tag(self, prompt_ids: list[int], request_id: str) -> str | None:
        """``model`` mode, ``strategy_tag: greedy``: the catalogue tag the model itself finds most likely after
        ``prompt_ids`` (the reply's prompt, so vLLM's prefix cache serves the reply's prefill), or None."""
        params = GenerationParams(max_tokens=self.tag_max_tokens, temperature=0.0, choices=self.tags)
        text = ""
        async for deltas in self.engine.generate(prompt_ids, params, f"{request_id}-tag"):
            text += "".join(d.text for d in deltas if d.index == 0)
        return self.catalogue.canonical(text) if text.strip() in self.tags else None
