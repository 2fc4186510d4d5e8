"""History functions for session turns: persona split, reconcile (what is new), trim_to_budget (what is kept)."""

from __future__ import annotations

from itertools import pairwise

import pytest

from app.core.messages import Message, group_exchanges
from app.sessions import history
from app.sessions.base import InvalidHistory, SessionConflict
from app.sessions.history import trim_to_budget

Pair = tuple[str, str]


def stored(*pairs: Pair) -> list[Message]:
    return [Message(role, content) for role, content in pairs]  # type: ignore[arg-type]


def as_pairs(messages: list[Message]) -> list[Pair]:
    return [(m.role, m.content) for m in messages]


def split_persona(pairs: list[Pair]) -> tuple[str | None, list[Pair]]:
    persona, rest = history.split_persona(stored(*pairs))
    return persona, as_pairs(rest)


def reconcile(kept: list[Message], incoming: list[Pair], *, trimmed: bool = False) -> list[Pair]:
    return as_pairs(history.reconcile(kept, stored(*incoming), trimmed=trimmed))


HISTORY = stored(
    ("user", "I feel alone."), ("assistant", "I'm here with you."), ("user", "Thanks."), ("assistant", "Of course.")
)
AS_SENT = [(m.role, m.content) for m in HISTORY]


# --- split_persona ----------------------------------------------------------------------------------------------


def test_split_persona_takes_leading_system_messages() -> None:
    persona, rest = split_persona([("system", "Be kind."), ("system", "Be brief."), ("user", "hi")])
    assert persona == "Be kind.\n\nBe brief."
    assert rest == [("user", "hi")]
    assert split_persona([("user", "hi")]) == (None, [("user", "hi")])


def test_split_persona_rejects_a_system_message_inside_the_conversation() -> None:
    with pytest.raises(InvalidHistory, match="message 2"):
        split_persona([("user", "hi"), ("assistant", "hello"), ("system", "late")])


# --- reconcile --------------------------------------------------------------------------------------------------


def test_only_the_new_user_message_is_new() -> None:
    assert reconcile(HISTORY, [("user", "Still sad.")]) == [("user", "Still sad.")]


def test_full_history_yields_only_the_suffix() -> None:
    incoming = [*AS_SENT, ("user", "Still sad.")]
    assert reconcile(HISTORY, incoming) == [("user", "Still sad.")]


def test_full_history_may_add_several_user_messages() -> None:
    incoming = [*AS_SENT, ("user", "Still sad."), ("user", "Are you there?")]
    assert reconcile(HISTORY, incoming) == [("user", "Still sad."), ("user", "Are you there?")]


def test_surrounding_whitespace_is_ignored_and_the_clients_text_returned() -> None:
    incoming = [("user", "  I feel alone.\n"), ("assistant", "I'm here with you. "), *AS_SENT[2:], ("user", " new ")]
    assert reconcile(HISTORY, incoming) == [("user", " new ")]


def test_everything_is_new_for_an_empty_session() -> None:
    incoming = [("user", "a"), ("assistant", "b"), ("user", "c")]
    assert reconcile([], incoming) == incoming


def test_changed_content_is_a_conflict_at_its_index() -> None:
    incoming = [AS_SENT[0], AS_SENT[1], ("user", "Thanks a lot."), AS_SENT[3], ("user", "more")]
    with pytest.raises(SessionConflict, match=r"at message 2 \(content differs") as caught:
        reconcile(HISTORY, incoming)
    assert caught.value.index == 2


def test_changed_role_is_a_conflict_at_its_index() -> None:
    incoming = [AS_SENT[0], ("user", AS_SENT[1][1]), ("user", "more")]
    with pytest.raises(SessionConflict, match=r"at message 1 \(role 'user' vs stored 'assistant'") as caught:
        reconcile(HISTORY, incoming)
    assert caught.value.index == 1


def test_a_history_that_stops_inside_the_stored_one_is_a_conflict() -> None:
    # The client resends turn 2's question: it never saw the stored answer.
    with pytest.raises(SessionConflict, match=r"at message 3 \(the sent history has 3 messages, the stored one 4"):
        reconcile(HISTORY, AS_SENT[:3])


def test_several_new_messages_without_the_stored_history_are_a_conflict() -> None:
    with pytest.raises(SessionConflict) as caught:
        reconcile(HISTORY, [("user", "one"), ("user", "two")])
    assert caught.value.index == 0


