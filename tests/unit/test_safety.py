"""Crisis safety: the lexical screen and its context rules, policy framing, YAML overrides, and the regression set."""

from __future__ import annotations

import importlib.util
import logging
import re
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from app.chat.safety import (
    DEFAULT_POLICY_PATH,
    LexicalSafetyScreen,
    RiskLevel,
    SafetyPolicy,
    SafetyResult,
    SafetyScreen,
    detect_language,
    normalize_text,
)
from app.chat.safety.patterns import _anchors, split_alternatives
from app.chat.safety.rules import EN_RULES, ZH_RULES

REPO_ROOT = Path(__file__).resolve().parents[2]
HIGH, ELEVATED, NONE = RiskLevel.HIGH, RiskLevel.ELEVATED, RiskLevel.NONE


@pytest.fixture(scope="module")
def screen() -> LexicalSafetyScreen:
    return LexicalSafetyScreen()


def _benchmark(script: str) -> ModuleType:
    """``benchmarks/<script>.py``, imported by path (benchmarks/ is not a package)."""
    name = f"{script}_under_test"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / f"{script}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _bench() -> ModuleType:
    return _benchmark("safety_bench")


# ---------------------------------------------------------------------------------------------------- screen levels


@pytest.mark.parametrize(
    ("text", "level", "category"),
    [
        # English, explicit first-person intent, plan or means
        ("I want to end my life", HIGH, "suicide"),
        ("I have the pills ready", HIGH, "suicide"),
        ("tonight I'm going to jump", HIGH, "suicide"),
        ("I’M GOING TO KILL MYSELF", HIGH, "suicide"),  # curly quote and capitals
        ("how many sleeping pills would it take to die", HIGH, "suicide"),
        ("I cut myself again tonight", HIGH, "self_harm"),
        ("I'm going to stab him when he gets home", HIGH, "harm_to_others"),
        ("my dad beats me when he's drunk", HIGH, "abuse"),
        ("He threatened to kill me if I tell anyone", HIGH, "abuse"),
        # English, passive or indirect
        ("I wish I could disappear and never wake up", ELEVATED, "suicide"),
        ("everyone would be better off without me", ELEVATED, "suicide"),
        ("life isn't worth living", ELEVATED, "suicide"),
        ("I get urges to cut again", ELEVATED, "self_harm"),
        ("I have intrusive thoughts about hurting my baby", ELEVATED, "harm_to_others"),
        ("I'm afraid of my husband", ELEVATED, "abuse"),
        # Chinese
        ("我想死", HIGH, "suicide"),
        ("我不想活了", HIGH, "suicide"),
        ("我想自杀", HIGH, "suicide"),
        ("我准备今晚从天台跳下去", HIGH, "suicide"),
        ("我又割腕了", HIGH, "self_harm"),
        ("他打我", HIGH, "abuse"),
        ("我要杀了他", HIGH, "harm_to_others"),
        ("自杀", ELEVATED, "suicide"),
        ("轻生", ELEVATED, "suicide"),
        ("跳楼", ELEVATED, "suicide"),
        ("活着好没意思", ELEVATED, "suicide"),
        ("我希望睡着了就再也不要醒来", ELEVATED, "suicide"),
        ("我小时候被虐待过", ELEVATED, "abuse"),
    ],
)
def test_risky_messages_get_their_level_and_category(
    screen: LexicalSafetyScreen, text: str, level: RiskLevel, category: str
) -> None:
    result = screen.screen(text)
    assert result.level is level, text
    assert category in result.categories, text


@pytest.mark.parametrize(
    "text",
    [
        # idioms and hyperbole
        "this exam is killing me",
        "I could kill for a coffee",
        "I'm dying to see the concert",
        "my boss will murder me if I'm late",
        "killing it at work this week",
        "I'm so bored I could die",
        "we're going to kill them in the finals",
        "I'm going to shoot my shot with her",
        "累死了",
        "笑死我了",
        "饿死了",
        "想死你了！",
        "老板要是知道了会杀了我的",
        "他打我电话没接",
        # gaming, tech, cooking
        "I killed the boss on the first try",
        "kill the process and restart",
        "beat the eggs, then fold in the flour",
        "我终于把boss杀了",
        # clearly safe support topics
        "My girlfriend broke up with me and I can't stop crying",
        "I have three exams next week and I'm so stressed",
        "最近压力好大，睡不着",
    ],
)
def test_idioms_and_everyday_messages_are_not_flagged(screen: LexicalSafetyScreen, text: str) -> None:
    assert screen.screen(text).level is NONE, text


