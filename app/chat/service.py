"""One chat turn: request (+ stored history) -> safety screen -> strategy -> prompt -> engine -> reply -> commit.

Routers call :meth:`ChatService.prepare` and then :meth:`ChatService.complete` or :meth:`ChatService.stream`.
``prepare`` validates everything that can be checked before generating (so errors are plain HTTP errors, never a
half-sent stream), opens the session turn (lock held until the reply is committed or abandoned), screens the new
user message and picks the strategy.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field

from app.api.errors import (
    EngineFailureError,
    InvalidRequestError,
    ModelNotFoundError,
    ServiceUnavailableError,
)
from app.api.protocol import (
    ChatCompletionChoice,
    ChatCompletionMessage,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ErrorInfo,
    ErrorResponse,
    UsageInfo,
    completion_id,
)
from app.chat.admission import Admission, Slot
from app.chat.conversation import SessionTurn, open_session, session_prompt_turns
from app.chat.prompt import PromptBuilder, Turn
from app.chat.reply import ReplyDelta, ReplyText
from app.chat.safety import SafetyDecision, SafetyPolicy, SafetyScreen
from app.chat.strategy import counselor_prompt, strategy_instruction
from app.engine.base import ChoiceDelta, Engine, EngineError, GenerationParams, InvalidParamsError
from app.manifest import Manifest
from app.observability import (
    ABORTED,
    COMPLETION_TOKENS,
    ENGINE_ERRORS,
    INFLIGHT,
    ITL,
    PROMPT_TOKENS,
    SAFETY_FLAGS,
    SENTENCE_LIMITED,
    STRATEGIES,
    TTFT,
    annotate,
)
from app.sessions.base import SessionError, SessionStore
from training.strategies import StrategyCatalogue

DONE = "[DONE]"


@dataclass(frozen=True)
class ChatOptions:
    """Limits and session behaviour (from Settings)."""

    max_messages: int = 512
    max_n: int = 8
    session_lock_wait_s: float = 2.0
    session_lock_ttl_s: float = 300.0
    session_block_turns: int = 4
    log_content: bool = False
    """Put the new user text and the reply in the canonical log line (operators only; off by default)."""


@dataclass(frozen=True)
class Caller:
    """Who is asking: tenant (from the API key), optional session id, request id."""

    tenant: str
    request_id: str
    session_id: str | None = None


@dataclass
class PreparedChat:
    """A validated request, ready for the engine."""

    request: ChatCompletionRequest
    request_id: str
    prompt_ids: list[int]
    params: GenerationParams
    strategy: str | None = None
    """Requested or counselor-chosen strategy; in ``model`` mode the model's own tag may set it instead."""
    parse_tags: bool = False
    max_sentences: int | None = None
    """End each reply after this many sentences (None: no sentence budget)."""
    safety: SafetyDecision | None = None
    session: SessionTurn | None = None
    slot: Slot | None = None

    async def close(self) -> None:
        """Give back the generation slot and the session lock (idempotent; runs however the request ended)."""
        if self.slot is not None:
            self.slot.release()
        if self.session is not None:
            await self.session.release()

    def extensions(self) -> dict[str, object]:
        """Top-level SweetieChat fields of responses and chunks."""
        out: dict[str, object] = {}
        if self.session is not None:
            out["session_id"] = self.session.session_id
            out["turn"] = self.session.turn
        if self.safety is not None:
            out["safety"] = self.safety.to_dict()
        return out


@dataclass
class _Progress:
    """Per-request accounting shared by the streaming and non-streaming paths."""

    started: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    last_token_at: float | None = None
    completion_tokens: int = 0


