"""`ItemAttributes`: groups and labels from the item table and a two-direction KG, persistence,
user profiles (lift) and vectorised pair affinities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import lmrec.rank.attributes as attributes_module
from lmrec.errors import InputError
from lmrec.rank.attributes import ItemAttributes
from lmrec.rank.kg_facts import kg_group

ITEM_IDS = ["i1", "i2", "i3", "i4", "i5", "i6"]
ITEMS = pd.DataFrame(
    {
        "title": ["Toy", "Jaws", "Alien", "Heat", "Up", "Solo"],
        "year": ["1995", "1975", "1979", "1995", "2009", None],
        "genres": [
            "Animation Comedy",
            "Horror Thriller",
            "Horror Sci-Fi",
            "Crime Thriller",
            "Animation",
            "unknown",
        ],
    },
    index=pd.Index(ITEM_IDS, name="item_id"),
)
LINKS = pd.DataFrame(
    {
        "item_id": ["i1", "i2", "i3", "i4", "i5", "iX"],
        "entity_id": ["e1", "e2", "e3", "e4", "e5", "eX"],
    }
)
KG = pd.DataFrame(
    [
        ("e1", "film.film.actor", "a1"),
        ("e5", "film.film.actor", "a1"),
        ("e4", "film.film.actor", "a2"),  # held by one item only: dropped
        ("eX", "film.film.actor", "a2"),  # iX is not an item here: ignored
        # the director relation, once per direction: the film is the head, then the tail
        ("e2", "film.film.directed_by", "dS"),
        ("dS", "film.director.film", "e3"),
        # both directions of the same fact count once
        ("p1", "film.producer.film", "e1"),
        ("e1", "film.film.produced_by", "p1"),
        ("p1", "film.producer.film", "e5"),
        ("e2", "film.film.sequel", "e3"),
        ("e2", "film.film.genre", "gH"),
        ("gH", "film.film_genre.films_in_this_genre", "e3"),
        ("e1", "film.film.music", "m1"),
        ("e4", "film.film.music", "m1"),
    ],
    columns=["head_id", "relation_id", "tail_id"],
)


def build(**kw: object) -> ItemAttributes:
    args: dict[str, object] = {"kg": KG, "links": LINKS}
    args.update(kw)
    return ItemAttributes.build(ITEM_IDS, ITEMS, **args)  # type: ignore[arg-type]


def labels_of(a: ItemAttributes, item: str) -> set[str]:
    row = list(a.item_ids).index(item)
    return {str(a.labels[j]) for j in a.matrix[row].indices}


def test_kg_group_names_collapse_both_directions() -> None:
    assert kg_group("film.film.produced_by") == kg_group("film.producer.film") == "producer"
    assert kg_group("film.film.directed_by") == kg_group("film.director.film") == "director"
    assert kg_group("film.film.production_companies") == "company"
    assert kg_group("film.production_company.films") == "company"
    assert kg_group("film.film_genre.films_in_this_genre") == "genre_kg"
    assert kg_group("film.film.prequel") == "sequel"
    assert kg_group("film.film.cinematography") == "cinematographer"
    assert kg_group("film.content_rating.film") == "rating"
    assert kg_group("film.film.music") == "music"


def test_labels_and_groups_from_table_and_kg() -> None:
    a = build()
    assert a.group_names() == [
        "genre",
        "decade",
        "sequel",
        "actor",
        "director",
        "producer",
        "genre_kg",
        "music",
    ]
    assert a.kg_groups() == ["sequel", "actor", "director", "producer", "genre_kg", "music"]
    assert labels_of(a, "i1") == {
        "genre: Animation",
        "decade: 1990s",
        "actor: a1",
        "producer: p1",
        "music: m1",
    }
    # director and KG genre reach i3 through triples where the film is the tail
    assert labels_of(a, "i3") == {
        "genre: Horror",
        "decade: 1970s",
        "sequel: Jaws (series)",
        "director: dS",
        "genre_kg: gH",
    }
    assert labels_of(a, "i6") == set()  # "unknown" genre, no year, no link
    assert a.matrix.dtype == np.float32 and set(a.matrix.data) == {1.0}
    assert a.matrix.shape == (6, len(a.labels)) == (6, len(a.groups))
    assert len(set(a.labels)) == len(a.labels)
    assert all(lab.startswith(f"{g}: ") for lab, g in zip(a.labels, a.groups, strict=True))


def test_min_items_and_fields() -> None:
    a = build(min_items=1)
    assert {"genre: Comedy", "decade: 2000s", "actor: a2"} <= set(a.labels)
    b = build(fields=["genres"], kg=None)
    assert b.group_names() == ["genre"] and b.kg_groups() == []
    c = ItemAttributes.build(ITEM_IDS, None, KG, LINKS)
    assert "genre" not in c.group_names() and "director" in c.kg_groups()
    assert ItemAttributes.build(ITEM_IDS, None).n_attributes == 0


def test_item_table_with_id_column_and_other_order() -> None:
    order = ["i3", "i1", "i2", "i4", "i5", "i6"]
    a = ItemAttributes.build(order, ITEMS.reset_index(), KG, LINKS)
    assert list(a.item_ids) == order
    # a series is named after its first item in row order, now i3
    same = labels_of(build(), "i3") - {"sequel: Jaws (series)"} | {"sequel: Alien (series)"}
    assert labels_of(a, "i3") == same


def test_bad_inputs_raise_input_error() -> None:
    with pytest.raises(InputError, match=r"kg lacks column.*tail_id"):
        build(kg=KG.drop(columns="tail_id"))
    with pytest.raises(InputError, match=r"links lacks column.*entity_id"):
        build(links=LINKS.rename(columns={"entity_id": "freebase"}))
    with pytest.raises(InputError, match="not in the item table"):
        build(fields=["studio"])
    with pytest.raises(InputError, match="duplicate item"):
        ItemAttributes.build(["i1", "i1"], ITEMS)
    with pytest.raises(InputError, match="min_items"):
        build(min_items=0)


def test_save_load_round_trip(tmp_path: Path) -> None:
    a = build()
    a.save(tmp_path / "attrs")
    b = ItemAttributes.load(tmp_path / "attrs")
    assert (b.matrix != a.matrix).nnz == 0 and b.matrix.shape == a.matrix.shape
    for name in ("item_ids", "labels", "groups", "values"):
        assert list(getattr(b, name)) == list(getattr(a, name))
    assert b.kg_groups() == a.kg_groups()
    with pytest.raises(InputError, match="no saved item attributes"):
        ItemAttributes.load(tmp_path / "missing")


def test_user_profiles_are_lifts() -> None:
    a = build()
    history = sp.csr_matrix(
        np.array([[1, 0, 0, 0, 1, 0], [0, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0]], dtype=np.float32)
    )
    p = a.user_profiles(history)
    col = {str(lab): j for j, lab in enumerate(a.labels)}
    rate = a.catalog_rate()
    anim = col["genre: Animation"]
    assert p[0, anim] == pytest.approx(1.0 / rate[anim])  # both items are animations
    assert p[0, col["genre: Horror"]] == 0.0
    thr = col["genre: Thriller"]
    assert p[1, thr] == pytest.approx((2 / 3) / rate[thr])
    assert p[2].nnz == 0  # no history, all zero
    # weights: the second user's Heat (a thriller) counts three times
    w = history.multiply(np.array([[1.0], [1.0], [1.0]])).tocsr()
    w[1, 3] = 3.0
    pw = a.user_profiles(history, weights=sp.csr_matrix(w))
    assert pw[1, thr] == pytest.approx((4 / 5) / rate[thr])
    with pytest.raises(InputError, match="item columns"):
        a.user_profiles(history[:, :3])
    with pytest.raises(InputError, match="non-negative"):
        a.user_profiles(history, weights=-sp.csr_matrix(history))


def naive_affinity(
    a: ItemAttributes, profiles: sp.csr_matrix, users: np.ndarray, items: np.ndarray, group: str
) -> np.ndarray:
    dense = profiles.toarray()
    out = []
    for u, i in zip(users, items, strict=True):
        cols = [j for j in a.matrix[i].indices if a.groups[j] == group]
        out.append(np.mean([dense[u, j] for j in cols]) if cols else 0.0)
    return np.asarray(out)


@pytest.mark.parametrize("cells", [1 << 24, 7])
def test_pair_affinity_matches_naive_loop(cells: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attributes_module, "AFFINITY_CELLS", cells)  # 7: many user blocks
    a = build(min_items=1)
    rng = np.random.default_rng(0)
    history = sp.random(9, 6, density=0.4, random_state=1, format="csr", dtype=np.float32)
    profiles = a.user_profiles(history)
    users = rng.integers(0, 9, 300)
    items = rng.integers(0, 6, 300)
    aff = a.pair_affinity(profiles, users, items)
    assert list(aff) == a.group_names()
    for g in a.group_names():
        assert aff[g].dtype == np.float32 and aff[g].shape == (300,)
        np.testing.assert_allclose(aff[g], naive_affinity(a, profiles, users, items, g), rtol=1e-5)
    some = a.pair_affinity(profiles, users, items, groups=["actor", "genre"])
    assert list(some) == ["actor", "genre"]
    np.testing.assert_allclose(some["actor"], aff["actor"])


def test_pair_affinity_edge_cases() -> None:
    a = build()
    profiles = a.user_profiles(sp.csr_matrix(np.eye(6, dtype=np.float32)))
    empty = a.pair_affinity(profiles, np.array([], dtype=int), np.array([], dtype=int))
    assert all(v.shape == (0,) for v in empty.values())
    # i6 has no attributes at all: zero in every group
    zeros = a.pair_affinity(profiles, np.array([0]), np.array([5]))
    assert all(float(v[0]) == 0.0 for v in zeros.values())
    with pytest.raises(InputError, match="unknown attribute group"):
        a.pair_affinity(profiles, np.array([0]), np.array([0]), groups=["studio"])
    with pytest.raises(InputError, match="out of range"):
        a.pair_affinity(profiles, np.array([0]), np.array([6]))
    with pytest.raises(InputError, match="user rows"):
        a.pair_affinity(profiles, np.array([0, 1]), np.array([0]))
