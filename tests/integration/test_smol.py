"""The embedded default model (SmolLM2-135M-Instruct as 'sweetiechat') answers like a supporter."""

from __future__ import annotations

import re

import openai
import pytest

from training.strategies import load_catalogue

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
