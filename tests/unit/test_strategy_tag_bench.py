"""benchmarks/strategy_tag.py: the tag a guided greedy choice writes, token by token."""

from __future__ import annotations

from benchmarks.strategy_tag import guided_greedy

# three tags as token ids: two share their first two tokens
TAGS = {"Question": [1, 10, 2], "Reflection": [1, 20, 21, 2], "Restatement": [1, 20, 22, 2]}


def logprobs(per_tag: dict[str, list[float]]) -> dict[str, tuple[list[float], list[float]]]:
    return {name: (values, values) for name, values in per_tag.items()}


def test_the_likeliest_first_distinct_token_decides_not_the_whole_sequence() -> None:
    # "Re..." is likelier at the first distinct position, so the choice commits to it; between the two "Re" tags the
    # next token decides, although "Question" has the highest whole-sequence probability
    scores = logprobs(
        {"Question": [0.0, -1.0, 0.0], "Reflection": [0.0, -0.5, -3.0, 0.0], "Restatement": [0.0, -0.5, -2.0, 0.0]}
    )
    assert guided_greedy(TAGS, scores) == "Restatement"


def test_a_clear_first_token_wins() -> None:
    scores = logprobs(
        {"Question": [0.0, -0.1, 0.0], "Reflection": [0.0, -2.5, -0.1, 0.0], "Restatement": [0.0, -2.5, -2.4, 0.0]}
    )
    assert guided_greedy(TAGS, scores) == "Question"
