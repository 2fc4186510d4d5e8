"""OpenAI-compatible request/response models (names mirror the OpenAI spec) plus SweetieChat's extensions.

Only pydantic models live here. Requests convert themselves to engine parameters with
:meth:`ChatCompletionRequest.to_generation_params`. Unknown request fields are ignored, as OpenAI-compatible servers
conventionally do, so newer SDKs keep working.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool

from app.engine.base import GenerationParams
from app.manifest import SamplingDefaults


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


class TextContentPart(BaseModel):
    """One part of a multi-part message content; only text is supported."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: Text


class ChatMessage(BaseModel):
    """A message in the conversation."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: Text | list[TextContentPart]
    name: Text | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


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
    ignore_eos: StrictBool = False
    """vLLM-compatible extension: keep generating past the end-of-sequence token (load tests, benchmarks)."""
    session_id: Annotated[Text, Field(pattern=r"^[A-Za-z0-9._:-]{1,128}$")] | None = None
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

    @property
    def requested_max_tokens(self) -> int | None:
        """``max_completion_tokens`` (current name) wins over the deprecated ``max_tokens``."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def stop_sequences(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def to_generation_params(self, defaults: SamplingDefaults, max_tokens: int) -> GenerationParams:
        """Engine parameters: request fields, else the model manifest's defaults."""
        return GenerationParams(
            max_tokens=max_tokens,
            temperature=defaults.temperature if self.temperature is None else self.temperature,
            top_p=defaults.top_p if self.top_p is None else self.top_p,
            n=self.n,
            seed=self.seed,
            stop=self.stop_sequences(),
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            repetition_penalty=defaults.repetition_penalty,
            ignore_eos=self.ignore_eos,
        )


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
    session_id: Annotated[Text, Field(pattern=r"^[A-Za-z0-9._:-]{1,128}$")] | None = None
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


class ChatCompletionStreamResponse(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatCompletionStreamChoice]
    usage: UsageInfo | None = None
    session_id: Annotated[Text, Field(pattern=r"^[A-Za-z0-9._:-]{1,128}$")] | None = None
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
