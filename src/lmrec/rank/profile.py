"""An interpretable portrait of a user: activity level and favourite item attributes.

Every number comes from the user's training history and the item attributes:

* activity: the user's mid-rank percentile ``p`` of training interaction counts among the
  users with any (``100 * (share with fewer + half the share with as many)``); ``light``
  below the 33rd percentile, ``heavy`` from the 80th, ``regular`` in between;
* ``top[group]``: the user's most common attribute values of a group, each with its
  *share*: the fraction of the user's history items holding it (0..1; an item can hold
  several genres, so shares in a group may sum past 1). Ties go to the value with the
  higher lift, ``share / catalog rate``;
* ``lift[group]``: the values over-represented against the catalog (lift >= 1.5, held by
  at least two history items), highest lift first.

The summary states these figures in a fixed template and nothing else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lmrec.data.schema import ITEM, RATING, USER
from lmrec.errors import InputError
from lmrec.rank.attributes import ItemAttributes

if TYPE_CHECKING:  # lmrec.models imports lmrec.rank modules
    from lmrec.models.base import Recommender

#: Percentile cut-offs of the activity levels (see the module docstring).
LIGHT_BELOW = 100.0 / 3.0
HEAVY_FROM = 80.0
#: Lift at which a value counts as over-represented, and the history items it needs.
LIFT_MIN = 1.5
SUPPORT_MIN = 2
#: Plural phrase per KG group for the summary ("recurring directors: ...").
GROUP_PHRASES = {
    "actor": "actors",
    "director": "directors",
    "writer": "writers",
    "producer": "producers",
    "company": "production companies",
    "cinematographer": "cinematographers",
    "sequel": "series",
    "genre_kg": "KG genres",
    "language": "languages",
    "country": "countries",
    "award": "awards",
    "rating": "content ratings",
    "subject": "subjects",
}
#: KG groups named in the summary, in this order (the others stay in `top`).
SUMMARY_KG_GROUPS = ("director", "sequel", "writer", "actor", "company", "subject")


@dataclass
class UserProfile:
    """A user's activity and favourite attributes (see the module docstring for weights).

    Attributes:
        user_id: External user ID.
        n_interactions: Distinct items in the training history.
        activity: ``light``, ``regular`` or ``heavy``.
        activity_percentile: Mid-rank percentile of the user's interaction count (0..100).
        mean_rating: Mean of the user's ratings, when ratings are known.
        top: Group -> ``[(value, share of history)]``, most common first.
        summary: One plain-English paragraph of the figures above.
        lift: Group -> ``[(value, lift vs catalog)]`` of over-represented values.
        counts: Group -> ``[(value, history items)]``, aligned with ``top``.
    """

    user_id: str
    n_interactions: int
    activity: str
    activity_percentile: float
    mean_rating: float | None
    top: dict[str, list[tuple[str, float]]]
    summary: str
    lift: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    counts: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (value/weight pairs as two-item lists)."""
        out = asdict(self)
        for key in ("top", "lift", "counts"):
            out[key] = {g: [[v, w] for v, w in pairs] for g, pairs in out[key].items()}
        return out


def activity_level(percentile: float) -> str:
    """``light``, ``regular`` or ``heavy`` for an activity percentile."""
    if percentile < LIGHT_BELOW:
        return "light"
    return "heavy" if percentile >= HEAVY_FROM else "regular"


def _percentile(n: int, counts: np.ndarray) -> float:
    active = counts[counts > 0]
    if not len(active):
        return 0.0
    return float(100.0 * ((active < n).mean() + 0.5 * (active == n).mean()))


#: How the summary names the values of an item-table group.
TABLE_PHRASES = {"genre": "genres", "decade": "release decades", "category": "categories"}
#: Values per group named in the summary.
SUMMARY_N = 3


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _lift(x: float) -> str:
    return f"{x:.1f}x"


def _listing(pairs: list[tuple[str, float]], fmt: Any) -> str:
    return ", ".join(f"{v} {fmt(w)}" for v, w in pairs[:SUMMARY_N])


def _summary(p: UserProfile, table_groups: list[str], kg_groups: list[str], rated: bool) -> str:
    if p.n_interactions == 0:
        return f"User {p.user_id} has no training interactions."
    unit = "ratings" if rated else "interactions"
    if p.activity_percentile >= 50:
        rank = f"top {max(1.0, 100 - p.activity_percentile):.0f}% by activity"
    else:
        rank = f"bottom {max(1.0, p.activity_percentile):.0f}% by activity"
    facts = [f"{p.n_interactions} {unit}"]
    if p.mean_rating is not None:
        facts.append(f"mean rating {p.mean_rating:.1f}")
    parts = [f"User {p.user_id} is a {p.activity} user ({rank}; {', '.join(facts)})."]
    for g in table_groups:
        what = TABLE_PHRASES.get(g, f"{g} values")
        if p.top.get(g):
            parts.append(f"Most common {what} (share of their items): {_listing(p.top[g], _pct)}.")
        if p.lift.get(g):
            parts.append(f"Over-represented vs the catalog: {_listing(p.lift[g], _lift)}.")
    named = [g for g in SUMMARY_KG_GROUPS if g in kg_groups]
    recurring = {
        g: [(v, n) for v, n in p.counts.get(g, []) if n >= SUPPORT_MIN][:SUMMARY_N] for g in named
    }
    for g in [g for g in named if recurring[g]][:4]:
        listing = ", ".join(f"{v} ({n} items)" for v, n in recurring[g])
        parts.append(f"Recurring {GROUP_PHRASES.get(g, g)}: {listing}.")
    return " ".join(parts)