@pytest.mark.parametrize(
    ("incoming", "message"),
    [
        ([], "no messages"),
        ([("system", "persona"), ("user", "hi")], "message 0: system messages"),
    ],
)
def test_malformed_incoming_is_invalid_history(incoming: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(InvalidHistory, match=message):
        reconcile(HISTORY, incoming)
    assert issubclass(InvalidHistory, ValueError)


def test_full_history_after_store_trimming_is_recognised() -> None:
    # The store kept only the last turn; the client still sends every turn.
    kept = HISTORY[2:]
    incoming = [*AS_SENT, ("user", "new")]
    assert reconcile(kept, incoming, trimmed=True) == [("user", "new")]
    assert reconcile(kept, [("user", "new")], trimmed=True) == [("user", "new")]
    with pytest.raises(SessionConflict):
        reconcile(kept, incoming)  # without the trimmed flag the prefix must match
    with pytest.raises(SessionConflict, match="do not appear"):
        reconcile(kept, [AS_SENT[0], AS_SENT[1], ("user", "Thanks?"), AS_SENT[3], ("user", "new")], trimmed=True)


def test_group_exchanges_ends_each_exchange_with_the_assistant() -> None:
    messages = stored(("user", "a"), ("user", "b"), ("assistant", "c"), ("user", "d"), ("assistant", "e"))
    assert [[m.content for m in t] for t in group_exchanges(messages)] == [["a", "b", "c"], ["d", "e"]]
    assert [[m.content for m in t] for t in group_exchanges(stored(("user", "x")))] == [["x"]]


# --- trim_to_budget ---------------------------------------------------------------------------------------------


def tokens(turn: int) -> int:
    return 10  # every turn costs 10 tokens; a turn is represented by its absolute index


def test_everything_fits_nothing_dropped() -> None:
    assert trim_to_budget([0, 1, 2], tokens, budget_tokens=30) == ([0, 1, 2], 0)


def test_drops_whole_turns_in_blocks() -> None:
    kept, dropped = trim_to_budget(list(range(10)), tokens, budget_tokens=75, block_turns=4)
    assert (kept, dropped) == ([4, 5, 6, 7, 8, 9], 4)  # 7 turns would fit, but cuts come in blocks of 4
    kept, dropped = trim_to_budget(list(range(10)), tokens, budget_tokens=55, block_turns=4)
    assert (kept, dropped) == ([8, 9], 8)


def test_reserved_tokens_count_against_the_budget() -> None:
    assert trim_to_budget(list(range(4)), tokens, budget_tokens=40, reserved_tokens=10, block_turns=2)[1] == 2


def test_the_newest_turn_is_always_kept() -> None:
    assert trim_to_budget([0, 1, 2], tokens, budget_tokens=5, block_turns=4) == ([2], 2)
    assert trim_to_budget([0], tokens, budget_tokens=1) == ([0], 0)


def test_unaligned_cut_when_no_block_cut_fits() -> None:
    # Cuts at 0 and 4 are too big, 8 is past the newest turn: the smallest cut that fits is used.
    assert trim_to_budget(list(range(7)), tokens, budget_tokens=25, block_turns=4) == ([5, 6], 5)


def test_prompt_prefix_only_changes_in_block_steps_as_a_conversation_grows() -> None:
    first_kept: list[int] = []
    for size in range(1, 40):
        kept, dropped = trim_to_budget(list(range(size)), tokens, budget_tokens=100, block_turns=4)
        assert dropped % 4 == 0 and kept[-1] == size - 1 and 10 * len(kept) <= 100
        first_kept.append(kept[0])
    changes = [b for a, b in pairwise(first_kept) if a != b]
    assert changes == [4, 8, 12, 16, 20, 24, 28, 32] and len(set(first_kept)) == 9  # the prefix moves in steps of 4


def test_block_alignment_survives_store_trimming() -> None:
    # The store keeps 12 turns and drops one per commit; cuts stay aligned to the session's absolute turn index,
    # so the first prompt turn changes once per block, not on every turn.
    first_kept: list[int] = []
    for total in range(13, 30):
        stored_turns = list(range(total - 12, total))  # absolute indexes of the stored turns
        current = [*stored_turns, total]
        kept, _ = trim_to_budget(current, tokens, budget_tokens=1000, block_turns=4, already_dropped=total - 12)
        assert kept[0] % 4 == 0 and kept[-1] == total
        first_kept.append(kept[0])
    assert sorted(set(first_kept)) == [4, 8, 12, 16, 20]
    assert sum(1 for a, b in pairwise(first_kept) if a != b) == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"block_turns": 0}, "block_turns"),
        ({"budget_tokens": 0}, "budget_tokens"),
        ({"already_dropped": -1}, "already"),
    ],
)
def test_bad_trim_arguments_are_rejected(kwargs: dict[str, int], message: str) -> None:
    arguments = {"budget_tokens": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        trim_to_budget([0], tokens, **arguments)
