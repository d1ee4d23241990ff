"""Answer-type cues taken from the question's own words, never from a list of evaluation templates.

- "Which bakery ...", "In what museum ...": the noun after which/what names the kind of thing asked for; a
  span holding it as part of a name ("the Tollan Bakery", "the Fulcas Press") is of that kind.
- "When ...", "In what year ...", "What is the birthday of ...": a date (a year, a month, a century).
- "Who/Whom/Whose ...": a name (capitalised words).
- "Where ...": a place name (capitalised words).
- "How many/much ...": a number.

A cue only says what kind of span fits; the model's score still chooses among the spans that fit.
"""
from __future__ import annotations

import re

AUXILIARIES = frozenset("is was are were did does do has had have can could will would should may might "
                        "must shall kind sort type one ones of the".split())
_MONTHS = ("january february march april may june july august september october november december").split()
_NUMBER_WORDS = frozenset("one two three four five six seven eight nine ten eleven twelve twenty thirty forty "
                          "fifty hundred thousand million dozen".split())
_PRONOUNS = frozenset("it he she they we i you his her its their this that there".split())
_CONNECTORS = frozenset("of de la le van von der den du di da the and y".split())
# Nouns that ask for a date: "In what year ...", "What is the birthday of ...".
DATE_NOUNS = frozenset("year years date dates decade century month day birthday birthdate anniversary".split())
_COPULAS = frozenset("is was are were".split())
_YEAR = re.compile(r"\b(1[0-9]{3}|20[0-9]{2})s?\b")


def _tokens(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9']+", text)


def kind_of(question: str) -> str | None:
    """What the question asks for: "date", "name", "place", "number", "noun:<word>" or None."""
    low = [w.lower() for w in _tokens(question)]
    for i, w in enumerate(low):
        if w in ("which", "what") and i + 1 < len(low):
            nxt = low[i + 1]
            if nxt in _COPULAS and low[i + 2:i + 3] == ["the"] and i + 3 < len(low):
                nxt = low[i + 3]        # "What is the birthday of ...": the head noun after the copula
            if nxt in DATE_NOUNS:
                return "date"
            if nxt not in AUXILIARIES:
                return "noun:" + nxt
            return None
        if w == "when":
            return "date"
        if w in ("who", "whom", "whose"):
            return "name"
        if w == "where":
            return "place"
        if w == "how" and i + 1 < len(low) and low[i + 1] in ("many", "much"):
            return "number"
    return None


def _singular(w: str) -> str:
    return w[:-1] if w.endswith("s") and not w.endswith("ss") else w


def _capitalised(span: str) -> bool:
    ws = _tokens(span)
    content = [w for w in ws if w.lower() not in _CONNECTORS]
    return bool(content) and all(w[0].isupper() for w in content) \
        and not all(w.lower() in _PRONOUNS for w in content)


def fits(kind: str | None, span: str) -> bool:
    """True when ``span`` is of the kind ``kind_of`` named (False for no kind)."""
    if kind is None:
        return False
    ws = _tokens(span)
    if kind == "date":
        return bool(_YEAR.search(span)) or any(w.lower() in _MONTHS for w in ws) or "century" in span.lower()
    if kind in ("name", "place"):
        return _capitalised(span)
    if kind == "number":
        return any(w.isdigit() or w.lower() in _NUMBER_WORDS for w in ws)
    noun = _singular(kind.split(":", 1)[1])
    # the kind's word as part of a name: "the Tollan Bakery" for "Which bakery"; a lower-case "the town of X"
    # is left to the model, which then usually picks X
    return any(w[0].isupper() and _singular(w.lower()) == noun for w in ws) and _capitalised(span)


def off_kind(kind: str | None, span: str) -> bool:
    """True when ``span`` is a date but the question asks for something else: "1751-19 March 1793" is no
    answer to "What is his occupation?" (a question whose kind is unknown asks no date either)."""
    return kind not in ("date", "number") and fits("date", span)


def aside(generation: str, start: int, end: int) -> bool:
    """True when the span lies inside parentheses: an aside (life dates, a name in another script), rarely
    what a question asks."""
    return generation[:start].count("(") > generation[:start].count(")") and ")" in generation[end:]


_QUESTION_WORDS = frozenset("what which who whom whose when where why how does did do is was are were the a an of "
                            "in on at to by for from with and or name called".split())


def stem(word: str) -> str:
    """A crude stem, so "opened" meets "open" and "glows" meets "glow": case, plural and tense endings off."""
    word = word.lower()
    for end in ("ing", "ed", "es", "s"):
        if word.endswith(end) and len(word) - len(end) >= 3:
            return word[:-len(end)]
    return word


def near_question(question: str, generation: str, start: int, end: int | None = None, window: int = 3) -> bool:
    """True when a content word of the question stands next to the span in its clause: one of the ``window``
    words before it ("published by Ivo Carr" for "Who published ...?", "opened the Tollan Bakery" for "...
    open?"), or the word right after it, where the span is that word's subject ("Lelmo Berdam restored it"
    for "Who restored ...?"). ``end`` None looks before the span only."""
    asked = {stem(w) for w in _tokens(question) if w.lower() not in _QUESTION_WORDS and len(w) > 2}
    before = re.split(r"[.,;:!?\n]", generation[:start])[-1]
    if any(stem(w) in asked for w in _tokens(before)[-window:]):
        return True
    if end is None:
        return False
    after = re.split(r"[.,;:!?\n]", generation[end:])[0]
    return any(stem(w) in asked for w in _tokens(after)[:1])
