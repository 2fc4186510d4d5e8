"""One chat turn as a pipeline of named steps, shared by every wire format (chat completions, Responses).

::

    ChatPipeline.start:  validate -> admit -> open the conversation -> screen -> plan the strategy -> render
                         (-> the model's most likely tag, in model mode with strategy_tag: greedy)
    Turn.replies:        generate -> shape the reply                         (ReplyDelta per engine step)
    Turn.commit:         commit (sessions: one Lua script, which also releases the lock)
    Turn.close:          give back the generation slot and, if not committed, the session lock (idempotent)

Every step raises domain errors (``app/chat/errors.py``, ``app/sessions/base.py``); ``app/api`` maps them to HTTP
and encodes the replies in a wire format. ``start`` does everything that can fail before a stream starts, so those
failures are plain HTTP errors, never a half-sent stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from app.chat.admission import Admission, Slot
from app.chat.errors import (
    ContextTooLong,
    GenerationFailed,
    InvalidChatRequest,
    NotFound,
    Unavailable,
    UnknownModel,
)
from app.chat.prompt import PromptRenderer
from app.chat.reply import ReplyDelta, ReplyShaper
from app.chat.safety import SafetyDecision
from app.chat.safety.gate import SafetyGate
from app.chat.strategy import Counselor, StrategyMode, StrategyPlan, plan_for
from app.chat.strategy_planner import StrategyPlanner
from app.core.manifest import Manifest
from app.core.messages import Message, new_item_id
from app.core.strategies import StrategyCatalogue
from app.engine.base import ChoiceDelta, Engine, EngineError, GenerationParams, InvalidParamsError
from app.observability import (
    ABORTED,
    COMPLETION_TOKENS,
    COUNSELOR_INVALID,
    ENGINE_ERRORS,
    INFLIGHT,
    ITL,
    PROMPT_TOKENS,
    SENTENCE_LIMITED,
    STRATEGIES,
    TTFT,
    annotate,
)
from app.sessions.base import SessionLease, SessionStore, StoredResponse, TurnCommit
from app.sessions.history import reconcile, split_persona


@dataclass(frozen=True)
class Caller:
    """Who is asking: tenant (from the API key), request id, and the session id from the header, if any."""

    tenant: str
    request_id: str
    session_id: str | None = None


@dataclass(frozen=True)
class Sampling:
    """Sampling fields a request may set; None and empty fall back to the model manifest's defaults."""

    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0


@dataclass(frozen=True)
class Output:
    """What shape the reply must have: free text (the default), any JSON object, or JSON matching a schema.

    Structured replies are for programs, not people: the sentence budget and strategy tags do not apply, and the
    safety verdict is reported in the response without framing text inside the JSON (``replace`` still replaces).
    """

    json_schema: Mapping[str, Any] | None = None
    json_object: bool = False

    @property
    def structured(self) -> bool:
        return self.json_schema is not None or self.json_object


@dataclass(frozen=True)
class TurnRequest:
    """One turn, independent of the wire format that carried it."""

    model: str
    messages: Sequence[Message]
    sampling: Sampling = Sampling()
    n: int = 1
    max_tokens: int | None = None
    session_id: str | None = None
    strategy: str | None = None
    strategy_mode: StrategyMode | None = None
    max_sentences: int | None = None
    """End the reply after this many sentences (0: no limit; None: the manifest's)."""
    ignore_eos: bool = False
    locale: str | None = None
    stream: bool = False
    output: Output = Output()
    previous_response_id: str | None = None
    """Continue after this stored response (the Responses API): its chain is the history."""
    conversation_id: str | None = None
    """Continue this conversation (the Conversations API); a conversation is a session that must already exist."""
    instructions: str | None = None
    """A system message for this turn only, in front of the conversation, never stored (the Responses API)."""
    truncation: Literal["auto", "disabled"] = "auto"
    """``auto``: drop the oldest whole turns of a stored history to fit the context; ``disabled``: a 400 instead."""


@dataclass(frozen=True)
class TurnOptions:
    """Limits and session behaviour (from Settings)."""

    max_messages: int = 512
    max_n: int = 8
    session_lock_wait_s: float = 2.0
    session_lock_ttl_s: float = 300.0
    session_block_turns: int = 4
    log_content: bool = False
    """Put the new user text and the reply in the canonical log line (operators only; off by default)."""


