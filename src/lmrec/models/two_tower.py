"""Two-tower retrieval trained contrastively over language-model item vectors.

Item tower: an adapter (MLP) over the frozen encoder vector of the item's text, plus a learned
ID vector for items that had training interactions. The ID part is dropped at random while
training (``id_dropout``, as DropoutNet does) so the text part can stand alone: items added
later, or never interacted with, are scored from their text. User tower: a second adapter over
the mean text vector of the user's history, plus the mean of the history's ID vectors, then a
residual MLP (YouTube's DNN averages history embeddings the same way). Pooling text before the
adapter keeps a training step's cost independent of history lengths. A user is thus a
function of their items and texts (their own text or a typed request enter the mean like
history items), so a user with one interaction, or with only text, is served without
retraining.

Training: InfoNCE over cosine similarities / ``temperature``. Each example is a (user, item)
training pair; the user is pooled from their other training items, so the target never leaks
into its own query. Negatives are the other targets in the batch (with the log-Q correction
of Yi et al., RecSys 2019, so popular items are not over-penalised) plus, after the first
epoch, ``hard_negatives`` items per example sampled from the user's current ranks
``hard_from_rank .. hard_from_rank + hard_pool`` (the very top is skipped: those are often
future positives). A batch's own items that the user already has are masked out. Early stopping
on validation NDCG@10.
"""

from __future__ import annotations

import copy
import functools
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field
from tqdm.auto import tqdm

from lmrec.data.item_text import ItemTextConfig
from lmrec.data.schema import Dataset
from lmrec.encoders.finetune import FinetuneConfig
from lmrec.errors import InputError
from lmrec.models.base import ModelConfig, NotFittedError, Recommender, register
from lmrec.models.catalog_text import (
    TextItems,
    grow_catalog,
    new_items_table,
    place_rows,
    ranked_row,
    similar_by_vectors,
)
from lmrec.models.early_stopping import EarlyStopping, validation_ndcg
from lmrec.models.topk import user_batch_size
from lmrec.models.torch_utils import TorchAdam, seeded_training

if TYPE_CHECKING:
    import torch

#: Sub-folder of a saved model that holds its fine-tuned encoder.
ENCODER_DIR = "encoder"


class TwoTowerConfig(ModelConfig):
    """Configuration of `TwoTower`."""

    encoder: str = Field("minilm", description="Encoder spec (see lmrec.encoders.load_encoder).")
    item_text: ItemTextConfig = Field(default_factory=ItemTextConfig, description="Item text.")
    dim: int = Field(64, gt=0, description="Size of the user and item embeddings.")
    hidden: int = Field(256, ge=0, description="Adapter hidden width (0: a linear projection).")
    id_embeddings: bool = Field(True, description="Add a learned ID vector to warm items.")
    id_dropout: float = Field(0.5, ge=0, le=1, description="Chance an ID vector is dropped.")
    temperature: float = Field(0.05, gt=0, description="Softmax temperature on cosines.")
    logq: bool = Field(True, description="Log-Q correct in-batch negatives by popularity.")
    hard_negatives: int = Field(8, ge=0, description="Sampled hard negatives per example.")
    hard_from_rank: int = Field(20, ge=0, description="Ranks skipped before hard negatives.")
    hard_pool: int = Field(100, gt=0, description="Ranks that hard negatives are drawn from.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout inside the adapters.")
    learning_rate: float = Field(0.0003, gt=0, description="Adam step size.")
    weight_decay: float = Field(0.0, ge=0, description="Adam L2 penalty.")
    batch_size: int = Field(1024, gt=1, description="Training pairs per step.")
    epochs: int = Field(20, gt=0, description="Passes over the pairs (the most, with valid).")
    patience: int = Field(3, gt=0, description="Epochs without NDCG@10 gain before stopping.")
    seed: int = Field(2020, description="Seed for initialisation, shuffling and sampling.")
    num_threads: int = Field(
        0, ge=0, description="torch threads while fitting (0: as is; 1: bit-reproducible fits)."
    )
    encode_batch_size: int = Field(64, gt=0, description="Texts per encoder batch.")
    finetune: FinetuneConfig | None = Field(
        None, description="First fine-tune the whole encoder on consecutive-item pairs."
    )


