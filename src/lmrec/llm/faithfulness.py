"""Faithfulness of explanation drafts: every name and number must come from the evidence.

`check_faithfulness` reads a draft the way a careful reviewer would and lists what it cannot
back up: catalog titles, genres or attribute values, KG entity names and numbers that are not
among `Evidence.facts`, and drafts that are empty, too long, in the wrong language, shouting,
or echoing the prompt. Names are found by longest match over word tokens against a
`Vocabulary` of the whole catalog (`catalog_vocabulary`, built once): a title counts in any
of its usual spellings (without the year, ``The Usual Suspects`` for ``Usual Suspects,
The``), and a one-word name (``Fargo``) only when capitalised, so ordinary words
(``heavy``) are not taken for films. Titles shorter than five characters and one word are not
looked for at all (``Ed``, ``Kim``). Genres are matched in any case, with plurals and a few
synonyms (``romantic``, ``science fiction``), and in Chinese through `ZH_GENRES`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import pandas as pd

from lmrec.data.schema import ITEM, item_titles
from lmrec.errors import ConfigError
from lmrec.llm.claims import ZH_GROUPS, evidence_words, nameless_co_like, unsupported_words

if TYPE_CHECKING:  # evidence.py imports the text helpers below
    from lmrec.llm.evidence import Evidence
    from lmrec.rank.attributes import ItemAttributes

Language = Literal["en", "zh"]
LANGUAGES: tuple[Language, ...] = ("en", "zh")
#: The ML-100K genres in Chinese; explanations and the checker use these exact names.
ZH_GENRES = {
    "Action": "动作", "Adventure": "冒险", "Animation": "动画", "Children's": "儿童",
    "Comedy": "喜剧", "Crime": "犯罪", "Documentary": "纪录片", "Drama": "剧情",
    "Fantasy": "奇幻", "Film-Noir": "黑色电影", "Horror": "恐怖", "Musical": "音乐",
    "Mystery": "悬疑", "Romance": "爱情", "Sci-Fi": "科幻", "Thriller": "惊悚", "War": "战争",
    "Western": "西部",
}  # fmt: skip
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
#: A run of CJK characters, or a run of other letters/digits: adjacent scripts split apart.
TOKEN = re.compile(f"[{_CJK}]+|[^\\W_{_CJK}]+")
_CJK_CHAR = re.compile(f"[{_CJK}]")
_LATIN_CHAR = re.compile(r"[A-Za-z]")
_YEAR_SUFFIX = re.compile(r"\s*\((\d{4})\)\s*$")
_ALTERNATE = re.compile(r"^(.+?)\s*\(([^()]+)\)$")
_ARTICLE = re.compile(r"^(.+),\s*(the|a|an|la|le|les|l'|il|el|der|die|das|det|los|las)$", re.I)
_ARTICLE_TEXT = "the a an la le les l il el der die das det los las"
_ARTICLES = frozenset(_ARTICLE_TEXT.split())


@lru_cache(maxsize=1 << 16)
def prepare(text: str) -> str:
    """NFKC (full-width digits, compatibility forms) with Latin accents removed."""
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text))
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not _combining(c)))


def _combining(ch: str) -> bool:
    return unicodedata.combining(ch) > 0


def tokens(text: str) -> list[str]:
    """Casefolded word tokens of ``text`` (CJK runs kept whole, punctuation dropped)."""
    return [m.group(0).casefold() for m in TOKEN.finditer(prepare(text))]


@lru_cache(maxsize=1 << 16)
def normalize(text: str) -> str:
    """``text`` as space-joined casefolded tokens: the form names are compared in."""
    return " ".join(tokens(text))


def title_variants(title: str) -> list[str]:
    """Ways a catalog title may be written: without its year, with a trailing article moved
    to the front or dropped, and the main and alternate parts of ``Main (Alternate)``."""
    base = _YEAR_SUFFIX.sub("", title.strip()).strip()
    parts = [base]
    if (m := _ALTERNATE.match(base)) and not m.group(2).isdigit():
        parts += [m.group(1), m.group(2)]
    out: list[str] = []
    for part in parts:
        out.append(part)
        if m := _ARTICLE.match(part):
            out += [f"{m.group(2)} {m.group(1)}", m.group(1)]
    return list(dict.fromkeys(v for v in out if v.strip()))


@lru_cache(maxsize=1 << 14)
def title_keys(title: str) -> frozenset[str]:
    """Normalised forms of `title_variants` (what a title mention is matched against)."""
    # cached: every check looks up the evidence's titles and the catalog's again
    return frozenset(k for v in title_variants(title) if (k := normalize(v)))


def display_title(title: str, year: object) -> str:
    """``Title (1977)`` when the year is known and not already in the title."""
    text = str(title).strip()
    year_text = str(year).strip() if isinstance(year, str | int) else ""
    digits = year_text[:4] if year_text[:4].isdigit() else ""
    return f"{text} ({digits})" if digits and not _YEAR_SUFFIX.search(text) else text


def short_decade(decade: str) -> str | None:
    """``70s`` for ``1970s`` (how people often write decades)."""
    return decade[2:] if len(decade) == 5 and decade[:4].isdigit() else None


def check_language(language: str) -> Language:
    """``language`` if supported.

    Raises:
        ConfigError: For any other language.
    """
    if language not in LANGUAGES:
        raise ConfigError(f"unsupported language '{language}'; choose one of {list(LANGUAGES)}")
    return language


#: Longest drafts accepted: words (a title counts as one) and Chinese characters.
MAX_WORDS = 45
MAX_CJK = 120
#: Share of CJK among letters: at most this much in English, at least ``ZH_MIN`` in Chinese.
EN_MAX_CJK = 0.1
ZH_MIN_CJK = 0.5
#: Strings that betray an echoed prompt, markup or a link rather than an explanation.
ECHO_MARKERS = (
    "ignore", "instruction", "system prompt", "system message", "<data", "data>",
    "data block", "as an ai", "language model", "{", "}", "http", "www.",
    "忽略", "指令", "提示词", "系统提示", "系统消息",
)  # fmt: skip
#: English genre words that are not a plural of the genre name.
GENRE_SYNONYMS = {
    "scifi": "Sci-Fi", "science fiction": "Sci-Fi", "romantic": "Romance",
    "animated": "Animation", "noir": "Film-Noir", "children": "Children's",
    "kids": "Children's", "cartoon": "Animation", "documentaries": "Documentary",
}  # fmt: skip
_NUMBER_TEXT = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty"
)
#: Spelled numbers that are checked like digits ("one" is mostly a pronoun: "this one").
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(_NUMBER_TEXT.split()) if i >= 2}
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+")
_SHOUT = re.compile(r"\b[A-Z]{3,}\b")
_BRACKET_YEAR = re.compile(r"[(\uff08]\s*\d{4}\s*[)\uff09]")
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


def numbers(text: str) -> list[str]:
    """The numbers written in digits in ``text`` (``1,000`` -> ``1000``; ``1970s`` -> ``1970``)."""
    out: list[str] = []
    for raw in _NUMBER.findall(prepare(text)):
        if _THOUSANDS.fullmatch(raw):
            out.append(raw.replace(",", ""))
        else:
            out += [p for p in raw.split(",") if p]
    return out


@dataclass(frozen=True)
class Entry:
    """What a normalised key names: a catalog title, an attribute value, or both.

    A strict meaning counts only when its content words are capitalised in the draft.
    """

    title: str | None = None
    title_strict: bool = False
    value: str | None = None
    value_strict: bool = False


@dataclass(frozen=True)
class Mention:
    """A name found in a draft: its key, what it names, and its character span."""

    key: str
    title: str | None
    value: str | None
    start: int
    end: int
    first: int  # first token index
    last: int  # one past the last token


@dataclass(frozen=True)
class Vocabulary:
    """Every name the catalog knows, by normalised key (see `catalog_vocabulary`)."""

    entries: Mapping[str, Entry]
    longest: int  # tokens in the longest key

    def scan(
        self, text: str, titles: Iterable[str] = ()
    ) -> tuple[list[re.Match[str]], list[Mention]]:
        """Tokens of prepared ``text`` and the names in it, longest match first.

        ``titles`` (the evidence's) are known even if the vocabulary predates them.
        """
        extra = {k: Entry(title=t, title_strict=s) for t in titles for k, s in _name_keys(t, True)}
        longest = max([self.longest, *(len(k.split()) for k in extra)])
        toks = list(TOKEN.finditer(text))
        words = [t.group(0).casefold() for t in toks]
        found: list[Mention] = []
        i = 0
        while i < len(toks):
            for n in range(min(longest, len(toks) - i), 0, -1):
                key = " ".join(words[i : i + n])
                entry = extra.get(key) or self.entries.get(key)
                if entry is None:
                    continue
                caps = all(
                    w in _ARTICLES or not t.group(0)[0].isalpha() or t.group(0)[0].isupper()
                    for w, t in zip(words[i : i + n], toks[i : i + n], strict=True)
                )
                title = entry.title if caps or not entry.title_strict else None
                value = entry.value if caps or not entry.value_strict else None
                if title is None and value is None:
                    continue
                found.append(
                    Mention(key, title, value, toks[i].start(), toks[i + n - 1].end(), i, i + n)
                )
                i += n
                break
            else:
                i += 1
        return toks, found


def _name_keys(name: str, known: bool = False) -> list[tuple[str, bool]]:
    """(key, strict) per spelling of a title or entity name that is safe to look for.

    ``known``: a title of the evidence, looked for even when short (capitalised), so that
    ``Kids (1995)`` is read as that title and not as the genre word "kids".
    """
    out = []
    for key in title_keys(name):
        words = key.split()
        if key.replace(" ", "").isdigit() or (not known and len(words) < 2 and len(key) < 5):
            continue
        out.append((key, sum(w not in _ARTICLES for w in words) < 2))
    return out


def _value_keys(value: str) -> list[str]:
    key = normalize(value)
    if not key:
        return []
    plural = key[:-1] + "ies" if key.endswith("y") else key + "s"
    return [key, plural, key.replace(" ", "")]


def build_vocabulary(
    titles: Iterable[str], values: Iterable[str], names: Iterable[str] = ()
) -> Vocabulary:
    """A vocabulary of catalog ``titles``, attribute ``values`` (any case) and entity
    ``names`` (title rules)."""
    found: dict[str, Entry] = {}
    # The first spelling wins: duplicate titles, a plural that is also a value...
    for title in titles:
        for key, strict in _name_keys(title):
            if found.get(key, Entry()).title is None:
                found[key] = replace(found.get(key, Entry()), title=title, title_strict=strict)
    values = list(values)
    pairs = [(k, v, False) for v in values for k in _value_keys(v)]
    pairs += [(k, v, False) for k, v in GENRE_SYNONYMS.items() if v in values]
    pairs += [(k, n, strict) for n in names for k, strict in _name_keys(n)]
    for key, value, strict in pairs:
        if found.get(key, Entry()).value is None:
            found[key] = replace(found.get(key, Entry()), value=value, value_strict=strict)
    return Vocabulary(found, max((len(k.split()) for k in found), default=1))


def catalog_vocabulary(items: pd.DataFrame, attributes: ItemAttributes | None = None) -> Vocabulary:
    """The vocabulary of a catalog: its titles and the values of its item attributes.

    Args:
        items: Item table with a title column (``year`` is appended when present).
        attributes: Its attributes (None: built from the table); KG entity names come only
            from here, bare entity IDs and decades (numbers are checked as numbers) skipped.
    """
    from lmrec.llm.evidence import RAW_ENTITY
    from lmrec.rank.attributes import ItemAttributes

    table = items.set_index(ITEM) if ITEM in items.columns else items
    column = item_titles(table)
    titles = [str(t) for t in column.dropna()] if column is not None else []
    if attributes is None:
        attributes = ItemAttributes.build([str(i) for i in table.index], table)
    kg = set(attributes.kg_group_names)
    values, names = [], []
    for group, value in zip(attributes.groups, attributes.values, strict=True):
        if group in kg:
            if not RAW_ENTITY.match(value):
                names.append(str(value).removesuffix(" (series)"))
        elif group != "decade":
            values.append(str(value))
    return build_vocabulary(titles, dict.fromkeys(values), dict.fromkeys(names))


def check_faithfulness(
    draft: str, evidence: Evidence, vocabulary: Vocabulary, language: str
) -> list[str]:
    """What in ``draft`` the evidence does not support (empty list: faithful).

    Args:
        draft: A candidate explanation.
        evidence: What it should be based on; `Evidence.facts` are the allowed names.
        vocabulary: The catalog's names (see `catalog_vocabulary`).
        language: ``en`` or ``zh``: the language the draft must be in.

    Raises:
        ConfigError: For an unsupported language.
    """
    from lmrec.llm.pairs import co_like_problems, comparison_problems  # it builds on this one

    lang = check_language(language)
    text = prepare(draft)
    if not TOKEN.search(text):
        return ["the draft is empty"]
    facts = evidence.facts()
    titles = evidence.titles()
    allowed_titles: set[str] = set().union(*(title_keys(t) for t in titles))
    allowed_values = {normalize(f) for f in facts}
    allowed_numbers = {n for f in facts for n in numbers(f)}
    toks, mentions = vocabulary.scan(text, titles)
    problems: list[str] = []
    residual = list(text)  # the draft without its titles: judged for language and length
    masked: set[int] = set()
    cited = False
    for m in mentions:
        title_ok = m.title is not None and m.key in allowed_titles
        if title_ok or (m.value is not None and normalize(m.value) in allowed_values):
            cited = True
        elif m.title is not None:
            problems.append(f"names the title '{m.title}', which is not in the evidence")
        else:
            problems.append(f"mentions '{m.value}', which is not in the evidence")
        if m.title is not None:
            residual[m.start : m.end] = " " * (m.end - m.start)
        masked.update(range(m.first, m.last))
    free = [t.group(0) for i, t in enumerate(toks) if i not in masked]
    for value, zh in ZH_GENRES.items():
        if (
            any(zh in t for t in free)
            and zh not in facts
            and normalize(value) not in allowed_values
        ):
            problems.append(f"mentions '{zh}' ({value}), which is not in the evidence")
    rest = "".join(residual)
    spelled = [_NUMBER_WORDS[w] for w in (t.casefold() for t in free) if w in _NUMBER_WORDS]
    for n in dict.fromkeys(numbers(rest) + spelled):
        if n not in allowed_numbers:
            problems.append(f"mentions the number {n}, which is not in the evidence")
    if _stray_year(text, titles):  # "Drama (1994)": a year in brackets that follows no title
        problems.append("puts a year in brackets after something that is not a title")
    # claims: every other word must connect facts (glue) or come from the evidence
    groups = [x.group for x in (*evidence.shared, *evidence.entities)]
    allowed_words = evidence_words([*facts, *evidence.request_terms], groups)
    zh_facts = [ZH_GENRES[g] for g in ZH_GENRES if normalize(g) in allowed_values]
    zh_facts += [ZH_GROUPS[g] for g in groups if g in ZH_GROUPS]
    if extra := unsupported_words(free, allowed_words, zh_facts):
        shown = ", ".join(f"'{w}'" for w in extra[:5])
        problems.append(f"says what the evidence does not support: {shown}")
    problems += co_like_problems(text, mentions, evidence)
    if nameless_co_like(text):
        problems.append("says people who liked 'it' liked it, naming no liked item")
    own = title_keys(evidence.title)
    for m in mentions:  # "Professional is a Drama, and 16 people ..." about another item
        if m.title is not None and m.key not in own and _PREDICATE.match(text, m.end):
            problems.append(f"says what '{m.title}' is, but it is not the recommended item")
    problems += comparison_problems(text, mentions, evidence)
    plain = facts.difference(titles)  # titles are blanked out of ``rest`` already
    problems += _form_problems(rest, len([m for m in mentions if m.title]), lang, plain)
    # a sentence that names no fact says nothing the evidence supports ("a great movie")
    if not cited and not any(zh in text for zh in ZH_GENRES.values() if zh in facts):
        problems.append("names nothing from the evidence")
    if not text.rstrip().endswith(SENTENCE_ENDS):
        problems.append("cut off: does not end a sentence")
    return list(dict.fromkeys(problems))


#: A claim about what the title just named is ("X is a Drama", "X 属于剧情类型").
_PREDICATE = re.compile(
    r"[\s\u300b\"'\u201d,]*(?:\(\d{4}\)\s*)?[\u300b]?[\s,\uff0c]*(?:which\s+)?"
    r"(?:(?:is|was|are|were)\b|\u662f|\u5c5e\u4e8e)",
    re.I,
)


def _stray_year(text: str, titles: Iterable[str]) -> bool:
    """Whether ``text`` has a bracketed year left once the evidence titles are taken out."""
    rest = text.casefold()
    for t in titles:
        year = _YEAR_SUFFIX.search(t)
        forms = [t] + ([f"{v} {year.group(0).strip()}" for v in title_variants(t)] if year else [])
        for form in sorted(forms, key=len, reverse=True):
            rest = rest.replace(prepare(form).casefold(), " ")
    return bool(_BRACKET_YEAR.search(rest))


#: How a finished sentence ends (after an optional closing quote or bracket).
SENTENCE_ENDS = tuple(".!?\u3002\uff01\uff1f\u2026") + tuple(
    e + q for e in ".!?\u3002\uff01\uff1f" for q in "\"'\u201d\u300b)\uff09"
)


def _form_problems(rest: str, n_titles: int, lang: Language, facts: frozenset[str]) -> list[str]:
    """Length, language, shouting and echo problems of a draft with its titles removed."""
    out: list[str] = []
    cjk = len(_CJK_CHAR.findall(rest))
    latin = len(_LATIN_CHAR.findall(rest))
    share = cjk / (cjk + latin) if cjk + latin else 0.0
    if lang == "en":
        if len(_WORD.findall(rest)) + n_titles > MAX_WORDS:
            out.append(f"longer than {MAX_WORDS} words")
        if share > EN_MAX_CJK or not latin:
            out.append("not written in English")
    else:
        if cjk > MAX_CJK:
            out.append(f"longer than {MAX_CJK} Chinese characters")
        if share < ZH_MIN_CJK:
            out.append("not written in Chinese")
    low = rest.casefold()
    out += [f"echoes the prompt or markup ('{m}')" for m in ECHO_MARKERS if m in low]
    known = {w.upper() for f in facts for w in _WORD.findall(f)}
    out += [f"shouts '{w}'" for w in dict.fromkeys(_SHOUT.findall(rest)) if w not in known]
    return out


__all__ = [
    "LANGUAGES",
    "ZH_GENRES",
    "Entry",
    "Language",
    "Mention",
    "Vocabulary",
    "build_vocabulary",
    "catalog_vocabulary",
    "check_faithfulness",
    "check_language",
    "display_title",
    "normalize",
    "numbers",
    "prepare",
    "title_keys",
    "title_variants",
    "tokens",
]
