"""Idioms blanked out before the rules run, and the context cues a match is judged by.

Negation, subject person, agents of abuse, past tense, fiction/news, hypotheticals, laughter, intrusive thoughts,
urges, stated plans and danger; :class:`MessageContext` caches the per-message and per-clause cues.
"""

from __future__ import annotations

import re
from functools import cached_property

from app.chat.safety.patterns import Pattern

# ---- idioms, hyperbole and harmless uses: blanked out before the rules run
IDIOMS_EN = Pattern(
    r"\bshoot\s+(?:my|your|his|her|their|our)\s+shot\b|\b(?:is|are|was|were|it's|that's|you're|'s|'re)\s+(?:really\s+|literally\s+|totally\s+|absolutely\s+|just\s+"
    r"|so\s+|kinda\s+)?killing\s+me\b"
    r"|\bkill(?:ing|ed|s)?\s+it\b|\bkill(?:ed)?\s+for\s+(?:a|an|some|the)\b|\bdying\s+(?:to|for)\b"
    r"|\b(?:died|die|dying|dead)\s+(?:of|from|with)\s+(?:laughter|laughing|embarrassment|shame|boredom|cringe"
    r"|cuteness|jealousy)\b|\b(?:died|dying|die)\s+laughing\b|\bkilling\s+myself\s+(?:with|over|at|for|trying|working"
    r"|studying|laughing)\b|\bkill(?:ed|ing)?\s+(?:the|a)\s+(?:process|job|task|server|app|boss|zombie|enemy|monster)"
)
IDIOMS_ZH = Pattern(
    r"(?:累|笑|饿|热|冷|气|烦|困|吓|难|忙|急|闷|痛|疼|爱|美|帅|羡慕|尴尬|丢人|无聊|折磨|馋|撑|渴|晒|冻|吵|臭|香|甜|酸|辣"
    r"|紧张|后悔|郁闷|心疼|麻烦|懒|穷|丑|蠢|笨)(?:得|的)?(?:要)?死(?:我|人|你|他|她)?(?:了)?"
    r"|想死(?:你|您|你们|我|他|她|它|人)了?|(?:尴尬|丢人|丢脸|羞耻|社死)(?:得|到)?(?:我)?想死"
    r"|想[^。!?;\n]{0,3}得要死|得(?:要|半)死|杀毒|秒杀|杀青|杀出重围|自杀式袭击"
)

