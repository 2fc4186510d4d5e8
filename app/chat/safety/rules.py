"""The rule tables: English (:data:`EN_RULES`) and Simplified-Chinese (:data:`ZH_RULES`) risk patterns.

Each rule is a pattern plus how its matches are judged (see :class:`app.chat.safety.patterns.Rule`). Idioms and
the context cues that lower a match's level are in :mod:`app.chat.safety.cues`.
"""

from __future__ import annotations

import re

from app.chat.safety.patterns import Person, PersonMode, Rule, split_alternatives
from app.chat.safety.types import Category, RiskLevel


def _rule(
    category: Category,
    level: RiskLevel,
    pattern: str,
    lang: str,
    *,
    mode: PersonMode = "subject",
    default_person: Person = "first",
    negatable: bool = True,
    past: bool = False,
    needs_cue: bool = False,
    not_followed_by: str | None = None,
) -> Rule:
    return Rule(
        category=category,
        level=level,
        alternatives=tuple(split_alternatives(pattern)),
        lang=lang,
        mode=mode,
        default_person=default_person,
        negatable=negatable,
        past=past,
        needs_cue=needs_cue,
        not_followed_by=re.compile(not_followed_by) if not_followed_by else None,
    )


S, SH, HO, AB = Category.SUICIDE, Category.SELF_HARM, Category.HARM_TO_OTHERS, Category.ABUSE
HIGH, ELEV = RiskLevel.HIGH, RiskLevel.ELEVATED

_REFLEXIVE = r"(?P<who>myself|my ?self|herself|himself|themselves|themself|yourself)"
_POSSESSIVE = r"(?P<who>my|his|her|their|your)"
_INTENT_EN = (
    r"(?:wants?\s+to|wanted\s+to|wanna|going\s+to|gonna|gon\s+na|about\s+to|will|'ll|plan(?:ning)?\s+(?:to|on)"
    r"|intend\s+to|ready\s+to|decided\s+to|need\s+to|have\s+to|gotta)"
)
_VIOLENT_EN = r"(?:kill|murder|stab|shoot|strangle|poison|beat|hurt|attack|choke|slit|burn)"
_PEOPLE_EN = (
    r"(?:mom|mum|mother|dad|father|brother|sister|wife|husband|boyfriend|girlfriend|bf|gf|ex|ex-[a-z]+|partner"
    r"|boss|manager|teacher|roommate|flatmate|neighbou?r|son|daughter|kids?|baby|family|friends?|classmates?"
    r"|coworkers?|colleagues?|stepdad|stepfather|stepmom|stepmother|uncle|aunt|cousin|grandma|grandpa|parents"
    r"|landlord|bully|bullies)"
)
_TARGET_EN = (
    rf"(?:him|her|them|everyone|everybody|someone|somebody|people|(?:my|his|her|their|our)\s+{_PEOPLE_EN}(?:'s)?"
    r"|the\s+(?:guy|man|woman|girl|boy|kid|kids|teacher|bully|bitch|bastard|people|family)"
    r"|that\s+(?:guy|man|woman|girl|boy|bitch|bastard|asshole|person|kid))"
)