class ChatService:
    """Serves chat completions for one model."""

    def __init__(
        self,
        engine: Engine,
        prompts: PromptBuilder,
        manifest: Manifest,
        options: ChatOptions,
        *,
        store: SessionStore,
        catalogue: StrategyCatalogue,
        screen: SafetyScreen,
        safety_policy: SafetyPolicy,
        admission: Admission,
    ) -> None:
        self.engine = engine
        self.prompts = prompts
        self.manifest = manifest
        self.options = options
        self.store = store
        self.catalogue = catalogue
        self.screen = screen
        self.safety_policy = safety_policy
        self.admission = admission

    @property
    def model_name(self) -> str:
        return self.manifest.name

    # ---- before generation ----

    def _validate(self, request: ChatCompletionRequest, session_id: str | None) -> str | None:
        if request.model != self.model_name:
            raise ModelNotFoundError(request.model)
        if not self.engine.is_ready:
            raise ServiceUnavailableError("The model is not ready to serve requests; retry shortly.", retry_after=5)
        if len(request.messages) > self.options.max_messages:
            raise InvalidRequestError(
                f"Too many messages: {len(request.messages)} (the limit is {self.options.max_messages}).",
                param="messages",
                code="array_above_max_length",
            )
        if request.n > self.options.max_n:
            raise InvalidRequestError(
                f"Invalid value for 'n': {request.n}; at most {self.options.max_n} choices per request.",
                param="n",
                code="integer_above_max_value",
            )
        if session_id is not None and request.n != 1:
            raise InvalidRequestError("'n' must be 1 in a session: one reply is stored per turn.", param="n")
        if request.messages[-1].role == "assistant":
            raise InvalidRequestError(
                "The last message must be from the user (or system), not the assistant.",
                param="messages",
                code="invalid_value",
            )
        if request.strategy_mode == "model" and self.manifest.strategy_mode != "model":
            raise InvalidRequestError(
                "strategy_mode 'model' needs a fine-tuned model that writes strategy tags; use 'counselor' or 'off'.",
                param="strategy_mode",
                code="invalid_value",
            )
        if request.strategy is None:
            return None
        name = self.catalogue.canonical(request.strategy)
        if name is None:
            raise InvalidRequestError(
                f"Unknown strategy {request.strategy!r}. Valid strategies: {', '.join(self.catalogue.names)}.",
                param="strategy",
                code="invalid_value",
            )
        return name

    async def prepare(self, request: ChatCompletionRequest, caller: Caller) -> PreparedChat:
        """Validate, open the session turn, screen, pick the strategy and build the prompt."""
        session_id = caller.session_id or request.session_id
        requested = self._validate(request, session_id)
        messages: list[tuple[str, str]] = [
            ("system" if m.role == "developer" else m.role, m.text) for m in request.messages
        ]
        slot = await self.admission.acquire()
        session: SessionTurn | None = None
        try:
            if session_id is not None:
                session = await open_session(
                    self.store,
                    caller.tenant,
                    session_id,
                    messages,
                    wait_s=self.options.session_lock_wait_s,
                    ttl_s=self.options.session_lock_ttl_s,
                )
            chat = await self._build(request, caller, messages, session, requested)
        except BaseException:
            slot.release()
            if session is not None:
                await session.release()
            raise
        chat.slot = slot
        return chat

    async def _build(
        self,
        request: ChatCompletionRequest,
        caller: Caller,
        messages: list[tuple[str, str]],
        session: SessionTurn | None,
        strategy: str | None,
    ) -> PreparedChat:
        new_user_text = "\n".join(
            text for role, text in (session.new_messages if session else messages[-1:]) if role == "user"
        )
        safety = self._screen(new_user_text, request.locale)
        mode = request.strategy_mode or self.manifest.strategy_mode
        max_len = self.engine.max_model_len
        requested_max = request.requested_max_tokens
        reply_budget = requested_max or self.manifest.sampling.max_tokens

        if session is not None:
            persona = session.effective_persona
            system = [Turn("system", persona)] if persona is not None else []
            reserved = self.prompts.count_tokens(persona or self.prompts.system_prompt or "") + 16
            turns = system + session_prompt_turns(
                session,
                self.prompts.count_tokens,
                max(1, max_len - min(reply_budget, max_len // 2)),
                reserved,
                self.options.session_block_turns,
            )
        else:
            turns = [Turn(role, text) for role, text in messages]

        if strategy is None and mode == "counselor":
            strategy = await self._counsel(turns, caller.request_id)
        instruction = strategy_instruction(self.catalogue, strategy) if strategy and mode != "model" else None
        prefill = f"[{strategy}] " if strategy and mode == "model" else ""
        prompt_ids = self.prompts.token_ids(
            turns, instruction=instruction, tag_strategies=mode == "model", prefill=prefill
        )
        prompt_len = len(prompt_ids)
        if prompt_len >= max_len or (requested_max is not None and prompt_len + requested_max > max_len):
            asked = f"{prompt_len + (requested_max or 0)} tokens ({prompt_len} in the messages"
            asked += f", {requested_max} in the completion)" if requested_max else ")"
            raise InvalidRequestError(
                f"This model's maximum context length is {max_len} tokens. However, you requested {asked}. "
                "Please reduce the length of the messages or completion.",
                param="messages",
                code="context_length_exceeded",
            )
        max_tokens = requested_max or min(self.manifest.sampling.max_tokens, max_len - prompt_len)
        params = request.to_generation_params(self.manifest.sampling, max_tokens)
        try:
            self.engine.check(params)
        except InvalidParamsError as exc:
            raise InvalidRequestError(f"Invalid sampling parameters: {exc}", code="invalid_value") from exc
        annotate(
            model=request.model,
            stream=request.stream,
            n=request.n,
            prompt_tokens=prompt_len,
            session=session is not None,
            turn=session.turn if session else None,
            strategy=strategy,
            safety=safety.level.value if safety else None,
        )
        return PreparedChat(
            request=request,
            request_id=caller.request_id,
            prompt_ids=prompt_ids,
            params=params,
            strategy=strategy,
            parse_tags=mode == "model" and not prefill,
            max_sentences=self._max_sentences(request),
            safety=safety,
            session=session,
        )

    def _max_sentences(self, request: ChatCompletionRequest) -> int | None:
        """The request's sentence budget (0: none), else the manifest's; ``ignore_eos`` asks for full length."""
        if request.ignore_eos:
            return None
        if request.max_sentences is not None:
            return request.max_sentences or None
        return self.manifest.sampling.max_sentences

    def _screen(self, text: str, locale: str | None) -> SafetyDecision | None:
        if not text:
            return None
        result = self.screen.screen(text)
        SAFETY_FLAGS.labels(level=result.level.value).inc()
        return self.safety_policy.apply(result, None, locale)

    async def _counsel(self, turns: list[Turn], request_id: str) -> str:
        """The Strategy Counselor: a short generation constrained to one catalogue name."""
        transcript = [(t.role, t.content) for t in turns if t.role in ("user", "assistant")]
        prompt = counselor_prompt(self.catalogue, transcript)
        ids = self.prompts.raw_ids(
            [{"role": "system", "content": prompt.system}, {"role": "user", "content": prompt.user}]
        )
        params = GenerationParams(max_tokens=16, temperature=0.0, choices=tuple(self.catalogue.names))
        text = ""
        async for deltas in self.engine.generate(ids, params, f"{request_id}-counselor"):
            text += "".join(d.text for d in deltas if d.index == 0)
        return self.catalogue.canonical(text) or self.catalogue.names[-1]

    # ---- generation ----

    async def _deltas(self, chat: PreparedChat, progress: _Progress) -> AsyncGenerator[list[ChoiceDelta], None]:
        """The engine stream with timing, token accounting, in-flight gauge and abort bookkeeping."""
        if chat.safety is not None and chat.safety.replaces_reply:
            return  # the policy replaces the reply: nothing to generate
        INFLIGHT.inc()
        PROMPT_TOKENS.observe(len(chat.prompt_ids))
        try:
            async with aclosing(self.engine.generate(chat.prompt_ids, chat.params, chat.request_id)) as stream:
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

    async def _replies(self, chat: PreparedChat, progress: _Progress) -> AsyncGenerator[ReplyDelta, None]:
        """Visible reply deltas (tags stripped, sentence budget applied); closing it aborts the engine request."""
        texts = [
            ReplyText(i, self.catalogue if chat.parse_tags else None, chat.max_sentences) for i in range(chat.params.n)
        ]
        async with aclosing(self._deltas(chat, progress)) as engine_deltas:
            async for deltas in engine_deltas:
                for d in deltas:
                    delta = texts[d.index].feed(d.text, d.finish_reason)
                    if delta is None:
                        continue
                    if delta.finish_reason and texts[d.index].limited:
                        SENTENCE_LIMITED.inc()
                        annotate(sentence_limited=True)
                    yield delta
                if all(t.finished for t in texts):
                    return  # every reply is complete (a budget cut ends it early): closing aborts the engine request

    def _usage(self, chat: PreparedChat, progress: _Progress) -> UsageInfo:
        prompt = len(chat.prompt_ids)
        return UsageInfo(
            prompt_tokens=prompt,
            completion_tokens=progress.completion_tokens,
            total_tokens=prompt + progress.completion_tokens,
        )

    async def _commit(self, chat: PreparedChat, reply: str, strategy: str | None, progress: _Progress) -> None:
        """Store the finished turn (sessions only). Raises ``SessionError`` if the store refuses or is down."""
        if self.options.log_content:
            annotate(user_text=chat.request.messages[-1].text, reply_text=reply)
        if chat.session is None:
            return
        safety = chat.safety.to_dict() if chat.safety is not None and chat.safety.level.value != "none" else None
        await chat.session.commit(reply, strategy, len(chat.prompt_ids), progress.completion_tokens, safety)

    async def complete(self, chat: PreparedChat) -> ChatCompletionResponse:
        """Run to completion, commit the turn, and return one response."""
        try:
            n = chat.params.n
            texts = [""] * n
            finish: list[str | None] = [None] * n
            strategies: list[str | None] = [None if chat.parse_tags else chat.strategy] * n
            progress = _Progress()
            try:
                async for delta in self._replies(chat, progress):
                    texts[delta.index] += delta.text
                    finish[delta.index] = delta.finish_reason or finish[delta.index]
                    strategies[delta.index] = delta.strategy or strategies[delta.index]
            except InvalidParamsError as exc:
                raise InvalidRequestError(f"Invalid sampling parameters: {exc}", code="invalid_value") from exc
            except EngineError as exc:
                raise EngineFailureError("The model failed while generating a reply; please retry.") from exc
            choices = []
            for i in range(n):
                text = chat.safety.render(texts[i]) if chat.safety is not None else texts[i]
                choices.append(
                    ChatCompletionChoice(
                        index=i,
                        message=ChatCompletionMessage(content=text, strategy=strategies[i]),
                        finish_reason=finish[i] or "stop",
                    )
                )
                STRATEGIES.labels(strategy=strategies[i] or "none").inc()
            await self._commit(chat, choices[0].message.content, choices[0].message.strategy, progress)
            annotate(finish_reason=finish[0])
            return ChatCompletionResponse.model_validate(
                {
                    "id": completion_id(),
                    "model": self.model_name,
                    "choices": choices,
                    "usage": self._usage(chat, progress),
                    **chat.extensions(),  # the same session/turn/safety fields the stream chunks carry
                }
            )
        finally:
            await chat.close()

    async def stream(self, chat: PreparedChat) -> AsyncIterator[str]:
        """Yield SSE ``data`` payloads: chunks, in-band errors, then ``[DONE]``; commit the turn before ``[DONE]``."""
        try:
            async for payload in self._stream(chat):
                yield payload
        finally:
            await chat.close()

    async def _stream(self, chat: PreparedChat) -> AsyncIterator[str]:
        cid, created = completion_id(), int(time.time())
        include_usage = chat.request.include_usage
        extensions = chat.extensions()

        def chunk(choices: list[dict[str, object]], usage: UsageInfo | None = None) -> str:
            body: dict[str, object] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.model_name,
                "choices": choices,
                **extensions,
            }
            if include_usage:
                body["usage"] = usage.model_dump() if usage else None
            return json.dumps(body, ensure_ascii=False, separators=(",", ":"))

        def choice(index: int, delta: dict[str, str], finish_reason: str | None = None) -> dict[str, object]:
            return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

        def error_event(message: str, code: str) -> str:
            return ErrorResponse(error=ErrorInfo(message=message, type="server_error", code=code)).model_dump_json()

        n = chat.params.n
        leading = chat.safety.leading if chat.safety else ""
        trailing = chat.safety.trailing if chat.safety else ""
        replies = [leading] * n
        strategies: list[str | None] = [None if chat.parse_tags else chat.strategy] * n
        progress = _Progress()

        first: dict[str, str] = {"role": "assistant", "content": ""}
        if chat.strategy and not chat.parse_tags:
            first["strategy"] = chat.strategy
        yield chunk([choice(i, first) for i in range(n)])
        if leading:
            yield chunk([choice(i, {"content": leading}) for i in range(n)])
        try:
            async for reply in self._replies(chat, progress):
                delta: dict[str, str] = {}
                if reply.strategy:
                    delta["strategy"] = strategies[reply.index] = reply.strategy
                if reply.text:
                    delta["content"] = reply.text
                    replies[reply.index] += reply.text
                if delta:
                    yield chunk([choice(reply.index, delta)])
                if reply.finish_reason:
                    if trailing:
                        replies[reply.index] += trailing
                        yield chunk([choice(reply.index, {"content": trailing})])
                    yield chunk([choice(reply.index, {}, reply.finish_reason)])
            if chat.safety is not None and chat.safety.replaces_reply:
                yield chunk([choice(i, {}, "stop") for i in range(n)])
            for strategy in strategies:
                STRATEGIES.labels(strategy=strategy or "none").inc()
            try:
                await self._commit(chat, replies[0], strategies[0], progress)
            except SessionError:
                annotate(outcome="commit_failed")
                yield error_event("The reply was not saved to the session; resend this turn.", "session_commit_failed")
            if include_usage:
                yield chunk([], self._usage(chat, progress))
        except InvalidParamsError as exc:
            error = ErrorInfo(
                message=f"Invalid sampling parameters: {exc}", type="invalid_request_error", code="invalid_value"
            )
            yield ErrorResponse(error=error).model_dump_json()
        except EngineError:
            yield error_event("The model failed while generating a reply; please retry.", "engine_error")
        yield DONE
