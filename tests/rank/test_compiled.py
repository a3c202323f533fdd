"""The LightGBM ranker compiled with lleaves: same scores, cached per model and CPU."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from lmrec.rank import compiled
from lmrec.rank.lgbm import LGBMConfig, LGBMRanker

if not compiled.available():  # `make test` installs lmrec[fast]; elsewhere say so loudly
    if os.environ.get("LMREC_SKIP_COMPILED") == "1":
        pytest.skip("LMREC_SKIP_COMPILED=1", allow_module_level=True)
    pytest.fail("lleaves is not importable: pip install 'lmrec[fast]'", pytrace=False)


def _fitted(n_estimators: int = 40) -> tuple[LGBMRanker, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2400, 5)).astype(np.float32)
    y = ((x[:, 0] > 0.5) & (x[:, 1] < 0.2)).astype(np.float32)
    cfg = LGBMConfig(n_estimators=n_estimators, rounds="fixed", min_child_samples=5)
    return LGBMRanker(cfg).fit(x, np.full(120, 20), y), x[:200]


def test_compiled_scores_equal_lightgbm_and_the_object_is_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LMREC_CACHE", str(tmp_path / "cache"))
    ranker, x = _fitted()
    slow = ranker.predict(x)
    assert ranker.compile_trees(wait=True)
    assert ranker.compiled is not None and ranker.compiled.ready
    fast = ranker.predict(x)
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-9)
    assert not np.allclose(fast, fast[0])  # real scores, not a constant
    objects = list((tmp_path / "cache" / "lleaves").glob("ranker.*.o"))
    assert len(objects) == 1
    # saved beside a model folder, a fresh cache adopts it without compiling
    ranker.compiled.copy_to(tmp_path / "model")
    monkeypatch.setenv("LMREC_CACHE", str(tmp_path / "other"))
    again = LGBMRanker.from_string(ranker.config, ranker.to_string())
    assert again.compile_trees(folder=tmp_path / "model")
    assert again.compiled is not None and again.compiled.ready  # cached: compiled at once
    np.testing.assert_allclose(again.predict(x), slow, rtol=0, atol=1e-9)


def test_cache_key_changes_with_the_model_and_off_means_off() -> None:
    a, _ = _fitted(20)
    b, _ = _fitted(21)
    assert compiled.cache_key(a.to_string()) != compiled.cache_key(b.to_string())
    assert compiled.cache_key(a.to_string()) == compiled.cache_key(a.to_string())
    off = LGBMRanker.from_string(LGBMConfig(compile="off"), a.to_string())
    assert off.compile_trees() is False and off.compiled is None


def test_a_failed_compile_falls_back_to_lightgbm(tmp_path: Path) -> None:
    ranker, x = _fitted()
    trees = compiled.CompiledTrees("not a lightgbm model", cache_dir=tmp_path)
    assert trees.compile() is False and trees.error
    ranker.compiled = trees
    np.testing.assert_allclose(ranker.predict(x), ranker.booster.predict(x))
