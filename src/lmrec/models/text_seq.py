"""text-seq: SASRec over item text vectors, so items it never trained on can be scored.

UniSRec's idea (Hou et al., KDD 2022): a frozen language model embeds each item's catalog
text once; a small trained adapter maps those vectors into the Transformer's space, on the
input side and as the output item embeddings. The adapter is UniSRec's parametric whitening
``(x - b) W`` mixed by a softmax gate over experts (``adapter="moe"``), or ``Linear`` plus
``LayerNorm`` (``adapter="linear"``). Scores are cosine similarities over a temperature, as in
UniSRec's fine-tuning (``temperature=None``: SASRec's plain dot product).

With ``item_ids`` an item-ID embedding is added to the adapted text vector of every item that
had training interactions; other items (cold at fit time, or added later by `add_items`) have
no ID part and are scored from their text alone. Everything else (blocks, training windows,
early stopping on validation NDCG@10, `with_history`, persistence) is `SASRec`'s.

The text vectors are part of the saved state, so a loaded model scores without the encoder;
only `add_items` needs it.

Defaults were chosen on ML-100K leave-one-out validation NDCG@10 (SASRec's other defaults,
patience 5, at most 40 epochs): the linear adapter with item IDs scored 0.1219; the moe adapter
0.1203 with IDs (either temperature 0.07 or a dot product) and 0.1109 without; ID-only SASRec
reached 0.1275 (patience 10), so on dense data the text buys cold-item reach, not accuracy.
UniSRec's noisy gating is left out of the moe adapter.
"""

from __future__ import annotations

import copy
import functools
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field

from lmrec.data.item_text import ItemTextConfig
from lmrec.data.schema import Dataset
from lmrec.models.base import ModelConfig, NotFittedError, register
from lmrec.models.catalog_text import (
    TextItems,
    grow_catalog,
    new_items_table,
    similar_by_vectors,
)
from lmrec.models.sasrec import SASRec, SASRecConfig, _net_class, _state_name

if TYPE_CHECKING:
    import torch


class TextSeqConfig(SASRecConfig):
    """Configuration of `TextSeq`: SASRec's, plus the text encoder and the adapter."""

    encoder: str = Field("minilm", description="Encoder spec (see lmrec.encoders.load_encoder).")
    item_text: ItemTextConfig = Field(default_factory=ItemTextConfig, description="Item text.")
    encode_batch_size: int = Field(64, gt=0, description="Texts per encoder batch.")
    adapter: Literal["moe", "linear"] = Field(
        "linear", description="linear: Linear + LayerNorm; moe: UniSRec's whitening experts."
    )
    n_experts: int = Field(8, gt=0, description="Whitening experts of the moe adapter.")
    adapter_dropout: float = Field(0.2, ge=0, lt=1, description="Dropout on the text vectors.")
    item_ids: bool = Field(
        True, description="Add an ID embedding to items with training interactions."
    )
    temperature: float | None = Field(
        0.07, gt=0, description="Cosine scores over this temperature (None: dot product)."
    )


