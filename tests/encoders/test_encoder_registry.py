"""`load_encoder`: specs, errors, per-process model reuse, local folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lmrec.encoders import (
    CachedEncoder,
    Encoder,
    OnnxEncoder,
    SentenceEncoder,
    encoder_specs,
    load_encoder,
)
from lmrec.encoders.sentence import packaged_minilm_dir
from lmrec.errors import ConfigError


def test_models_load_once_per_process(minilm: Encoder, e5: Encoder, tmp_path: Path) -> None:
    assert load_encoder("minilm", use_cache=False) is minilm
    assert load_encoder("e5-small", use_cache=False) is e5
    cached = load_encoder("minilm", cache_dir=tmp_path)
    assert isinstance(cached, CachedEncoder) and cached.encoder is minilm
    cached.encode_items(["Toy Story (1995)"])
    assert len(list((tmp_path / "embeddings").glob("*.sqlite"))) == 1
    again = load_encoder("minilm", cache_dir=tmp_path)
    again.encode_items(["Toy Story (1995)"])
    assert isinstance(again, CachedEncoder) and (again.hits, again.misses) == (1, 0)
    assert again.cache is cached.cache  # one SQLite connection per folder


def test_onnx_spec_uses_the_cache_root(minilm_onnx: OnnxEncoder, cache_root: Path) -> None:
    enc = load_encoder("minilm-onnx", cache_dir=cache_root, use_cache=False)
    assert isinstance(enc, OnnxEncoder) and not enc.exported
    assert enc.onnx_path == minilm_onnx.onnx_path
    assert load_encoder("minilm-onnx", cache_dir=cache_root, use_cache=False) is enc


def test_unknown_spec_lists_the_choices() -> None:
    assert set(encoder_specs()) == {"minilm", "minilm-onnx", "e5-small"}
    with pytest.raises(ConfigError, match="minilm, minilm-onnx, e5-small"):
        load_encoder("bert-huge")


def test_missing_folder_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ConfigError, match="no-such-model"):
        load_encoder(str(missing))
    with pytest.raises(ConfigError, match="no-such-model"):
        SentenceEncoder(missing)
    with pytest.raises(ConfigError, match="no-such-model"):
        OnnxEncoder(missing, cache_dir=tmp_path)


def test_local_sentence_transformers_folder(
    minilm: Encoder, tmp_path: Path, sentences: list[str]
) -> None:
    # a user's own model folder (here: links to the packaged files under another name)
    folder = tmp_path / "my-minilm"
    folder.mkdir()
    for entry in packaged_minilm_dir().iterdir():
        (folder / entry.name).symlink_to(entry)
    enc = load_encoder(str(folder), use_cache=False)
    assert isinstance(enc, SentenceEncoder)
    assert enc.name.startswith("my-minilm@") and enc.name.endswith("/torch-fp32")
    assert enc.name != minilm.name
    np.testing.assert_allclose(
        enc.encode_items(sentences[:5]), minilm.encode_items(sentences[:5]), atol=1e-5
    )
    assert load_encoder(str(folder), use_cache=False) is enc
