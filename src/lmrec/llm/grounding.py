"""Grounding: map titles a language model proposed to real catalog items, and count its errors.

Each proposal is resolved to one catalog item, or to none, in three steps: an exact match
of normalised titles (case, accents and punctuation ignored, MovieLens' trailing article
moved back to the front, "(1972)" years and alternative titles in parentheses split off);
else the closest title by edit distance above a threshold; else, when the catalog has an
encoder, the nearest item vector by cosine above a threshold. A year in the proposal breaks
ties between same-titled items (remakes) and vetoes matches more than `YEAR_TOLERANCE`
years away; a sequel number must agree unless the year does. Only then are the history,
duplicates, the allowed set and k applied, so a proposal that repeats the history is
reported as such rather than bent into some other item.

Error rates follow RecAI's RecLM-eval (``RecLM-eval/evaluates/evaluate.py``,
``compute_errors_on_title_ranking``), which flags each user at most once per error kind and
divides by the number of users:

- history error: "Recommend items that are already in the history" -- some recommended
  item matches an item of the user's history;
- duplicate error: "recommend duplicate items" -- some recommended item matches an item
  recommended before it in the same list;
- candidate error: "recommend items that are not in the candidate set" -- some
  recommended item matches no candidate.

RecLM-eval decides "matches" by TF-IDF cosine of character trigrams >= ``sim_threshold``
(0.6), and computes no candidate error when there are no candidates. Here "matches" is
this module's resolution, and without candidates the candidate set is the whole catalog,
so the candidate error counts proposals that are not real items (hallucinations).
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import pandas as pd

from lmrec.errors import ConfigError, InputError

try:
    from rapidfuzz import process as _rf_process
    from rapidfuzz.distance import Levenshtein as _rf_levenshtein

    HAVE_RAPIDFUZZ = True
except ImportError:  # pragma: no cover - difflib is the fallback
    HAVE_RAPIDFUZZ = False

Method = Literal["exact", "fuzzy", "embedding"]
Status = Literal["accepted", "unmatched", "excluded", "not_allowed", "duplicate", "over_k"]

#: Least normalised edit similarity (0..1) for a fuzzy match.
FUZZY_THRESHOLD = 0.85
#: Least cosine between a proposal and an item's title vector for an embedding match.
EMBEDDING_THRESHOLD = 0.75
#: Most years between a proposal's year and the item's year for any match.
YEAR_TOLERANCE = 2
#: Proposals longer than this are cut before matching.
MAX_PROPOSAL_CHARS = 300
_FUZZY_LIMIT = 5  # closest keys checked against the year and number guards
_EMBED_LIMIT = 5

_YEAR_RE = re.compile(r"\s*[(\[](\d{4})[)\]]\s*$")
_PAREN_RE = re.compile(r"^(.*\S)\s*\(([^()]+)\)$")
_TRAILING_ARTICLE_RE = re.compile(
    r"^(.+?),\s*(the|a|an|les|la|le|l'|il|das|der|die|el|los|las|det)$", re.I
)
_LEADING_ARTICLE_RE = re.compile(r"^(the|a|an) ")
_UNITS = ["", "i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix"]
# roman numerals up to xx but "i" and "x", which are words ("I Shot Andy Warhol", "X-Files")
_NUMBER_WORDS = {"x" * (n // 10) + _UNITS[n % 10]: n for n in range(2, 21) if n != 10}
_NUMBER_WORDS |= {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7}
_NUMBER_WORDS |= {"eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13}


class QueryEncoder(Protocol):
    """What grounding needs of an encoder (an `lmrec.encoders.Encoder` is one)."""

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm float32 rows, one per text."""
        ...

    def encode_items(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm float32 rows, one per text."""
        ...


def _front_article(title: str) -> str:
    m = _TRAILING_ARTICLE_RE.match(title.strip())
    if not m:
        return title.strip()
    sep = "" if m.group(2).endswith("'") else " "
    return f"{m.group(2)}{sep}{m.group(1)}"


def title_key(text: str) -> str:
    """Matching key: article in front, accents, case, punctuation and a leading article gone."""
    s = unicodedata.normalize("NFKD", _front_article(text))
    s = "".join(ch for ch in s if not unicodedata.combining(ch)).casefold()
    s = s.replace("&", " and ")
    s = re.sub(r"['\u2019`]", "", s)  # "Bug's" and "Bugs" are the same word to a user
    s = " ".join(re.sub(r"[\W_]+", " ", s).split())
    return _LEADING_ARTICLE_RE.sub("", s)


def split_title(text: str) -> tuple[str, int | None, str | None]:
    """``(main title, year, alternative title)`` of e.g. ``"Seven (Se7en) (1995)"``."""
    s = " ".join(text.split())
    m = _YEAR_RE.search(s)
    year = int(m.group(1)) if m else None
    s = s[: m.start()] if m else s
    p = _PAREN_RE.match(s)
    if p and not p.group(2).isdigit():
        return p.group(1), year, p.group(2)
    return s, year, None


def _numbers(key: str) -> frozenset[int]:
    """Sequel numbers in a key ("die hard 2", "star trek iv", "twelve monkeys")."""
    out = {int(t) for t in key.split() if t.isdigit() and len(t) < 4}
    return frozenset(out | {_NUMBER_WORDS[t] for t in key.split() if t in _NUMBER_WORDS})


@dataclass(frozen=True)
class Resolution:
    """The catalog item a proposal names, and how it was found (item_id None: not found)."""

    item_id: str | None
    method: Method | None = None
    score: float = 0.0


@dataclass(frozen=True)
class Match:
    """One accepted proposal."""

    proposal: str
    item_id: str
    method: Method
    score: float


@dataclass(frozen=True)
class ProposalFlag:
    """What became of one proposal; ``item_id`` is the item it named, even when rejected."""

    proposal: str
    status: Status
    item_id: str | None
    method: Method | None
    score: float


@dataclass
class GroundingResult:
    """Accepted items in order, their matches, proposals naming no item, and every outcome."""

    items: list[str] = field(default_factory=list)
    matches: list[Match] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    flags: list[ProposalFlag] = field(default_factory=list)


class Catalog:
    """Item titles prepared for grounding.

    Args:
        items: Item table indexed by item_id with a ``title`` column (a ``year`` column, or
            a trailing "(1995)" in the title, gives the year).
        vectors: Unit-norm vectors, rows aligned with ``items``, comparable with
            ``encoder.encode_queries`` of a title; None with an encoder embeds the titles.
        encoder: Enables the embedding step; without it that step is skipped.
        popularity: Optional item_id -> count, preferred among otherwise tied items.
        fuzzy_threshold: Least edit similarity for a fuzzy match.
        embedding_threshold: Least cosine for an embedding match.

    Raises:
        InputError: If the table has no ``title`` column or the vectors do not align.
    """

    def __init__(
        self,
        items: pd.DataFrame,
        vectors: np.ndarray | None = None,
        encoder: QueryEncoder | None = None,
        popularity: Mapping[str, float] | pd.Series | None = None,
        fuzzy_threshold: float = FUZZY_THRESHOLD,
        embedding_threshold: float = EMBEDDING_THRESHOLD,
    ) -> None:
        if "title" not in items.columns:
            raise InputError("the item table has no 'title' column", column="title")
        if vectors is not None and (vectors.ndim != 2 or len(vectors) != len(items)):
            raise InputError(f"{len(vectors)} item vectors for {len(items)} items")
        self.item_ids = [str(i) for i in items.index]
        self.titles = ["" if pd.isna(t) else str(t) for t in items["title"]]
        self._pos = {iid: n for n, iid in enumerate(self.item_ids)}
        pop = popularity if popularity is not None else {}
        self._pop = np.array([float(pop.get(i, 0.0)) for i in self.item_ids])
        column = items["year"] if "year" in items.columns else [None] * len(items)
        self.years: list[int | None] = []
        self._keys: dict[str, list[int]] = {}  # normalised title -> item positions
        self._full: list[str] = []  # key of the whole title, article included in tie-breaks
        for n, (title, year_value) in enumerate(zip(self.titles, column, strict=True)):
            main, year, alias = split_title(title)
            self.years.append(_as_year(year_value) or year)
            self._full.append(_front_article(main).casefold())
            for key in {title_key(main), title_key(f"{main} {alias}" if alias else main)}:
                self._keys.setdefault(key, []).append(n)
            if alias:
                self._keys.setdefault(title_key(alias), []).append(n)
        self._keys.pop("", None)
        self._key_list = list(self._keys)
        self.encoder = encoder
        self._vectors = None if vectors is None else np.asarray(vectors, dtype=np.float32)
        self.fuzzy_threshold = fuzzy_threshold
        self.embedding_threshold = embedding_threshold

    def __len__(self) -> int:
        return len(self.item_ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._pos

    def title(self, item_id: str) -> str:
        """The item's catalog title."""
        return self.titles[self._pos[item_id]]

    @property
    def vectors(self) -> np.ndarray | None:
        """Item vectors; embedded from the titles on first use when only an encoder was given."""
        if self._vectors is None and self.encoder is not None:
            texts = [f"{t} ({y})" if y else t for t, y in zip(self.titles, self.years, strict=True)]
            self._vectors = np.asarray(self.encoder.encode_items(texts), dtype=np.float32)
        return self._vectors

    def _best(
        self, positions: Sequence[int], year: int | None, full: str, prefer: set[str] | None
    ) -> int | None:
        """The position among same-key items: allowed, year, article, popularity, order."""
        ok = [p for p in positions if _year_ok(year, self.years[p])]

        def rank(p: int) -> tuple[bool, int, bool, float, int]:
            y = self.years[p]
            gap = abs(year - y) if year is not None and y is not None else 0
            pref = prefer is not None and self.item_ids[p] in prefer
            return (pref, -gap, self._full[p] == full, float(self._pop[p]), -p)

        return max(ok, key=rank) if ok else None

    def _fuzzy(self, key: str, year: int | None, prefer: set[str] | None) -> Resolution | None:
        if not self._key_list:
            return None
        if HAVE_RAPIDFUZZ:
            hits = _rf_process.extract(
                key,
                self._key_list,
                scorer=_rf_levenshtein.normalized_similarity,
                score_cutoff=self.fuzzy_threshold,
                limit=_FUZZY_LIMIT,
            )
            scored = [(str(h[0]), float(h[1])) for h in hits]
        else:  # pragma: no cover - exercised only without rapidfuzz
            close = difflib.get_close_matches(
                key, self._key_list, n=_FUZZY_LIMIT, cutoff=self.fuzzy_threshold
            )
            scored = [(c, difflib.SequenceMatcher(None, key, c).ratio()) for c in close]
        for cand, score in scored:
            pos = self._best(self._keys[cand], year, "", prefer)
            if pos is not None and _numbers_ok(key, cand, year, self.years[pos]):
                return Resolution(self.item_ids[pos], "fuzzy", round(score, 4))
        return None

    def resolve(self, proposals: Sequence[str], prefer: set[str] | None = None) -> list[Resolution]:
        """The item each proposal names (exact, else fuzzy, else embedding), or None.

        Args:
            proposals: Proposed titles, e.g. from `lmrec.llm.prompts.parse_items`.
            prefer: Items preferred among otherwise tied ones (e.g. the prompt's candidates).
        """
        out: list[Resolution | None] = []
        for raw in proposals:
            main, year, alias = split_title(str(raw)[:MAX_PROPOSAL_CHARS])
            key = title_key(main)
            res: Resolution | None = None
            for k in (key, title_key(f"{main} {alias}") if alias else None):
                if k and k in self._keys:
                    pos = self._best(self._keys[k], year, _front_article(main).casefold(), prefer)
                    if pos is not None:
                        res = Resolution(self.item_ids[pos], "exact", 1.0)
                        break
            if res is None and key:
                res = self._fuzzy(key, year, prefer)
            out.append(res)
        missing = [n for n, r in enumerate(out) if r is None and str(proposals[n]).strip()]
        if missing and self.encoder is not None:
            embedded = self._embed([proposals[n] for n in missing], prefer)
            for n, res in zip(missing, embedded, strict=True):
                out[n] = res
        return [r if r is not None else Resolution(None) for r in out]

    def _embed(self, proposals: Sequence[str], prefer: set[str] | None) -> list[Resolution | None]:
        vectors = self.vectors
        if self.encoder is None or vectors is None or not len(vectors):
            return [None] * len(proposals)
        texts = [str(p)[:MAX_PROPOSAL_CHARS] for p in proposals]
        sims = np.asarray(self.encoder.encode_queries(texts), dtype=np.float32) @ vectors.T
        out: list[Resolution | None] = []
        for text, row in zip(texts, sims, strict=True):
            main, year, _ = split_title(text)
            key, res = title_key(main), None
            top = np.argsort(-row, kind="stable")[:_EMBED_LIMIT]
            for pos in top:
                if row[pos] < self.embedding_threshold:
                    break
                p, y = int(pos), self.years[int(pos)]
                cand = title_key(split_title(self.titles[p])[0])
                if _year_ok(year, y) and _numbers_ok(key, cand, year, y):
                    res = Resolution(self.item_ids[p], "embedding", round(float(row[pos]), 4))
                    break
            out.append(res)
        return out


def _as_year(value: object) -> int | None:
    try:
        year = int(str(value).strip()[:4])
    except ValueError:
        return None
    return year if 1000 <= year <= 2999 else None


def _year_ok(year: int | None, item_year: int | None) -> bool:
    return year is None or item_year is None or abs(year - item_year) <= YEAR_TOLERANCE


def _numbers_ok(key: str, cand: str, year: int | None, item_year: int | None) -> bool:
    """Sequel numbers must agree ("Die Hard 2" is not "Die Hard") unless the years do."""
    if year is not None and item_year is not None and year == item_year:
        return True
    return _numbers(key) == _numbers(cand)


def ground(
    titles: Sequence[str],
    catalog: Catalog,
    exclude: set[str],
    k: int,
    allowed: set[str] | None = None,
) -> GroundingResult:
    """Up to ``k`` catalog items for the proposed titles, in the proposals' order.

    Args:
        titles: Proposed titles, best first.
        catalog: The catalog to ground in.
        exclude: Item IDs never returned (the user's history, disliked items).
        k: Most items returned.
        allowed: When given, the only item IDs that may be returned (the candidates).

    Raises:
        ConfigError: If ``k`` < 1.
    """
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    result = GroundingResult()
    taken: set[str] = set()
    for proposal, res in zip(titles, catalog.resolve(titles, prefer=allowed), strict=True):
        iid = res.item_id
        status: Status
        if iid is None:
            status = "unmatched"
            result.unmatched.append(proposal)
        elif iid in exclude:
            status = "excluded"
        elif allowed is not None and iid not in allowed:
            status = "not_allowed"
        elif iid in taken:
            status = "duplicate"
        elif len(result.items) >= k:
            status = "over_k"
        else:
            status = "accepted"
            assert res.method is not None
            taken.add(iid)
            result.items.append(iid)
            result.matches.append(Match(proposal, iid, res.method, res.score))
        result.flags.append(ProposalFlag(proposal, status, iid, res.method, res.score))
    return result


def _list_errors(
    tokens: Sequence[str], history: set[str], candidates: set[str] | None, catalog: Catalog
) -> tuple[bool, bool, bool]:
    """(history, duplicate, candidate) error flags of one list, RecLM-eval style.

    A token is an item ID, or for a proposal naming no item its key behind a NUL, so two
    identical invented titles still count as a duplicate.
    """
    hist = any(t in history for t in tokens)
    dup = len(set(tokens)) < len(tokens)
    cand = any(t not in catalog or (candidates is not None and t not in candidates) for t in tokens)
    return hist, dup, cand


def grounding_error_rates(
    raw_titles_per_user: Sequence[Sequence[str]],
    final_items_per_user: Sequence[Sequence[str]],
    catalog: Catalog,
    histories: Sequence[Sequence[str] | set[str]],
    candidates_per_user: Sequence[Sequence[str] | set[str]] | None = None,
) -> dict[str, float]:
    """RecLM-eval error rates of the raw proposals and of the final (grounded) lists.

    Args:
        raw_titles_per_user: What the model proposed, per user (before grounding).
        final_items_per_user: The item IDs finally recommended, per user.
        catalog: The catalog the proposals are resolved in.
        histories: Item IDs of each user's history.
        candidates_per_user: The candidate item IDs each user's prompt offered, or None
            (then the candidate set is the catalog).

    Returns:
        ``raw_*`` and ``final_*`` ``history_error_rate``, ``duplicate_error_rate`` and
        ``candidate_error_rate``, ``raw_unmatched_rate`` (share of proposals naming no
        item) and ``users``.

    Raises:
        InputError: If the per-user sequences differ in length.
    """
    n = len(raw_titles_per_user)
    lengths = {len(final_items_per_user), len(histories)}
    if candidates_per_user is not None:
        lengths.add(len(candidates_per_user))
    if lengths != {n}:
        raise InputError("raw proposals, final lists, histories and candidates must align")
    raw_counts, final_counts = np.zeros(3), np.zeros(3)
    proposals = unmatched = 0
    for u in range(n):
        history = set(histories[u])
        cands = None if candidates_per_user is None else set(candidates_per_user[u])
        titles = raw_titles_per_user[u]
        resolved = catalog.resolve(titles, prefer=cands)
        tokens = [
            r.item_id or "\0" + title_key(split_title(str(t))[0])
            for t, r in zip(titles, resolved, strict=True)
        ]
        proposals += len(tokens)
        unmatched += sum(r.item_id is None for r in resolved)
        raw_counts += _list_errors(tokens, history, cands, catalog)
        final_counts += _list_errors(
            [str(i) for i in final_items_per_user[u]], history, cands, catalog
        )
    out: dict[str, float] = {"users": float(n)}
    names = ("history_error_rate", "duplicate_error_rate", "candidate_error_rate")
    for prefix, counts in (("raw", raw_counts), ("final", final_counts)):
        for name, count in zip(names, counts, strict=True):
            out[f"{prefix}_{name}"] = float(count / n) if n else 0.0
    out["raw_unmatched_rate"] = unmatched / proposals if proposals else 0.0
    return out


__all__ = [
    "EMBEDDING_THRESHOLD",
    "FUZZY_THRESHOLD",
    "YEAR_TOLERANCE",
    "Catalog",
    "GroundingResult",
    "Match",
    "ProposalFlag",
    "QueryEncoder",
    "Resolution",
    "ground",
    "grounding_error_rates",
    "split_title",
    "title_key",
]