@pytest.mark.parametrize(
    "text",
    [
        "I would never kill myself",
        "I'm sad but I'm not suicidal",
        "I have no thoughts of hurting myself",
        "Killing myself has never crossed my mind",
        "我不会自杀",
        "我从来没想过自杀",
        "我没有想伤害自己",
        "别担心，我不会做傻事的",
    ],
)
def test_negation_removes_the_risk(screen: LexicalSafetyScreen, text: str) -> None:
    assert screen.screen(text).level is NONE, text


@pytest.mark.parametrize(
    "text",
    [
        "my friend says she wants to kill herself",
        "My son said he doesn't want to live anymore",
        "my best friend has been cutting herself",
        "my friend's boyfriend hits her",
        "我朋友说她想自杀",
        "我妈说她不想活了",
        "我闺蜜的老公打她",
    ],
)
def test_third_person_concern_is_elevated_not_high(screen: LexicalSafetyScreen, text: str) -> None:
    assert screen.screen(text).level is ELEVATED, text


@pytest.mark.parametrize(
    "text",
    [
        "my character in my novel wants to die",
        "I watched a documentary about suicide",
        "In the book, the main character kills himself at the end",
        "I'm doing a school project on domestic violence",
        "小说里的主角最后跳楼了",
        "我看了一部关于自杀预防的纪录片",
    ],
)
def test_fiction_news_and_coursework_are_not_the_users_risk(screen: LexicalSafetyScreen, text: str) -> None:
    assert screen.screen(text).level is NONE, text


def test_first_person_risk_inside_a_media_context_still_counts(screen: LexicalSafetyScreen) -> None:
    assert screen.screen("After that movie I keep thinking about killing myself").level is HIGH


@pytest.mark.parametrize(
    "text",
    [
        "hypothetically, what if I killed myself",
        "what would happen if someone took 30 paracetamol",
        "if I fail this test I'm going to kill myself lol",
    ],
)
def test_hypotheticals_and_jokes_are_capped_at_elevated(screen: LexicalSafetyScreen, text: str) -> None:
    assert screen.screen(text).level is ELEVATED, text


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("I used to self-harm years ago, I'm fine now", NONE),
        ("I went through a suicidal phase in high school but therapy helped and I'm doing great", NONE),
        ("我以前自残过，但是现在已经好了很多年了", NONE),
        ("I tried to kill myself last year", ELEVATED),
        ("I used to self-harm and I'm scared I'll relapse", ELEVATED),
        ("我去年自杀过一次", ELEVATED),
        ("I was raped last night", HIGH),  # recent, not past
    ],
)
def test_past_episodes(screen: LexicalSafetyScreen, text: str, level: RiskLevel) -> None:
    assert screen.screen(text).level is level, text


def test_several_categories_are_reported_in_a_fixed_order(screen: LexicalSafetyScreen) -> None:
    result = screen.screen("My dad beats me every day and I just want to die")
    assert result.level is HIGH
    assert result.categories == ("suicide", "abuse")


def test_risk_inside_a_long_message_is_found(screen: LexicalSafetyScreen) -> None:
    filler = "Work was busy and the bus was late again, so I got home tired and made some pasta. " * 10
    assert len(filler) > 800
    assert screen.screen(filler).level is NONE
    assert screen.screen(filler + "Honestly, I want to kill myself.").level is HIGH
    assert screen.screen("我今天加班到很晚，" * 30 + "我真的不想活了").level is HIGH


def test_result_shape_and_api_extension(screen: LexicalSafetyScreen) -> None:
    result = screen.screen("I want to end my life")
    assert result.to_dict() == {"level": "high", "categories": ["suicide"]}
    assert result.flagged and result.language == "en"
    assert SafetyResult().to_dict() == {"level": "none", "categories": []}
    with pytest.raises(AttributeError):
        result.level = NONE  # type: ignore[misc]
    assert isinstance(screen, SafetyScreen)  # the default satisfies the protocol structurally
    assert screen.screen("").level is NONE
    assert screen.screen("   \n ").level is NONE


def test_normalisation_and_language_detection() -> None:
    assert normalize_text("  I’M\tＦＩＮＥ  \n ok ") == "i'm fine ok"
    assert detect_language("I want to talk") == "en"
    assert detect_language("我想聊聊") == "zh"
    assert detect_language("今天好累 ok") == "zh"
    assert detect_language("I watched 你好 yesterday with my friends at the cinema") == "en"


