"""Item-neighbour features: closest history item, neighbour counts, rating deviation."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from lmrec.rank.neighbours import NeighbourFeatures


def _data(seed: int = 0) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    rng = np.random.default_rng(seed)
    seen = sp.csr_matrix((rng.random((30, 20)) < 0.3).astype(np.float32))
    ratings = seen.copy()
    ratings.data = rng.integers(1, 6, size=seen.nnz).astype(np.float32)
    return seen, ratings


def test_max_sim_and_counts_match_a_naive_loop() -> None:
    seen, ratings = _data()
    nbr = NeighbourFeatures(k=5, shrink=0.0).fit(seen, ratings)
    sim = nbr.sim.toarray()
    users = np.array([3, 7, 11])
    pair_user = np.array([0, 0, 1, 2, 2, 2])
    pair_item = np.array([1, 4, 0, 19, 2, 5])
    out = nbr.transform(seen, users, pair_user, pair_item)
    for j, (r, i) in enumerate(zip(pair_user, pair_item, strict=True)):
        hist = seen[users[r]].indices
        expect = sim[hist, i].max() if len(hist) else 0.0
        assert np.isclose(out["nbr:max_sim"][j], expect)
        assert out["nbr:n_close"][j] == (sim[hist, i] > 0).sum()


def test_rating_deviation_follows_the_users_ratings_of_neighbours() -> None:
    # item 2 co-occurs only with item 0, item 3 only with item 1
    seen = sp.csr_matrix(
        np.array([[1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 1, 0], [0, 1, 0, 1], [0, 1, 0, 1]], np.float32)
    )
    ratings = seen.copy()
    ratings.data = np.array([5, 1, 4, 4, 4, 4, 4, 4, 4, 4], np.float32)  # user 0: 5 for 0, 1 for 1
    nbr = NeighbourFeatures(k=3, shrink=0.0).fit(seen, ratings)
    out = nbr.transform(seen, np.array([0]), np.array([0, 0]), np.array([2, 3]))
    assert out["nbr:rating_dev"][0] > 0 > out["nbr:rating_dev"][1]
    no_ratings = NeighbourFeatures(k=3).fit(seen, None)
    assert "nbr:rating_dev" not in no_ratings.transform(
        seen, np.array([0]), np.array([0]), np.array([2])
    )


def test_state_round_trip_and_empty_pairs() -> None:
    seen, ratings = _data(1)
    nbr = NeighbourFeatures(k=4).fit(seen, ratings)
    again = NeighbourFeatures().set_state(nbr.state())
    args = (seen, np.array([0, 1]), np.array([0, 1]), np.array([2, 3]))
    a, b = nbr.transform(*args), again.transform(*args)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key])
    empty = np.zeros(0, np.int64)
    out = nbr.transform(seen, empty, empty, empty)
    assert all(len(v) == 0 for v in out.values())
