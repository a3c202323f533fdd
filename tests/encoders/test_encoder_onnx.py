"""ONNX int8 export of all-MiniLM-L6-v2: fidelity to PyTorch fp32 and the export cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lmrec.encoders import Encoder, OnnxEncoder
from lmrec.encoders import onnx as onnx_mod
from lmrec.encoders.sentence import packaged_minilm_dir
from lmrec.errors import ConfigError


def test_int8_vectors_match_torch_fp32(
    minilm: Encoder, minilm_onnx: OnnxEncoder, sentences: list[str]
) -> None:
    assert len(sentences) >= 50
    for encode in ("encode_items", "encode_queries"):
        ref = getattr(minilm, encode)(sentences)
        got = getattr(minilm_onnx, encode)(sentences)
        cos = (ref * got).sum(axis=1)
        assert cos.mean() >= 0.98, cos.mean()
        assert cos.min() >= 0.95, cos.min()
        # neighbours agree: each sentence's nearest other sentence under fp32 is among its
        # 3 nearest under int8 (the set is diverse, so many neighbours are near-ties)
        sim_ref, sim_got = ref @ ref.T, got @ got.T
        np.fill_diagonal(sim_ref, -1)
        np.fill_diagonal(sim_got, -1)
        top3 = np.argsort(-sim_got, axis=1)[:, :3]
        assert (top3 == sim_ref.argmax(axis=1)[:, None]).any(axis=1).mean() >= 0.95


def test_second_load_reuses_the_cached_export(
    minilm_onnx: OnnxEncoder, onnx_dir: Path, sentences: list[str]
) -> None:
    path = minilm_onnx.onnx_path
    assert path.is_file() and path.parent.parent == onnx_dir
    mtime, exports = path.stat().st_mtime_ns, OnnxEncoder.exports
    again = OnnxEncoder(cache_dir=onnx_dir)
    assert not again.exported
    assert OnnxEncoder.exports == exports
    assert again.onnx_path == path and path.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(
        again.encode_items(sentences[:8]), minilm_onnx.encode_items(sentences[:8])
    )


def test_cache_folder_is_keyed_by_name_and_weights_and_complete(
    minilm_onnx: OnnxEncoder, onnx_dir: Path
) -> None:
    folders = sorted(p.name for p in onnx_dir.iterdir())
    assert folders == [minilm_onnx.onnx_path.parent.name]  # no temporary leftovers
    name = folders[0]
    assert name.startswith("all-MiniLM-L6-v2-") and name.endswith("-int8")
    assert len(name.split("-")[-2]) == 16  # weights hash
    meta = json.loads((onnx_dir / name / "meta.json").read_text())
    assert meta["quantize"] is True and meta["name"] == "all-MiniLM-L6-v2/onnx-int8"
    assert {p.name for p in (onnx_dir / name).iterdir()} == {"model.onnx", "meta.json"}
    assert minilm_onnx.onnx_path.stat().st_size < 40e6  # int8: ~23 MB (fp32 is ~90 MB)


def test_interrupted_export_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(hf_dir: Path, out: Path, quantize: bool = True) -> None:
        out.write_bytes(b"half an onnx file")
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx_mod, "export_onnx", crash)
    with pytest.raises(KeyboardInterrupt):
        OnnxEncoder(cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_pipeline_other_than_mean_pooling_is_refused(tmp_path: Path) -> None:
    modules = json.loads((packaged_minilm_dir() / "modules.json").read_text())
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False})
    )
    with pytest.raises(ConfigError, match="mean pooling"):
        onnx_mod.read_pipeline(tmp_path)
    modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "x.models.Dense"})
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ConfigError, match="Dense"):
        onnx_mod.read_pipeline(tmp_path)
    hf_dir, max_len, prompts = onnx_mod.read_pipeline(packaged_minilm_dir())
    assert (hf_dir, max_len) == (packaged_minilm_dir(), 256)
    assert not any(prompts.values())