# ---- context cues
PREFIX_WINDOW = 120  # characters of context looked at on each side of a match, within its clause
CLAUSE_SPLIT = Pattern(r"[.!?;。\n][.!?;。\n]*|\bbut\b|但是|可是|不过")
NEG_EN = frozenset(
    [
        "not",
        "never",
        "no",
        "neither",
        "nor",
        "don't",
        "dont",
        "won't",
        "wont",
        "wouldn't",
        "wouldnt",
        "isn't",
        "isnt",
        "aren't",
        "didn't",
        "didnt",
        "doesn't",
        "doesnt",
        "haven't",
        "hasn't",
        "shouldn't",
        "ain't",
    ]
)
NEG_ZH = re.compile(r"不会|不要|不想|不是|不打算|并不|绝不|决不|才不|没有|没|从没|从来没|别|从未|未曾|不可能")
POST_NEG_EN = re.compile(
    r"^\s*(?:has|have|had)?\s*never\s+(?:crossed|been|occurred)|^\s*(?:is|was)\s+(?:not|never)\s+(?:an\s+)?option"
    r"|^\s*isn'?t\s+an\s+option"
)
TOKEN_EN = re.compile(r"[a-z']+")
FIRST_EN = frozenset(["i", "i'm", "im", "i've", "ive", "i'll", "i'd", "me", "we", "we're", "us", "myself"])
THIRD_EN = frozenset(
    [
        "he",
        "she",
        "they",
        "he's",
        "she's",
        "they're",
        "him",
        "her",
        "them",
        "himself",
        "herself",
        "themselves",
        "someone",
        "somebody",
        "anyone",
        "people",
        "friend",
        "friends",
        "friend's",
        "bf",
        "gf",
        "boyfriend",
        "girlfriend",
        "brother",
        "sister",
        "mom",
        "mum",
        "mother",
        "dad",
        "father",
        "son",
        "daughter",
        "kid",
        "kids",
        "child",
        "children",
        "roommate",
        "classmate",
        "coworker",
        "colleague",
        "partner",
        "husband",
        "wife",
        "cousin",
        "uncle",
        "aunt",
        "neighbour",
        "neighbor",
        "student",
        "patient",
        "client",
        "guy",
        "girl",
        "boy",
        "man",
        "woman",
        "character",
        "protagonist",
        "villain",
        "hero",
        "person",
        "teen",
        "teens",
        "teenager",
        "baby",
        "who",
    ]
)
SUBJ_ZH = re.compile(
    r"(?P<third>他们|她们|他|她|朋友|同学|室友|闺蜜|哥们|兄弟|弟弟|妹妹|哥哥|姐姐|儿子|女儿|孩子|爸爸|妈妈|爸|妈|父亲|母亲"
    r"|老公|老婆|丈夫|妻子|男朋友|女朋友|男友|女友|同事|邻居|主角|角色|女主|男主|有人|别人|人家|老师|学生)"
    r"|(?P<first>我们|我|俺)"
)
ZH_GENERIC = re.compile(r"的(?:人|行为|新闻|原因|视频|情况|案例|事件|问题)")
ZH_OBJECT_MARKERS = frozenset("在给对把跟和让被向替帮为打骂叫找杀弄捅")
AGENT_EN = Pattern(
    r"\b(?:he|she|they|he's|she's|they're|husband|wife|partner|boyfriend|girlfriend|bf|gf|dad|daddy|father"
    r"|mom|mum|mother|mommy|stepdad|stepfather|stepmom|stepmother|step-dad|step-mom|uncle|aunt|brother|sister"
    r"|parents?|grandpa|grandfather|grandma|cousin|coach|teacher|boss|ex|fianc[eé]e?|spouse|man|guy|someone"
    r"|somebody|people|kids|classmates?|bully|bullies|priest)\b",
    anchored=False,
)
AGENT_ZH = Pattern(
    r"(?:他|她|爸|妈|父亲|母亲|老公|老婆|丈夫|妻子|男朋友|女朋友|男友|女友|继父|继母|后妈|叔|舅|伯|哥|姐|老师|教练|同学|他们"
    r"|家人)",
    anchored=False,
)
PAST_EN = Pattern(
    r"\b(?:used\s+to|years?\s+ago|months\s+ago|when\s+i\s+was|as\s+a\s+(?:kid|child|teen|teenager|little\s+girl"
    r"|little\s+boy)|growing\s+up|grew\s+up|in\s+(?:high|middle|primary|elementary)\s+school|in\s+college"
    r"|in\s+the\s+past|back\s+then|last\s+(?:year|month|summer|spring|autumn|fall|winter)|a\s+long\s+time\s+ago"
    r"|went\s+through|since\s+i\s+was)\b",
    anchored=False,
)
RECENT_EN = Pattern(
    r"\b(?:last\s+night|yesterday|today|tonight|this\s+(?:morning|afternoon|evening|week)|just\s+now|right\s+now"
    r"|an\s+hour\s+ago|again)\b",
    anchored=False,
)
_RESOLVED_EN = Pattern(
    r"\b(?:i'?m|i\s+am)\s+(?:fine|ok|okay|good|better|safe|happy|doing\s+(?:fine|well|better|great|good|ok|okay)"
    r"|in\s+a\s+(?:better|good)\s+place)\b|\b(?:therapy|treatment|medication|counsell?ing)\s+(?:really\s+)?helped\b"
    r"|\bi'?ve\s+(?:healed|recovered|moved\s+on)\b|\brecovered\b|\bproud\s+of\s+myself\b|\b(?:years|months)\s+clean\b"
)
_RELAPSE_EN = Pattern(r"\brelaps|\bscared\s+i'?ll\b|\bagain\b|\bback\s+there\b|\blately\b")
PAST_ZH = Pattern(
    r"(?:以前|小时候|曾经|去年|前年|那时候?|当年|年前|上学的时候|读书的时候|过去|从前|前男友|前女友|前夫|前妻)",
    anchored=False,
)
RECENT_ZH = Pattern(r"(?:刚刚|刚才|昨天|昨晚|今天|今晚|现在|正在)", anchored=False)
_RESOLVED_ZH = Pattern(
    r"现在(?:已经)?(?:好了|好多了|没事了|很好|挺好)|已经好了|走出来了|康复了|痊愈|过得(?:很好|不错|挺好)"
)
_RELAPSE_ZH = Pattern(r"又|最近|复发")
_MEDIA = Pattern(
    r"\b(?:novel|novels|book|books|story|stories|movie|movies|film|films|documentary|documentaries|character"
    r"|characters|tv\s+show|a\s+show|the\s+show|series|episode|podcast|news|article|headline|song|lyrics|poem"
    r"|a\s+play|the\s+play"
    r"|fiction|essay|lecture|project|research|statistics|rates|studied|hamlet|romeo|juliet|villain|protagonist"
    r"|true\s+crime|prevention|awareness|psychology\s+class|health\s+class|ethics\s+class|literature\s+class"
    r"|history\s+class|video\s+game"
    r"|anime|manga)\b"
    r"|(?:小说|电影|电视剧|剧里|剧中|这部剧|纪录片|新闻|报道|角色|主角|女主|男主|剧情|故事|书里|课上|课堂|论文|研究|统计|预防"
    r"|游戏|综艺|动漫|漫画)",
    anchored=False,
)
_HYPOTHETICAL = Pattern(
    r"\b(?:hypothetically|what\s+if|suppose|imagine|in\s+theory|if\s+someone|asking\s+for\s+a\s+friend)\b"
    r"|(?:假如|假设|如果有人)",
    anchored=False,
)
_LAUGHTER = Pattern(
    r"\b(?:lol|lmao|lmfao|rofl|jk|just\s+kidding|ha(?:ha)+h?)\b|(?:😂|🤣|哈哈|hhh|开玩笑)", anchored=False
)
# Cues that turn "harm to others" into intrusive thoughts or fear of one's impulses, and self-harm into urges.
THOUGHT_EN = Pattern(
    r"\b(?:scared|afraid|worried|terrified|fear|thoughts?|thinking|fantas[a-z]+|urges?|intrusive|imagine|dreams?)\b",
    anchored=False,
)
URGE_EN = Pattern(r"\b(?:urges?|tempt(?:ed|ation)|scared|afraid|worried|terrified|fear|craving)\b", anchored=False)
THOUGHT_ZH = Pattern(r"(?:念头|想法|冲动|控制不住|怕自己|害怕|担心)", anchored=False)
_DANGER = Pattern(
    r"\b(?:knife|gun|weapon|threat[a-z]*|hit(?:s|ting)?\s+me|beat(?:s|ing)?\s+me|chok[a-z]+|strangl[a-z]+|hiding"
    r"|locked\s+(?:myself|me)|police|bleed[a-z]*|bruise[a-z]*|if\s+i\s+(?:leave|tell|go\s+to\s+the\s+police))\b"
    r"|刀|枪|威胁|掐|打我|揍我|报警|躲|敢走|敢离开|敢告诉"
)
_PLAN_EN = Pattern(
    r"\b(?:know\s+(?:exactly\s+)?(?:what|how)\s+i(?:'m|\s+am|'d|\s+would)?\s+(?:going\s+to\s+|gonna\s+)?do"
    r"|made\s+up\s+my\s+mind|this\s+is\s+goodbye|going\s+to\s+(?:use|do)\s+it)\b"
)