EN_RULES: tuple[Rule, ...] = (
    # ---- suicide: explicit, first person -> high
    _rule(S, HIGH, rf"\b(?:kill(?:ing|ed|s)?|off(?:ing)?|unalive)\s+{_REFLEXIVE}\b", "en"),
    _rule(S, HIGH, rf"\bend(?:ing|ed)?\s+{_POSSESSIVE}\s+(?:own\s+)?li(?:fe|ves)\b", "en"),
    _rule(S, HIGH, rf"\b(?:tak(?:e|ing)|took)\s+{_POSSESSIVE}\s+own\s+li(?:fe|ves)\b", "en"),
    _rule(S, HIGH, r"\bend(?:ing)?\s+it\s+all\b", "en"),
    _rule(
        S,
        HIGH,
        r"\b(?:going\s+to|gonna|will|'ll|want\s+to|about\s+to|ready\s+to|decided\s+to|i'm|i\s+am)\s+"
        r"(?:just\s+)?end(?:ing)?\s+it\s*(?:$|[,.!]|tonight|today|now|tomorrow|soon|this\s+week)",
        "en",
    ),
    _rule(
        S,
        HIGH,
        r"\b(?:commit(?:ting)?|consider(?:ing)?|contemplat(?:e|ing)|plan(?:ning)?|think(?:ing)?\s+(?:about|of)|attempt(?:ing)?"
        r"|obsess(?:ing)?\s+(?:about|over))\s+(?:my\s+)?suicide\b",
        "en",
    ),
    _rule(S, HIGH, r"\b(?:attempted|tried)\s+suicide\b|\boverdosed\b", "en", past=True),
    _rule(S, HIGH, r"\bsuicidal\b", "en", default_person="first"),
    _rule(S, ELEV, r"\bsuicides?\b", "en", default_person="unknown"),
    _rule(
        S,
        HIGH,
        r"\bsuicide\s+(?:note|letter|plan)s?\b|\b(?:goodbye|farewell)\s+(?:letter|note)s?\b",
        "en",
        default_person="unknown",
    ),
    _rule(
        S,
        HIGH,
        r"\b(?:wants?\s+to|wanted\s+to|wanna|gonna|going\s+to|ready\s+to|deserve\s+to|need\s+to|just\s+want\s+to"
        r"|long\s+to|would\s+like\s+to|'d\s+like\s+to)\s+(?:just\s+)?die\b",
        "en",
    ),
    _rule(
        S,
        HIGH,
        r"\b(?:don'?t|do\s+not|doesn'?t|does\s+not|no\s+longer)\s+want\s+to\s+(?:live|be\s+alive|exist|keep\s+living)\b",
        "en",
        negatable=False,
    ),
    _rule(S, HIGH, r"\b(?:overdos(?:e|ing)|od(?:'?ing)?\s+on)\b", "en", default_person="unknown"),
    _rule(
        S,
        HIGH,
        r"\b(?:take|taking|swallow(?:ing)?|down(?:ing)?)\s+(?:them\s+)?all\s+(?:of\s+)?(?:them|the|my|at\s+once|tonight)"
        r"|\b(?:sav|stockpil|hoard|collect)(?:e|ed|ing)\s+(?:up\s+)?(?:my\s+|all\s+my\s+)?(?:sleeping\s+)?"
        r"(?:pills|meds|medication|antidepressants|tablets|painkillers)"
        r"|\b(?:pills|meds|tablets)\b[^.!?]{0,20}\bready\b|\bwhole\s+bottle\s+of\s+(?:pills|meds|tablets|sleeping)",
        "en",
    ),
    _rule(
        S,
        HIGH,
        r"\bjump(?:ing|ed)?\s+(?:off|from|in\s+front\s+of)\s+(?:the\s+|a\s+|my\s+|this\s+|that\s+)?(?:[a-z]+\s+)?"
        r"(?:bridge|roof|building|balcony|cliff|tower|window|ledge|train|overpass|car\s+park|parking\s+garage)\b",
        "en",
        not_followed_by=r"\s+(?:into|in)\s+(?:the\s+)?(?:lake|water|sea|pool|ocean|river)",
    ),
    _rule(
        S,
        HIGH,
        r"\b(?:going\s+to|gonna|about\s+to|want\s+to|will|'ll|thinking\s+(?:of|about)|ready\s+to)\s+jump(?:ing)?\b",
        "en",
        not_followed_by=r"\s+(?:in|into|on|onto|at|up|over|around|for|ship|rope|back|ahead|to|through|the\s+gun"
        r"|straight|right|out\s+of\s+(?:bed|my\s+skin)|start)",
    ),
    _rule(S, HIGH, rf"\bhang(?:ing|ed)?\s+{_REFLEXIVE}\b", "en"),
    _rule(S, HIGH, r"\bnoose\b", "en", default_person="unknown"),
    _rule(
        S,
        HIGH,
        r"\b(?:driv(?:e|ing)|crash(?:ing)?|steer(?:ing)?)\s+(?:my\s+car\s+|the\s+car\s+)?(?:into|off)\s+(?:a|the)\s+"
        r"(?:wall|tree|truck|lorry|river|cliff|bridge|road|oncoming|barrier)",
        "en",
    ),
    _rule(
        S,
        HIGH,
        rf"\b(?:us(?:e|ing)|turn(?:ing)?|point(?:ing)?)\s+(?:it|the\s+gun|a\s+gun|the\s+knife|the\s+blade)\s+on\s+"
        rf"{_REFLEXIVE}",
        "en",
    ),
    _rule(
        S,
        HIGH,
        r"\b(?:rope|pills|razor|blade|gun)\b",
        "en",
        needs_cue=True,  # the means plus a stated plan anywhere in the message (see _PLAN_EN in cues.py)
    ),
    _rule(S, ELEV, r"\bkms\b", "en"),
    _rule(
        S,
        HIGH,
        r"\b(?:took|take|taking|swallow(?:ed|ing)?)\s+(?:like\s+)?(?:\d{2,}|a\s+(?:whole\s+)?bottle\s+of|all\s+(?:of\s+)?"
        r"(?:my|the))\s+(?:[a-z]+\s+)?(?:paracetamol|tylenol|acetaminophen|ibuprofen|aspirin|pills|tablets|meds"
        r"|antidepressants|painkillers)\b"
        r"|\bhow\s+many\s+(?:[a-z]+\s+){0,3}(?:would\s+it|does\s+it|would|do\s+i\s+need|to)\s+(?:take\s+)?(?:to\s+)?"
        r"(?:die|kill\s+(?:me|myself|someone)|overdose|od)\b"
        r"|\b(?:painless|easiest|quickest|fastest|best|surest)\s+way\s+to\s+(?:die|end\s+it|kill\s+(?:myself|yourself))\b"
        r"|\blethal\s+dose\b",
        "en",
    ),
    _rule(
        S,
        ELEV,
        r"\b(?:nobody|no\s+one|no-one)\s+would\s+(?:even\s+)?(?:care|notice|miss\s+me|cry)\b"
        r"|\b(?:think|thinking|thoughts?)\s+(?:a\s+lot\s+)?(?:about|of)\s+(?:death|dying|being\s+dead|not\s+being\s+here)\b",
        "en",
        negatable=False,
    ),
    # ---- suicide: passive or indirect -> elevated
    _rule(
        S,
        ELEV,
        r"\bwish\s+(?:that\s+)?i\s+(?:was|were|had\s+been)\s+(?:dead|never\s+born|gone|not\s+(?:here|alive|born))\b"
        r"|\bwish\s+i\s+(?:could\s+|would\s+)?(?:just\s+)?(?:disappear|vanish|stop\s+existing|not\s+exist|die\b|fall\s+asleep)"
        r"|\bwish\s+i\s+(?:had\s+)?never\s+(?:been\s+born|existed)",
        "en",
    ),
    _rule(
        S,
        ELEV,
        r"\b(?:hope|wish|want|pray)\b[^.!?]{0,25}\b(?:never|not|don'?t|won'?t)\s+wake\s+up\b"
        r"|\b(?:fall|fell|falling|go|went)\s+(?:to\s+)?a?sleep\s+and\s+(?:never|not|don'?t)\s+(?:wake|woke)\s+up\b"
        r"|\bnever\s+wake\s+up\s+again\b",
        "en",
        negatable=False,
    ),
    _rule(
        S,
        ELEV,
        r"\bbetter\s+off\s+(?:without\s+me|dead|if\s+i)\b"
        r"|\bif\s+i\s+(?:just\s+)?(?:wasn'?t|weren'?t|was\s+not|were\s+not)\s+(?:here|around|alive)\b"
        r"|\bif\s+i\s+(?:was|were|just)\s+(?:gone|dead|not\s+here)\b|\bwithout\s+me\s+around\b",
        "en",
        negatable=False,
    ),
    _rule(
        S,
        ELEV,
        r"\b(?:what'?s|what\s+is)\s+(?:even\s+)?the\s+point\s+(?:of|in)\s+(?:living|life|going\s+on|being\s+alive"
        r"|staying\s+alive|me\s+being\s+here)\b"
        r"|\b(?:tired|sick)\s+of\s+(?:living|life|being\s+alive|existing)\b"
        r"|\b(?:no|any|a)\s+(?:reason|point)\s+(?:to|in)\s+(?:live|living|keep\s+going|go\s+on|going\s+on|be\s+alive"
        r"|stay\s+alive|exist)\b"
        r"|\blife\s+(?:is|feels|seems)\s+(?:so\s+|completely\s+|totally\s+|just\s+)?(?:pointless|meaningless"
        r"|not\s+worth\s+living)\b|\b(?:not|isn'?t|ain'?t)\s+worth\s+living\b"
        r"|\bno\s+point\s+(?:anymore|any\s+more|in\s+anything|in\s+trying|in\s+going\s+on)\b",
        "en",
        negatable=False,
    ),
    _rule(
        S,
        ELEV,
        r"\b(?:a|such\s+a|just\s+a)\s+burden\s+(?:to|on|for)\b|\bi'?m\s+(?:just\s+|such\s+)?a\s+burden\b",
        "en",
        negatable=False,
    ),
    _rule(
        S,
        ELEV,
        r"\bwouldn'?t\s+mind\s+(?:if\s+(?:a|the|some)\s+[a-z]+\s+(?:hit|killed|ran\s+over)\s+me|dying|being\s+dead"
        r"|not\s+waking\s+up)|\bto\s+not\s+exist\b|\b(?:want|wish|like|rather)\s+(?:to\s+)?(?:not\s+exist|stop\s+"
        r"existing|disappear\s+forever)\b|\b(?:want|wanna|need)\s+to\s+disappear\b",
        "en",
        negatable=False,
    ),
    _rule(S, ELEV, r"\b(?:rather|sooner)\s+be\s+dead\b|\bdark\s+thoughts\b|\bno\s+way\s+out\b", "en"),
    _rule(
        S,
        ELEV,
        r"\b(?:can'?t|cannot)\s+(?:go\s+on|keep\s+going|do\s+this|take\s+(?:it|this)|keep\s+living)\s+any\s*more\b",
        "en",
        negatable=False,
    ),
    # ---- self-harm
    _rule(
        SH,
        HIGH,
        rf"\b(?:cut|cutting|burn(?:ed|t|ing)?|hurt(?:ing)?|harm(?:ing|ed)?|punish(?:ing|ed)?|starv(?:e|ing|ed)"
        rf"|scratch(?:ing|ed)?|stab(?:bing|bed)?|hit(?:ting)?|cuts|burns|hurts|harms)\s+{_REFLEXIVE}\b",
        "en",
        not_followed_by=r"\s*(?:shaving|cooking|chopping|on\s+(?:a|the|some|my)|by\s+accident|accidentally|while"
        r"|at\s+the\s+gym|at\s+work|playing|during|lifting|running|skiing|falling|in\s+the\s+kitchen"
        r"|with\s+(?:work|overtime|stress))",
    ),
    _rule(
        SH,
        HIGH,
        rf"\bcut(?:ting|s)?\s+{_POSSESSIVE}\s+(?:arms?|wrists?|legs?|thighs?|skin|stomach|hips?)\b",
        "en",
    ),
    _rule(
        SH,
        HIGH,
        r"\b(?:start(?:ed|ing)?|been|keep|kept|stop(?:ped)?|quit|go\s+back\s+to)\s+cutting\b(?!\s+(?:down|back|costs?"
        r"|class|classes|carbs|sugar|corners|hair|the|my\s+hair|onions|out|in|it\s+close|ties|people))"
        r"|\bcut(?:ting)?\s+again\b",
        "en",
    ),
    _rule(
        SH,
        HIGH,
        r"\bcut\s+(?:myself\s+)?(?:last\s+night|yesterday|today|tonight|this\s+morning|deep(?:er)?)\b"
        r"|\brelaps(?:e|ed|ing)\b[^.!?]{0,20}\b(?:cut|cutting|burned|burnt)\b",
        "en",
    ),
    _rule(
        SH,
        HIGH,
        r"\bself[\s-]?(?:harm(?:ing|ed|s)?|injur(?:y|e|ing|ed)|mutilat[a-z]*)\b",
        "en",
        default_person="unknown",
    ),
    _rule(
        SH,
        ELEV,
        r"\burges?\s+to\s+(?:cut|self[\s-]?harm|hurt\s+myself|burn\s+myself)\b",
        "en",
    ),
    _rule(
        SH,
        HIGH,
        r"\b(?:hit|hitting|bang|banging|punch|punching)\s+(?:my\s+head|myself|the\s+wall)\b[^.!?]{0,40}"
        r"\b(?:until|till|til)\s+(?:it|i)\s+(?:bleed|bruise)",
        "en",
    ),
    # ---- harm to others
    _rule(
        HO,
        HIGH,
        rf"\b{_INTENT_EN}\s+(?:[a-z]+\s+){{0,2}}?{_VIOLENT_EN}(?:s|ed|ing)?\s+{_TARGET_EN}\b",
        "en",
        not_followed_by=r"\s+with\s+kindness|\s+to\s+it\b|[^.!?]{0,25}\b(?:games?|match(?:es)?|finals?|races?|score"
        r"|points?|chess|tournament|league|rounds?|semis?|playoffs?|cup)\b",
    ),
    _rule(HO, HIGH, r"\bshoot\s+up\s+(?:my|the|a|our|this)\s+(?:school|class|office|workplace|church|mall)\b", "en"),
    _rule(
        HO,
        HIGH,
        rf"\b{_INTENT_EN}\s+(?:use|using)\s+(?:it|the\s+gun|a\s+gun|the\s+knife|a\s+knife|my\s+gun|his\s+gun)\s+on\s+"
        rf"{_TARGET_EN}",
        "en",
    ),
    _rule(
        HO,
        HIGH,
        r"\bbring(?:ing)?\s+(?:a|my|his|her|the)\s+(?:gun|knife|weapon|rifle|bomb)\s+to\s+(?:school|class|work)\b",
        "en",
    ),
    _rule(
        HO,
        ELEV,
        rf"\b(?:thoughts?|fantas[a-z]+|urges?|images?|dreams?)\s+(?:of|about)\s+(?:hurting|killing|harming|stabbing"
        rf"|attacking|shooting)\s+{_TARGET_EN}",
        "en",
    ),
    # ---- abuse (victim in the `who` group; needs an agent before it)
    _rule(
        AB,
        HIGH,
        r"\b(?:hits?|hitting|beats?|beating|beaten|punch(?:es|ed|ing)?|kick(?:s|ed|ing)?|slap(?:s|ped|ping)?"
        r"|chok(?:es|ed|ing|e)|strangl(?:es|ed|ing|e)|shov(?:es|ed|ing|e)|whip(?:s|ped)?|smack(?:s|ed)?|throttl(?:es|ed))"
        r"\s+(?P<who>me|us|her|him|them)\b",
        "en",
        mode="victim",
        not_followed_by=r"\s+(?:up\b|at\b|in\s+(?:a|the)\s+(?:game|race|match)|to\s+it|back\b|out\b)"
        r"|[^.!?]{0,30}\b(?:pillow|snowball|nerf|water\s+balloon|by\s+accident|accidentally|playing|play\s+fight)",
    ),
    _rule(
        AB,
        HIGH,
        r"\b(?:threaten(?:s|ed|ing)?\s+to|said\s+(?:he|she|they)(?:'d|\s+would|'ll|\s+will)"
        r"|swore\s+(?:he|she|they)(?:'d|\s+would))\s+(?:kill|hurt|murder|stab|shoot|beat)\s+(?P<who>me|us|her|him|them)\b",
        "en",
        mode="victim",
    ),
    _rule(
        AB,
        HIGH,
        r"\b(?:going\s+to|gonna|will|'ll|gon\s+na)\s+(?:kill|murder|hurt)\s+(?P<who>me|us)\b",
        "en",
        mode="victim",
        needs_cue=True,
    ),
    _rule(
        AB,
        HIGH,
        r"\b(?:rap(?:ed|es|ing|e)|molest(?:s|ed|ing)?|sexually\s+(?:assault|abus)(?:ed|es|ing)?|grop(?:es|ed|ing|e)"
        r"|abus(?:es|ed|ing|e)|assault(?:s|ed|ing)?)\s+(?P<who>me|us|her|him|them)\b",
        "en",
        mode="victim",
    ),
    _rule(
        AB,
        HIGH,
        r"\b(?:was|were|got|been|being|am|is|are|get|gets|getting)\s+(?:[a-z]+\s+)?(?:raped|molested|sexually\s+"
        r"(?:assaulted|abused)|abused|assaulted|trafficked|groomed|strangled|choked|beaten(?:\s+up)?)\b",
        "en",
        not_followed_by=r"\s+(?:in|at|on|\d|by\s+(?:a|one|two|\d))",
    ),
    _rule(
        AB,
        HIGH,
        r"\bforc(?:es|ed|ing|e)\s+(?P<who>me|her|him|them)\s+(?:to\s+(?:have\s+sex|do\s+(?:things|stuff|sexual)|sleep\s+with"
        r"|touch))"
        r"|\btouch(?:es|ed|ing)?\s+(?P<who2>me|her|him)\b[^.!?]{0,60}\b(?:not\s+to\s+tell|don'?t\s+tell|secret"
        r"|inappropriate|private|at\s+night|when\s+no\s?one)",
        "en",
        mode="victim",
    ),
    _rule(
        AB,
        ELEV,
        r"\b(?:domestic\s+(?:violence|abuse)|child\s+abuse|sexual\s+(?:abuse|assault)|marital\s+rape|incest"
        r"|abusive\s+(?:relationship|partner|husband|wife|boyfriend|girlfriend|home|parents?|family|household|ex))\b"
        r"|\b(?:is|was|being|are)\s+(?:so\s+|really\s+|very\s+)?abusive\b",
        "en",
        default_person="unknown",
    ),
    _rule(
        AB,
        ELEV,
        r"\b(?:controls?|controlling)\s+(?:all\s+)?(?:of\s+)?(?:my|our)\s+(?:money|finances|phone|life)\b"
        r"|\bwon'?t\s+let\s+me\s+(?:see|leave|go\s+out|talk\s+to|have|work|use|sleep|eat)\b"
        r"|\b(?:takes?|took)\s+(?:away\s+)?my\s+(?:phone|passport|keys|money)\b|\block(?:s|ed)?\s+me\s+(?:in|out)\b",
        "en",
        negatable=False,
    ),
    _rule(
        AB,
        ELEV,
        r"\b(?:afraid|scared|terrified|frightened)\s+(?:of|to\s+go\s+home\s+to)\s+(?:my\s+)?(?:partner|husband|wife"
        r"|boyfriend|girlfriend|dad|father|mom|mum|mother|stepdad|stepfather|parents?|ex)\b"
        r"|\b(?:scared|afraid|terrified)\s+to\s+go\s+home\b",
        "en",
    ),
)

