"""Full contrastive fine-tuning of a sentence-transformers encoder on interaction pairs.

Pairs are two items one user interacted with one after the other (time order when there are
timestamps); the loss is InfoNCE with in-batch negatives over both texts (the
MultipleNegativesRankingLoss of sentence-transformers, written as a plain torch loop so that
neither ``datasets`` nor ``accelerate`` is needed). The result is an ordinary local
sentence-transformers folder, usable as ``encoder=<folder>`` by every text model; its
embedding-cache label carries a hash of the new weights, so cached vectors of the base model
are never reused for it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from lmrec.data.schema import Dataset, IdMap
from lmrec.encoders.base import resolve_threads, set_offline
from lmrec.encoders.sentence import resolve_model_dir
from lmrec.errors import ConfigError, InputError

if TYPE_CHECKING:
    from lmrec.data.item_text import ItemTextConfig


class FinetuneConfig(BaseModel):
    """How the encoder is fine-tuned before item vectors are taken from it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pairs: int = Field(2000, gt=0, description="Consecutive-item pairs sampled for training.")
    epochs: int = Field(1, gt=0, description="Passes over the sampled pairs.")
    batch_size: int = Field(32, gt=1, description="Pairs per step (the in-batch negatives).")
    learning_rate: float = Field(2e-5, gt=0, description="AdamW step size.")
    scale: float = Field(20.0, gt=0, description="Inverse temperature on cosine similarities.")
    seed: int = Field(2020, description="Seed for sampling pairs and shuffling.")


def consecutive_pairs(dataset: Dataset, items: IdMap, n: int, seed: int = 0) -> np.ndarray:
    """Up to ``n`` random ``(item, next item)`` index pairs of the same user, distinct items.

    Returns:
        ``(m, 2)`` int64 dense item indices of ``items``.
    """
    from lmrec.models.sequences import chronological

    indptr, seq = chronological(dataset, dataset.user_map(), items)
    same_user = np.ones(len(seq), dtype=bool)
    same_user[indptr[1:-1]] = False  # a user's first item does not follow the previous user
    left, right = seq[:-1], seq[1:]
    ok = same_user[1:] & (left != right)
    pairs = np.stack([left[ok], right[ok]], axis=1)
    if not len(pairs):
        raise InputError("no user has two different items in a row: nothing to fine-tune on")
    rng = np.random.default_rng(seed)
    return pairs[rng.choice(len(pairs), size=min(n, len(pairs)), replace=False)]


def finetune_encoder(
    texts: list[str],
    pairs: np.ndarray,
    out: Path,
    cfg: FinetuneConfig | None = None,
    base: str | Path | None = None,
    threads: int | None = None,
) -> Path:
    """Fine-tune a local sentence-transformers model on text pairs and save it to ``out``.

    Args:
        texts: Item texts; ``pairs`` index into them.
        pairs: ``(m, 2)`` anchor/positive text indices.
        out: Folder for the fine-tuned model (created; an existing one is replaced).
        cfg: Training settings.
        base: Base model folder (default: the packaged all-MiniLM-L6-v2).
        threads: torch threads (default ``$LMREC_THREADS`` or 2).

    Returns:
        ``out``.
    """
    import torch
    import torch.nn.functional as F
    from sentence_transformers import SentenceTransformer

    from lmrec.models.torch_utils import TorchAdam, seeded_training

    cfg = cfg or FinetuneConfig()
    set_offline()
    model = SentenceTransformer(str(resolve_model_dir(base)), device="cpu")
    params: list[torch.Tensor] = [p for p in model.parameters() if p.requires_grad]
    opt = TorchAdam(params, cfg.learning_rate, 0.0)
    rng = np.random.default_rng(cfg.seed)

    def embed(batch: list[str]) -> torch.Tensor:
        features = model.tokenize(batch)
        return F.normalize(model(features)["sentence_embedding"], dim=-1)

    with seeded_training(resolve_threads(threads), cfg.seed):
        model.train()
        steps = [
            (epoch, start)
            for epoch in range(cfg.epochs)
            for start in range(0, len(pairs) - 1, cfg.batch_size)
        ]
        order = rng.permutation(len(pairs))
        for epoch, start in tqdm(steps, desc="fine-tune encoder", leave=False, disable=None):
            if start == 0 and epoch:
                order = rng.permutation(len(pairs))
            b = pairs[order[start : start + cfg.batch_size]]
            if len(b) < 2:
                continue
            a, p = embed([texts[i] for i in b[:, 0]]), embed([texts[i] for i in b[:, 1]])
            logits = a @ p.T * cfg.scale
            # the same positive twice in a batch is not a negative for itself
            dup = torch.from_numpy(b[:, 1][:, None] == b[:, 1][None, :])
            logits = logits.masked_fill(dup & ~torch.eye(len(b), dtype=torch.bool), -1e4)
            loss = F.cross_entropy(logits, torch.arange(len(b)))
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out))
    return out


def finetune_on_interactions(
    dataset: Dataset,
    items: IdMap,
    encoder: Any,
    item_text: ItemTextConfig,
    cfg: FinetuneConfig,
    threads: int | None = None,
) -> Path:
    """Fine-tune ``encoder`` on ``dataset``'s consecutive-item pairs; returns the new folder.

    The folder lives under ``<cache root>/finetuned/`` and is named by a hash of the base
    model, the settings, the item texts and the pairs, so refitting on the same data reuses it.

    Raises:
        ConfigError: If the encoder is not a sentence-transformers model.
    """
    from lmrec.data.item_text import item_texts
    from lmrec.encoders.base import default_cache_root
    from lmrec.encoders.sentence import SentenceEncoder

    inner = getattr(encoder, "encoder", encoder)  # a CachedEncoder wraps the model
    if not isinstance(inner, SentenceEncoder):
        raise ConfigError(
            f"encoder '{inner.name}' cannot be fine-tuned (sentence-transformers only)"
        )
    texts = item_texts(dataset, item_text, truncate=encoder.truncate)
    pairs = consecutive_pairs(dataset, items, cfg.pairs, cfg.seed)
    key = hashlib.sha256(repr((inner.name, cfg, texts, pairs.tolist())).encode()).hexdigest()
    out = default_cache_root() / "finetuned" / key[:16]
    if not (out / "config.json").is_file():
        finetune_encoder(texts, pairs, out, cfg, base=inner.model_dir, threads=threads)
    return out


__all__ = ["FinetuneConfig", "consecutive_pairs", "finetune_encoder", "finetune_on_interactions"]