@dataclass
class Conversation:
    """The conversation a turn answers: a session's stored history plus what is new, or the request as sent."""

    messages: list[Message]
    """Everything the prompt may show, oldest first (system/persona first), before trimming."""
    new: list[Message]
    """What this turn adds to a session (the request's user/assistant messages for a stateless turn)."""
    lease: SessionLease | None = None
    persona: str | None = None
    """The session persona this request sets (None keeps the stored one)."""
    stored_history: bool = False
    """The history came from the store (a session, conversation or response chain): trimmed to fit, not refused."""

    @property
    def turn_number(self) -> int | None:
        """This turn's number in its session once committed (None when stateless)."""
        if self.lease is None:
            return None
        return (self.lease.record.turns if self.lease.record else 0) + 1


@dataclass
class _Progress:
    """Token accounting of one generation."""

    started: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    last_token_at: float | None = None
    completion_tokens: int = 0


class ChatPipeline:
    """Serves chat turns for one model; every wire format starts turns here."""

    def __init__(
        self,
        *,
        engine: Engine,
        renderer: PromptRenderer,
        manifest: Manifest,
        catalogue: StrategyCatalogue,
        counselor: Counselor,
        safety: SafetyGate,
        store: SessionStore,
        admission: Admission,
        options: TurnOptions,
        planner: StrategyPlanner | None = None,
    ) -> None:
        self.engine = engine
        self.renderer = renderer
        self.manifest = manifest
        self.catalogue = catalogue
        self.counselor = counselor
        self.safety = safety
        self.store = store
        self.admission = admission
        self.options = options
        self.planner = planner

    @property
    def model_name(self) -> str:
        return self.manifest.name

    async def start(self, request: TurnRequest, caller: Caller) -> Turn:
        """Validate, admit, open the conversation, screen, plan the strategy and render the prompt."""
        requested = self.validate(request, caller)
        slot = await self.admission.acquire(caller.tenant)  # the tenant's limits, fair queue, rpm/tpm
        conversation: Conversation | None = None
        try:
            conversation = await self.open_conversation(request, caller)
            safety, hold = await self.screen(conversation, request.locale, caller)
            plan = await self.plan_strategy(request, requested, conversation, caller)
            prompt_ids = await self.renderer.run(self.render_prompt, request, conversation, plan)
            params = self.generation_params(request, len(prompt_ids))
            if plan.parse_tags and self.manifest.strategy_tag == "greedy":
                plan, prompt_ids = await self.choose_model_tag(plan, prompt_ids, caller)
                params = self.generation_params(request, len(prompt_ids))
        except BaseException:
            slot.release()
            if conversation is not None and conversation.lease is not None:
                await self.store.release(conversation.lease)
            raise
        annotate(
            model=request.model,
            stream=request.stream,
            n=request.n,
            prompt_tokens=len(prompt_ids),
            session=conversation.lease is not None,
            turn=conversation.turn_number,
            strategy=plan.strategy,
            safety=safety.level.value if safety else None,
        )
        return Turn(self, request, caller, conversation, safety, hold, plan, prompt_ids, params, slot)

    # ---- the steps before generation ----

    def validate(self, request: TurnRequest, caller: Caller) -> str | None:
        """Everything checkable without I/O; returns the requested strategy's catalogue name (or None)."""
        if request.model != self.model_name:
            raise UnknownModel(request.model)
        if not self.engine.is_ready:
            raise Unavailable("The model is not ready to serve requests; retry shortly.", retry_after_s=5)
        if len(request.messages) > self.options.max_messages:
            raise InvalidChatRequest(
                f"Too many messages: {len(request.messages)} (the limit is {self.options.max_messages}).",
                param="messages",
                code="array_above_max_length",
            )
        if request.n > self.options.max_n:
            raise InvalidChatRequest(
                f"Invalid value for 'n': {request.n}; at most {self.options.max_n} choices per request.",
                param="n",
                code="integer_above_max_value",
            )
        session = caller.session_id or request.session_id
        if request.previous_response_id is not None and request.conversation_id is not None:
            raise InvalidChatRequest(
                "Mutually exclusive parameters: 'previous_response_id' and 'conversation'; give one.",
                param="conversation",
            )
        if session is not None and (request.conversation_id or request.previous_response_id):
            raise InvalidChatRequest(
                "A session id cannot be combined with 'conversation' or 'previous_response_id'.", param="session_id"
            )
        if session is not None and request.n != 1:
            raise InvalidChatRequest("'n' must be 1 in a session: one reply is stored per turn.", param="n")
        if not request.messages or request.messages[-1].role == "assistant":
            raise InvalidChatRequest(
                "The last message must be from the user (or system), not the assistant.", param="messages"
            )
        if request.strategy_mode == "model" and self.manifest.strategy_mode != "model":
            raise InvalidChatRequest(
                "strategy_mode 'model' needs a fine-tuned model that writes strategy tags; use 'counselor' or 'off'.",
                param="strategy_mode",
            )
        if request.strategy is None:
            return None
        name = self.catalogue.canonical(request.strategy)
        if name is None:
            raise InvalidChatRequest(
                f"Unknown strategy {request.strategy!r}. Valid strategies: {', '.join(self.catalogue.names)}.",
                param="strategy",
            )
        return name

    async def open_conversation(self, request: TurnRequest, caller: Caller) -> Conversation:
        """Stateless: the request as sent. A response chain: its messages, then the new ones. A session or
        conversation: lock + read (one store call), then keep only what is new. New messages get item ids."""
        sent = [m if m.id else replace(m, id=new_item_id()) for m in request.messages]
        front = [Message("system", request.instructions)] if request.instructions else []
        if request.previous_response_id is not None:
            chain = await self.store.response_chain(caller.tenant, request.previous_response_id)
            if chain is None:
                raise NotFound(
                    f"Previous response with id '{request.previous_response_id}' not found.",
                    param="previous_response_id",
                )
            persona, new = split_persona(sent)
            prior = [m for response in chain for m in (*response.input, *response.output)]
            system = [*front, *([Message("system", persona)] if persona else [])]
            return Conversation([*system, *prior, *new], new, stored_history=True)
        session_id = caller.session_id or request.session_id or request.conversation_id
        if session_id is None:
            return Conversation(messages=[*front, *sent], new=sent)
        lease = await self.store.open(
            caller.tenant,
            session_id,
            wait_s=self.options.session_lock_wait_s,
            ttl_s=self.options.session_lock_ttl_s,
        )
        try:
            record = lease.record
            if request.conversation_id is not None and record is None:
                raise NotFound(f"Conversation with id '{request.conversation_id}' not found.", param="conversation")
            persona, rest = split_persona(sent)
            stored = record.messages if record else []
            new = reconcile(stored, rest, trimmed=bool(record and record.trimmed))
        except BaseException:
            await self.store.release(lease)
            raise
        kept_persona = persona if persona is not None else (record.persona if record else None)
        system = [*front, *([Message("system", kept_persona)] if kept_persona is not None else [])]
        changed = persona is not None and (record is None or record.persona != persona)
        return Conversation([*system, *stored, *new], new, lease, persona if changed else None, stored_history=True)

    async def screen(
        self, conversation: Conversation, locale: str | None, caller: Caller
    ) -> tuple[SafetyDecision | None, int]:
        """The crisis screen on this turn's user text in the context of the conversation (a high-risk turn is
        escalated); returns the decision and the session's new risk hold."""
        lease = conversation.lease
        hold = lease.record.risk_hold if lease and lease.record else 0
        return await self.safety.check(
            conversation.messages,
            hold,
            locale,
            tenant=caller.tenant,
            request_id=caller.request_id,
            session_id=lease.session_id if lease else None,
        )

    async def plan_strategy(
        self, request: TurnRequest, requested: str | None, conversation: Conversation, caller: Caller
    ) -> StrategyPlan:
        """Requested strategy, else the planner's choice (``model`` mode, ``strategy_tag: planner``) or the counselor's
        (``counselor`` mode), else the model's tag or none."""
        mode = request.strategy_mode or self.manifest.strategy_mode
        if request.output.structured and mode == "model":
            mode = "off"  # a JSON reply cannot start with a tag
        strategy = requested
        if strategy is None and mode == "model" and self.planner is not None:
            strategy = self.planner.choose(conversation.messages)  # strategy_tag: planner, prefilled
        if strategy is None and mode == "counselor":
            strategy = await self.counselor.choose(conversation.messages, caller.request_id)
            if strategy is None:
                COUNSELOR_INVALID.inc()
                annotate(counselor="invalid")
        return plan_for(self.catalogue, mode, strategy)

    async def choose_model_tag(
        self, plan: StrategyPlan, prompt_ids: list[int], caller: Caller
    ) -> tuple[StrategyPlan, list[int]]:
        """``model`` mode, ``strategy_tag: greedy``: the model's most likely tag, prefilled like a requested one
        (the same ids as rendering with ``prefill``). If the choice names no tag, the model writes its own."""
        strategy = await self.counselor.model_tag(prompt_ids, caller.request_id)
        if strategy is None:
            COUNSELOR_INVALID.inc()
            annotate(counselor="invalid")
            return plan, prompt_ids
        prefill = await self.renderer.run(self.renderer.prefill_ids, strategy)
        return plan_for(self.catalogue, "model", strategy), prompt_ids + prefill

    def render_prompt(self, request: TurnRequest, conversation: Conversation, plan: StrategyPlan) -> list[int]:
        """Token ids for the engine; a stored history is trimmed in whole-exchange blocks to fit (unless the
        request set ``truncation: disabled``). Tokenizer work: run it on the renderer's worker thread."""
        if conversation.new and conversation.stored_history:  # count what is new once; it is stored with the count
            counted = [self.renderer.counted(m) for m in conversation.new]
            conversation.messages[len(conversation.messages) - len(counted) :] = counted
            conversation.new = counted
        if not conversation.stored_history or request.truncation == "disabled":
            return self.renderer.render(conversation.messages, instruction=plan.instruction, prefill=plan.prefill)
        record = conversation.lease.record if conversation.lease else None
        persona = [m for m in conversation.messages if m.role == "system"]
        history = [m for m in conversation.messages if m.role != "system"]
        prompt = self.renderer.render_trimmed(
            persona,
            history,
            context_len=self.engine.max_model_len,
            reply_tokens=request.max_tokens or self.manifest.sampling.max_tokens,
            block=self.options.session_block_turns,
            already_dropped=(record.turns - record.stored_turns) if record else 0,
            instruction=plan.instruction,
            prefill=plan.prefill,
        )
        return prompt.token_ids

    def generation_params(self, request: TurnRequest, prompt_len: int) -> GenerationParams:
        """Engine parameters: the request's fields over the manifest's defaults, within the model's context."""
        max_len = self.engine.max_model_len
        asked = request.max_tokens
        if prompt_len >= max_len or (asked is not None and prompt_len + asked > max_len):
            detail = f"{prompt_len + (asked or 0)} tokens ({prompt_len} in the messages"
            detail += f", {asked} in the completion)" if asked else ")"
            raise ContextTooLong(
                f"This model's maximum context length is {max_len} tokens. However, you requested {detail}. "
                "Please reduce the length of the messages or completion.",
                param="messages",
            )
        defaults = self.manifest.sampling
        sampling = request.sampling
        params = GenerationParams(
            max_tokens=asked or min(defaults.max_tokens, max_len - prompt_len),
            temperature=defaults.temperature if sampling.temperature is None else sampling.temperature,
            top_p=defaults.top_p if sampling.top_p is None else sampling.top_p,
            n=request.n,
            seed=sampling.seed,
            stop=sampling.stop,
            presence_penalty=sampling.presence_penalty,
            frequency_penalty=sampling.frequency_penalty,
            repetition_penalty=defaults.repetition_penalty,
            ignore_eos=request.ignore_eos,
            json_schema=request.output.json_schema,
            json_object=request.output.json_object,
        )
        try:
            self.engine.check(params)
        except InvalidParamsError as exc:
            raise InvalidChatRequest(f"Invalid sampling parameters: {exc}") from exc
        return params

    def max_sentences(self, request: TurnRequest) -> int | None:
        """The request's sentence budget (0: none), else the manifest's; ``ignore_eos`` asks for full length, and a
        structured (JSON) reply is never cut."""
        if request.ignore_eos or request.output.structured:
            return None
        if request.max_sentences is not None:
            return request.max_sentences or None
        return self.manifest.sampling.max_sentences


