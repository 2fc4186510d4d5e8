"""The Responses and Conversations APIs through the official OpenAI SDK, sync and async, on the real server with
Redis: create / retrieve / delete / input items, the streamed event sequence, chains that branch, store: false,
conversations CRUD and item pages, tenant isolation, erasure, two replicas, and errors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import KEY_A, KEY_B, TINY_MODEL, session_server_env
from tests.server_process import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.redis]


@pytest.fixture(scope="module")
def alpha(session_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=session_server.base_url, api_key=KEY_A, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def beta(session_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=session_server.base_url, api_key=KEY_B, max_retries=0, timeout=60)


def create(client: openai.OpenAI, text: str, **kwargs: Any) -> Any:
    return client.responses.create(model=TINY_MODEL, input=text, max_output_tokens=8, **kwargs)


def test_create_retrieve_input_items_and_delete(alpha: openai.OpenAI) -> None:
    response = create(alpha, "I lost my job today.", metadata={"ticket": "42"})
    assert response.id.startswith("resp_") and response.object == "response" and response.model == TINY_MODEL
    assert response.status in {"completed", "incomplete"}
    assert response.usage is not None and response.usage.input_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert response.output[0].type == "message" and response.output[0].role == "assistant"
    assert response.model_extra["safety"]["level"] == "none"
    retrieved = alpha.responses.retrieve(response.id)
    assert (retrieved.id, retrieved.output_text, retrieved.metadata) == (
        response.id,
        response.output_text,
        {"ticket": "42"},
    )
    items = alpha.responses.input_items.list(response.id)
    assert [(i.role, i.content[0].text) for i in items.data] == [("user", "I lost my job today.")]  # type: ignore[union-attr]
    deleted = alpha.responses.delete(response.id)
    assert deleted is None or getattr(deleted, "deleted", True)
    with pytest.raises(openai.NotFoundError):
        alpha.responses.retrieve(response.id)


def test_streamed_events_arrive_in_order_with_sequence_numbers(alpha: openai.OpenAI) -> None:
    with alpha.responses.stream(model=TINY_MODEL, input="My exam went badly.", max_output_tokens=8) as stream:
        events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    tail = [k for k in kinds if k != "response.output_text.delta"][4:]
    assert tail == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",  # the random tiny model runs to max_output_tokens
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    last = events[-1].response  # type: ignore[union-attr]
    assert last.incomplete_details is not None and last.incomplete_details.reason == "max_output_tokens"
    assert last.output_text == "".join(e.delta for e in deltas) and last.output_text
    assert alpha.responses.retrieve(last.id).output_text == last.output_text


def test_a_streamed_high_risk_response_completes_with_the_vetted_message(alpha: openai.OpenAI) -> None:
    risky = "I have the pills ready and I want to end my life tonight."
    with alpha.responses.stream(model=TINY_MODEL, input=risky, extra_body={"locale": "en-US"}) as stream:
        final = stream.get_final_response()  # needs response.completed: the SDK's own accumulator checks the events
    assert final.status == "completed" and "988" in final.output_text
    assert final.model_extra["safety"] == {"level": "high", "categories": ["suicide"], "action": "replace"}
    assert final.usage is not None and final.usage.output_tokens == 0  # no model text


def test_chains_continue_and_branch_async(session_server: ServerProcess) -> None:
    async def run() -> None:
        client = openai.AsyncOpenAI(base_url=session_server.base_url, api_key=KEY_A, max_retries=0, timeout=60)
        kwargs: dict[str, Any] = {"model": TINY_MODEL, "max_output_tokens": 4}
        first = await client.responses.create(input="My sister moved abroad.", **kwargs)
        second, branch = await asyncio.gather(
            client.responses.create(input="I miss her a lot.", previous_response_id=first.id, **kwargs),
            client.responses.create(input="I miss her a lot.", previous_response_id=first.id, **kwargs),
        )
        assert second.previous_response_id == first.id and second.id != branch.id
        assert second.usage and first.usage and branch.usage
        assert second.usage.input_tokens > first.usage.input_tokens  # the first exchange is in the prompt
        assert branch.usage.input_tokens == second.usage.input_tokens  # a branch sees the same history
        third = await client.responses.create(input="We talk weekly.", previous_response_id=second.id, **kwargs)
        assert third.usage and third.usage.input_tokens > second.usage.input_tokens
        items = await client.responses.input_items.list(third.id)
        assert [i.content[0].text for i in items.data] == ["We talk weekly."]  # type: ignore[union-attr]
        await client.close()

    asyncio.run(run())


def test_store_false_cannot_be_retrieved_or_continued(alpha: openai.OpenAI) -> None:
    response = create(alpha, "Just thinking out loud.", store=False)
    assert response.store is False
    with pytest.raises(openai.NotFoundError):
        alpha.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError) as info:
        create(alpha, "and more", previous_response_id=response.id)
    assert info.value.code == "not_found" and info.value.param == "previous_response_id"


def test_errors_are_openai_shaped(alpha: openai.OpenAI, beta: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        create(alpha, "hi", previous_response_id="resp_doesnotexist")
    with pytest.raises(openai.NotFoundError) as info:
        create(alpha, "hi", conversation="conv_doesnotexist")
    assert info.value.param == "conversation"
    conversation = alpha.conversations.create()
    with pytest.raises(openai.BadRequestError) as bad:
        create(alpha, "hi", conversation=conversation.id, previous_response_id="resp_x")
    assert bad.value.param == "conversation"
    mine = create(alpha, "private")
    with pytest.raises(openai.NotFoundError):  # another tenant's ids do not exist for it
        beta.responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        create(beta, "intrude", previous_response_id=mine.id)
    with pytest.raises(openai.NotFoundError):
        beta.conversations.retrieve(conversation.id)
    with pytest.raises(openai.BadRequestError) as image:
        alpha.responses.create(
            model=TINY_MODEL,
            input=[{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}],  # type: ignore[list-item]
        )
    assert image.value.param is not None and image.value.param.startswith("input")


def test_conversations_crud_pages_turns_and_erasure(alpha: openai.OpenAI, session_server: ServerProcess) -> None:
    conversation = alpha.conversations.create(
        items=[{"type": "message", "role": "user", "content": "Hi, I need to talk."}], metadata={"topic": "work"}
    )
    assert conversation.id.startswith("conv_") and conversation.metadata == {"topic": "work"}
    assert alpha.conversations.retrieve(conversation.id).created_at == conversation.created_at
    updated = alpha.conversations.update(conversation.id, metadata={"topic": "family"})
    assert updated.metadata == {"topic": "family"}
    added = alpha.conversations.items.create(
        conversation.id,
        items=[
            {"type": "message", "role": "assistant", "content": "I'm here. What happened?"},
            {"type": "message", "role": "user", "content": "My dad is in hospital."},
        ],
    )
    assert [i.role for i in added.data] == ["assistant", "user"]  # type: ignore[union-attr]
    page = alpha.conversations.items.list(conversation.id, limit=2, order="asc")
    assert page.has_more and len(page.data) == 2 and page.first_id == page.data[0].id
    rest = alpha.conversations.items.list(conversation.id, limit=2, order="asc", after=page.last_id)
    assert not rest.has_more and [i.content[0].text for i in rest.data] == ["My dad is in hospital."]  # type: ignore[union-attr]
    # a response in the conversation appends its input and its reply as items
    response = create(alpha, "I'm scared.", conversation=conversation.id)
    assert response.conversation is not None and response.conversation.id == conversation.id
    items = alpha.conversations.items.list(conversation.id, order="desc", limit=2).data
    assert items[0].id == response.output[0].id and items[0].role == "assistant"
    assert items[1].content[0].text == "I'm scared."  # type: ignore[union-attr]
    # the same conversation is a session: chat completions continues it with X-Session-Id
    chat = alpha.chat.completions.create(
        model=TINY_MODEL,
        messages=[{"role": "user", "content": "Thanks for listening."}],
        max_tokens=4,
        extra_headers={"X-Session-Id": conversation.id},
    )
    assert chat.model_extra["turn"] >= 2
    first = alpha.conversations.items.list(conversation.id, order="asc").data[0]
    assert alpha.conversations.items.retrieve(first.id, conversation_id=conversation.id).id == first.id
    after_delete = alpha.conversations.items.delete(first.id, conversation_id=conversation.id)
    assert after_delete.id == conversation.id
    with pytest.raises(openai.NotFoundError):
        alpha.conversations.items.retrieve(first.id, conversation_id=conversation.id)
    # erasure: the conversation, its items, and the text of the responses made in it
    alpha.conversations.delete(conversation.id)
    with pytest.raises(openai.NotFoundError):
        alpha.conversations.retrieve(conversation.id)
    with pytest.raises(openai.NotFoundError):
        alpha.responses.retrieve(response.id)


def test_two_turns_on_one_conversation_do_not_interleave(alpha: openai.OpenAI, session_server: ServerProcess) -> None:
    conversation = alpha.conversations.create()
    body = {
        "model": TINY_MODEL,
        "input": "Tell me a long story.",
        "conversation": conversation.id,
        "stream": True,
        "max_output_tokens": 2000,
        "max_sentences": 0,
        "ignore_eos": True,
    }
    headers = {"Authorization": f"Bearer {KEY_A}"}
    with httpx.stream("POST", f"{session_server.base_url}/responses", json=body, headers=headers, timeout=120) as r:
        lines = r.iter_lines()
        next(line for line in lines if "response.output_text.delta" in line)
        with pytest.raises(openai.ConflictError) as info:
            create(alpha, "are you there?", conversation=conversation.id)
        assert info.value.code == "session_busy"
    alpha.conversations.delete(conversation.id)


@pytest.fixture(scope="module")
def replica(tiny_model_repo: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(
        ["--model-repo", str(tiny_model_repo), "--model", TINY_MODEL, "--kv-cache-gb", "1"],
        tmp_path_factory.mktemp("logs") / "replica.log",
        env=session_server_env(redis_url),
    ).start()
    yield server
    server.stop()


def test_two_replicas_share_responses_and_conversations(alpha: openai.OpenAI, replica: ServerProcess) -> None:
    other = openai.OpenAI(base_url=replica.base_url, api_key=KEY_A, max_retries=0, timeout=60)
    first = create(alpha, "I moved to a new city.")
    assert other.responses.retrieve(first.id).output_text == first.output_text
    second = create(other, "I don't know anyone.", previous_response_id=first.id)
    assert second.usage and first.usage and second.usage.input_tokens > first.usage.input_tokens
    conversation = other.conversations.create()
    for client, text in [(alpha, "one"), (other, "two"), (alpha, "three"), (other, "four")]:
        create(client, text, conversation=conversation.id)
    texts = [i.content[0].text for i in alpha.conversations.items.list(conversation.id, order="asc").data]  # type: ignore[union-attr]
    assert texts[0::2] == ["one", "two", "three", "four"]
