"""Reply length: end a reply after its N-th complete sentence.

SweetieChat replies are meant to be short. A fine-tuned model learns that from its data; a small base model (the
embedded SmolLM2) ignores "answer in one to three sentences" about half the time and runs on until ``max_tokens``
cuts it mid-word. :class:`SentenceBudget` watches the visible reply text as it streams and ends the reply right after
the sentence that fills the budget, so the reply stays whole and short and the engine request is aborted early.

Nothing is held back: text is released as soon as it arrives, and a sentence end is decided by the character that
follows the terminator (whitespace after ``. ! ?``; anything after ``。！？``). Text after the cut, within the same
engine step, is dropped. What counts as a sentence end, and what does not:

- ``.``, ``!``, ``?`` (and closing quotes/brackets) followed by whitespace; ``。``, ``！``, ``？`` by anything;
- not an ellipsis (``...``, ``…``): a pause inside a sentence more often than its end;
- not ``.`` after a common abbreviation (``Mr.``, ``e.g.``), a number (``1.`` in a list) or a single letter (initials);
- not ``3.5`` or ``example.com`` (no whitespace after the dot); a "sentence" with no letter or digit is not counted.
"""

from __future__ import annotations

_LATIN_ENDS = frozenset(".!?")
_CJK_ENDS = frozenset("。！？")
_ELLIPSIS = "…"
_ENDS = _LATIN_ENDS | _CJK_ENDS | {_ELLIPSIS}
_CLOSERS = frozenset("\"'”’)]}»」』）")
_ABBREVIATIONS = frozenset(
    ["mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "vs", "etc", "e.g", "i.e", "eg", "ie", "no", "approx", "cf"]
)


class SentenceBudget:
    """Counts complete sentences in a streamed reply and reports when ``max_sentences`` are done.

    ``feed`` returns the part of the new text to show: all of it until the budget is reached, then the text up to
    the end of the last allowed sentence, then nothing.
    """

    def __init__(self, max_sentences: int) -> None:
        if max_sentences < 1:
            raise ValueError("max_sentences must be at least 1")
        self.max_sentences = max_sentences
        self.sentences = 0
        self.reached = False
        self._text = ""
        self._scan = 0  # everything before this index is decided
        self._has_words = False  # the current sentence has a letter or digit

    def feed(self, text: str) -> str:
        if self.reached or not text:
            return ""
        start = len(self._text)
        self._text += text
        cut = self._advance()
        if cut is None:
            return text
        self.reached = True
        return self._text[start:cut] if cut > start else ""

    def _advance(self) -> int | None:
        """Scan undecided text; the index to cut at once the last allowed sentence has ended, else None."""
        text, i = self._text, self._scan
        while i < len(text):
            c = text[i]
            if c in _ENDS:
                end = i
                while end < len(text) and text[end] in _ENDS:
                    end += 1
                while end < len(text) and text[end] in _CLOSERS:
                    end += 1
                if end == len(text):
                    break  # the next character decides; wait for it
                if self._ends_sentence(i, end):
                    self.sentences += 1
                    self._has_words = False
                    if self.sentences >= self.max_sentences:
                        self._scan = end
                        return end
                i = end
                continue
            if c.isalnum():
                self._has_words = True
            i += 1
        self._scan = i
        return None

    def _ends_sentence(self, start: int, end: int) -> bool:
        """Whether the terminator run ``text[start:end]`` (followed by ``text[end]``) ends a sentence."""
        text = self._text
        marks = text[start:end].rstrip("".join(_CLOSERS))
        if not self._has_words or _ELLIPSIS in marks or marks.startswith(".."):
            return False
        if any(m in _CJK_ENDS for m in marks):
            return True
        if not text[end].isspace():
            return False
        if marks != ".":
            return True  # "!", "?", "?!"...
        word_start = start
        while word_start > 0 and (text[word_start - 1].isalnum() or text[word_start - 1] == "."):
            word_start -= 1
        word = text[word_start:start].lower()
        return not (word in _ABBREVIATIONS or word.isdigit() or (len(word) == 1 and word.isalpha()))