class Turn:
    """A started turn: holds its generation slot (and session lock) until :meth:`close`."""

    def __init__(
        self,
        pipeline: ChatPipeline,
        request: TurnRequest,
        caller: Caller,
        conversation: Conversation,
        safety: SafetyDecision | None,
        risk_hold: int,
        plan: StrategyPlan,
        prompt_ids: list[int],
        params: GenerationParams,
        slot: Slot,
    ) -> None:
        self.pipeline = pipeline
        self.request = request
        self.caller = caller
        self.conversation = conversation
        self.safety = safety
        self.risk_hold = risk_hold
        self.plan = plan
        self.prompt_ids = prompt_ids
        self.params = params
        self._slot: Slot | None = slot
        self.rate_limits = slot.rate  # the tenant's rpm/tpm budgets at admission, for x-ratelimit-* headers
        self._progress = _Progress()
        self.reply_id = new_item_id()
        """The item id of the (first) reply, as a conversation and a stored response list it."""
        applied = safety is not None and (safety.replaces_reply or not request.output.structured)
        if safety is not None and not applied:  # JSON for a program: no framing text inside it, and the
            self.safety = safety = replace(safety, action="none")  # verdict says what was (not) done to the reply
        leading = safety.leading if safety and applied else ""
        trailing = safety.trailing if safety and applied else ""
        parse = pipeline.catalogue if plan.parse_tags else None
        budget = pipeline.max_sentences(request)
        self.choices = [
            ReplyShaper(
                i,
                catalogue=parse,
                max_sentences=budget,
                leading=leading,
                trailing=trailing,
                prefilled=plan.prefill is not None,
            )
            for i in range(params.n)
        ]

    @property
    def model(self) -> str:
        return self.pipeline.model_name

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    @property
    def completion_tokens(self) -> int:
        return self._progress.completion_tokens

    @property
    def replaced(self) -> bool:
        """The safety policy replaced the reply with its vetted message (nothing is generated)."""
        return self.safety is not None and self.safety.replaces_reply

    @property
    def planned_strategy(self) -> str | None:
        """The strategy known before generation (None when the model's tag will tell, or the reply is replaced)."""
        return None if self.plan.parse_tags or self.replaced else self.plan.strategy

    def strategy_of(self, index: int) -> str | None:
        """The reply's strategy: the model's tag when it writes one, else the planned one (none when replaced)."""
        return self.choices[index].strategy if self.plan.parse_tags else self.planned_strategy

    def extensions(self) -> dict[str, object]:
        """SweetieChat's top-level response fields: session id and turn number (sessions), safety verdict."""
        out: dict[str, object] = {}
        if self.conversation.lease is not None:
            out["session_id"] = self.conversation.lease.session_id
            out["turn"] = self.conversation.turn_number
        if self.safety is not None:
            out["safety"] = self.safety.to_dict()
        return out

    # ---- generate and shape ----

    async def replies(self) -> AsyncGenerator[ReplyDelta, None]:
        """Visible reply deltas of every choice; closing the iterator aborts the engine request."""
        if self.replaced:
            for choice in self.choices:
                yield choice.replace()  # the vetted message only: nothing is generated
            return
        for choice in self.choices:
            lead = choice.start()
            if lead is not None:
                yield lead
        try:
            async with aclosing(self._generate()) as stream:
                async for deltas in stream:
                    for d in deltas:
                        shaped = self.choices[d.index].feed(d.text, d.finish_reason)
                        if shaped is None:
                            continue
                        if shaped.finish_reason and self.choices[d.index].limited:
                            SENTENCE_LIMITED.inc()
                            annotate(sentence_limited=True)
                        yield shaped
                    if all(c.finished for c in self.choices):
                        return  # every reply is complete (a sentence budget may end it early): abort the rest
        except InvalidParamsError as exc:
            raise InvalidChatRequest(f"Invalid sampling parameters: {exc}") from exc
        except EngineError as exc:
            raise GenerationFailed("The model failed while generating a reply; please retry.") from exc

    async def _generate(self) -> AsyncGenerator[list[ChoiceDelta], None]:
        """The engine stream with timing, token accounting, the in-flight gauge and abort bookkeeping."""
        progress = self._progress
        INFLIGHT.inc()
        PROMPT_TOKENS.observe(len(self.prompt_ids))
        engine = self.pipeline.engine
        try:
            async with aclosing(engine.generate(self.prompt_ids, self.params, self.caller.request_id)) as stream:
                async for deltas in stream:
                    now = time.perf_counter()
                    tokens = sum(d.num_tokens for d in deltas)
                    if tokens:
                        if progress.first_token_at is None:
                            progress.first_token_at = now
                            TTFT.observe(now - progress.started)
                        elif progress.last_token_at is not None:
                            ITL.observe(now - progress.last_token_at)
                        progress.last_token_at = now
                        progress.completion_tokens += tokens
                    yield deltas
        except asyncio.CancelledError:
            ABORTED.inc()
            annotate(outcome="aborted")
            raise
        except EngineError:
            ENGINE_ERRORS.inc()
            annotate(outcome="engine_error")
            raise
        finally:
            INFLIGHT.dec()
            COMPLETION_TOKENS.observe(progress.completion_tokens)
            ttft = None if progress.first_token_at is None else progress.first_token_at - progress.started
            annotate(
                completion_tokens=progress.completion_tokens,
                ttft_ms=None if ttft is None else round(ttft * 1000, 1),
            )

    # ---- commit and close ----

    async def commit(self, response: StoredResponse | None = None) -> None:
        """Count the replies' strategies and store the turn: a session or conversation gets the new messages and
        the reply (and ``response``, in the same atomic step); without one, ``response`` is stored alone. Raises
        ``SessionError`` when the store refuses or is down; the lock is released either way."""
        for index, _ in enumerate(self.choices):
            STRATEGIES.labels(strategy=self.strategy_of(index) or "none").inc()
        first = self.choices[0]
        annotate(finish_reason=first.finish_reason)
        if self.pipeline.options.log_content:
            annotate(
                user_text=self.conversation.new[-1].content if self.conversation.new else "", reply_text=first.text
            )
        lease = self.conversation.lease
        if lease is None:
            if response is not None:
                await self.pipeline.store.save_response(self.caller.tenant, response)
            return
        renderer = self.pipeline.renderer
        reply = replace(self.reply_message(), tokens=await renderer.run(renderer.count_tokens, first.text))
        await self.pipeline.store.commit(
            lease,
            TurnCommit(
                messages=self.stored_input(),
                reply=reply,
                expected_version=lease.version,
                prompt_tokens=self.prompt_tokens,
                completion_tokens=self.completion_tokens,
                persona=self.conversation.persona,
                risk_hold=self.risk_hold,
                response=response,
            ),
        )

    def stored_input(self) -> list[Message]:
        """The new user/assistant messages as stored: the screen's verdict on the last one, when it flagged it."""
        new = [m for m in self.conversation.new if m.role != "system"]
        if new and self.safety is not None and self.safety.level.value != "none":
            new[-1] = replace(new[-1], safety=self.safety.to_dict())
        return new

    def reply_message(self, index: int = 0) -> Message:
        """A reply as stored: its visible text and strategy, under its item id (``tokens``: the completion's)."""
        choice = self.choices[index]
        item_id = self.reply_id if index == 0 else None
        return Message(
            "assistant", choice.text, strategy=self.strategy_of(index), tokens=self.completion_tokens, id=item_id
        )

    async def complete(self) -> None:
        """Generate every reply to the end, then commit (the non-streaming path)."""
        async for _ in self.replies():
            pass
        await self.commit()

    async def close(self) -> None:
        """Give back the generation slot and the session lock (idempotent; runs however the turn ended)."""
        if self._slot is not None:
            self._slot.release(self.prompt_tokens, self.completion_tokens)  # tokens go to the tenant's tpm
            self._slot = None
        if self.conversation.lease is not None:
            await self.pipeline.store.release(self.conversation.lease)
