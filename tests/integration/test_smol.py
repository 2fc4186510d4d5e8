"""The embedded default model (SmolLM2-135M-Instruct as 'sweetiechat') answers like a supporter."""

from __future__ import annotations

import re
import secrets
import time

import httpx
import openai
import pytest

from app.core.strategies import load_catalogue
from loadtest.gateway_bench import block_size, prefix_cache_counters
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

COMMON = {"you", "your", "i", "it", "that", "to", "and", "the", "a", "is", "are", "feel", "this", "can", "be"}


@pytest.fixture(scope="module")
def client(smol_server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=smol_server, api_key="unused", max_retries=0, timeout=120)


def test_coherent_english_support_reply(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="sweetiechat",
        messages=[{"role": "user", "content": "I lost my job today and I feel like a failure."}],
        temperature=0.0,
    )
    text = reply.choices[0].message.content or ""
    words = re.findall(r"[A-Za-z']+", text.lower())
    assert len(words) >= 6, text
    assert sum(ch.isascii() for ch in text) / len(text) > 0.95, text  # English, not emoji or noise
    assert len(COMMON & set(words)) >= 3, text  # ordinary English function words
    assert len(set(words)) / len(words) > 0.4, text  # not a degenerate repetition
    assert reply.model_extra["safety"]["level"] == "none"


def test_counselor_mode_on_smol_returns_catalogue_strategy(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="sweetiechat",
        messages=[{"role": "user", "content": "My best friend stopped talking to me and I don't know why."}],
        temperature=0.0,
        extra_body={"strategy_mode": "counselor"},
    )
    assert reply.choices[0].message.model_extra["strategy"] in load_catalogue().names
    assert reply.choices[0].message.content


def test_default_reply_is_the_models_first_three_sentences(client: openai.OpenAI, smol_server: str) -> None:
    """The manifest's sentence budget (3) ends a rambling base-model reply early, whole sentences only."""
    messages = [{"role": "user", "content": "I lost my job today and I feel like a failure."}]
    started = time.monotonic()
    unlimited = client.chat.completions.create(
        model="sweetiechat", messages=messages, temperature=0.0, max_tokens=256, extra_body={"max_sentences": 0}
    )
    whole_reply_s = time.monotonic() - started
    started = time.monotonic()
    chunks = list(
        client.chat.completions.create(
            model="sweetiechat", messages=messages, temperature=0.0, max_tokens=256, stream=True
        )
    )
    cut_reply_s = time.monotonic() - started
    full = unlimited.choices[0].message.content or ""
    short = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    sentence_ends = re.compile(r"[.!?][\"')]*(?=\s|$)")
    assert len(sentence_ends.findall(full)) > 3, full  # left alone, the model says more than three sentences
    assert full.startswith(short) and len(short) < len(full), (short, full)
    assert len(sentence_ends.findall(short)) == 3 and sentence_ends.search(short[-3:]), short
    assert finishes == ["stop"]
    root = smol_server.removesuffix("/v1")
    # The engine request was aborted, not left to generate the ~190 tokens after the cut: it is gone long before
    # the time the rest would take (measured on this machine, now: the whole reply's time minus the cut one's).
    started = time.monotonic()
    wait_until(
        lambda: "sweetie_engine_unfinished_requests 0.0" in httpx.get(f"{root}/metrics").text,
        timeout=max(1.0, (whole_reply_s - cut_reply_s) / 2),
        what="the engine to drop the request after the reply was cut",
    )
    assert time.monotonic() - started < whole_reply_s - cut_reply_s


def test_a_session_turn_reuses_the_cached_conversation(client: openai.OpenAI, smol_server: str) -> None:
    """The engine keeps the KV cache in 32-token blocks on CPU (vLLM's own CPU default, 128, would cache nothing of
    a short first turn), so turn 2 of a session re-reads at least every whole block of turn 1's prompt."""
    root = smol_server.removesuffix("/v1")
    assert block_size(httpx.get(f"{root}/metrics").text) == 32
    session = {"session_id": f"smol-cache-{secrets.token_hex(4)}"}
    first = client.chat.completions.create(
        model="sweetiechat",
        messages=[{"role": "user", "content": "My sister moved abroad and the house feels so empty now."}],
        max_tokens=48,
        extra_body=session,
    )
    assert first.usage is not None
    before = prefix_cache_counters(httpx.get(f"{root}/metrics").text)
    second = client.chat.completions.create(
        model="sweetiechat",
        messages=[{"role": "user", "content": "We used to cook dinner together every Sunday."}],
        max_tokens=8,
        extra_body=session,
    )
    assert second.usage is not None and second.usage.prompt_tokens > first.usage.prompt_tokens  # the history is in
    whole_blocks = first.usage.prompt_tokens // 32 * 32

    def reused() -> float:
        now = prefix_cache_counters(httpx.get(f"{root}/metrics").text)
        return now.hits - before.hits

    wait_until(lambda: reused() >= whole_blocks, timeout=10, what=f"{whole_blocks} prefix-cache hits on turn 2")
