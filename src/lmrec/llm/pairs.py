"""Checks of what a draft says about a liked title: the co-like claim and comparisons.

"30 people who liked Contact liked it too" must give the evidence's count and its co-liked
title; "Like Hook, it is Adventure" may only name genres Hook has too. Both need the title
mentions `lmrec.llm.faithfulness` found, and are called from `check_faithfulness`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lmrec.llm.faithfulness import (
    _NUMBER_WORDS,
    _THOUSANDS,
    GENRE_SYNONYMS,
    ZH_GENRES,
    Mention,
    normalize,
    title_keys,
)

if TYPE_CHECKING:
    from lmrec.llm.evidence import CoLiked, Evidence, Neighbour


def co_like_problems(text: str, mentions: Sequence[Mention], evidence: Evidence) -> list[str]:
    """A co-like claim whose count or liked title is not the evidence's."""
    problems: list[str] = []
    if (claim := _co_like_claim(text)) is not None:
        said, end = claim
        c = evidence.collaborative
        if c is None or said != str(c.users):
            want = f"{c.users}" if c is not None else "no such count"
            problems.append(f"says {said!r} people liked both, but the evidence says {want}")
        # the liked item of the claim: the first title after it, alone
        after = [m for m in mentions if m.title is not None and m.start >= end]
        if c is not None and after and after[0].start - end <= 16:
            first = after[0]
            if first.key not in title_keys(c.title):
                problems.append(
                    f"says people who liked '{first.title}' liked it, but the evidence says "
                    f"that of '{c.title}'"
                )
            elif len(after) > 1 and after[1].start - first.end <= 3:
                problems.append(f"runs '{first.title}' and '{after[1].title}' together")
    return problems


#: "30 people who liked ...", "one person who ...", "有 30 位喜欢": the co-like count as said.
_CO_LIKE_COUNT = re.compile(
    r"(\S+)\s+(?:other\s+)?(?:people|persons?|users?|viewers?|fans?)\s+who\b"
    r"|\u6709\s*(\S+?)\s*(?:\u4f4d|\u540d)[^\u3002\uff0c]*?\u559c\u6b22",
    re.I,
)


def _co_like_claim(text: str) -> tuple[str, int] | None:
    """The count a co-like claim states (digits where it is a number word), and where the
    claim's words end."""
    m = _CO_LIKE_COUNT.search(text)
    if m is None:
        return None
    said = (m.group(1) or m.group(2) or "").strip(",.").casefold()
    if _THOUSANDS.fullmatch(said):
        said = said.replace(",", "")
    return _NUMBER_WORDS.get(said, {"one": "1", "a": "1"}.get(said, said)), m.end()


#: "Like Hook, ..." / "像《Hook》..." before a title; "《Hook》一样" after it: a comparison.
_LIKE_BEFORE = re.compile(r"(?:\blike|\u50cf|\u5982\u540c)\s*[\u300a\"']?\s*$", re.I)
_SAME_AFTER = re.compile(r"[\s\u300b\"'\)]*(?:\(\d{4}\)\s*)?\u300b?\s*\u4e00\u6837")


def comparison_problems(text: str, mentions: Sequence[Mention], evidence: Evidence) -> list[str]:
    """Genres a sentence attributes to a liked title it compares the item with, where that
    title does not have them ("Like Star Wars, it is a Romance" when Star Wars is not)."""
    liked: dict[str, tuple[str, ...]] = {}
    items: list[Neighbour | CoLiked] = list(evidence.nearest)
    if evidence.collaborative is not None:
        items.append(evidence.collaborative)
    for n in items:
        for key in title_keys(n.title):
            liked.setdefault(key, n.common_genres)
    low = normalize(text)

    def says(word: str) -> bool:
        return re.search(rf"(?<!\w){re.escape(normalize(word))}(?!\w)", low) is not None

    named = [
        g
        for g in evidence.genres
        if says(g)
        or any(says(w) for w, v in GENRE_SYNONYMS.items() if v == g)
        or (g in ZH_GENRES and ZH_GENRES[g] in text)
    ]
    out = []
    for m in mentions:
        if m.title is None or m.key not in liked:
            continue
        if not (_LIKE_BEFORE.search(text, 0, m.start) or _SAME_AFTER.match(text, m.end)):
            continue
        for g in dict.fromkeys(named):
            if g not in liked[m.key]:
                out.append(f"compares it with '{m.title}' on '{g}', which '{m.title}' is not")
    return out