def build_profile(
    user_id: str,
    history_idx: np.ndarray,
    attributes: ItemAttributes,
    activity_counts: np.ndarray,
    ratings: np.ndarray | None = None,
    top_n: int = 5,
) -> UserProfile:
    """The profile of one user.

    Args:
        user_id: External user ID (for the summary).
        history_idx: Rows of ``attributes`` the user interacted with (duplicates ignored).
        attributes: Item attributes; rows are item indices.
        activity_counts: Training interaction count of every user (zeros are skipped).
        ratings: The user's ratings (any length; their mean is reported), if known.
        top_n: Values kept per group.

    Raises:
        InputError: If ``top_n`` < 1 or a history index is out of range.
    """
    if top_n < 1:
        raise InputError(f"top_n must be >= 1, got {top_n}")
    hist = np.unique(np.asarray(history_idx, dtype=np.int64))
    n_items = attributes.matrix.shape[0]
    if len(hist) and (hist[0] < 0 or hist[-1] >= n_items):
        raise InputError(f"history index out of range [0, {n_items})")
    n = len(hist)
    pct = _percentile(n, np.asarray(activity_counts))
    rated = ratings is not None and len(ratings) > 0
    mean = float(np.mean(ratings)) if ratings is not None and rated else None
    counts = np.bincount(attributes.matrix[hist].indices, minlength=attributes.n_attributes)
    share = counts / max(n, 1)
    rate = attributes.catalog_rate()
    lift = np.divide(share, rate, out=np.zeros_like(share), where=rate > 0)
    top: dict[str, list[tuple[str, float]]] = {}
    lifted: dict[str, list[tuple[str, float]]] = {}
    held: dict[str, list[tuple[str, int]]] = {}
    for g in attributes.group_names():
        cols = np.flatnonzero((attributes.groups == g) & (counts > 0))
        if not len(cols):
            continue
        best = cols[np.lexsort((-lift[cols], -counts[cols]))][:top_n]
        top[g] = [(str(attributes.values[j]), round(float(share[j]), 4)) for j in best]
        held[g] = [(str(attributes.values[j]), int(counts[j])) for j in best]
        strong = cols[(lift[cols] >= LIFT_MIN) & (counts[cols] >= SUPPORT_MIN)]
        strong = strong[np.argsort(-lift[strong], kind="stable")][:top_n]
        if len(strong):
            lifted[g] = [(str(attributes.values[j]), round(float(lift[j]), 2)) for j in strong]
    profile = UserProfile(
        user_id=str(user_id),
        n_interactions=n,
        activity=activity_level(pct),
        activity_percentile=round(pct, 1),
        mean_rating=round(mean, 3) if mean is not None else None,
        top=top,
        summary="",
        lift=lifted,
        counts=held,
    )
    kg = attributes.kg_groups()
    table_groups = [g for g in attributes.group_names() if g not in kg]
    profile.summary = _summary(profile, table_groups, kg, rated)
    return profile


def profile_for(
    model: Recommender,
    user_id: str,
    top_n: int = 5,
    interactions: pd.DataFrame | None = None,
) -> UserProfile:
    """The profile of a user of a fitted or loaded model.

    The history is the model's fitted seen-item matrix. Attributes are the model's own
    (``model.attributes``, e.g. kg-knn's) or else built from its item table (no KG then).
    Models keep no ratings, so ``mean_rating`` is None unless ``interactions`` (with a
    ``rating`` column) is given.

    Raises:
        UnknownIdError: If the model does not know ``user_id``.
    """
    users, items, seen = model._check()
    row = int(users.index([str(user_id)], "user")[0])
    attrs = getattr(model, "attributes", None)
    if not isinstance(attrs, ItemAttributes) or not np.array_equal(
        attrs.item_ids, items.ids.astype(str)
    ):
        attrs = ItemAttributes.build(items.ids, model.item_table)
    ratings = None
    if interactions is not None and RATING in interactions.columns:
        mine = interactions[interactions[USER].astype(str) == str(user_id)]
        mine = mine[mine[ITEM].astype(str).isin(set(items.ids[seen[row].indices]))]
        ratings = mine[RATING].to_numpy(dtype=np.float64)
    return build_profile(
        str(user_id),
        seen[row].indices,
        attrs,
        np.diff(seen.indptr),
        ratings=ratings,
        top_n=top_n,
    )