@functools.cache
def _text_net_class() -> Any:
    """SASRec's network with a text adapter as its item embedding (torch imported on use)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class _TextItems(nn.Module):
        """Item vectors from frozen text vectors (row ``n_items`` of each buffer is padding).

        Buffers: ``vectors`` ``(n_items + 1, t)``; with an ID embedding, ``id_index``
        ``(n_items + 1,)`` gives each item's ID row, its padding row (zeros) if it has none.
        """

        vectors: torch.Tensor
        id_index: torch.Tensor

        def __init__(
            self, vectors: torch.Tensor, id_index: torch.Tensor | None, c: TextSeqConfig
        ) -> None:
            super().__init__()
            t, d = vectors.shape[1], c.hidden_size
            self.register_buffer("vectors", vectors)
            self.kind, self.n_exp = c.adapter, c.n_experts
            self.drop = nn.Dropout(c.adapter_dropout)
            if c.adapter == "moe":
                # the experts' W side by side: one matmul instead of n_experts
                self.proj = nn.Linear(t, self.n_exp * d, bias=False)
                self.bias = nn.Parameter(torch.zeros(self.n_exp, t))
                self.gate = nn.Parameter(torch.zeros(t, self.n_exp))  # uniform mix at first
            else:
                self.proj = nn.Linear(t, d)
                self.norm = nn.LayerNorm(d, eps=1e-12)
            self.ids: nn.Embedding | None = None
            if id_index is not None:
                self.register_buffer("id_index", id_index)
                n_ids = int(id_index[-1])  # the padding row is the last one
                self.ids = nn.Embedding(n_ids + 1, d, padding_idx=n_ids)

        def reset(self) -> None:
            """Zero the ID padding row (`_Net` gave every embedding row random values)."""
            if self.ids is not None:
                with torch.no_grad():
                    self.ids.weight[self.ids.padding_idx].zero_()

        def _adapt(self, x: torch.Tensor) -> torch.Tensor:
            if self.kind == "linear":
                return self.norm(self.proj(self.drop(x)))
            y = self.proj(self.drop(x)).unflatten(-1, (self.n_exp, -1))  # (..., n_exp, d)
            w = self.proj.weight.view(self.n_exp, -1, x.shape[-1])  # (n_exp, d, t)
            y = y - torch.einsum("edt,et->ed", w, self.bias)  # (x - b_e) W_e
            gates = F.softmax(x @ self.gate, dim=-1)
            return (gates.unsqueeze(-1) * y).sum(-2)

        def _embed(self, idx: torch.Tensor) -> torch.Tensor:
            out = self._adapt(self.vectors[idx])
            if self.ids is not None:
                out = out + self.ids(self.id_index[idx])
            return out

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            n = self.vectors.shape[0]
            if idx.numel() > n:  # adapting the catalog once is cheaper than every position
                return self._embed(torch.arange(n, device=idx.device))[idx]
            return self._embed(idx)

        def weights(self) -> torch.Tensor:
            return self._embed(torch.arange(self.vectors.shape[0] - 1, device=self.vectors.device))

    class _TextNet(_net_class()):  # type: ignore[misc]
        """SASRec's blocks over `_TextItems`; outputs scaled so that dots are cosine / T."""

        def __init__(
            self, vectors: np.ndarray, id_index: np.ndarray | None, c: TextSeqConfig
        ) -> None:
            ids = torch.from_numpy(id_index) if id_index is not None else None
            item = _TextItems(torch.from_numpy(vectors), ids, c)
            super().__init__(len(vectors) - 1, c, item)
            item.reset()
            # h.w / T == (h / sqrt T).(w / sqrt T): SASRec's loss and scoring stay as they are
            self.scale = None if c.temperature is None else c.temperature**-0.5

        def _out(self, x: torch.Tensor) -> torch.Tensor:
            return x if self.scale is None else F.normalize(x, dim=-1) * self.scale

        def forward(self, seq: torch.Tensor) -> torch.Tensor:
            return self._out(super().forward(seq))

        def item_weights(self) -> torch.Tensor:
            return self._out(super().item_weights())

    return _TextNet


def _padded(vectors: np.ndarray, id_rows: np.ndarray | None) -> tuple[np.ndarray, Any]:
    """Buffers for `_TextItems`: a zero padding vector, and padding's ID row (the last) last."""
    vec = np.vstack([vectors, np.zeros((1, vectors.shape[1]), np.float32)]).astype(np.float32)
    if id_rows is None:
        return vec, None
    pad = int(id_rows.max(initial=-1)) + 1
    return vec, np.append(np.where(id_rows >= 0, id_rows, pad), pad).astype(np.int64)


