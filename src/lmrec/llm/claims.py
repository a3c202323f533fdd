"""Claim-level check of explanation drafts: connect the evidence's facts, add none.

`faithfulness.check_faithfulness` checks names and numbers. What is left of a draft are its
other words, and each must be either glue (the words the template sentences and the worked
examples use to connect facts) or a word of the evidence itself. "A classic", "widely
praised", "a high number of likes", "witty dialogue" are claims no evidence states; a draft
that makes one ships the template sentence instead. The lists are deliberately short: a
refused good sentence costs a plainer one, an accepted made-up claim costs trust.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_GLUE_EN_TEXT = (
    # function words
    "a an the and or but also too as so because since if like you your it its this that "
    "these those which who whom what is are was were be been has have had do does did can "
    "could may might will would to of in on at for with from by about than then there here "
    "both all each other another same similar similarly just only one not don doesn isn "
    # how the templates and examples connect facts
    "liked like likes enjoyed enjoy loved love people person user viewer fan watched rated "
    "film movie title genre kind type style item pick recommended recommend recommendation "
    "suggest match matches matching share shares shared sharing common fit request "
    "requested asked decade year era"
)
#: Words for a knowledge-graph relation, allowed only when the evidence has that relation.
RELATION_WORDS = {
    "director": "director directed directing", "actor": "actor actress star starring cast",
    "producer": "producer produced", "writer": "writer written wrote",
    "company": "company studio", "cinematographer": "cinematographer cinematography",
    "sequel": "sequel series", "country": "country", "language": "language",
    "award": "award won", "subject": "subject theme",
}  # fmt: skip
#: How the Chinese sentences name relation groups (allowed only with that relation).
ZH_GROUPS = {
    "director": "导演", "actor": "演员", "producer": "制片人", "writer": "编剧",
    "company": "制片公司", "cinematographer": "摄影师", "sequel": "系列", "country": "国家",
    "language": "语言", "award": "奖项", "subject": "题材",
}  # fmt: skip
#: English words any explanation may use (compared case-folded, plurals folded).
GLUE_EN = frozenset(_GLUE_EN_TEXT.split())
#: Chinese characters any explanation may use besides the evidence's names and genres: those
#: of the template sentences, the worked examples and neutral function words. Evaluative
#: characters (最, 高, 好, 经典, 热门, 多 ...) are left out on purpose.
GLUE_ZH = frozenset(
    "因为你您喜欢和与及它同样也属于类型是一部这那该此个年代的作品有相位用户符合要求而且并为推荐"
    "可能会像一样同名为看过了都还在中其风格电影影片我们他她适人"
)
_CJK_RUN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_LATIN_WORD = re.compile(r"[A-Za-z]+(?:['\u2019][A-Za-z]+)?")


def fold(word: str) -> str:
    """Case-folded, without a possessive or a plain plural ``s``."""
    w = word.casefold().replace("\u2019", "'")
    w = w.removesuffix("'s")
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        w = w[:-1]
    return w


def evidence_words(texts: Iterable[str], groups: Iterable[str] = ()) -> frozenset[str]:
    """Folded Latin words of the evidence (titles, names, genres) and of its relations."""
    words = [*texts, *(RELATION_WORDS.get(g, g) for g in groups)]
    return frozenset(fold(w) for t in words for w in _LATIN_WORD.findall(t))


#: "people who liked it liked it too": a collaborative claim that lost its liked item.
_NAMELESS_CO_LIKE = re.compile(
    r"\bwho (?:liked|like|enjoyed) (?:it|this|that)(?: one| film| movie)? (?:liked|like|also)\b"
    r"|喜欢(?:它|这部|此片)的用户"
)


def nameless_co_like(draft: str) -> bool:
    """Whether ``draft`` says people who liked "it" liked it too, naming no liked item."""
    return bool(_NAMELESS_CO_LIKE.search(draft))


def unsupported_words(
    free_tokens: Iterable[str], allowed: frozenset[str], zh_facts: Iterable[str] = ()
) -> list[str]:
    """Words of a draft that are neither glue nor evidence, in order, each once.

    Args:
        free_tokens: The draft's tokens outside recognised names (Latin words or CJK runs).
        allowed: `evidence_words` of the evidence.
        zh_facts: Chinese strings of the evidence (genre names in Chinese), removed from CJK
            runs before their characters are judged.
    """
    out: list[str] = []
    facts = sorted((f for f in zh_facts if f), key=len, reverse=True)
    for token in free_tokens:
        if _CJK_RUN.fullmatch(token):
            for f in facts:
                token = token.replace(f, " ")
            out += [c for c in token if c != " " and c not in GLUE_ZH]
            continue
        for word in _LATIN_WORD.findall(token):
            if len(word) < 2:  # the "s" of "1990s", the "t" of "don't"
                continue
            w = fold(word)
            if w not in GLUE_EN and w not in allowed and word.casefold() not in GLUE_EN:
                out.append(word)
    return list(dict.fromkeys(out))


__all__ = [
    "GLUE_EN",
    "GLUE_ZH",
    "RELATION_WORDS",
    "ZH_GROUPS",
    "evidence_words",
    "fold",
    "nameless_co_like",
    "unsupported_words",
]
