"""Sequence features: transitions after the user's latest items, recency decay, persistence."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from lmrec.rank.sequence_features import SequenceFeatures


def _fit(recent: int = 3) -> SequenceFeatures:
    # users 0 and 1 watch 0 -> 1 -> 2; user 2 watches 3 -> 4; user 3 watches 2 then 0
    uidx = np.array([0, 0, 0, 1, 1, 1, 2, 2, 3, 3])
    iidx = np.array([0, 1, 2, 0, 1, 2, 3, 4, 2, 0])
    ts = np.array([1, 2, 3, 10, 11, 12, 5, 6, 7, 8], dtype=np.float64)
    perm = np.random.default_rng(0).permutation(len(uidx))  # input order must not matter
    return SequenceFeatures(recent=recent, window=2).fit(uidx[perm], iidx[perm], ts[perm], 5, 6)


def test_latest_items_are_in_time_order_most_recent_first() -> None:
    seq = _fit()
    assert seq.latest[0].tolist() == [2, 1, 0]
    assert seq.latest[2].tolist() == [4, 3, -1]
    assert seq.latest[4].tolist() == [-1, -1, -1]  # no history


def test_transition_from_latest_item_ranks_what_followed_it() -> None:
    seq = _fit()
    # user 3's latest item is 0; after 0 came 1 (twice, step 1) and 2 (twice, step 2)
    users = np.array([3])
    out = seq.transform(users, np.zeros(4, np.int64), np.array([1, 2, 3, 4]))
    last = out["seq:trans_last"]
    assert last[0] > last[1] > 0  # step 1 beats step 2
    assert last[2] == last[3] == 0  # never followed item 0
    assert np.isclose(last[0], 2.0 / (2 + 1 + 1))  # 2 / (row total 3 + smoothing 1)
    # a user with no history gets zeros, not an error
    empty = seq.transform(np.array([4]), np.zeros(2, np.int64), np.array([0, 1]))
    assert not empty["seq:trans_last"].any() and not empty["seq:trans_recent"].any()


def test_recent_sum_decays_and_similarity_uses_given_neighbours() -> None:
    seq = _fit()
    sim = sp.csr_matrix(np.eye(6, dtype=np.float32))
    out = seq.transform(np.array([0]), np.zeros(3, np.int64), np.array([2, 1, 0]), sim)
    # identity similarity: the decayed weight of each latest position (2 newest, then 1, 0)
    assert np.allclose(out["seq:sim_recent"], [1.0, 0.7, 0.49])


def test_state_round_trip_gives_the_same_features() -> None:
    seq = _fit()
    back = SequenceFeatures().set_state(seq.state())
    args = (np.array([0, 3]), np.array([0, 0, 1, 1]), np.array([3, 4, 1, 2]))
    a, b = seq.transform(*args), back.transform(*args)
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k])
