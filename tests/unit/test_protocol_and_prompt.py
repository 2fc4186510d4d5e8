"""Protocol conversions, error mapping and prompt rendering (tiny real tokenizer built in code)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.api.errors import _param_from_loc
from app.api.protocol import ChatCompletionRequest
from app.chat.prompt import PromptRenderer, load_tokenizer
from app.core.format import chat_messages
from app.core.messages import Message
from tests.tiny_model import build_tokenizer


def request(**fields: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    )


def test_request_becomes_the_pipelines_turn_request() -> None:
    turn = request(
        messages=[{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        temperature=0.0,
        stop="END",
        seed=5,
        n=2,
    ).to_turn_request()
    assert [(m.role, m.content) for m in turn.messages] == [("system", "Be brief."), ("user", "hi")]
    assert (turn.sampling.temperature, turn.sampling.top_p, turn.sampling.stop) == (0.0, None, ("END",))
    assert turn.sampling.seed == 5 and turn.n == 2


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert request(max_tokens=50, max_completion_tokens=10).to_turn_request().max_tokens == 10
    assert request(max_tokens=50).to_turn_request().max_tokens == 50
    assert request().to_turn_request().max_tokens is None


def test_text_parts_and_unknown_fields() -> None:
    req = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
            "logit_bias": {"1": 2},
            "tools": [],
        }
    )
    assert req.messages[0].text == "ab"


def test_empty_stop_sequence_rejected() -> None:
    with pytest.raises(ValueError):
        request(stop=[""])


@pytest.mark.parametrize(
    ("loc", "param"),
    [
        (("body", "messages", 0, "role"), "messages[0].role"),
        (("body", "messages", 1, "content", "str"), "messages[1].content"),
        (("body", "temperature"), "temperature"),
        (("body",), None),
    ],
)
def test_param_paths(loc: tuple[int | str, ...], param: str | None) -> None:
    assert _param_from_loc(loc) == param


@pytest.fixture(scope="module")
def renderer(tmp_path_factory: pytest.TempPathFactory) -> PromptRenderer:
    folder: Path = tmp_path_factory.mktemp("tok")
    build_tokenizer(folder)
    return PromptRenderer(load_tokenizer(str(folder)), "Be kind.")


def test_default_system_prompt_added_once() -> None:
    conv = chat_messages([Message("user", "hello")], system_prompt="Be kind.")
    assert conv == [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "hello"}]
    own = chat_messages([Message("system", "Be brief."), Message("user", "hello")], system_prompt="Be kind.")
    assert own[0] == {"role": "system", "content": "Be brief."} and len(own) == 2


def test_token_ids_have_one_bos_and_end_with_generation_prompt(renderer: PromptRenderer) -> None:
    ids = renderer.render([Message("user", "hello")])
    text = renderer.tokenizer.decode(ids)  # type: ignore[attr-defined]
    assert text.startswith("<|im_start|>system\nBe kind.<|im_end|>")
    assert text.endswith("<|im_start|>assistant\n")
    assert text.count("<|im_start|>") == 3  # system, user, assistant header: no doubled BOS


def test_message_overhead_is_measured_from_the_template(renderer: PromptRenderer) -> None:
    # ChatML: "<|im_start|>assistant\n" ... "<|im_end|>\n" around each message
    one = renderer.render([Message("user", "hello")])
    two = renderer.render([Message("user", "hello"), Message("assistant", "hi"), Message("user", "hello")])
    content = renderer.count_tokens("hi") + renderer.count_tokens("hello")
    grown = len(two) - len(one)
    # an upper bound (the byte-level tiny tokenizer spends more on "assistant" than on "user"), and a tight one
    assert grown <= 2 * renderer.message_overhead + content
    assert grown > renderer.message_overhead + content
