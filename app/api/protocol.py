"""OpenAI-compatible request/response models (names mirror the OpenAI spec) plus SweetieChat's extensions.

Only pydantic models live here. Requests convert themselves to the chat pipeline's wire-independent request with
:meth:`ChatCompletionRequest.to_turn_request` (the one place where wire messages become :class:`Message` objects and
``developer`` becomes ``system``). Unknown request fields are ignored, as OpenAI-compatible servers conventionally
do, so newer SDKs keep working.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    model_serializer,
    model_validator,
)

from app.chat.turn import Output, Sampling, TurnRequest
from app.core.messages import SESSION_ID_RE, Message, WireRole, from_wire


def _valid_utf8(value: str) -> str:
    """Reject strings that cannot be encoded (lone UTF-16 surrogates from ``\\ud800``-style JSON escapes)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains an invalid character (a lone UTF-16 surrogate)") from None
    return value


Text = Annotated[str, AfterValidator(_valid_utf8)]
"""A string that is valid Unicode text (every request string goes through this)."""

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
SessionId = Annotated[Text, Field(pattern=SESSION_ID_RE)]


class TextContentPart(BaseModel):
    """One part of a multi-part message content; only text is supported."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: Text


class ChatMessage(BaseModel):
    """A message in the conversation."""

    model_config = ConfigDict(extra="ignore")

    role: WireRole
    content: Text | list[TextContentPart]
    name: Text | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)

    def to_message(self) -> Message:
        """The pipeline's message."""
        return from_wire(self.role, self.text)


class JsonSchemaFormat(BaseModel):
    """``response_format.json_schema``: the schema the reply must match."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: Annotated[Text, Field(min_length=1, max_length=64)]
    description: Text | None = None
    json_schema: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: StrictBool | None = None


class ResponseFormat(BaseModel):
    """``response_format``: plain text (default), any JSON object, or JSON matching a schema (structured outputs)."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("'json_schema' is required when type is 'json_schema'")
        return self


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: StrictBool = False


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions`` body."""

    model_config = ConfigDict(extra="ignore")

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    model: Text
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int | None, Field(ge=1)] = None
    max_completion_tokens: Annotated[int | None, Field(ge=1)] = None
    temperature: Annotated[float | None, Field(ge=0.0, le=2.0)] = None
    top_p: Annotated[float | None, Field(gt=0.0, le=1.0)] = None
    stop: (
        Annotated[Text, Field(min_length=1)]
        | Annotated[list[Annotated[Text, Field(min_length=1)]], Field(max_length=4)]
        | None
    ) = None
    seed: Annotated[int | None, Field(ge=INT64_MIN, le=INT64_MAX)] = None
    n: Annotated[int, Field(ge=1)] = 1
    presence_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] = 0.0
    frequency_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] = 0.0
    user: Text | None = None
    response_format: ResponseFormat | None = None
    ignore_eos: StrictBool = False
    """vLLM-compatible extension: keep generating past the end-of-sequence token (load tests, benchmarks)."""
    session_id: SessionId | None = None
    """SweetieChat extension: continue this stored session (same as the ``X-Session-Id`` header)."""
    strategy: Text | None = None
    """SweetieChat extension: the support strategy the reply must use (a catalogue name)."""
    strategy_mode: Literal["off", "counselor", "model"] | None = None
    """SweetieChat extension: override the model's strategy mode for this request (``model`` needs a fine-tuned
    model whose manifest says ``model``)."""
    max_sentences: Annotated[int | None, Field(ge=0, le=100)] = None
    """SweetieChat extension: end the reply after this many sentences (0: no sentence limit); default from the
    model's manifest. Ignored with ``ignore_eos``."""
    locale: Annotated[Text, Field(max_length=35)] | None = None
    """SweetieChat extension: locale for crisis resources (e.g. ``en-US``, ``zh-CN``); detected when unset."""

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def to_turn_request(self) -> TurnRequest:
        """The pipeline's request. ``max_completion_tokens`` (the current name) wins over ``max_tokens``."""
        stop = () if self.stop is None else (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        return TurnRequest(
            model=self.model,
            messages=[m.to_message() for m in self.messages],
            sampling=Sampling(
                temperature=self.temperature,
                top_p=self.top_p,
                seed=self.seed,
                stop=stop,
                presence_penalty=self.presence_penalty,
                frequency_penalty=self.frequency_penalty,
            ),
            n=self.n,
            max_tokens=self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens,
            session_id=self.session_id,
            strategy=self.strategy,
            strategy_mode=self.strategy_mode,
            max_sentences=self.max_sentences,
            ignore_eos=self.ignore_eos,
            locale=self.locale,
            stream=self.stream,
            output=self._output(),
        )

    def _output(self) -> Output:
        form = self.response_format
        if form is None or form.type == "text":
            return Output()
        if form.type == "json_object":
            return Output(json_object=True)
        assert form.json_schema is not None  # checked by ResponseFormat
        return Output(json_schema=form.json_schema.json_schema)


class UsageInfo(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ChatCompletionMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    strategy: str | None = None
    """SweetieChat extension: the support strategy of this reply (omitted when none)."""


class ChatCompletionChoice(BaseModel):
    index: int
    message: ChatCompletionMessage
    finish_reason: str | None
    logprobs: None = None


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


class SafetyInfo(BaseModel):
    """SweetieChat extension: the crisis screen's verdict on the user's message and what the server did."""

    level: Literal["none", "elevated", "high"]
    categories: list[str]
    action: str = "none"


class ChatCompletionResponse(BaseModel):
    id: str = Field(default_factory=completion_id)
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatCompletionChoice]
    usage: UsageInfo
    session_id: SessionId | None = None
    """SweetieChat extension: the session this turn belongs to (omitted for stateless requests)."""
    turn: int | None = None
    """SweetieChat extension: this turn's number in the session."""
    safety: SafetyInfo | None = None


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    strategy: str | None = None


class ChatCompletionStreamChoice(BaseModel):
    index: int
    delta: DeltaMessage
    finish_reason: str | None = None
    logprobs: None = None

    @model_serializer(mode="wrap")
    def _openai_nulls(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """OpenAI sends ``finish_reason`` and ``logprobs`` on every chunk, null until the end: keep them even when
        the chunk is dumped with ``exclude_none`` (clients index them directly)."""
        data: dict[str, Any] = handler(self)
        data.setdefault("finish_reason", None)
        data.setdefault("logprobs", None)
        return data


class ChatCompletionStreamResponse(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatCompletionStreamChoice]
    usage: UsageInfo | None = None
    session_id: SessionId | None = None
    turn: int | None = None
    safety: SafetyInfo | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "sweetiechat"
    max_model_len: int


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorInfo
