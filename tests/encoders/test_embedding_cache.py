"""`EmbeddingCache` on disk and `CachedEncoder` with a real model."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from lmrec.encoders import CachedEncoder, CacheError, EmbeddingCache, Encoder
from lmrec.errors import InputError

NAME = "test-encoder/fp32"


def _vectors(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def test_roundtrip_misses_duplicates_and_kinds(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    texts = ["a", "b", "ünïcödé 中文", ""]
    vecs = _vectors(4)
    cache.put(NAME, texts, vecs)
    got, found = cache.get(NAME, ["b", "new", "a", "b", "", "ünïcödé 中文"], dim=8)
    assert found.tolist() == [True, False, True, True, True, True]
    np.testing.assert_array_equal(got[[0, 2, 3, 4, 5]], vecs[[1, 0, 1, 3, 2]])
    assert not got[1].any()
    # queries, other encoders and near-identical texts are separate entries
    assert not cache.get(NAME, texts, dim=8, kind="queries")[1].any()
    assert not cache.get("other/fp32", texts, dim=8)[1].any()
    assert not cache.get(NAME, ["a ", "A"], dim=8)[1].any()
    assert cache.count(NAME) == 4 and cache.count(NAME, "queries") == 0
    cache.put(NAME, ["a"], vecs[3:4])  # replaced, not duplicated
    np.testing.assert_array_equal(cache.get(NAME, ["a"], dim=8)[0], vecs[3:4])
    assert cache.count(NAME) == 4
    cache.clear(NAME)
    assert cache.count(NAME) == 0


def test_persists_across_instances_and_checks_dimensions(tmp_path: Path) -> None:
    vecs = _vectors(3)
    with EmbeddingCache(tmp_path) as cache:
        cache.put(NAME, ["x", "y", "z"], vecs)
    reopened = EmbeddingCache(tmp_path)
    got, found = reopened.get(NAME, ["z", "x"], dim=8)
    assert found.all()
    np.testing.assert_array_equal(got, vecs[[2, 0]])
    with pytest.raises(CacheError, match="8-d"):
        reopened.get(NAME, ["x"], dim=16)
    with pytest.raises(CacheError, match="8-d"):
        reopened.put(NAME, ["w"], _vectors(1, dim=16))
    with pytest.raises(InputError, match="expected 2 vectors"):
        reopened.put(NAME, ["w", "v"], _vectors(3))
    with pytest.raises(InputError, match="kind"):
        reopened.get(NAME, ["x"], dim=8, kind="docs")  # type: ignore[arg-type]
    assert len(list(tmp_path.glob("*.sqlite"))) == 1


def test_many_texts_in_seconds(tmp_path: Path) -> None:
    n = 30_000  # 100k take ~3-5 s each way on 2 cores (benchmarks/bench_encoders.py)
    texts = [f"item {i}: a short description of a product" for i in range(n)]
    vecs = _vectors(n, dim=384)
    cache = EmbeddingCache(tmp_path)
    t0 = time.perf_counter()
    cache.put(NAME, texts, vecs)
    t1 = time.perf_counter()
    got, found = cache.get(NAME, [*texts[::-1], "unseen"], dim=384)
    t2 = time.perf_counter()
    assert found[:-1].all() and not found[-1]
    np.testing.assert_array_equal(got[:-1], vecs[::-1])
    # ~1 s each on a loaded 2-core machine; one query per row would take far longer
    assert t1 - t0 < 15 and t2 - t1 < 15, (t1 - t0, t2 - t1)


_WRITER = """
import sys
import numpy as np
from lmrec.encoders import EmbeddingCache
cache = EmbeddingCache(sys.argv[1])
for b in range(10_000):
    texts = [f"text {b * 2000 + i}" for i in range(2000)]
    first = np.arange(b * 2000, (b + 1) * 2000, dtype=np.float32)
    vecs = np.repeat(first[:, None], 384, axis=1)
    cache.put("crash/test", texts, vecs)
"""


def test_crash_mid_write_keeps_whole_transactions(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_WRITER), str(tmp_path)])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            files = list(tmp_path.glob("*.sqlite"))
            if files:
                with sqlite3.connect(files[0], timeout=30) as probe:
                    try:
                        if probe.execute("SELECT COUNT(*) FROM items").fetchone()[0] >= 4000:
                            break
                    except sqlite3.OperationalError:  # table not created yet
                        pass
            time.sleep(0.05)
        time.sleep(0.13)  # land somewhere inside a later transaction
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    db = next(tmp_path.glob("*.sqlite"))
    with sqlite3.connect(db) as check:
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    cache = EmbeddingCache(tmp_path)
    n = cache.count("crash/test")
    assert n >= 4000 and n % 2000 == 0  # whole 2000-row transactions only
    texts = [f"text {i}" for i in range(n + 2000)]
    got, found = cache.get("crash/test", texts, dim=384)
    assert found[:n].all() and not found[n:].any()
    np.testing.assert_array_equal(got[:n, 0], np.arange(n, dtype=np.float32))


def test_cached_encoder_embeds_only_new_or_changed_texts(
    tmp_path: Path, minilm: Encoder, sentences: list[str]
) -> None:
    texts = sentences[:20]
    cached = CachedEncoder(minilm, EmbeddingCache(tmp_path))
    assert (cached.name, cached.dim, cached.max_tokens) == (minilm.name, 384, 256)
    first = cached.encode_items(texts)
    assert (cached.hits, cached.misses) == (0, 20)
    np.testing.assert_allclose(first, minilm.encode_items(texts), atol=1e-6)

    again = cached.encode_items(texts)
    assert (cached.hits, cached.misses) == (20, 20)
    np.testing.assert_array_equal(again, first)

    changed = [*texts[:18], texts[18] + " (edited)", "a brand new item", texts[19]]
    cached.reset_counters()
    out = cached.encode_items(changed, batch_size=2)
    assert (cached.hits, cached.misses) == (19, 2)
    np.testing.assert_allclose(out, minilm.encode_items(changed), atol=1e-6)

    cached.reset_counters()
    cached.encode_queries(texts[:5])  # queries are cached apart from items
    assert (cached.hits, cached.misses) == (0, 5)
    dup = cached.encode_items(["dup text", "dup text", texts[0]])
    assert (cached.hits, cached.misses) == (1, 6)
    np.testing.assert_array_equal(dup[0], dup[1])

    # a new process (here: a new cache object on the same folder) finds everything
    fresh = CachedEncoder(minilm, EmbeddingCache(tmp_path))
    fresh.encode_items(changed)
    assert (fresh.hits, fresh.misses) == (21, 0)
    assert fresh.encode_items([]).shape == (0, 384)
    with pytest.raises(InputError, match="position 1"):
        fresh.encode_items(["ok", None])  # type: ignore[list-item]
    assert fresh.truncate("short") == "short"
    assert fresh.count_tokens(["Toy Story"]) == minilm.count_tokens(["Toy Story"])