@register
class TextSeq(TextItems, SASRec):
    """SASRec whose item embeddings are adapted text vectors; scores cold and new items.

    Fit, early stopping and ``with_history`` are as `SASRec`'s. `add_items` embeds new or
    changed items and makes them recommendable without retraining; `similar_items` ranks
    items by the cosine of their output embeddings.
    """

    name = "text-seq"
    Config = TextSeqConfig
    search_space: ClassVar[dict[str, list[Any]]] = {
        "hidden_dropout": [0.2, 0.5],
        "learning_rate": [0.001, 0.002],
    }
    config: TextSeqConfig

    def __init__(self, config: ModelConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        # padded text vectors and ID rows for the next `_new_net` (kept only until it runs)
        self._net_init: tuple[np.ndarray, np.ndarray | None] | None = None

    # -- SASRec hooks --------------------------------------------------------------------
    def _fit(self, matrix: sp.csr_matrix, dataset: Dataset) -> None:
        vectors = self.embed_items(dataset)
        id_rows = None
        if self.config.item_ids:
            trained = np.diff(matrix.tocsc().indptr) > 0
            id_rows = np.where(trained, np.cumsum(trained) - 1, -1)
        self._net_init = _padded(vectors, id_rows)
        try:
            super()._fit(matrix, dataset)
        finally:
            self._net_init = None

    def _new_net(self) -> Any:
        if self._net_init is None:
            raise NotFittedError(f"model '{self.name}' has no item text vectors")
        return _text_net_class()(*self._net_init, self.config)

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        ids = state.get(_state_name("item.id_index"))
        self._net_init = (state[_state_name("item.vectors")], ids)
        try:
            super()._set_state(state)
        finally:
            self._net_init = None

    def _require_net(self) -> Any:
        if self.net is None or self.sequences is None:
            raise NotFittedError(f"model '{self.name}' is not fitted; call fit() or load()")
        return self.net

    # -- no retraining needed ------------------------------------------------------------
    def add_items(self, items: pd.DataFrame) -> list[str]:
        """Embed and add (or replace the text of) catalog items; recommendable at once.

        New items have no ID embedding, so they are scored from their text alone; replaced
        items keep theirs.

        Args:
            items: Rows indexed by ``item_id`` (or with an ``item_id`` column) holding the
                same kind of fields as the catalog (title, genres, description...).

        Returns:
            The IDs added or replaced.
        """
        import torch

        assert self.sequences is not None
        table = new_items_table(items)
        vectors = self.embed_table(table)
        # copies made by `with_history` share the network; they keep the catalog they had
        net = copy.deepcopy(self._require_net())
        mod, n = net.item, net.n_items
        grown = grow_catalog(self, table)
        idx, old = grown.idx, grown.old
        n_new = int((~old).sum())
        with torch.no_grad():
            vec = mod.vectors[:n].clone()
            vec[torch.from_numpy(idx[old])] = torch.from_numpy(vectors[old]).to(vec)
            pad = torch.zeros(1, vec.shape[1], dtype=vec.dtype, device=vec.device)
            mod.vectors = torch.cat([vec, torch.from_numpy(vectors[~old]).to(vec), pad])
            if mod.ids is not None:
                no_id = torch.full((n_new + 1,), mod.ids.padding_idx).to(mod.id_index)
                mod.id_index = torch.cat([mod.id_index[:n], no_id])
        net.n_items = n + n_new
        self.net = net
        # the padding index is the item count, so it moves past the appended items
        self.sequences = np.where(self.sequences == n, net.n_items, self.sequences)
        return list(table.index)

    def similar_items(self, item_id: str, k: int = 10) -> pd.DataFrame:
        """Items whose output embeddings are nearest (cosine) to ``item_id``'s, itself excluded.

        Returns ``item_id, rank, score``.
        """
        import torch
        import torch.nn.functional as F

        _, imap, _ = self._check()
        net = self._require_net()
        was_training = net.training
        net.eval()
        try:
            with torch.no_grad():
                w = F.normalize(net.item_weights(), dim=-1).float().cpu().numpy()
        finally:
            net.train(was_training)
        return similar_by_vectors(imap, w, item_id, k)
