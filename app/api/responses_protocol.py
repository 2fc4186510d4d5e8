"""OpenAI Responses and Conversations wire models (names mirror the OpenAI spec), plus SweetieChat's extensions.

Only pydantic models and the conversions between wire items and :class:`app.core.messages.Message` live here.
Requests ignore unknown fields, as OpenAI-compatible servers conventionally do. Only text is supported: an input
item of another type (images, files, tool calls) is a 400 that names it.
"""

from __future__ import annotations

import secrets
import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from app.api.protocol import INT64_MAX, INT64_MIN, SafetyInfo, SessionId, Text
from app.chat.turn import Sampling, TurnRequest
from app.core.messages import SESSION_ID_RE, Message, WireRole, from_wire

ItemStatus = Literal["in_progress", "completed", "incomplete"]
ResponseId = Annotated[Text, Field(pattern=SESSION_ID_RE)]
Metadata = Annotated[dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]], Field()]


def response_id() -> str:
    return f"resp_{secrets.token_hex(24)}"


def conversation_id() -> str:
    return f"conv_{secrets.token_hex(24)}"


# ---- input ----------------------------------------------------------------------------------------------------


class InputText(BaseModel):
    """A text part of an input message (``output_text`` for assistant messages sent back as input)."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["input_text", "output_text", "text"]
    text: Text


class InputMessage(BaseModel):
    """A message item of ``input`` (or of a conversation's ``items``)."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["message"] = "message"
    role: WireRole
    content: Text | list[InputText]

    def to_message(self) -> Message:
        text = self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)
        return from_wire(self.role, text)


