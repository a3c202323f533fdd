"""Approximate cosine search on faiss-cpu (HNSW or IVF-Flat), behind `VectorIndex`.

Default: IVF-Flat with nlist ~ 4 sqrt(n) and nprobe=16. On 1M x 384 clustered vectors
(benchmarks/RESULTS.md, bench_index.py) it kept recall@10 1.000 at 74x the exact QPS (nprobe=8:
0.998 at 146x), while faiss's HNSW stayed below 0.92 recall at every efSearch tried.

Bookkeeping: faiss numbers vectors in the order they are added ("labels"); `_label_slot` maps
them to slots of the vector store. Replacing or deleting an ID kills its label (a tombstone,
skipped inside faiss with an ID-selector bitmap). New and replaced vectors go into faiss in one
``add`` at the next search (or `rebuild` / `save`). When dead labels, or for HNSW labels added
since the last build, exceed ``rebuild_share`` of the index, the next search rebuilds it
instead: HNSW in faiss cannot remove vectors, and (measured with faiss 1.15.1, 200k x 384)
vectors added to a built HNSW graph are found less well: recall@10 at efSearch=32 fell from
0.92 to 0.91 / 0.85 / 0.79 when the last 10% / 20% / 50% came in a later ``add``.

Exclusions: faiss is first asked for ``k`` plus the largest exclusion count (at most ``4k``)
neighbours; queries still short of ``k`` allowed results ask again with twice as many, up to
`MAX_FETCH`; queries faiss cannot serve (too few reachable, e.g. IVF lists exhausted) are
answered by exact search, so results are only short of ``k`` when too few candidates remain.
Small ``allow`` sets (up to ``exact_below`` IDs or `EXACT_SHARE` of the index) are searched
exactly; larger ones filter inside faiss with a selector.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np

from lmrec.errors import ConfigError, InputError
from lmrec.index.base import VectorIndex
from lmrec.index.exact import exact_search

Kind = Literal["hnsw", "ivf"]
FAISS_FILE = "faiss.index"
LABELS_FILE = "labels.npy"
STATE_FILE = "ann.json"
#: Parameters per kind; ``nlist=None`` means about 4 sqrt(n), a power of two.
DEFAULTS: dict[str, dict[str, int | None]] = {
    "hnsw": {"m": 32, "ef_construction": 40, "ef_search": 64},
    "ivf": {"nlist": None, "nprobe": 16, "train_size": None, "train_iters": 10},
}
#: Parameters that `AnnIndex.set_search_params` may change without a rebuild.
SEARCH_PARAMS = {"hnsw": ("ef_search",), "ivf": ("nprobe",)}
#: Most neighbours asked from faiss per query before falling back to exact search.
MAX_FETCH = 2048
#: ``allow`` sets up to this share of the index are searched exactly.
EXACT_SHARE = 0.1


class AnnIndex(VectorIndex):
    """Approximate cosine search with faiss (inner product on normalised vectors).

    Args:
        dim: Dimension of every vector.
        kind: ``"ivf"`` (``IndexIVFFlat``, the default) or ``"hnsw"`` (``IndexHNSWFlat``).
        threads: faiss OpenMP threads, set (process-wide) before each build and search.
        rebuild_share: Share of faiss's labels that may be dead (deleted or replaced) or, for
            HNSW, added since the last build, before the next search rebuilds it.
        exact_below: ``allow`` sets up to this size are searched exactly.
        **params: hnsw: ``m``, ``ef_construction``, ``ef_search``; ivf: ``nlist``, ``nprobe``,
            ``train_size`` (default ``64 * nlist``), ``train_iters`` (k-means iterations).
    """

    index_type = "ann"

    def __init__(
        self,
        dim: int,
        kind: Kind = "ivf",
        *,
        threads: int = 2,
        rebuild_share: float = 0.1,
        exact_below: int = 50_000,
        **params: int | None,
    ) -> None:
        super().__init__(dim)
        if kind not in DEFAULTS:
            raise ConfigError(f"kind must be 'hnsw' or 'ivf', got {kind!r}")
        unknown = sorted(set(params) - set(DEFAULTS[kind]))
        if unknown:
            known = list(DEFAULTS[kind])
            raise ConfigError(f"unknown {kind} parameter(s) {unknown}; known: {known}")
        self.kind: Kind = kind
        self.params: dict[str, int | None] = {**DEFAULTS[kind], **params}
        for name, value in self.params.items():
            if value is not None or name not in ("nlist", "train_size"):
                _check_positive(name, value)
        self.threads = _check_positive("threads", threads)
        self.exact_below = _check_positive("exact_below", exact_below, minimum=0)
        if not isinstance(rebuild_share, int | float) or not 0 < rebuild_share <= 1:
            raise ConfigError(f"rebuild_share must be in (0, 1], got {rebuild_share!r}")
        self.rebuild_share = float(rebuild_share)
        self._faiss: Any = None
        self._label_slot = np.empty(0, dtype=np.int64)  # label -> slot, -1 if dead
        self._slot_label = np.empty(0, dtype=np.int64)  # slot -> label, -1 if not in faiss
        self._n_labels = 0
        self._n_built = 0  # labels added by the last rebuild
        self._n_dead = 0
        self._dirty = False  # live slots not yet in faiss

    def set_search_params(self, **params: int) -> None:
        """Change search-time parameters (hnsw: ``ef_search``; ivf: ``nprobe``)."""
        for name, value in params.items():
            if name not in SEARCH_PARAMS[self.kind]:
                raise ConfigError(f"{name!r} is not a search parameter of {self.kind}")
            self.params[name] = _check_positive(name, value)

    @property
    def nbytes(self) -> int:
        """Approximate bytes held: the vector store plus faiss's structures."""
        extra = self._label_slot.nbytes + self._slot_label.nbytes
        idx = self._faiss
        if idx is not None and self.kind == "hnsw":
            h = idx.hnsw
            extra += idx.ntotal * self.dim * 4 + 4 * (h.neighbors.size() + h.levels.size())
            extra += 8 * h.offsets.size()
        elif idx is not None:
            extra += idx.ntotal * (idx.code_size + 8) + idx.nlist * self.dim * 4
        return super().nbytes + int(extra)

    def rebuild(self) -> None:
        """Rebuild the faiss index from the live vectors (drops tombstones; IVF retrains)."""
        faiss.omp_set_num_threads(self.threads)
        live = np.flatnonzero(self._live[: self._n_slots])
        self._faiss, self._n_labels, self._n_dead, self._dirty = None, 0, 0, False
        self._label_slot = np.empty(0, dtype=np.int64)
        self._slot_label = np.full(self._n_slots, -1, dtype=np.int64)
        if not len(live):
            return
        index: Any
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, self._int("m"), faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = self._int("ef_construction")
        else:
            nlist = self._nlist_for(len(live))
            index = faiss.IndexIVFFlat(
                faiss.IndexFlatIP(self.dim), self.dim, nlist, faiss.METRIC_INNER_PRODUCT
            )
            index.cp.niter = self.params["train_iters"]
            size = min(len(live), self.params["train_size"] or 64 * nlist)
            sample = np.sort(np.random.default_rng(0).choice(live, size, replace=False))
            index.train(self._vecs[sample])
        self._faiss = index
        self._add(live)
        self._n_built = self._n_labels

    # -- hooks ---------------------------------------------------------------------------------
    def _after_upsert(self, replaced: np.ndarray, new_slots: np.ndarray) -> None:
        self._slot_label = _grow(self._slot_label, self._n_slots)
        self._kill(replaced)
        self._dirty = self._dirty or bool(len(replaced) or len(new_slots))

    def _after_delete(self, slots: np.ndarray) -> None:
        self._kill(slots)

    def _after_compact(self, old_to_new: np.ndarray) -> None:
        ls = self._label_slot[: self._n_labels]
        alive = ls >= 0
        ls[alive] = old_to_new[ls[alive]]
        keep = np.flatnonzero(old_to_new >= 0)
        self._slot_label[: len(keep)] = self._slot_label[keep]
        self._slot_label[len(keep) : len(old_to_new)] = -1

    def _before_save(self) -> None:
        self._sync()

    def _save_extra(self, out: Path) -> None:
        if self._faiss is None:
            (out / FAISS_FILE).unlink(missing_ok=True)
            return
        faiss.write_index(self._faiss, str(out / FAISS_FILE))
        np.save(out / LABELS_FILE, self._label_slot[: self._n_labels], allow_pickle=False)
        (out / STATE_FILE).write_text(json.dumps({"n_built": self._n_built}))

    def _load_extra(self, src: Path) -> None:
        self._slot_label = np.full(self._n_slots, -1, dtype=np.int64)
        if not (src / FAISS_FILE).is_file():
            self._dirty = len(self) > 0
            return
        self._faiss = faiss.read_index(str(src / FAISS_FILE))
        ls = np.load(src / LABELS_FILE, allow_pickle=False).astype(np.int64)
        if len(ls) != self._faiss.ntotal or (len(ls) and ls.max() >= self._n_slots):
            raise InputError(f"{LABELS_FILE} does not match {FAISS_FILE}", path=src)
        self._label_slot, self._n_labels = ls, len(ls)
        self._n_built = int(json.loads((src / STATE_FILE).read_text())["n_built"])
        alive = np.flatnonzero(ls >= 0)
        self._slot_label[ls[alive]] = alive
        self._n_dead = len(ls) - len(alive)
        self._dirty = bool((self._slot_label < 0).any())

    def _config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "threads": self.threads,
            "rebuild_share": self.rebuild_share,
            "exact_below": self.exact_below,
            **self.params,
        }

    # -- search --------------------------------------------------------------------------------
    def _search_slots(
        self, q: np.ndarray, k: int, excl: list[np.ndarray] | None, cand: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if cand is not None and max(self.exact_below, EXACT_SHARE * len(self)) >= len(cand):
            return exact_search(self._vecs, q, k, rows=cand, excl=excl)
        self._sync()
        n_ex = np.array([len(e) for e in excl]) if excl else np.zeros(len(q), dtype=np.int64)
        target = np.minimum(k, (len(self) if cand is None else len(cand)) - n_ex)
        mask = None
        if cand is not None:
            mask = np.zeros(self._n_labels, dtype=bool)
            mask[self._slot_label[cand]] = True
        elif self._n_dead:
            mask = self._label_slot[: self._n_labels] >= 0
        sel = bitmap = None  # the bitmap must stay alive while faiss reads it
        if mask is not None:
            bitmap = np.packbits(mask, bitorder="little")
            sel = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        width = self._n_slots
        ex_keys = np.concatenate([i * width + e for i, e in enumerate(excl)]) if excl else None
        fetch = min(self._n_labels, k + min(int(n_ex.max()), 4 * k))
        out_s = np.full((len(q), k), -1, dtype=np.int64)
        out_v = np.full((len(q), k), -np.inf, dtype=np.float32)
        todo = np.arange(len(q))
        while len(todo):
            scores, labels = self._faiss_search(q[todo], fetch, sel)
            slots = np.where(labels >= 0, self._label_slot[np.maximum(labels, 0)], -1)
            ok = slots >= 0
            if ex_keys is not None:
                ok &= ~np.isin(todo[:, None] * width + slots, ex_keys)
            rank = np.cumsum(ok, axis=1) - 1
            keep = ok & (rank < k)
            r, c = np.nonzero(keep)
            out_s[todo], out_v[todo] = -1, -np.inf
            out_s[todo[r], rank[r, c]] = slots[r, c]
            out_v[todo[r], rank[r, c]] = scores[r, c]
            short = keep.sum(axis=1) < target[todo]
            exhausted = (labels >= 0).sum(axis=1) < fetch
            if fetch >= min(self._n_labels, MAX_FETCH):
                exhausted[:] = True
            fall = todo[short & exhausted]
            if len(fall):
                n = self._n_slots
                dead = np.flatnonzero(~self._live[:n]) if len(self) < n else None
                sub = [excl[i] for i in fall] if excl else None
                out_s[fall], out_v[fall] = exact_search(
                    self._vecs[:n], q[fall], k, rows=cand, invalid=dead, excl=sub
                )
            todo, fetch = todo[short & ~exhausted], min(2 * fetch, self._n_labels)
        return out_s, out_v

    def _faiss_search(self, x: np.ndarray, fetch: int, sel: Any) -> tuple[np.ndarray, np.ndarray]:
        faiss.omp_set_num_threads(self.threads)
        if self.kind == "hnsw":
            params: Any = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
            params.efSearch = max(self._int("ef_search"), fetch)
        else:
            params = faiss.SearchParametersIVF()
            params.nprobe = min(self._int("nprobe"), self._faiss.nlist)
        if sel is not None:
            params.sel = sel
        scores, labels = self._faiss.search(x, fetch, params=params)
        return scores, labels

    # -- internals -----------------------------------------------------------------------------
    def _sync(self) -> None:
        """Bring faiss up to date: rebuild when stale, else add the pending vectors."""
        if self._faiss is None:
            if len(self):
                self.rebuild()
            return
        n = self._n_slots
        pending = np.empty(0, dtype=np.int64)
        if self._dirty:
            pending = np.flatnonzero(self._live[:n] & (self._slot_label[:n] < 0))
        churn = self._n_dead
        if self.kind == "hnsw":  # faiss's HNSW serves vectors added after a build worse
            churn += self._n_labels - self._n_built + len(pending)
        stale = churn > self.rebuild_share * (self._n_labels + len(pending))
        if self.kind == "ivf":
            stale = stale or self._nlist_for(len(self)) >= 2 * self._faiss.nlist
        if stale:
            self.rebuild()
        elif len(pending):
            self._add(pending)
        self._dirty = False

    def _add(self, slots: np.ndarray) -> None:
        faiss.omp_set_num_threads(self.threads)
        if not len(slots):
            return
        # One add() call: faiss's HNSW builds a much worse graph from several large add()s.
        # Sorted slots without gaps are a view, not a copy.
        contiguous = slots[-1] - slots[0] + 1 == len(slots)
        self._faiss.add(self._vecs[slots[0] : slots[-1] + 1] if contiguous else self._vecs[slots])
        labels = np.arange(self._n_labels, self._n_labels + len(slots), dtype=np.int64)
        self._label_slot = _grow(self._label_slot, self._n_labels + len(slots))
        self._label_slot[labels] = slots
        self._slot_label[slots] = labels
        self._n_labels += len(slots)
        assert self._faiss.ntotal == self._n_labels

    def _kill(self, slots: np.ndarray) -> None:
        labels = self._slot_label[slots]
        labels = labels[labels >= 0]
        self._label_slot[labels] = -1
        self._n_dead += len(labels)
        self._slot_label[slots] = -1

    def _int(self, name: str) -> int:
        return int(self.params[name] or 0)

    def _nlist_for(self, n: int) -> int:
        nlist = self.params["nlist"] or 2 ** round(np.log2(4 * np.sqrt(max(n, 1))))
        return max(1, min(int(nlist), n // 39))


def _grow(arr: np.ndarray, n: int) -> np.ndarray:
    """``arr`` with room for ``n`` entries (capacity doubles; new entries are -1)."""
    if len(arr) >= n:
        return arr
    out = np.full(max(n, 2 * len(arr)), -1, dtype=arr.dtype)
    out[: len(arr)] = arr
    return out


def _check_positive(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
