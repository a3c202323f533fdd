"""Grounding LLM-proposed titles in the real ML-100K catalog, and RecLM-eval error rates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmrec.data.fetch import load_builtin
from lmrec.encoders import Encoder, load_encoder
from lmrec.errors import ConfigError, InputError
from lmrec.llm import grounding
from lmrec.llm.grounding import (
    FUZZY_THRESHOLD,
    Catalog,
    ground,
    grounding_error_rates,
    split_title,
    title_key,
)
from lmrec.llm.prompts import parse_items

INVENTED = [
    "Quantum Penguins of Mars",
    "The Midnight Accountant",
    "Love in the Time of Spreadsheets",
    "Galactic Pizza Wars",
    "Revenge of the Toasters",
    "Zombie Dentists 3",
    "Star Quest: The Forgotten Nebula",
    "Godfather of the Seas",
    "Evil Movie",
    "Banana Republic Blues",
]


@pytest.fixture(scope="module")
def items() -> pd.DataFrame:
    return load_builtin("ml-100k").items


@pytest.fixture(scope="module")
def catalog(items: pd.DataFrame) -> Catalog:
    """Exact and fuzzy matching only."""
    return Catalog(items)


@pytest.fixture(scope="session")
def minilm() -> Encoder:
    """The packaged all-MiniLM-L6-v2, loaded once per test session."""
    return load_encoder("minilm", use_cache=False)


@pytest.fixture(scope="module")
def emb_catalog(items: pd.DataFrame, minilm: Encoder) -> Catalog:
    """All three steps; the title vectors are embedded once, here."""
    cat = Catalog(items, encoder=minilm)
    assert cat.vectors is not None and cat.vectors.shape == (len(items), minilm.dim)
    return cat


def _one(cat: Catalog, proposal: str) -> tuple[str | None, str | None]:
    res = cat.resolve([proposal])[0]
    return res.item_id, res.method


def test_title_normalisation() -> None:
    assert split_title("Godfather, The (1972)") == ("Godfather, The", 1972, None)
    assert split_title("Seven (Se7en) (1995)") == ("Seven", 1995, "Se7en")
    assert split_title("Apollo 13") == ("Apollo 13", None, None)
    assert title_key("Godfather, The") == title_key("The Godfather") == "godfather"
    assert title_key("Misérables, Les") == title_key("Les Miserables") == "les miserables"
    assert title_key("Bug's Life, A") == title_key("A Bugs Life")
    assert title_key("Wallace & Gromit") == "wallace and gromit"
    assert title_key("霸王别姬") == "霸王别姬"


@pytest.mark.parametrize(
    ("proposal", "item_id"),
    [
        ("The Godfather", "127"),
        ("Godfather, The (1972)", "127"),
        ("The Godfather Part II", "187"),
        ("Toy Story", "1"),
        ("toy story (1995)", "1"),
        ("Se7en", "11"),
        ("La Femme Nikita", "198"),
        ("Les Miserables", "543"),
        ("Das Boot", "515"),
        ("A Fish Called Wanda", "153"),
        ("The Little Princess", "1473"),
        ("A Little Princess", "1063"),
        ("Pink Floyd: The Wall", "214"),
    ],
)
def test_exact_matches(catalog: Catalog, proposal: str, item_id: str) -> None:
    assert _one(catalog, proposal) == (item_id, "exact")


def test_typos_match_by_edit_distance(catalog: Catalog) -> None:
    res = catalog.resolve(["Star Wors", "Shawshank Redemtion", "E.T. the Extraterrestrial"])
    assert [r.item_id for r in res] == ["50", "64", "423"]
    assert all(r.method == "fuzzy" and FUZZY_THRESHOLD <= r.score < 1 for r in res)
    assert _one(catalog, "Hear") == (None, None)  # one letter off a 4-letter title is too far


def test_difflib_fallback_matches_typos_too(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(grounding, "HAVE_RAPIDFUZZ", False)
    assert _one(catalog, "Star Wors") == ("50", "fuzzy")
    assert _one(catalog, "Quantum Penguins of Mars") == (None, None)


def test_year_breaks_ties_between_remakes(catalog: Catalog) -> None:
    assert _one(catalog, "Cape Fear (1962)")[0] == "673"
    assert _one(catalog, "Cape Fear [1991]")[0] == "218"
    assert _one(catalog, "Sabrina (1954)")[0] == "486"
    assert _one(catalog, "Sabrina (1996)")[0] == "274"  # a year off by one still finds 1995
    assert _one(catalog, "Psycho (1998)") == (None, None)  # only the 1960 one is in ML-100K
    # without a year, an allowed candidate wins the tie
    res = ground(["Cape Fear"], catalog, exclude=set(), k=1, allowed={"673", "1"})
    assert res.items == ["673"]


def test_embedding_step_finds_paraphrased_titles(emb_catalog: Catalog) -> None:
    proposals = [
        "Star Wars Episode IV: A New Hope (1977)",
        "Indiana Jones and the Raiders of the Lost Ark",
        "12 Monkeys",
        "Terminator 2",
        "Apollo XIII",
    ]
    res = emb_catalog.resolve(proposals)
    assert [r.item_id for r in res] == ["50", "174", "7", "96", "28"]
    assert all(r.method == "embedding" for r in res)
    assert all(emb_catalog.embedding_threshold <= r.score <= 1.0 for r in res)


def test_invented_and_sequel_titles_stay_unmatched(emb_catalog: Catalog) -> None:
    proposals = [*INVENTED, "Die Hard 4", "Toy Story 2", "The Matrix (1999)"]
    result = ground(proposals, emb_catalog, exclude=set(), k=10)
    assert result.items == [] and result.matches == []
    assert result.unmatched == proposals
    assert all(f.status == "unmatched" and f.item_id is None for f in result.flags)


def test_ground_excludes_history_drops_duplicates_and_keeps_order(catalog: Catalog) -> None:
    proposals = ["Star Wars", "Toy Story", "toy story (1995)", "Heat", "Quantum Penguins of Mars"]
    result = ground(proposals, catalog, exclude={"50"}, k=10)
    assert result.items == ["1", "273"]
    assert [(m.proposal, m.item_id, m.method) for m in result.matches] == [
        ("Toy Story", "1", "exact"),
        ("Heat", "273", "exact"),
    ]
    assert [f.status for f in result.flags] == [
        "excluded",
        "accepted",
        "duplicate",
        "accepted",
        "unmatched",
    ]
    assert result.flags[0].item_id == "50"  # the history item it named is reported
    assert result.unmatched == ["Quantum Penguins of Mars"]


def test_ground_respects_allowed_and_k(catalog: Catalog) -> None:
    proposals = ["Heat", "Toy Story", "Fargo", "Star Wars", "Alien"]
    allowed = {"1", "100", "50", "183"}
    result = ground(proposals, catalog, exclude=set(), k=2, allowed=allowed)
    assert result.items == ["1", "100"]
    assert [f.status for f in result.flags] == [
        "not_allowed",
        "accepted",
        "accepted",
        "over_k",
        "over_k",
    ]
    assert set(result.items) <= allowed and all(i in catalog for i in result.items)
    with pytest.raises(ConfigError):
        ground(proposals, catalog, exclude=set(), k=0)


def test_parsed_answer_grounds_end_to_end(catalog: Catalog) -> None:
    answer = 'Sure!\n```json\n{"items": [{"title": "The Godfather"}, {"title": "Star Wors"}]}\n```'
    titles = parse_items(answer, max_items=5).titles
    assert ground(titles, catalog, exclude=set(), k=5).items == ["127", "50"]


def test_error_rates_on_raw_and_final_lists(catalog: Catalog) -> None:
    raw = [
        ["Star Wars", "Toy Story", "Heat"],  # history error (Star Wars)
        ["Toy Story", "Toy Story (1995)", "Fargo"],  # duplicate error
        ["Quantum Penguins of Mars", "Alien"],  # not a catalog item: candidate error
        ["The Godfather", "Heat"],  # clean
        ["Evil Movie", "evil movie!"],  # the same invented title twice: duplicate + candidate
    ]
    histories = [{"50"}, {"127"}, set(), {"1"}, set()]
    final = [ground(r, catalog, set(h), k=10).items for r, h in zip(raw, histories, strict=True)]
    assert final == [["1", "273"], ["1", "100"], ["183"], ["127", "273"], []]
    rates = grounding_error_rates(raw, final, catalog, histories)
    assert rates["users"] == 5
    assert rates["raw_history_error_rate"] == 0.2
    assert rates["raw_duplicate_error_rate"] == 0.4
    assert rates["raw_candidate_error_rate"] == 0.4
    assert rates["raw_unmatched_rate"] == pytest.approx(3 / 12)
    for name in ("history", "duplicate", "candidate"):
        assert rates[f"final_{name}_error_rate"] == 0.0
    # the final rates are computed, not assumed: a bad final list is caught
    bad = grounding_error_rates(raw, [["50", "50"], [], ["nope"], [], []], catalog, histories)
    assert bad["final_history_error_rate"] == 0.2
    assert bad["final_duplicate_error_rate"] == 0.2
    assert bad["final_candidate_error_rate"] == 0.2


def test_error_rates_with_candidate_sets(catalog: Catalog) -> None:
    raw = [["Heat", "Toy Story"], ["Toy Story"]]
    cands = [["1", "50"], ["1"]]
    rates = grounding_error_rates(raw, [["1"], ["1"]], catalog, [set(), set()], cands)
    assert rates["raw_candidate_error_rate"] == 0.5  # Heat was not offered to user 0
    assert rates["final_candidate_error_rate"] == 0.0
    with pytest.raises(InputError):
        grounding_error_rates(raw, [["1"]], catalog, [set(), set()])


def test_catalog_checks_its_input(items: pd.DataFrame) -> None:
    with pytest.raises(InputError):
        Catalog(items.drop(columns=["title"]))
    with pytest.raises(InputError):
        Catalog(items, vectors=np.zeros((3, 4), dtype=np.float32))
    small = Catalog(items.loc[["1", "50"]], vectors=np.eye(2, dtype=np.float32))
    assert len(small) == 2 and "50" in small and "127" not in small
    assert small.title("50") == "Star Wars"
