"""SweetieChat behaviours through the official OpenAI SDK: safety and strategy extensions, stream and non-stream."""

from __future__ import annotations

import json
import re
import uuid

import httpx
import openai
import pytest

from tests.conftest import TINY_MODEL
from tests.server_process import ServerProcess
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

RISKY = "I have the pills ready and I want to end my life tonight."
RISKY_ZH = "我真的不想活了，今晚就想结束这一切。"


@pytest.fixture(scope="module")
def client(tiny_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=tiny_server.base_url, api_key="unused", max_retries=0, timeout=60)


def test_high_risk_reply_is_replaced_by_the_vetted_message(client: openai.OpenAI, tiny_server: ServerProcess) -> None:
    messages = [{"role": "user", "content": RISKY}]
    request_id = f"risky-{uuid.uuid4().hex[:8]}"
    reply = client.chat.completions.create(
        model=TINY_MODEL,
        messages=messages,
        max_tokens=8,
        extra_body={"locale": "en-US"},
        extra_headers={"X-Request-Id": request_id},
    )
    safety = reply.model_extra["safety"]
    assert safety["level"] == "high" and "suicide" in safety["categories"] and safety["action"] == "replace"
    content = reply.choices[0].message.content or ""
    assert "988" in content and "I'm an AI" in content  # the vetted en-US message, with its crisis line
    assert reply.usage is not None and reply.usage.completion_tokens == 0  # no model text: nothing was generated
    generic = client.chat.completions.create(model=TINY_MODEL, messages=messages, max_tokens=8)
    assert "emergency" in (generic.choices[0].message.content or "")  # no locale: the international fallback
    # Without Redis the escalation is a structured log line: the ids and the verdict, never the text.
    wait_until(lambda: request_id in tiny_server.log_text(), what="the escalation log line")
    lines = [line for line in tiny_server.log_text().splitlines() if "high_risk_escalation" in line]
    event = json.loads(next(line for line in lines if request_id in line))
    assert event["risk_level"] == "high" and event["categories"] == "suicide" and event["session_id"] == ""
    assert event["level"] == "warning"  # the log record's own level: on-call log alerts can key on it
    assert not any(RISKY in line for line in tiny_server.log_text().splitlines())


def test_high_risk_chinese_gets_chinese_resources_in_stream(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=TINY_MODEL,
            messages=[{"role": "user", "content": RISKY_ZH}],
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].model_extra["safety"] == {"level": "high", "categories": ["suicide"], "action": "replace"}
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "400-161-9995" in text or "010-82951332" in text
    assert text.startswith("谢谢你告诉我")  # the vetted message only
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 0


def test_safe_and_idiomatic_messages_are_not_flagged(client: openai.OpenAI) -> None:
    for text in ("This exam is killing me, I'm so tired.", "累死了，今天加班到十点。"):
        reply = client.chat.completions.create(
            model=TINY_MODEL, messages=[{"role": "user", "content": text}], max_tokens=4
        )
        assert reply.model_extra["safety"] == {"level": "none", "categories": [], "action": "none"}


def test_requested_strategy_is_honoured_stream_and_non_stream(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "My dog died last week."}]
    plain = client.chat.completions.create(model=TINY_MODEL, messages=messages, max_tokens=6)
    reply = client.chat.completions.create(
        model=TINY_MODEL, messages=messages, max_tokens=6, extra_body={"strategy": "Reflection of feelings"}
    )
    assert reply.choices[0].message.model_extra["strategy"] == "Reflection of feelings"
    # The strategy's instruction (its name and definition) reached the prompt the model saw.
    assert plain.usage is not None and reply.usage is not None
    assert reply.usage.prompt_tokens - plain.usage.prompt_tokens >= 20
    chunks = list(
        client.chat.completions.create(
            model=TINY_MODEL, messages=messages, max_tokens=6, stream=True, extra_body={"strategy": "question"}
        )
    )
    assert chunks[0].choices[0].delta.model_extra["strategy"] == "Question"


def test_unknown_strategy_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=TINY_MODEL, messages=[{"role": "user", "content": "hi"}], extra_body={"strategy": "Hugging"}
        )
    assert info.value.param == "strategy" and "Providing Suggestions" in info.value.message


def test_counselor_mode_picks_a_catalogue_strategy_on_tiny_model(
    client: openai.OpenAI, tiny_server: ServerProcess
) -> None:
    from app.core.strategies import load_catalogue

    invalid_before = counselor_invalid(tiny_server)
    reply = client.chat.completions.create(
        model=TINY_MODEL,
        messages=[{"role": "user", "content": "I can't stop worrying about my exams."}],
        max_tokens=4,
        extra_body={"strategy_mode": "counselor"},
    )
    # A random model still picks a catalogue name: guided choice constrains its output (no fallback exists).
    assert reply.choices[0].message.model_extra["strategy"] in load_catalogue().names
    assert counselor_invalid(tiny_server) == invalid_before


def counselor_invalid(server: ServerProcess) -> float:
    text = httpx.get(f"{server.root_url}/metrics").text
    match = re.search(r"^sweetie_counselor_invalid_total (\S+)$", text, re.M)
    assert match is not None
    return float(match.group(1))


def test_structured_output_follows_the_json_schema_stream_and_not(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"strategy": {"type": "string", "enum": ["Question", "Affirmation and Reassurance"]}},
        "required": ["strategy"],
        "additionalProperties": False,
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "pick", "schema": schema, "strict": True}}
    messages = [{"role": "user", "content": "Pick a strategy for: I failed my exam."}]
    reply = client.chat.completions.create(
        model=TINY_MODEL, messages=messages, max_tokens=200, response_format=response_format, temperature=0.0
    )
    assert json.loads(reply.choices[0].message.content or "")["strategy"] in schema["properties"]["strategy"]["enum"]
    chunks = client.chat.completions.create(
        model=TINY_MODEL, messages=messages, max_tokens=200, response_format=response_format, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert set(json.loads(text)) == {"strategy"}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=TINY_MODEL,
            messages=messages,
            response_format={"type": "json_schema"},  # type: ignore[arg-type,typeddict-item]
        )
    assert info.value.param == "response_format"
