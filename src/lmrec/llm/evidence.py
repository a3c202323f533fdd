"""Evidence for one recommendation: why this item, for this user, in checkable facts.

An `Evidence` holds only figures recomputed from the data: the liked history items nearest
to the recommended one (cosine of item vectors), the attribute values it shares with the
history (genres, decade, KG entities, each with how many history items hold it), the
collaborative signal (how many other users liked both it and one history item) and the
terms of a typed request it satisfies. `EvidenceBuilder` precomputes the normalised vectors,
the liked-item matrix and the attributes once, so a whole top-k list costs a few sparse
products. "Liked" means rated at least ``like_threshold`` (any interaction when the data has
no ratings).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from lmrec.data.schema import ITEM, RATING, USER, IdMap, item_titles
from lmrec.errors import InputError
from lmrec.llm.faithfulness import ZH_GENRES, Language, display_title, prepare, short_decade, tokens
from lmrec.rank.attributes import ItemAttributes

#: Attribute groups that read as genres; ``decade`` and KG groups are reported separately.
GENRE_GROUPS = ("genre", "category")
#: KG values that are bare entity IDs (Freebase ``m.0abc``) are not names anyone can read.
RAW_ENTITY = re.compile(r"^[a-z]{1,2}\.[0-9a-z_]+$")
_REQUEST_TOKEN = re.compile(r"[^\W_]+(?:['-][^\W_]+)*")
_STOP_TEXT = (
    "a an the and or of to in on for with without about me my i im we you your some "
    "something anything any film films movie movies like want good great nice please "
    "recommend show give find watch see that this these those is are was be it its from by "
    "at as more very really kind sort type one ones new old"
)
_STOPWORDS = frozenset(_STOP_TEXT.split())


def fold_term(token: str) -> str:
    """A request or catalog word with hyphens/apostrophes removed and a plural stripped."""
    t = token.casefold().replace("-", "").replace("'", "")
    if len(t) > 4 and t.endswith("ies"):
        return t[:-3] + "y"
    if len(t) > 3 and t.endswith("s") and not t.endswith("ss"):
        return t[:-1]
    return t


def _year(value: object) -> str:
    """The 4-digit year of a table cell ("1995", 1995, 1995.0), else ""."""
    if isinstance(value, float) and value == value:  # not NaN
        value = int(value)
    text = str(value).strip() if isinstance(value, str | int) else ""
    return text[:4] if text[:4].isdigit() else ""


@dataclass(frozen=True)
class Neighbour:
    """A liked history item near the recommended one in item-vector space."""

    item_id: str
    title: str
    cosine: float
    common_genres: tuple[str, ...] = ()  # genres it shares with the recommended item


@dataclass(frozen=True)
class SharedValue:
    """An attribute value of the recommended item and how many liked history items hold it."""

    group: str
    value: str
    count: int


@dataclass(frozen=True)
class CoLiked:
    """The history item most often liked together with the recommended one."""

    item_id: str
    title: str
    users: int  # other users who liked both
    common_genres: tuple[str, ...] = ()  # genres it shares with the recommended item


@dataclass(frozen=True)
class Evidence:
    """Checkable reasons for recommending ``item_id`` to ``user_id``.

    Attributes:
        user_id: The user (None for an anonymous history).
        item_id: The recommended item.
        title: Its display title (``Star Wars (1977)``).
        genres: Its own genre values; ``decade`` its decade.
        history_size: Liked history items the evidence was computed from.
        nearest: Up to three nearest liked items, closest first.
        shared: Genre (and other item-table) values shared with the history.
        shared_decade: The item's decade, when history items share it.
        entities: KG entities shared with the history (readable names only).
        collaborative: The strongest co-liked history item, when any user liked both.
        request_terms: Words of the typed request that the item's title/attributes satisfy.
    """

    user_id: str | None
    item_id: str
    title: str
    genres: tuple[str, ...]
    decade: str | None
    history_size: int
    nearest: tuple[Neighbour, ...]
    shared: tuple[SharedValue, ...]
    shared_decade: SharedValue | None
    entities: tuple[SharedValue, ...]
    collaborative: CoLiked | None
    request_terms: tuple[str, ...]

    def shared_genres(self) -> list[SharedValue]:
        """The shared values of genre-like groups, most held first."""
        return [s for s in self.shared if s.group in GENRE_GROUPS]

    def to_prompt_data(self, language: Language = "en") -> dict[str, Any]:
        """JSON-able evidence for the data block of a prompt (no IDs: they are not facts)."""

        def genre(value: str) -> dict[str, Any]:
            zh = {"genre_zh": ZH_GENRES[value]} if language == "zh" and value in ZH_GENRES else {}
            return {"genre": value, **zh}

        data: dict[str, Any] = {
            "recommended": {"title": self.title, "genres": list(self.genres)},
            "liked_items_count": self.history_size,
            "nearest_liked_items": [n.title for n in self.nearest],
            "shared_genres": [
                {**genre(s.value), "liked_items_with_it": s.count} for s in self.shared_genres()
            ],
        }
        if language == "zh":
            data["recommended"]["genres_zh"] = [ZH_GENRES.get(g, g) for g in self.genres]
        if self.decade:
            data["recommended"]["decade"] = self.decade
        if others := [s for s in self.shared if s.group not in GENRE_GROUPS]:
            data["shared_attributes"] = [
                {"kind": s.group, "value": s.value, "liked_items_with_it": s.count} for s in others
            ]
        if self.shared_decade:
            data["shared_decade"] = {
                "decade": self.shared_decade.value,
                "liked_items_with_it": self.shared_decade.count,
            }
        if self.entities:
            data["shared_entities"] = [
                {"kind": s.group, "name": s.value, "liked_items_with_it": s.count}
                for s in self.entities
            ]
        if self.collaborative:
            data["collaborative"] = {
                "liked_item": self.collaborative.title,
                "users_who_liked_both": self.collaborative.users,
            }
        if self.request_terms:
            data["request_terms_matched"] = list(self.request_terms)
        return data

    def titles(self) -> list[str]:
        """The titles in the evidence: the recommended item's and the history items'."""
        found = [self.title, *(n.title for n in self.nearest)]
        if self.collaborative:
            found.append(self.collaborative.title)
        return list(dict.fromkeys(found))

    def facts(self) -> frozenset[str]:
        """Everything an explanation may mention: titles, values, names and numbers."""
        out: set[str] = {*self.titles(), *self.genres, *self.request_terms}
        out |= {ZH_GENRES[g] for g in self.genres if g in ZH_GENRES}
        decade = (self.shared_decade,) if self.shared_decade else ()
        for s in (*self.shared, *self.entities, *decade):
            out |= {s.value, str(s.count)}
        if self.decade:
            out |= {self.decade, *filter(None, [short_decade(self.decade)])}
        if self.collaborative:
            out.add(str(self.collaborative.users))
        out.add(str(self.history_size))
        return frozenset(out)


class EvidenceBuilder:
    """Precomputed catalog data from which evidence for any (user, items) is cheap.

    Args:
        items: Item table indexed by item ID (or with an ``item_id`` column), with a title
            and optionally ``year``/genre columns; its row order is the catalog order.
        interactions: ``user_id, item_id`` and optionally ``rating``; items not in the
            table are ignored.
        item_vectors: ``(n_items, d)`` vectors aligned with the table's rows (None: no
            nearest-item evidence); rows are normalised here.
        attributes: Item attributes (None: built from the item table); KG entities come
            only from here.
        like_threshold: Lowest rating that counts as liked (None: every interaction).
        n_nearest: Nearest history items kept.

    Raises:
        InputError: If the vectors do not match the table or a column is missing.
    """

    def __init__(
        self,
        items: pd.DataFrame,
        interactions: pd.DataFrame,
        item_vectors: np.ndarray | None = None,
        *,
        attributes: ItemAttributes | None = None,
        like_threshold: float | None = 4.0,
        n_nearest: int = 3,
    ) -> None:
        table = items.set_index(ITEM) if ITEM in items.columns else items
        table = table.set_axis(table.index.astype(str))
        self.items = IdMap(table.index)
        titles = item_titles(table)
        if titles is None:
            raise InputError(f"the item table has no title column: {list(table.columns)}")
        years = table["year"] if "year" in table.columns else pd.Series(None, index=table.index)
        self.years = [_year(y) for y in years]
        self.titles = [display_title(t, y) for t, y in zip(titles, self.years, strict=True)]
        self.n_nearest = n_nearest
        self.vectors: np.ndarray | None = None
        self.known = np.zeros(len(self.items), dtype=bool)  # rows with a vector
        if item_vectors is not None:
            v = np.asarray(item_vectors, dtype=np.float32)
            if v.ndim != 2 or v.shape[0] != len(self.items):
                raise InputError(
                    f"item_vectors shape {v.shape} does not fit {len(self.items)} items"
                )
            norms = np.linalg.norm(v, axis=1, keepdims=True)
            self.vectors = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
            self.known = norms.ravel() > 0
        missing = [c for c in (USER, ITEM) if c not in interactions.columns]
        if missing:
            raise InputError(f"interactions lack column(s) {missing}")
        inter = interactions
        if like_threshold is not None and RATING in inter and inter[RATING].notna().any():
            inter = inter[inter[RATING] >= like_threshold]
        self.users = IdMap(pd.unique(interactions[USER].astype(str)))
        rows = self.users.lookup(inter[USER].astype(str))
        cols = self.items.lookup(inter[ITEM].astype(str))
        keep = (rows >= 0) & (cols >= 0)
        liked = sp.csr_matrix(
            (np.ones(int(keep.sum()), dtype=np.float32), (rows[keep], cols[keep])),
            shape=(len(self.users), len(self.items)),
        )
        liked.sum_duplicates()
        liked.data[:] = 1.0
        self.liked = liked
        self.liked_t = sp.csr_matrix(liked.T)  # item rows: a candidate's likers in one slice
        attrs = ItemAttributes.build(self.items.ids, table) if attributes is None else attributes
        pos = pd.Index(attrs.item_ids.astype(str)).get_indexer(pd.Index(self.items.ids))
        # Rows of items the attributes do not know point at an appended empty row.
        pad = sp.vstack([attrs.matrix, sp.csr_matrix((1, attrs.n_attributes), dtype=np.float32)])
        self.attrs = sp.csr_matrix(pad.tocsr()[np.where(pos >= 0, pos, attrs.matrix.shape[0])])
        self.groups = [str(g) for g in attrs.groups]
        self.values = [str(v) for v in attrs.values]
        self.kg_names = set(attrs.kg_group_names)
        self.readable = [
            g not in self.kg_names or not RAW_ENTITY.match(v)
            for g, v in zip(self.groups, self.values, strict=True)
        ]

    def history(self, user_id: str | None, history: Sequence[str] | None = None) -> np.ndarray:
        """Indices of the liked history: ``history`` if given, else the user's liked items.

        Raises:
            UnknownIdError: For an unknown user (without ``history``) or history item.
        """
        if history is not None:
            return np.unique(self.items.index(history, "item"))
        if user_id is None:
            raise InputError("give a user_id or a history")
        row = self.users.index([user_id], "user")[0]
        return np.asarray(self.liked[row].indices, dtype=np.int64)

    def evidence(self, user_id: str | None, item_id: str, request: str | None = None) -> Evidence:
        """Evidence for one (user, item); see `evidence_list`."""
        return self.evidence_list(user_id, [item_id], request)[0]

    def evidence_list(
        self,
        user_id: str | None,
        item_ids: Sequence[str],
        request: str | None = None,
        history: Sequence[str] | None = None,
    ) -> list[Evidence]:
        """Evidence for each of ``item_ids`` recommended to one user, sharing the work.

        Args:
            user_id: The user; their liked items are the history unless ``history`` is given.
            item_ids: The recommended items (a top-k list).
            request: The typed request, if any (its satisfied terms are reported).
            history: Liked item IDs to use instead of the user's (e.g. an anonymous session).

        Raises:
            UnknownIdError: For unknown users or items.
        """
        cand = self.items.index([str(i) for i in item_ids], "item")
        hist = self.history(user_id, history)
        sims = self.vectors[hist] @ self.vectors[cand].T if self.vectors is not None else None
        co = np.asarray((self.liked_t[hist] @ self.liked_t[cand].T).toarray(), dtype=np.int64)
        if user_id is not None and user_id in self.users:
            # The user is not one of the "other users" who liked both.
            row = self.liked[self.users.index([user_id])[0]].toarray().ravel().astype(np.int64)
            co -= np.outer(row[hist], row[cand])
        counts = np.asarray(self.attrs[hist].sum(axis=0), dtype=np.int64).ravel()
        words = _request_words(request)
        return [
            self._one(
                user_id, int(c), hist, counts, co[:, j], None if sims is None else sims[:, j], words
            )
            for j, c in enumerate(cand)
        ]

    def _attrs_of(self, i: int) -> np.ndarray:
        # the CSR arrays directly: a scipy row slice costs ~0.2 ms, many per explained list
        a = self.attrs
        return a.indices[a.indptr[i] : a.indptr[i + 1]]

    def _one(
        self,
        user_id: str | None,
        c: int,
        hist: np.ndarray,
        counts: np.ndarray,
        co: np.ndarray,
        sims: np.ndarray | None,
        words: list[str],
    ) -> Evidence:
        others = hist != c  # the item itself is no evidence for itself
        own = [int(a) for a in self._attrs_of(c) if self.readable[a]]
        own_genres = [a for a in own if self.groups[a] in GENRE_GROUPS]

        def common(h: int) -> tuple[str, ...]:
            """The recommended item's genres that history item ``h`` has too."""
            theirs = set(self._attrs_of(h).tolist())
            return tuple(self.values[a] for a in own_genres if a in theirs)

        held = counts[own] - (0 if others.all() else 1)
        order = sorted((i for i in range(len(own)) if held[i] > 0), key=lambda i: -held[i])
        shared = [
            SharedValue(self.groups[own[i]], self.values[own[i]], int(held[i])) for i in order
        ]
        nearest: list[Neighbour] = []
        if sims is not None and self.known[c]:
            # items without a vector (all-zero rows) are near nothing
            idx = np.flatnonzero(others & self.known[hist])
            for t in idx[np.argsort(-sims[idx], kind="stable")[: self.n_nearest]]:
                h = hist[t]
                nearest.append(
                    Neighbour(self.items.ids[h], self.titles[h], float(sims[t]), common(h))
                )
        collab = None
        co = np.where(others, co, 0)
        if len(co) and co.max() > 0:
            best = int(np.argmax(co))  # ties: the first in history order
            h = hist[best]
            collab = CoLiked(self.items.ids[h], self.titles[h], int(co[best]), common(h))
        decade = next((self.values[a] for a in own if self.groups[a] == "decade"), None)
        table_values = [s for s in shared if s.group not in self.kg_names]
        return Evidence(
            user_id=user_id,
            item_id=str(self.items.ids[c]),
            title=self.titles[c],
            genres=tuple(self.values[a] for a in own_genres),
            decade=decade,
            history_size=int(others.sum()),
            nearest=tuple(nearest),
            shared=tuple(s for s in table_values if s.group != "decade"),
            shared_decade=next((s for s in table_values if s.group == "decade"), None),
            entities=tuple(s for s in shared if s.group in self.kg_names),
            collaborative=collab,
            request_terms=self._satisfied(c, own, words),
        )

    def _satisfied(self, c: int, own: list[int], words: list[str]) -> tuple[str, ...]:
        """The request words found in item ``c``'s title, attribute values or year."""
        if not words:
            return ()
        terms = {fold_term(t) for t in tokens(self.titles[c]) if t not in _STOPWORDS}
        for a in own:
            value = self.values[a]
            terms |= {fold_term(value), *(fold_term(p) for p in re.split(r"[\s-]+", value) if p)}
            if self.groups[a] == "decade" and (short := short_decade(value)):
                terms.add(short)
            if value in ZH_GENRES:
                terms.add(ZH_GENRES[value])
        if self.years[c]:
            terms.add(self.years[c])
        return tuple(dict.fromkeys(w for w in words if fold_term(w) in terms or w in terms))


def _request_words(request: str | None) -> list[str]:
    """Content words of a request, as typed (lowercased), plus any Chinese genre names."""
    if not request:
        return []
    text = prepare(request).casefold()
    words = [w for w in _REQUEST_TOKEN.findall(text) if w not in _STOPWORDS and len(w) > 1]
    words += [zh for zh in ZH_GENRES.values() if zh in text]
    return words


def build_evidence(
    user_id: str | None,
    item_id: str,
    *,
    items: pd.DataFrame,
    interactions: pd.DataFrame,
    item_vectors: np.ndarray | None = None,
    attributes: ItemAttributes | None = None,
    request: str | None = None,
    like_threshold: float | None = 4.0,
) -> Evidence:
    """Evidence for a single (user, item); build an `EvidenceBuilder` to explain many.

    Raises:
        UnknownIdError: For unknown users or items.
    """
    builder = EvidenceBuilder(
        items, interactions, item_vectors, attributes=attributes, like_threshold=like_threshold
    )
    return builder.evidence(user_id, item_id, request)


__all__ = [
    "GENRE_GROUPS",
    "CoLiked",
    "Evidence",
    "EvidenceBuilder",
    "Neighbour",
    "SharedValue",
    "build_evidence",
]