class ConversationRef(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: SessionId


class ResponsesRequest(BaseModel):
    """``POST /v1/responses`` body."""

    model_config = ConfigDict(extra="ignore")

    model: Text
    input: Text | Annotated[list[InputMessage], Field(min_length=1)]
    instructions: Text | None = None
    stream: StrictBool = False
    store: StrictBool = True
    previous_response_id: ResponseId | None = None
    conversation: SessionId | ConversationRef | None = None
    max_output_tokens: Annotated[int | None, Field(ge=1)] = None
    temperature: Annotated[float | None, Field(ge=0.0, le=2.0)] = None
    top_p: Annotated[float | None, Field(gt=0.0, le=1.0)] = None
    seed: Annotated[int | None, Field(ge=INT64_MIN, le=INT64_MAX)] = None
    truncation: Literal["auto", "disabled"] = "disabled"
    metadata: Metadata | None = None
    user: Text | None = None
    strategy: Text | None = None
    """SweetieChat extension: the support strategy the reply must use (a catalogue name)."""
    strategy_mode: Literal["off", "counselor", "model"] | None = None
    max_sentences: Annotated[int | None, Field(ge=0, le=100)] = None
    locale: Annotated[Text, Field(max_length=35)] | None = None
    ignore_eos: StrictBool = False
    """vLLM-compatible extension: generate past end-of-sequence (load tests, benchmarks)."""

    @field_validator("metadata")
    @classmethod
    def _at_most_16(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and len(value) > 16:
            raise ValueError("at most 16 key-value pairs")
        return value

    @property
    def conversation_id(self) -> str | None:
        if self.conversation is None:
            return None
        return self.conversation if isinstance(self.conversation, str) else self.conversation.id

    def input_messages(self) -> list[Message]:
        if isinstance(self.input, str):
            return [Message("user", self.input)]
        return [item.to_message() for item in self.input]

    def to_turn_request(self) -> TurnRequest:
        return TurnRequest(
            model=self.model,
            messages=self.input_messages(),
            sampling=Sampling(temperature=self.temperature, top_p=self.top_p, seed=self.seed),
            max_tokens=self.max_output_tokens,
            strategy=self.strategy,
            strategy_mode=self.strategy_mode,
            max_sentences=self.max_sentences,
            locale=self.locale,
            ignore_eos=self.ignore_eos,
            stream=self.stream,
            previous_response_id=self.previous_response_id,
            conversation_id=self.conversation_id,
            instructions=self.instructions,
            truncation=self.truncation,
        )


# ---- output -----------------------------------------------------------------------------------------------------


class OutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = Field(default_factory=list)
    logprobs: list[Any] = Field(default_factory=list)


class InputTextPart(BaseModel):
    type: Literal["input_text"] = "input_text"
    text: str


class MessageItem(BaseModel):
    """A message as an item: a response's output, a response's input, or a conversation's item."""

    id: str
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system"]
    status: ItemStatus = "completed"
    content: list[OutputText | InputTextPart]
    strategy: str | None = None
    """SweetieChat extension: the support strategy of an assistant message (omitted when none)."""

    @classmethod
    def of(
        cls, message: Message, status: Literal["in_progress", "completed", "incomplete"] = "completed"
    ) -> MessageItem:
        part: OutputText | InputTextPart = (
            OutputText(text=message.content) if message.role == "assistant" else InputTextPart(text=message.content)
        )
        return cls(
            id=message.id or "",
            role=message.role,
            status=status,
            content=[part] if message.content or message.role != "assistant" else [],
            strategy=message.strategy,
        )


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens", "content_filter"]


class ResponseError(BaseModel):
    code: str
    message: str


class TextFormat(BaseModel):
    type: Literal["text"] = "text"


class TextConfig(BaseModel):
    format: TextFormat = Field(default_factory=TextFormat)


class ResponseObject(BaseModel):
    """The response object, as created, streamed, stored and retrieved."""

    id: str
    object: Literal["response"] = "response"
    created_at: int = Field(default_factory=lambda: int(time.time()))
    status: Literal["in_progress", "completed", "incomplete", "failed"]
    model: str
    output: list[MessageItem] = Field(default_factory=list)
    usage: ResponseUsage | None = None
    previous_response_id: str | None = None
    conversation: ConversationRef | None = None
    store: bool = True
    metadata: dict[str, str] = Field(default_factory=dict)
    instructions: str | None = None
    incomplete_details: IncompleteDetails | None = None
    error: ResponseError | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    truncation: Literal["auto", "disabled"] = "disabled"
    parallel_tool_calls: bool = False
    tool_choice: Literal["auto", "none"] = "auto"
    tools: list[Any] = Field(default_factory=list)
    text: TextConfig = Field(default_factory=TextConfig)
    safety: SafetyInfo | None = None
    """SweetieChat extension: the crisis screen's verdict on the input and what the server did."""


class ResponseDeleted(BaseModel):
    id: str
    object: Literal["response.deleted"] = "response.deleted"
    deleted: bool = True


class StreamEvent(BaseModel):
    """One typed event of a streamed response (``response.*`` or ``error``), dumped without null fields."""

    type: str
    sequence_number: int
    response: ResponseObject | None = None
    output_index: int | None = None
    content_index: int | None = None
    item_id: str | None = None
    item: MessageItem | None = None
    part: OutputText | None = None
    delta: str | None = None
    text: str | None = None
    logprobs: list[Any] | None = None
    code: str | None = None
    message: str | None = None
    param: str | None = None


# ---- lists and conversations -------------------------------------------------------------------------------------


class ItemList(BaseModel):
    """A page of items, in OpenAI's list shape."""

    object: Literal["list"] = "list"
    data: list[MessageItem]
    first_id: str | None
    last_id: str | None
    has_more: bool


class ConversationCreateRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    items: Annotated[list[InputMessage], Field(max_length=20)] | None = None
    metadata: Metadata | None = None

    @field_validator("metadata")
    @classmethod
    def _at_most_16(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and len(value) > 16:
            raise ValueError("at most 16 key-value pairs")
        return value


class ConversationUpdateRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    metadata: Metadata

    @field_validator("metadata")
    @classmethod
    def _at_most_16(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 16:
            raise ValueError("at most 16 key-value pairs")
        return value


class ConversationItemsRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    items: Annotated[list[InputMessage], Field(min_length=1, max_length=20)]


class ConversationObject(BaseModel):
    id: str
    object: Literal["conversation"] = "conversation"
    created_at: int
    metadata: dict[str, str] = Field(default_factory=dict)


class ConversationDeleted(BaseModel):
    id: str
    object: Literal["conversation.deleted"] = "conversation.deleted"
    deleted: bool = True
