"""Protocol conversions, error mapping and prompt building (tiny real tokenizer built in code)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.api.errors import _param_from_loc
from app.api.protocol import ChatCompletionRequest
from app.chat.prompt import PromptBuilder, Turn, load_tokenizer
from app.manifest import SamplingDefaults
from tests.tiny_model import build_tokenizer


def request(**fields: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    )


def test_generation_params_prefer_request_then_manifest() -> None:
    defaults = SamplingDefaults(max_tokens=64, temperature=0.6, top_p=0.8, repetition_penalty=1.1)
    params = request(temperature=0.0, stop="END", seed=5, n=2).to_generation_params(defaults, 32)
    assert (params.temperature, params.top_p, params.max_tokens) == (0.0, 0.8, 32)
    assert params.stop == ("END",) and params.seed == 5 and params.n == 2 and params.repetition_penalty == 1.1


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert request(max_tokens=50, max_completion_tokens=10).requested_max_tokens == 10
    assert request(max_tokens=50).requested_max_tokens == 50
    assert request().requested_max_tokens is None


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
def builder(tmp_path_factory: pytest.TempPathFactory) -> PromptBuilder:
    folder: Path = tmp_path_factory.mktemp("tok")
    build_tokenizer(folder)
    return PromptBuilder(load_tokenizer(str(folder)), "Be kind.")


def test_default_system_prompt_added_once(builder: PromptBuilder) -> None:
    conv = builder.conversation([Turn("user", "hello")])
    assert conv == [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "hello"}]
    own = builder.conversation([Turn("developer", "Be brief."), Turn("user", "hello")])
    assert own[0] == {"role": "system", "content": "Be brief."} and len(own) == 2


def test_token_ids_have_one_bos_and_end_with_generation_prompt(builder: PromptBuilder) -> None:
    tokenizer = builder.tokenizer
    ids = builder.token_ids([Turn("user", "hello")])
    text = tokenizer.decode(ids)  # type: ignore[attr-defined]
    assert text.startswith("<|im_start|>system\nBe kind.<|im_end|>")
    assert text.endswith("<|im_start|>assistant\n")
    assert text.count("<|im_start|>") == 3  # system, user, assistant header: no doubled BOS