class MessageContext:
    """Cues around the matches of one message, computed on first use and cached.

    Fiction/news, hypotheticals and laughter are read from the clause that holds a match; "resolved" (a past
    episode the user says is behind them) and the plan/danger cues are read from the whole message.
    """

    def __init__(self, norm: str) -> None:
        self._norm = norm
        self._clause_cues: dict[tuple[int, int], tuple[bool, bool, bool]] = {}

    def clause_cues(self, text: str, start: int, end: int) -> tuple[bool, bool, bool]:
        """(media, hypothetical, laughter) for the clause ``text[start:end]``."""
        key = (start, end)
        cues = self._clause_cues.get(key)
        if cues is None:
            clause = text[start:end]
            cues = (_MEDIA.search(clause), _HYPOTHETICAL.search(clause), _LAUGHTER.search(clause))
            self._clause_cues[key] = cues
        return cues

    @cached_property
    def danger(self) -> bool:
        """Weapons, violence or threats mentioned: turns "he'll kill me" from hyperbole into a threat."""
        return _DANGER.search(self._norm)

    @cached_property
    def plan(self) -> bool:
        """A stated plan ("I know what I'm going to do"): turns a mention of means into intent."""
        return _PLAN_EN.search(self._norm)

    @cached_property
    def resolved(self) -> bool:
        """The user says a past episode is behind them, with no sign of relapse."""
        norm = self._norm
        return (_RESOLVED_EN.search(norm) and not _RELAPSE_EN.search(norm)) or (
            _RESOLVED_ZH.search(norm) and not _RELAPSE_ZH.search(norm)
        )
