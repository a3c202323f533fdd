"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018), on item IDs.

A causal Transformer encoder reads a user's last ``max_len`` items; the hidden state after
the most recent one, dotted with every item embedding, scores the next item. The layers follow
RecBole 1.2.1's ``SASRec`` (post-LayerNorm blocks, GELU feed-forward, separate hidden and
attention dropout, normal(0, 0.02) initialisation, item embeddings shared with the output).

Training differs from RecBole in how examples are batched, not in what is learnt: RecBole
makes one example per prefix of each user's sequence (every item predicts its successor from
up to ``max_len`` earlier items); here a window of ``max_len`` items is encoded once and the
loss is taken at several positions under the causal mask, as in the paper. Windows overlap
(``stride``) so that each target still sees at least ``max_len - stride`` earlier items (see
`training_windows`); on ML-100K, non-overlapping windows (``stride = max_len``) lost about
0.015 test NDCG@10. Sequences are left-padded, so the most recent item is always in the
last column.

The model scores from the sequences it was fitted on. `SASRec.with_history` swaps them for
longer ones (e.g. train + valid before testing) without retraining.
"""

from __future__ import annotations

import copy
import functools
import re
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

import numpy as np
import scipy.sparse as sp
from pydantic import Field, model_validator

from lmrec.data.schema import Dataset
from lmrec.models.base import ModelConfig, NotFittedError, Recommender, register
from lmrec.models.early_stopping import EarlyStopping, validation_ndcg
from lmrec.models.sequences import chronological, last_items, training_windows
from lmrec.models.torch_utils import TorchAdam, seeded_training

if TYPE_CHECKING:
    import torch

#: Additive attention mask value for hidden keys (RecBole's; finite, so no row is all -inf).
MASKED = -10000.0


class SASRecConfig(ModelConfig):
    """Configuration of `SASRec` (defaults: RecBole 1.2.1's SASRec and overall settings)."""

    hidden_size: int = Field(64, gt=0, description="Item embedding and hidden state size.")
    n_layers: int = Field(2, gt=0, description="Transformer blocks.")
    n_heads: int = Field(2, gt=0, description="Attention heads (must divide hidden_size).")
    inner_size: int = Field(256, gt=0, description="Feed-forward inner size.")
    hidden_dropout: float = Field(0.5, ge=0, lt=1, description="Dropout on hidden states.")
    attn_dropout: float = Field(0.5, ge=0, lt=1, description="Dropout on attention weights.")
    max_len: int = Field(50, gt=0, description="Most recent items a user is represented by.")
    loss: Literal["ce", "bpr"] = Field(
        "ce", description="ce: softmax over all items; bpr: one uniform negative per target."
    )
    learning_rate: float = Field(0.001, gt=0, description="Adam step size.")
    weight_decay: float = Field(0.0, ge=0, description="Adam L2 penalty.")
    batch_size: int = Field(128, gt=0, description="Training windows (sequences) per step.")
    stride: int | None = Field(
        None,
        gt=0,
        description="Pairs between training windows; each target sees at least max_len - stride"
        " earlier items (None: max_len // 5).",
    )
    epochs: int = Field(200, gt=0, description="Passes over the data (the most, with valid).")
    eval_every: int = Field(1, gt=0, description="Epochs between validation checks.")
    patience: int = Field(10, gt=0, description="Checks without NDCG@10 gain before stopping.")
    seed: int = Field(2020, description="Seed for initialisation, shuffling and dropout.")
    num_threads: int = Field(0, ge=0, description="torch threads while fitting (0: as is).")
    device: str = Field("cpu", description="torch device, e.g. cpu or cuda.")

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> Self:
        if self.hidden_size % self.n_heads:
            raise ValueError(f"n_heads {self.n_heads} must divide hidden_size {self.hidden_size}")
        if self.stride is not None and self.stride > self.max_len:
            raise ValueError(f"stride {self.stride} must be at most max_len {self.max_len}")
        return self


@functools.cache
def _net_class() -> Any:
    """The network class, defined on first use so that importing lmrec does not import torch."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class _Block(nn.Module):
        """Post-LN Transformer block, as RecBole's ``TransformerLayer``."""

        def __init__(self, c: SASRecConfig) -> None:
            super().__init__()
            self.n_heads, self.attn_p = c.n_heads, c.attn_dropout
            self.qkv = nn.Linear(c.hidden_size, 3 * c.hidden_size)
            self.out = nn.Linear(c.hidden_size, c.hidden_size)
            self.ln1 = nn.LayerNorm(c.hidden_size, eps=1e-12)
            self.ff1 = nn.Linear(c.hidden_size, c.inner_size)
            self.ff2 = nn.Linear(c.inner_size, c.hidden_size)
            self.ln2 = nn.LayerNorm(c.hidden_size, eps=1e-12)
            self.drop = nn.Dropout(c.hidden_dropout)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            b, n, d = x.shape
            q, k, v = self.qkv(x).view(b, n, 3, self.n_heads, d // self.n_heads).unbind(2)
            att = F.scaled_dot_product_attention(
                q.transpose(1, 2),
                k.transpose(1, 2),
                v.transpose(1, 2),
                attn_mask=mask,
                dropout_p=self.attn_p if self.training else 0.0,
            )
            x = self.ln1(x + self.drop(self.out(att.transpose(1, 2).reshape(b, n, d))))
            return self.ln2(x + self.drop(self.ff2(F.gelu(self.ff1(x)))))

    class _Net(nn.Module):
        """Item and position embeddings, then the blocks; item index ``n_items`` is padding.

        ``item`` maps item indices (padding included) to ``hidden_size`` vectors; by default
        an ID embedding. Another module (e.g. over text vectors) must also provide
        ``weights()``, the vectors of items ``0..n_items-1``; it is initialised here like
        every other layer and may re-initialise itself afterwards.
        """

        def __init__(self, n_items: int, c: SASRecConfig, item: nn.Module | None = None) -> None:
            super().__init__()
            self.n_items = n_items
            self.item = (
                item
                if item is not None
                else nn.Embedding(n_items + 1, c.hidden_size, padding_idx=n_items)
            )
            self.pos = nn.Embedding(c.max_len, c.hidden_size)
            self.ln = nn.LayerNorm(c.hidden_size, eps=1e-12)
            self.drop = nn.Dropout(c.hidden_dropout)
            self.blocks = nn.ModuleList(_Block(c) for _ in range(c.n_layers))
            for m in self.modules():
                if isinstance(m, nn.Linear | nn.Embedding):
                    nn.init.normal_(m.weight, 0.0, 0.02)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.zeros_(m.bias)
            if isinstance(self.item, nn.Embedding):
                with torch.no_grad():
                    self.item.weight[n_items].zero_()

        def forward(self, seq: torch.Tensor) -> torch.Tensor:
            """Hidden states ``(b, len, d)`` of left-padded sequences ``(b, len)``."""
            n = seq.shape[1]
            pos = torch.arange(n, device=seq.device)
            x = self.drop(self.ln(self.item(seq) + self.pos(pos)[None]))
            allowed = torch.tril(torch.ones(n, n, dtype=torch.bool, device=seq.device))
            allowed = allowed[None] & (seq != self.n_items)[:, None, :]  # (b, query, key)
            mask = torch.zeros(allowed.shape, dtype=x.dtype, device=seq.device)
            mask = mask.masked_fill(~allowed, MASKED)[:, None]  # broadcast over heads
            for block in self.blocks:
                x = block(x, mask)
            return x

        def item_weights(self) -> torch.Tensor:
            """Output embeddings ``(n_items, d)``, shared with the input side."""
            if isinstance(self.item, nn.Embedding):
                return self.item.weight[: self.n_items]
            item: Any = self.item  # a pluggable module, whose ``weights`` torch cannot type
            return item.weights()

    return _Net


def _state_name(key: str) -> str:
    return "net_" + re.sub(r"\W", "_", key)


@register
class SASRec(Recommender):
    """Self-attentive sequential recommender over item IDs; needs interaction timestamps.

    ``fit(train, valid=valid)`` early-stops on validation NDCG@10, scoring from the training
    sequences; `fitted_params` reports the epoch count. Before testing under leave-one-out,
    call ``with_history(train_plus_valid)`` so the validation item is part of each user's
    history, as RecBole does.
    """

    name = "sasrec"
    Config = SASRecConfig
    search_space: ClassVar[dict[str, list[Any]]] = {
        "hidden_dropout": [0.2, 0.5],
        "learning_rate": [0.001, 0.002],
    }
    config: SASRecConfig

    def __init__(self, config: ModelConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.net: Any = None  # the network (`_net_class`), once fitted or loaded
        self.sequences: np.ndarray | None = None
        self.best_epoch = 0
        self.history: list[tuple[int, float]] = []

    # -- training ------------------------------------------------------------------------
    def _fit(self, matrix: sp.csr_matrix, dataset: Dataset) -> None:
        import torch

        assert self.users is not None and self.items is not None
        c = self.config
        n_items = len(self.items)
        indptr, seq = chronological(dataset, self.users, self.items)
        self.sequences = last_items(indptr, seq, c.max_len, n_items)
        stride = c.stride or max(1, c.max_len // 5)
        inputs, targets = training_windows(indptr, seq, c.max_len, n_items, stride)
        with seeded_training(c.num_threads, c.seed):
            self._train(
                torch.from_numpy(inputs), torch.from_numpy(targets), np.random.default_rng(c.seed)
            )

    def _train(self, inputs: torch.Tensor, targets: torch.Tensor, rng: np.random.Generator) -> None:
        import torch

        c = self.config
        dev = torch.device(c.device)
        net = self._new_net().to(dev)
        self.net = net
        opt = TorchAdam(list(net.parameters()), c.learning_rate, c.weight_decay)
        stopper = EarlyStopping(c.patience)
        best = copy.deepcopy(net.state_dict())
        for epoch in range(1, c.epochs + 1):
            net.train()
            order = torch.from_numpy(rng.permutation(len(inputs)))
            for start in range(0, len(order), c.batch_size):
                b = order[start : start + c.batch_size]
                loss = self._loss(net, inputs[b].to(dev), targets[b].to(dev), rng)
                opt.zero_grad()
                loss.backward()
                opt.step()
            if self.valid_matrix is not None and (epoch % c.eval_every == 0 or epoch == c.epochs):
                improved, stop = stopper.update(epoch, validation_ndcg(self, self.valid_matrix))
                if improved:
                    best = copy.deepcopy(net.state_dict())
                if stop:
                    break
        if self.valid_matrix is not None:
            net.load_state_dict(best)
            self.best_epoch, self.history = stopper.best_step, stopper.history
        net.eval()

    def _loss(
        self, net: Any, inputs: torch.Tensor, targets: torch.Tensor, rng: np.random.Generator
    ) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        keep = targets != net.n_items
        h = net(inputs)[keep]  # (n_targets, d)
        pos = targets[keep]
        weights = net.item_weights()
        if self.config.loss == "ce":
            return F.cross_entropy(h @ weights.T, pos)
        neg = torch.from_numpy(rng.integers(0, net.n_items - 1, size=len(pos))).to(pos.device)
        neg = neg + (neg >= pos).long()  # uniform over the other items
        x = (h * (weights[pos] - weights[neg])).sum(-1)
        return -F.logsigmoid(x).mean()

    def _new_net(self) -> Any:
        """A freshly initialised network for the fitted items (subclasses swap its item part)."""
        return _net_class()(len(self.items or []), self.config)

    def fitted_params(self) -> dict[str, Any]:
        return {"epochs": self.best_epoch} if self.best_epoch else {}

    # -- scoring -------------------------------------------------------------------------
    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        if self.net is None or self.sequences is None:
            raise NotFittedError(f"model '{self.name}' is not fitted; call fit() or load()")
        import torch

        net = self.net
        dev = next(net.parameters()).device
        was_training = net.training
        net.eval()
        try:
            with torch.no_grad():
                seq = torch.from_numpy(self.sequences[user_idx]).to(dev)
                h = net(seq)[:, -1]
                return (h @ net.item_weights().T).float().cpu().numpy()
        finally:
            net.train(was_training)

    def with_history(self, dataset: Dataset) -> Self:
        """A copy that scores from ``dataset``'s sequences, without retraining.

        The copy's per-user sequences and seen-item matrix come from ``dataset`` (e.g. train
        plus valid, to test under leave-one-out as RecBole does); the network is shared.
        Interactions with users or items the model does not know are ignored.
        """
        users, items, _ = self._check()
        if self.net is None:
            raise NotFittedError(f"model '{self.name}' is not fitted; call fit() or load()")
        indptr, seq = chronological(dataset, users, items)
        other = copy.copy(self)
        other.sequences = last_items(indptr, seq, self.config.max_len, len(items))
        other.seen = dataset.matrix(users, items)
        return other

    # -- persistence ---------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        if self.net is None or self.sequences is None:
            return {}
        state = {_state_name(k): v.detach().cpu().numpy() for k, v in self.net.state_dict().items()}
        return {**state, "sequences": self.sequences, "best_epoch": np.array(self.best_epoch)}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        import torch

        net = self._new_net()
        net.load_state_dict({k: torch.from_numpy(state[_state_name(k)]) for k in net.state_dict()})
        self.net = net.to(torch.device(self.config.device)).eval()
        self.sequences = state["sequences"].astype(np.int64)
        self.best_epoch = int(state["best_epoch"])