@functools.cache
def _net_class() -> Any:
    """The network, defined on first use so that importing lmrec does not import torch."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def mlp(n_in: int, c: TwoTowerConfig) -> nn.Module:
        if not c.hidden:
            return nn.Linear(n_in, c.dim)
        return nn.Sequential(
            nn.Linear(n_in, c.hidden), nn.GELU(), nn.Dropout(c.dropout), nn.Linear(c.hidden, c.dim)
        )

    class _ItemTower(nn.Module):
        def __init__(self, text_dim: int, n_ids: int, c: TwoTowerConfig) -> None:
            super().__init__()
            self.text = mlp(text_dim, c)
            self.ids = nn.Embedding(n_ids, c.dim) if c.id_embeddings else None
            if self.ids is not None:
                nn.init.normal_(self.ids.weight, 0.0, 0.01)

        def forward(
            self, text: torch.Tensor, ids: torch.Tensor, keep: torch.Tensor
        ) -> torch.Tensor:
            """``keep`` (float, per row) scales the ID part: 0 for cold or dropped IDs."""
            x = self.text(text)
            if self.ids is not None:
                x = x + self.ids(ids.clamp(max=self.ids.num_embeddings - 1)) * keep[:, None]
            return x

    class _Net(nn.Module):
        def __init__(self, text_dim: int, n_ids: int, c: TwoTowerConfig) -> None:
            super().__init__()
            self.items = _ItemTower(text_dim, n_ids, c)
            self.query_text = mlp(text_dim, c)  # the history's mean text vector
            self.query_ids = nn.Embedding(n_ids, c.dim) if c.id_embeddings else None
            if self.query_ids is not None:
                nn.init.normal_(self.query_ids.weight, 0.0, 0.01)
            self.user = nn.Sequential(nn.Linear(c.dim, c.dim), nn.GELU(), nn.Linear(c.dim, c.dim))

        def users(
            self, mean_text: torch.Tensor, ids: tuple[torch.Tensor, ...] | None
        ) -> torch.Tensor:
            """User vectors from mean history text ``(b, text_dim)`` and the history's ID
            entries ``(rows, items, weights)`` (weight: 1/len(history) per warm item kept)."""
            x = self.query_text(mean_text)
            if self.query_ids is not None and ids is not None:
                rows, items, weights = ids
                # a gather and an index_add: dense ops whose gradients stay dense and cheap
                vecs = self.query_ids(items) * weights[:, None]
                x = x + torch.zeros_like(x).index_add(0, rows, vecs)
            return F.normalize(x + self.user(x), dim=-1)

    return _Net


@register
class TwoTower(TextItems, Recommender):
    """Contrastively trained two-tower model over text vectors (with warm-item ID vectors).

    ``fit(train, valid=valid)`` early-stops on validation NDCG@10; `fitted_params` reports the
    epoch count. `add_items` makes new items recommendable from text without retraining, and
    `recommend_for` serves a user given only a history, their text or a request.
    """

    name = "two-tower"
    Config = TwoTowerConfig
    search_space: ClassVar[dict[str, list[Any]]] = {
        "id_dropout": [0.1, 0.5, 1.0],
        "learning_rate": [0.0003, 0.001],
    }
    config: TwoTowerConfig

    def __init__(self, config: ModelConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.net: Any = None
        self.text_vectors: np.ndarray | None = None  # (n_items, text_dim), encoder output
        self.warm: np.ndarray | None = None  # items whose ID vector is used
        self.item_vectors: np.ndarray | None = None  # (n_items, dim), candidate tower
        self.user_vectors: np.ndarray | None = None  # (n_users, dim)
        self.best_epoch = 0
        self.history: list[tuple[int, float]] = []
        self.encoder_dir: Path | None = None  # the fine-tuned encoder, if any

    # -- text ----------------------------------------------------------------------------
    def encoder(self) -> Any:
        """The encoder named in the config, or the one fine-tuned by `fit` (cached per process)."""
        from lmrec.encoders import load_encoder

        return load_encoder(str(self.encoder_dir) if self.encoder_dir else self.config.encoder)

    def _finetune(self, dataset: Dataset) -> None:
        """Fine-tune the encoder on the training pairs; later item vectors come from it."""
        from lmrec.encoders.finetune import finetune_on_interactions

        c = self.config
        assert c.finetune is not None and self.items is not None
        self.encoder_dir = finetune_on_interactions(
            dataset, self.items, self.encoder(), c.item_text, c.finetune, c.num_threads or None
        )

    # -- training ------------------------------------------------------------------------
    def _fit(self, matrix: sp.csr_matrix, dataset: Dataset) -> None:
        c = self.config
        self.encoder_dir = None
        if c.finetune is not None:
            self._finetune(dataset)
        self.text_vectors = self.embed_items(dataset)
        self.warm = np.asarray(matrix.sum(axis=0)).ravel() > 0
        with seeded_training(c.num_threads, c.seed):
            self._train(matrix, np.random.default_rng(c.seed))

    def _train(self, matrix: sp.csr_matrix, rng: np.random.Generator) -> None:
        import torch

        c = self.config
        assert self.text_vectors is not None and self.warm is not None
        n_items = matrix.shape[1]
        net = _net_class()(self.text_vectors.shape[1], n_items, c)
        self.net = net
        opt = TorchAdam(list(net.parameters()), c.learning_rate, c.weight_decay)
        text = torch.from_numpy(self.text_vectors)
        coo = matrix.tocoo()
        pair_u, pair_i = coo.row.astype(np.int64), coo.col.astype(np.int64)
        counts = np.asarray(matrix.sum(axis=0), dtype=np.float64).ravel()
        # expected copies of item j among a batch's targets: the in-batch sampling rate
        log_q = np.log(np.maximum(counts * c.batch_size / max(len(pair_u), 1), 1e-12))
        log_q_t = torch.from_numpy(log_q.astype(np.float32))
        log_q_hard = float(np.log(c.hard_negatives / c.hard_pool)) if c.hard_negatives else 0.0
        stopper = EarlyStopping(c.patience)
        best = copy.deepcopy(net.state_dict())
        pool: np.ndarray | None = None
        bar = tqdm(range(1, c.epochs + 1), desc="two-tower", leave=False, disable=None)
        for epoch in bar:
            net.train()
            order = rng.permutation(len(pair_u))
            for start in range(0, len(order), c.batch_size):
                b = order[start : start + c.batch_size]
                u, i = pair_u[b], pair_i[b]
                hard = None
                if pool is not None and c.hard_negatives:
                    pick = rng.integers(0, pool.shape[1], size=(len(b), c.hard_negatives))
                    hard = pool[u[:, None], pick]
                loss = self._loss(net, text, matrix, u, i, hard, log_q_t, log_q_hard, rng)
                opt.zero_grad()
                loss.backward()
                opt.step()
            self._refresh(matrix)
            if c.hard_negatives:
                pool = self._hard_pool(matrix)
            if self.valid_matrix is not None:
                score = validation_ndcg(self, self.valid_matrix)
                improved, stop = stopper.update(epoch, score)
                bar.set_postfix(valid_ndcg=f"{score:.4f}", best=stopper.best_step)
                if improved:
                    best = copy.deepcopy(net.state_dict())
                if stop:
                    break
        if self.valid_matrix is not None:
            net.load_state_dict(best)
            self.best_epoch, self.history = stopper.best_step, stopper.history
        net.eval()
        self._refresh(matrix)

    def _loss(
        self,
        net: Any,
        text: torch.Tensor,
        matrix: sp.csr_matrix,
        u: np.ndarray,
        i: np.ndarray,
        hard: np.ndarray | None,
        log_q: torch.Tensor,
        log_q_hard: float,
        rng: np.random.Generator,
    ) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        c = self.config
        hist = matrix[u].tocoo()
        own = hist.col == i[hist.row]  # the target leaves its own query
        users = self._users(hist.row[~own], hist.col[~own], len(u), rng, grad=True)
        cols = np.unique(np.concatenate([i, hard.ravel()])) if hard is not None else np.unique(i)
        items = F.normalize(self._tower(net.items, text, cols, rng), dim=-1)
        targets = items[np.searchsorted(cols, i)]  # in-batch negatives: every example's target
        logits = users @ targets.T / c.temperature
        if c.logq:
            logits = logits - log_q[i][None, :]
        # items in the batch that a row's user already has (including copies of its own
        # target) are not negatives for that row
        has = np.asarray(matrix[u][:, i].todense(), dtype=bool)
        np.fill_diagonal(has, False)
        mask = torch.from_numpy(has)
        logits = logits.masked_fill(mask, float("-inf"))
        if hard is not None:
            h = items[np.searchsorted(cols, hard)]  # (b, n_hard, dim)
            hard_logits = (users[:, None, :] * h).sum(-1) / c.temperature
            if c.logq:
                hard_logits = hard_logits - log_q_hard
            logits = torch.cat([logits, hard_logits], dim=1)
        return F.cross_entropy(logits, torch.arange(len(u)))

    def _tower(
        self, tower: Any, text: torch.Tensor, items: np.ndarray, rng: np.random.Generator
    ) -> Any:
        """Tower output for item indices, with ID vectors dropped at ``id_dropout`` in training."""
        import torch

        assert self.warm is not None
        keep = self.warm[items].astype(np.float32)
        if tower.training and self.config.id_dropout:
            keep *= rng.random(len(items)) >= self.config.id_dropout
        idx = torch.from_numpy(items)
        return tower(text[idx], idx, torch.from_numpy(keep))

    def _users(
        self,
        rows: np.ndarray,
        cols: np.ndarray,
        n_rows: int,
        rng: np.random.Generator | None = None,
        extra_text: np.ndarray | None = None,
        n_extra: int = 0,
        grad: bool = False,
    ) -> torch.Tensor:
        """User vectors from history entries ``(rows, cols)`` (rows without items: text only).

        ``extra_text`` (one encoder vector per row) joins each row's mean as ``n_extra`` items.
        With ``rng``, history ID vectors are dropped at ``id_dropout``.
        """
        import torch

        assert self.text_vectors is not None and self.warm is not None
        n = np.bincount(rows, minlength=n_rows).astype(np.float32) + n_extra
        inv = 1.0 / np.maximum(n, 1.0)
        h = sp.csr_matrix((inv[rows], (rows, cols)), shape=(n_rows, len(self.text_vectors)))
        mean_text = np.asarray(h @ self.text_vectors, dtype=np.float32)
        if extra_text is not None:
            mean_text += extra_text * inv[:, None]
        keep = self.warm[cols].astype(np.float32)
        if rng is not None and self.config.id_dropout:
            keep *= rng.random(len(cols)) >= self.config.id_dropout
        ids = None
        if self.net.query_ids is not None and keep.any():
            sel = keep > 0
            ids = (
                torch.from_numpy(rows[sel].astype(np.int64)),
                torch.from_numpy(cols[sel].astype(np.int64)),
                torch.from_numpy(inv[rows[sel]]),
            )
        with torch.set_grad_enabled(grad):
            return self.net.users(torch.from_numpy(mean_text), ids)

    def _hard_pool(self, matrix: sp.csr_matrix) -> np.ndarray:
        """Per user, items at ranks ``hard_from_rank ..`` of the current model (seen excluded)."""
        c = self.config
        n_items = matrix.shape[1]
        lo = min(c.hard_from_rank, max(n_items - c.hard_pool - 1, 0))
        hi = lo + min(c.hard_pool, n_items - 1)
        out = np.empty((matrix.shape[0], hi - lo), dtype=np.int64)
        step = user_batch_size(n_items)
        for start in range(0, matrix.shape[0], step):
            users = np.arange(start, min(start + step, matrix.shape[0]))
            idx, _ = self.topk_idx(users, hi)
            part = idx[:, lo:hi]
            bad = part < 0  # users who have nearly everything: any item will do
            part[bad] = np.random.default_rng(start).integers(0, n_items, size=int(bad.sum()))
            out[users] = part
        return out

    def _refresh(self, matrix: sp.csr_matrix) -> None:
        """Recompute item and user vectors from the network (eval mode)."""
        import torch
        import torch.nn.functional as F

        assert self.text_vectors is not None
        net = self.net
        was = net.training
        net.eval()
        with torch.no_grad():
            text = torch.from_numpy(self.text_vectors)
            all_items = np.arange(len(self.text_vectors))
            items = self._tower(net.items, text, all_items, np.random.default_rng(0))
            self.item_vectors = F.normalize(items, dim=-1).numpy()
            coo = matrix.tocoo()
            self.user_vectors = self._users(coo.row, coo.col, matrix.shape[0]).numpy()
        net.train(was)

    def fitted_params(self) -> dict[str, Any]:
        return {"epochs": self.best_epoch} if self.best_epoch else {}

    # -- scoring -------------------------------------------------------------------------
    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        if self.user_vectors is None or self.item_vectors is None:
            raise NotFittedError(f"model '{self.name}' is not fitted; call fit() or load()")
        return np.asarray(self.user_vectors[user_idx] @ self.item_vectors.T, dtype=np.float32)

    def recommend_for(
        self,
        history: Sequence[str] = (),
        text: str | None = None,
        request: str | None = None,
        k: int = 10,
        candidates: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Top-k for someone given only a history, their own text and/or a typed request.

        Texts are embedded by the encoder and enter the history mean as one item each.
        The history items are excluded. Returns ``item_id, rank, score``.
        """
        _, imap, _ = self._check()
        assert self.item_vectors is not None
        hist_idx = imap.index(history, "item") if history else np.empty(0, dtype=np.int64)
        texts = [t for t in (text, request) if t]
        if not len(hist_idx) and not texts:
            raise InputError("no interest signal: give history, text or a request")
        extra = None
        if texts:
            vecs = np.asarray(self.encoder().encode_queries(texts), dtype=np.float32)
            extra = vecs.sum(axis=0, keepdims=True)
        rows = np.zeros(len(hist_idx), dtype=np.int64)
        user = self._users(rows, hist_idx, 1, extra_text=extra, n_extra=len(texts)).numpy()
        return ranked_row(imap, user @ self.item_vectors.T, k, hist_idx, candidates)

    def similar_items(self, item_id: str, k: int = 10) -> pd.DataFrame:
        """Items whose candidate-tower vectors are nearest to ``item_id``'s (itself excluded)."""
        _, imap, _ = self._check()
        assert self.item_vectors is not None
        return similar_by_vectors(imap, self.item_vectors, item_id, k)

    def add_items(self, items: pd.DataFrame) -> list[str]:
        """Embed and add (or replace) catalog items from their text; no retraining.

        New and replaced items are scored from text alone (their ID vectors are not used).
        Returns the IDs added or replaced.
        """
        import torch
        import torch.nn.functional as F

        assert self.text_vectors is not None and self.warm is not None
        assert self.item_vectors is not None
        table = new_items_table(items)
        vecs = self.embed_table(table)
        grown = grow_catalog(self, table)
        self.text_vectors = place_rows(self.text_vectors, grown, vecs)
        self.warm = place_rows(self.warm, grown, np.zeros(len(vecs), dtype=bool))
        with torch.no_grad():
            out = F.normalize(self.net.items.text(torch.from_numpy(vecs)), dim=-1).numpy()
        self.item_vectors = place_rows(self.item_vectors, grown, out)
        return list(table.index)

    # -- persistence ---------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        if self.net is None or self.text_vectors is None:
            return {}
        assert self.warm is not None and self.user_vectors is not None
        assert self.item_vectors is not None
        net = {f"net_{k.replace('.', '_')}": v.numpy() for k, v in self.net.state_dict().items()}
        return {
            **net,
            "text_vectors": self.text_vectors,
            "warm": self.warm,
            "item_vectors": self.item_vectors,
            "user_vectors": self.user_vectors,
            "n_ids": np.array(self._n_ids()),
            "best_epoch": np.array(self.best_epoch),
        }

    def _save_files(self, out: Path) -> None:
        if (
            self.encoder_dir is not None
            and self.encoder_dir.resolve() != (out / ENCODER_DIR).resolve()
        ):
            shutil.rmtree(out / ENCODER_DIR, ignore_errors=True)
            shutil.copytree(self.encoder_dir, out / ENCODER_DIR)

    def _load_files(self, src: Path) -> None:
        if (src / ENCODER_DIR).is_dir():
            self.encoder_dir = src / ENCODER_DIR

    def _n_ids(self) -> int:
        ids = self.net.items.ids
        return int(ids.num_embeddings) if ids is not None else 0

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        import torch

        self.text_vectors = state["text_vectors"]
        self.warm = state["warm"].astype(bool)
        net = _net_class()(self.text_vectors.shape[1], int(state["n_ids"]), self.config)
        net.load_state_dict(
            {k: torch.from_numpy(state[f"net_{k.replace('.', '_')}"]) for k in net.state_dict()}
        )
        self.net = net.eval()
        self.item_vectors = state["item_vectors"]
        self.user_vectors = state["user_vectors"]
        self.best_epoch = int(state["best_epoch"])