def test_screening_logs_nothing(screen: LexicalSafetyScreen, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    screen.screen("a private message: I want to end my life")
    assert not caplog.records


# ----------------------------------------------------------------------------------- the fast path stays faithful


def _all_messages() -> list[str]:
    bench = _bench()
    examples = bench.load_set("regression")
    return [normalize_text(t) for t in [ex.text for ex in examples] + bench.long_messages(examples, count=40)]


def test_anchor_prefilter_never_hides_a_match() -> None:
    """Every alternative's anchor strings occur whenever the full regex matches (so skipping is safe)."""
    texts = _all_messages()
    checked = 0
    for rule in EN_RULES + ZH_RULES:
        for alternative in rule.alternatives:
            anchors = _anchors(alternative)
            assert anchors, f"no anchor derived for {alternative[:60]!r}; it would run on every message"
            full = re.compile(alternative)
            for text in texts:
                if full.search(text):
                    checked += 1
                    assert any(a in text for a in anchors), (alternative[:60], anchors)
    assert checked > 300


def test_split_alternatives_respects_groups_and_classes() -> None:
    assert split_alternatives(r"a|b(c|d)|[|x]|\|e") == ["a", "b(c|d)", "[|x]", r"\|e"]


def test_long_messages_stay_bounded(screen: LexicalSafetyScreen) -> None:
    """Median CPU time on ~1,000-character, risk-dense messages: a guard against a runaway pattern, not the speed
    target (``benchmarks/safety_bench.py`` measures that). It is about 0.7 ms on an idle AVX2 core, and a 1 ms bound
    failed once here with vLLM and a training run holding both cores (1.1 ms), so the bound is 5 ms."""
    texts = _bench().long_messages(_bench().load_set("regression"), count=60)
    for text in texts:
        screen.screen(text)
    samples = []
    for text in texts * 3:
        start = time.thread_time_ns()
        screen.screen(text)
        samples.append((time.thread_time_ns() - start) / 1000)
    samples.sort()
    assert samples[len(samples) // 2] < 5000, f"median {samples[len(samples) // 2]:.0f} us"


# ------------------------------------------------------------------------------------------------------- policy


def _framing(policy: SafetyPolicy | None = None) -> SafetyPolicy:
    """The policy with both levels set to ``frame``, whatever the shipped defaults are."""
    base = policy or SafetyPolicy.default()
    return SafetyPolicy.model_validate({**base.model_dump(), "actions": {"elevated": "frame", "high": "frame"}})


def test_shipped_policy_has_an_action_per_level() -> None:
    policy = SafetyPolicy.default()
    assert set(policy.actions) == {"elevated", "high"}
    assert policy.actions["elevated"] == "frame"  # elevated keeps framing (issue 12); high's default is the policy's
    assert DEFAULT_POLICY_PATH.name == "safety_policy.yaml"


@pytest.mark.parametrize(
    ("locale", "must_contain", "resolved"),
    [
        ("en-US", ["988", "911"], "en-US"),
        ("en_us", ["988"], "en-US"),
        ("en-GB", ["Samaritans", "116 123", "999"], "en-GB"),
        ("en-AU", ["13 11 14", "000"], "en-AU"),
        ("zh-CN", ["400-161-9995", "010-82951332", "120"], "zh-CN"),
        ("zh", ["400-161-9995"], "zh-CN"),
        ("fr-FR", ["findahelpline.com", "local emergency number"], "en"),
        ("zh-TW", ["findahelpline.com", "当地的紧急求助电话"], "zh"),
    ],
)
def test_high_risk_is_framed_with_locale_resources(locale: str, must_contain: list[str], resolved: str) -> None:
    result = SafetyResult(level=HIGH, categories=("suicide",), language="en")
    decision = _framing().decide(result, locale)
    assert decision.action == "frame" and not decision.replaces_reply
    assert decision.locale == resolved
    framed = decision.prefix + decision.suffix
    for piece in must_contain:
        assert piece in framed, (locale, piece)
    # high risk: the resources lead, so a streaming client sees them before the model's first token
    assert must_contain[0] in decision.prefix
    assert decision.leading == decision.prefix + "\n\n" and decision.trailing == "\n\n" + decision.suffix


def test_language_is_detected_from_the_message_when_no_locale_is_given(screen: LexicalSafetyScreen) -> None:
    decision = _framing().decide(screen.screen("我真的不想活了"))
    assert decision.locale == "zh-CN"
    assert "希望24热线" in decision.prefix and "请立即拨打" in decision.prefix
    english = _framing().decide(screen.screen("I don't want to live anymore"))
    assert english.locale == "en" and "findahelpline.com" in english.prefix


def test_elevated_risk_adds_a_gentle_trailing_note_only() -> None:
    decision = _framing().decide(SafetyResult(level=ELEVATED, categories=("suicide",), language="en"), "en-GB")
    assert decision.leading == ""  # nothing before the reply
    assert "Samaritans" in decision.trailing and decision.trailing.startswith("\n\n")
    assert decision.trailing == "\n\n" + decision.suffix


def test_abuse_gets_the_abuse_line_first() -> None:
    policy = _framing()
    us = policy.decide(SafetyResult(level=HIGH, categories=("abuse",)), "en-US")
    assert us.prefix.index("1-800-799-7233") < us.prefix.index("988")
    cn = policy.decide(SafetyResult(level=HIGH, categories=("abuse",)), "zh-CN")
    assert "12338" in cn.prefix
    suicide_only = policy.decide(SafetyResult(level=HIGH, categories=("suicide",)), "en-US")
    assert "1-800-799-7233" not in suicide_only.prefix


def test_no_risk_leaves_the_reply_untouched() -> None:
    decision = SafetyPolicy.default().decide(SafetyResult(), "en-US")
    assert decision.action == "none" and not decision.replaces_reply
    assert decision.leading == decision.trailing == ""
    assert decision.to_dict() == {"level": "none", "categories": [], "action": "none"}


_OVERRIDE = """
actions:
  elevated: none
  high: replace
"""


def _policy_with(tmp_path: Path, extra: str) -> Path:
    base = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    actions = re.search(r"^actions:", base, re.MULTILINE)
    after = re.search(r"^default_language:", base, re.MULTILINE)
    assert actions and after
    start, end = actions.start(), after.start()
    path = tmp_path / "policy.yaml"
    path.write_text(base[:start] + extra.strip() + "\n\n" + base[end:], encoding="utf-8")
    return path


def test_yaml_override_can_replace_high_risk_replies(tmp_path: Path) -> None:
    policy = SafetyPolicy.from_yaml(_policy_with(tmp_path, _OVERRIDE))
    high = policy.decide(SafetyResult(level=HIGH, categories=("suicide",)), "en-US")
    assert high.action == "replace" and high.replaces_reply
    assert "988" in high.leading and high.trailing == ""
    assert high.leading == high.replacement
    zh = policy.decide(SafetyResult(level=HIGH, categories=("suicide",)), "zh-CN")
    assert "010-82951332" in zh.leading
    elevated = policy.decide(SafetyResult(level=ELEVATED, categories=("suicide",)), "en-US")
    assert elevated.action == "none" and elevated.leading == elevated.trailing == ""
    assert high.to_dict() == {"level": "high", "categories": ["suicide"], "action": "replace"}


@pytest.mark.parametrize(
    ("actions", "message"),
    [
        ("actions:\n  high: delete\n", "actions"),
        ("actions:\n  high: frame\nunknown_key: 1\n", "unknown_key"),
    ],
)
def test_bad_policy_files_fail_with_the_file_and_field(tmp_path: Path, actions: str, message: str) -> None:
    path = _policy_with(tmp_path, actions)
    with pytest.raises(ValueError, match=message) as info:
        SafetyPolicy.from_yaml(path)
    assert str(path) in str(info.value)


def test_bad_templates_and_missing_files_are_rejected(tmp_path: Path) -> None:
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8").replace(
        "suffix: \"I'm here, and", "suffix: \"{name} I'm here, and", 1
    )
    path = tmp_path / "bad_template.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=r"messages\.en\.high\.suffix"):
        SafetyPolicy.from_yaml(path)
    with pytest.raises(ValueError, match="cannot read safety policy"):
        SafetyPolicy.from_yaml(tmp_path / "missing.yaml")


# ---------------------------------------------------------------------------------------------- regression set
#
# benchmarks/safety/regression.jsonl was written together with the lexical rules, so it is no measure of either
# screen on new messages (the held-out dev and test sets are; see benchmarks/safety_bench.py). It guards behaviour:
# the default (learned) screen must keep what it achieves on it today, less a small margin. The classifier is never
# trained on this set.


def test_regression_set_has_the_promised_shape() -> None:
    examples = _bench().load_set("regression")
    assert len(examples) >= 300
    assert sum(ex.hard_negative for ex in examples) >= 100
    for lang in ("en", "zh"):
        for category in ("suicide", "self_harm", "harm_to_others", "abuse"):
            assert any(ex.language == lang and category in ex.categories for ex in examples), (lang, category)
        assert any(ex.language == lang and ex.group == "safe" for ex in examples)
    assert len({ex.text for ex in examples}) == len(examples)


def test_dev2_is_held_out_contrast_pairs() -> None:
    """dev2 (benchmarks/safety/DEV2_README.md): two members per pair with different levels, both languages, every
    level; the benchmark refuses to list its errors, like dev and test."""
    import json

    rows = [json.loads(line) for line in (REPO_ROOT / "benchmarks" / "safety" / "dev2.jsonl").read_text().splitlines()]
    examples = _bench().load_set("dev2")
    assert len(examples) == len(rows) >= 600
    members: dict[str, set[str]] = {}
    for row in rows:
        members.setdefault(row["pair"], set()).add(row["level"])
    assert all(len(levels) == 2 for levels in members.values())
    assert sum(len(levels) for levels in members.values()) == len(rows)
    for lang in ("en", "zh"):
        assert {ex.level for ex in examples if ex.language == lang} == set(RiskLevel)
    with pytest.raises(ValueError, match="held out"):
        _bench().BenchConfig(errors="dev2")


def test_dev3_is_held_out_and_shares_no_text_with_the_other_sets() -> None:
    """dev3 (benchmarks/safety/DEV3_README.md): the test set's recipe by new authors, both languages, every level and
    category, context items among them; no text of it is in another set; the benchmark runs it by default and refuses
    to list its errors."""
    bench = _bench()
    examples = bench.load_set("dev3")
    assert len(examples) >= 600
    for lang in ("en", "zh"):
        mine = [ex for ex in examples if ex.language == lang]
        assert {ex.level for ex in mine} == set(RiskLevel)
        assert {c for ex in mine for c in ex.categories} == {"suicide", "self_harm", "harm_to_others", "abuse"}
        assert sum(bool(ex.context) for ex in mine) >= 20
    texts = {ex.text for ex in examples}
    assert len(texts) == len(examples)
    for other in ("dev", "dev2", "test", "regression"):
        assert not texts & {ex.text for ex in bench.load_set(other)}, other
    assert "dev3" in bench.BenchConfig().sets
    with pytest.raises(ValueError, match="held out"):
        bench.BenchConfig(errors="dev3")


def test_level_cost_weighs_a_missed_high_most() -> None:
    """The benchmark's one-number comparison: 0 when every level is right; a missed high costs 10, a high judged
    elevated 3, a none judged high 4 (rates within each true level, so the weights are comparable across sets)."""
    bench = _bench()

    def example(level: RiskLevel) -> object:
        return bench.Example("x", (), "en", level, ("suicide",) if level is not RiskLevel.NONE else (), "g")

    truth = [RiskLevel.HIGH, RiskLevel.HIGH, RiskLevel.NONE, RiskLevel.NONE]
    right = [SafetyResult(level=level) for level in truth]
    assert bench.figures([example(lv) for lv in truth], right, resamples=5)["level_cost"] == 0.0
    wrong = [SafetyResult(level=RiskLevel.NONE), SafetyResult(level=RiskLevel.ELEVATED), *right[2:3]]
    wrong.append(SafetyResult(level=RiskLevel.HIGH))
    cost = bench.figures([example(lv) for lv in truth], wrong, resamples=5)["level_cost"]
    assert cost == pytest.approx(0.5 * 10 + 0.5 * 3 + 0.5 * 4)


def test_ranking_benchmark_scores_risk_above_its_look_alikes() -> None:
    """benchmarks/safety_ranking.py: AUCs before any threshold (1 when every positive outranks every negative, 0.5
    for ties); on the shipped model a plain risky message outranks the idiom that shares its words."""
    from app.chat.safety.classifier import LearnedSafetyScreen, RiskModel

    ranking = _benchmark("safety_ranking")
    assert ranking.auc(np.array([0.9, 0.8]), np.array([0.1, 0.2])) == 1.0
    assert ranking.auc(np.array([0.1]), np.array([0.9])) == 0.0
    assert ranking.auc(np.array([0.5]), np.array([0.5])) == 0.5
    assert ranking.auc(np.array([]), np.array([0.5])) is None
    negatives = np.linspace(0.0, 0.99, 100)  # 5% of them (0.95 .. 0.99) may be flagged
    assert ranking.recall_at_fpr(np.array([0.2, 0.95, 0.96, 0.995]), negatives, 0.05) == 0.75
    assert ranking.recall_at_fpr(np.array([0.94]), negatives, 0.05) == 0.0  # flagging it would flag 6 negatives
    assert ranking.recall_at_fpr(np.array([0.5]), np.array([]), 0.05) is None
    bench = _bench()
    examples = [
        bench.Example(
            "i have the pills saved up and tonight i'm taking all of them", (), "en", HIGH, ("suicide",), "x"
        ),
        bench.Example(
            "i'm so tired of everything, i wish i could just disappear", (), "en", ELEVATED, ("suicide",), "x"
        ),
        bench.Example("this spreadsheet is killing me lol", (), "en", NONE, (), "neg.hyperbole"),
        bench.Example("我今晚就吞了攒的那些药", (), "zh", HIGH, ("suicide",), "x"),
        bench.Example("笑死我了，这游戏太难了", (), "zh", NONE, (), "neg.gaming"),
    ]
    model = LearnedSafetyScreen.load().model
    report = ranking.ranking([model], examples)
    assert report["all"]["flagged"] == 1.0 and report["all"]["high"] == 1.0
    assert report["zh"]["high_vs_elevated"] is None  # no elevated item in Chinese
    # "A+B" ranks by the mean of the two artefacts' level probabilities (B here: the same model leaning to high)
    bias = model.bias.copy()
    bias[2] += 2.0
    leaning = RiskModel(model.featurizer, model.weights, bias, model.thresholds, model.max_chars)
    text = examples[1].text
    mean = (model.probabilities(text)[0] + leaning.probabilities(text)[0]) / 2
    assert ranking.scores([model, leaning], examples[1]) == pytest.approx((mean[1] + mean[2], mean[2]))
    assert ranking.scores([model], examples[1])[1] < mean[2] < ranking.scores([leaning], examples[1])[1]


def test_default_screen_holds_its_regression_level() -> None:
    """The learned screen on the regression set, as `python benchmarks/safety_bench.py --sets regression` prints it.

    Floors are the values the shipped artefact measured (in the comments), less about 0.03 (ceilings: plus about
    0.03). A change that moves one past its bound needs a look; a retrained artefact needs new measured values.
    """
    from app.chat.safety.classifier import LearnedSafetyScreen

    bench = _bench()
    report = bench.evaluate(LearnedSafetyScreen.load(), bench.load_set("regression"), resamples=10)
    value = {key: report[key]["value"] for key in (*REGRESSION_FLOORS, *REGRESSION_CEILINGS)}
    recall = {category: figure["value"] for category, figure in report["category_recall"].items()}
    print("regression set, learned screen:", value, recall)
    for key, floor in REGRESSION_FLOORS.items():
        assert value[key] >= floor, (key, value[key], floor)
    for key, ceiling in REGRESSION_CEILINGS.items():
        assert value[key] <= ceiling, (key, value[key], ceiling)
    for category, floor in REGRESSION_CATEGORY_FLOORS.items():
        assert recall[category] >= floor, (category, recall[category], floor)


REGRESSION_FLOORS = {
    "high_flagged": 0.91,  # measured 0.943 (100/106) since the ninth seed pass; 0.934 before
    "high_as_high": 0.84,  # measured 0.877 (93/106); 0.840 before
    "elevated_flagged": 0.91,  # measured 0.943 (66/70); 0.943 before
}
REGRESSION_CEILINGS = {
    "hard_negative_fpr": 0.09,  # measured 0.062 (9/145); 0.048 before
    "none_fpr": 0.08,  # measured 0.051 (11/216); 0.046 before
}
REGRESSION_CATEGORY_FLOORS = {
    "suicide": 0.92,  # measured 0.956 (86/90); 0.956 before
    # measured 0.926 (25/27): the fifth seed pass (self-injury described by the act) took it back from 0.778; the
    # fourth had lost "I just cut myself and there's a lot of blood"
    "self_harm": 0.89,
    "harm_to_others": 0.87,  # measured 0.909 (20/22); 0.909 before
    "abuse": 0.89,  # measured 0.921 (35/38); 0.895 before
}
