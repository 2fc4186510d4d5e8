"""Text normalisation and language detection, applied to every message before the patterns run."""

from __future__ import annotations

import re
import unicodedata

_QUOTES = str.maketrans(
    {"\u2018": "'", "\u2019": "'", "\u201b": "'", "\u2032": "'", "`": "'", "\u201c": '"', "\u201d": '"'}
)
HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
LATIN = re.compile(r"[a-z]")


def normalize_text(text: str) -> str:
    """NFKC (full-width forms to ASCII), casefold, straight quotes, single spaces."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    return " ".join(text.casefold().replace("`", "'").split())


def detect_language(text: str) -> str:
    """Return "zh" when Han characters carry the message (one weighs as much as three Latin letters), else "en"."""
    if text.isascii():
        return "en"
    han = len(HAN.findall(text))
    if not han:
        return "en"
    latin = len(LATIN.findall(text.casefold()))
    return "zh" if han * 3 >= latin else "en"