# Chinese: no word boundaries, so patterns are written around short, specific phrases.
_NP = r"[^。!?;\n]"  # one character inside a sentence (after NFKC, full-width !?; are ASCII)
_ZH_DIE = (
    r"(?:死|去死|自杀|轻生|寻死|跳楼|跳河|跳江|跳海|跳桥|上吊|割喉|烧炭|服毒|喝农药|结束(?:自己的?|我的)?生命|一了百了)"
)
ZH_RULES: tuple[Rule, ...] = (
    # ---- suicide -> high
    _rule(
        S,
        HIGH,
        rf"(?:想|好想|很想|真想|只想|想要|要去|准备|打算|决定|计划|今晚就|明天就|马上就|现在就|就去)(?:{_NP}{{0,4}}?){_ZH_DIE}",
        "zh",
        not_followed_by=r"(?:你|您|我了|他了|她了|它|人了|了你)",
    ),
    _rule(
        S,
        HIGH,
        r"不想(?:再)?活(?:了|下去|着)|活不下去|不想再活|(?:怎么|如何|怎样)(?:去)?(?:死|自杀)",
        "zh",
        negatable=False,
    ),
    _rule(
        S,
        HIGH,
        rf"结束(?:自己的?|我的)?生命|一了百了|吃{_NP}{{0,2}}(?:一整瓶|整瓶|一瓶|所有的?|全部的?)(?:安眠)?药"
        rf"|(?:吞|喝)(?:了)?{_NP}{{0,2}}(?:一整瓶|整瓶|一瓶|所有的?|全部的?|很多|好多)(?:安眠)?药",
        "zh",
    ),
    _rule(S, HIGH, r"遗书|烧炭|上吊", "zh", default_person="unknown"),
    _rule(
        S,
        HIGH,
        rf"(?:安眠药|药片|农药|老鼠药|炭|绳子){_NP}{{0,10}}(?:攒|准备好|备好|买好|吃掉|全吃|都吃|一起吃|吞)",
        "zh",
    ),
    _rule(S, HIGH, rf"(?:楼|天台|桥|阳台|窗|顶楼){_NP}{{0,12}}跳下去|(?:想|要|就)跳下去", "zh"),
    _rule(S, ELEV, r"自杀|轻生|寻短见|跳楼", "zh", default_person="unknown"),
    # ---- suicide -> elevated
    _rule(
        S,
        ELEV,
        r"不(?:要|想)醒(?:来|过来)|永远(?:地)?睡下去|睡着了?就(?:再也)?(?:不要|别|不)醒",
        "zh",
        negatable=False,
    ),
    _rule(S, ELEV, rf"消失了?{_NP}{{0,8}}(?:更好|更开心|会好)|(?:想|希望)(?:自己)?(?:就这样)?消失", "zh"),
    _rule(
        S,
        ELEV,
        r"活着(?:到底|还)?有什么意(?:义|思)|活着(?:真|好|太|也)?没(?:有)?(?:意思|意义)|活着(?:好|真|太)?(?:累|痛苦)"
        r"|活得(?:好|真|太)?累|活够了|人生(?:没有|毫无)意义|撑不下去|撑不住了",
        "zh",
        negatable=False,
    ),
    _rule(
        S,
        ELEV,
        r"没(?:有)?(?:被)?(?:出生|生下来)|不该(?:被)?(?:出生|生下来)|(?:是|成了)[^。!?;\n]{0,8}负担"
        r"|拖累(?:了)?(?:大家|家人|所有人|你们)",
        "zh",
        negatable=False,
    ),
    _rule(
        S,
        ELEV,
        rf"没有我{_NP}{{0,10}}(?:更好|不会有什么不同|也一样|照样)|死了(?:也)?(?:挺好|算了|就好了|也好|倒好)|不如死了",
        "zh",
        negatable=False,
    ),
    _rule(S, ELEV, r"(?:做|干)傻事", "zh"),
    # ---- self-harm
    _rule(
        SH,
        HIGH,
        r"割腕|割(?:了)?手腕|自残|自伤|伤害自己|(?:划|割|烫|烧|刺)(?:伤)?自己|用刀划|拿刀划",
        "zh",
    ),
    _rule(SH, ELEV, rf"(?:手臂|手腕|胳膊|大腿)上?{_NP}{{0,8}}(?:刀痕|割痕|划痕|伤痕)", "zh"),
    # ---- harm to others
    _rule(
        HO,
        HIGH,
        r"(?:杀了|杀死|弄死|捅死|砍死|毒死|宰了|干掉|捅)(?:他|她|他们|她们|那个|这个|全家|所有人)"
        r"|把(?:他|她|他们|她们)(?:全家)?(?:都)?(?:给)?(?:杀|弄死|宰)|下毒",
        "zh",
    ),
    _rule(HO, ELEV, rf"(?:想|要)打人|伤害(?:别人|他人)|报复社会|带(?:着)?刀{_NP}{{0,10}}(?:学校|公司|报复)", "zh"),
    # ---- abuse
    _rule(
        AB,
        HIGH,
        r"(?:打|揍|踢|掐|扇|抽|殴打|虐待|家暴)(?P<who>我|她|他|孩子|我们)",
        "zh",
        mode="victim",
        not_followed_by=r"[^。!?;\n]{0,8}(?:电话|手机|微信|视频|主意)",
    ),
    _rule(
        AB,
        HIGH,
        r"被(?:[^。!?;\n,]{0,4})?(?:打|揍|家暴|虐待|强奸|性侵|猥亵|侵犯|殴打)",
        "zh",
        not_followed_by=r"(?:败|扰|动|开|断|通|湿|包|印|入|击|折|倒|乱|破|针|卡|上|下|回|电话|手机|中)",
    ),
    _rule(AB, HIGH, r"(?:强奸|性侵|猥亵|侵犯)(?:了)?(?P<who>我|她|他)", "zh", mode="victim"),
    _rule(
        AB,
        HIGH,
        rf"摸我{_NP}{{0,20}}(?:不要告诉|别告诉|不许告诉|不准告诉|秘密)|威胁{_NP}{{0,6}}(?:杀|打死|弄死|砍)",
        "zh",
    ),
    _rule(
        AB,
        HIGH,
        r"(?:打死|杀了|弄死|掐死|砍死)(?P<who>我)",
        "zh",
        mode="victim",
        needs_cue=True,
    ),
    _rule(AB, ELEV, r"家暴|家庭暴力|性侵|虐待", "zh", default_person="unknown"),
    _rule(AB, ELEV, r"控制我(?:所有的|的)?(?:钱|手机|自由)|不让我(?:见|出门|离开|工作|和)", "zh", negatable=False),
)
