"""`VectorIndex`: cosine nearest-neighbour search over string IDs, one interface for every kind.

Vectors are float32, L2-normalised on insert, so inner product is cosine similarity. The base
class keeps the vector store: one row ("slot") per ID in insertion order, deleted IDs leave dead
slots that are compacted away (order kept) once they exceed `COMPACT_SHARE` of the store.
Subclasses only implement `_search_slots`, working on slot numbers.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Sequence
from itertools import repeat
from pathlib import Path
from typing import Any, ClassVar, Self, cast

import numpy as np

from lmrec.errors import ConfigError, InputError, UnknownIdError

META_FILE = "index.json"
IDS_FILE = "ids.npy"
VECTORS_FILE = "vectors.npy"
FORMAT = "lmrec-vector-index"
FORMAT_VERSION = 1
#: Share of dead slots (deleted IDs) above which the vector store is compacted.
COMPACT_SHARE = 0.25

_REGISTRY: dict[str, type[VectorIndex]] = {}


class VectorIndex(ABC):
    """Cosine k-nearest-neighbour search over vectors keyed by string IDs.

    Args:
        dim: Dimension of every vector.
    """

    #: Name stored in saved indexes; subclasses set it and are registered under it.
    index_type: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("index_type"):
            _REGISTRY[cls.index_type] = cls

    def __init__(self, dim: int) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 1:
            raise ConfigError(f"dim must be a positive integer, got {dim!r}")
        self.dim = int(dim)
        self._vecs = np.empty((0, self.dim), dtype=np.float32)
        self._slot_ids = np.empty(0, dtype=object)
        self._live = np.empty(0, dtype=bool)
        self._n_slots = 0
        self._pos: dict[str, int] = {}

    # -- contents --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._pos)

    def __contains__(self, key: object) -> bool:
        return str(key) in self._pos

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, n={len(self)})"

    @property
    def ids(self) -> list[str]:
        """Current IDs, in insertion order (a replaced ID keeps its place)."""
        n = self._n_slots
        return cast(list[str], self._slot_ids[:n][self._live[:n]].tolist())

    @property
    def nbytes(self) -> int:
        """Approximate bytes held in arrays (vector store and any search structure)."""
        return int(self._vecs.nbytes + self._live.nbytes + 8 * len(self._slot_ids))

    def get(self, ids: Sequence[str]) -> np.ndarray:
        """The stored (normalised) vectors of ``ids``, shape ``(len(ids), dim)``."""
        return self._vecs[self._slots_of(_as_ids(ids))]

    def upsert(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Insert new IDs (appended) and replace the vectors of existing ones (kept in place).

        Raises:
            InputError: Duplicate IDs, a shape that is not ``(len(ids), dim)``, NaN/inf values,
                or a zero vector (the message names the ID).
        """
        keys = _as_ids(ids)
        if len(set(keys)) != len(keys):
            seen: set[str] = set()
            dup = [k for k in keys if k in seen or seen.add(k)]  # type: ignore[func-returns-value]
            raise InputError(f"duplicate ids in one upsert: {sorted(set(dup))[:5]}")
        vecs = self._check_matrix(vectors, "vectors", keys)
        old = np.fromiter((self._pos.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
        is_new = old < 0
        replaced = old[~is_new]
        self._vecs[replaced] = vecs[~is_new]
        start, n_new = self._n_slots, int(is_new.sum())
        self._reserve(start + n_new)
        new_slots = np.arange(start, start + n_new, dtype=np.int64)
        new_keys = [k for k, new in zip(keys, is_new, strict=True) if new]
        self._vecs[new_slots] = vecs[is_new]
        self._slot_ids[new_slots] = np.asarray(new_keys, dtype=object)
        self._live[new_slots] = True
        self._pos.update(zip(new_keys, range(start, start + n_new), strict=True))
        self._n_slots = start + n_new
        self._after_upsert(replaced, new_slots)

    def delete(self, ids: Sequence[str]) -> None:
        """Remove ``ids``.

        Raises:
            UnknownIdError: Some IDs are not in the index (nothing is removed then).
        """
        keys = list(dict.fromkeys(_as_ids(ids)))
        slots = self._slots_of(keys)
        self._live[slots] = False
        for k in keys:
            del self._pos[k]
        self._after_delete(slots)
        if self._n_slots - len(self) > COMPACT_SHARE * self._n_slots:
            self._compact()

    # -- search ----------------------------------------------------------------------------
    def search(
        self,
        queries: np.ndarray,
        k: int,
        exclude: Sequence[Collection[str]] | None = None,
        allow: Collection[str] | None = None,
    ) -> tuple[list[list[str]], np.ndarray]:
        """The ``k`` most cosine-similar IDs per query, best first.

        Args:
            queries: ``(n_queries, dim)`` array, or one ``(dim,)`` vector; normalised here.
            k: How many results per query (>= 1).
            exclude: Per query, IDs never to return (e.g. the user's seen items). IDs not in
                the index are ignored.
            allow: If given, only these IDs are candidates; IDs not in the index are ignored.

        Returns:
            Per query the result IDs (fewer than ``k`` only when fewer candidates remain), and
            a ``(n_queries, k)`` float32 array of their cosine scores, padded with ``-inf``.
        """
        q = self._check_matrix(queries, "queries")
        k = _check_k(k)
        cand = None
        if allow is not None:
            if isinstance(allow, str | bytes):
                raise InputError("allow must be a collection of IDs, not a single string")
            slots = self._lookup(allow)
            cand = np.unique(slots[slots >= 0])
        excl = self._exclusions(exclude, len(q), cand)
        n_cand = len(self) if cand is None else len(cand)
        if n_cand == 0 or len(q) == 0:
            slots = np.full((len(q), k), -1, dtype=np.int64)
            scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        else:
            slots, scores = self._search_slots(q, k, excl, cand)
        counts = (slots >= 0).sum(axis=1)
        if not counts.any():
            return [[] for _ in range(len(q))], scores
        names = self._slot_ids[np.maximum(slots, 0)]
        return [names[i, :c].tolist() for i, c in enumerate(counts)], scores

    def search_ids(
        self,
        query_ids: Sequence[str],
        k: int,
        exclude_self: bool = True,
        exclude: Sequence[Collection[str]] | None = None,
        allow: Collection[str] | None = None,
    ) -> tuple[list[list[str]], np.ndarray]:
        """Item-to-item search: `search` with the stored vectors of ``query_ids``.

        With ``exclude_self`` each query ID is left out of its own results.
        """
        keys = _as_ids(query_ids)
        queries = self.get(keys)
        if exclude is not None and len(exclude) != len(keys):
            raise InputError(f"exclude has {len(exclude)} entries for {len(keys)} query ids")
        if exclude_self:
            given = exclude if exclude is not None else [()] * len(keys)
            if any(isinstance(e, str | bytes) for e in given):
                raise InputError("each exclude entry must be a collection of IDs, not a string")
            exclude = [[key, *(e or ())] for key, e in zip(keys, given, strict=True)]
        return self.search(queries, k, exclude=exclude, allow=allow)

    @abstractmethod
    def _search_slots(
        self, q: np.ndarray, k: int, excl: list[np.ndarray] | None, cand: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k slots ``(n_q, k)`` (-1 padded, left-aligned) and scores (``-inf`` padded).

        ``q`` is normalised; ``excl[i]`` holds sorted live slots to skip for query i; ``cand``
        the sorted live slots allowed (None: all live slots). Never called with no candidates.
        """

    # -- persistence -----------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the index to directory ``path`` (created if needed): JSON, npy and, for ANN
        indexes, faiss's own index file. Compacts the store first."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        self._before_save()
        if self._n_slots != len(self):
            self._compact()
        n = self._n_slots
        ids = np.asarray(self._slot_ids[:n].tolist(), dtype=np.str_)
        np.save(out / IDS_FILE, ids, allow_pickle=False)
        np.save(out / VECTORS_FILE, self._vecs[:n], allow_pickle=False)
        self._save_extra(out)
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "type": self.index_type}
        meta |= {"dim": self.dim, "config": self._config()}
        (out / META_FILE).write_text(json.dumps(meta, indent=2))  # last: marks a whole save
        return out

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Load an index written by `save` (of this class or, on `VectorIndex`, any kind)."""
        src = Path(path)
        if not (src / META_FILE).is_file():
            raise InputError(f"not an lmrec vector index directory (no {META_FILE})", path=src)
        meta = json.loads((src / META_FILE).read_text())
        if meta.get("format") != FORMAT or meta.get("type") not in _REGISTRY:
            raise InputError(f"unknown index format or type in {META_FILE}", path=src)
        sub = _REGISTRY[meta["type"]]
        if not issubclass(sub, cls):
            raise ConfigError(f"{src} holds a '{sub.index_type}' index, not '{cls.index_type}'")
        index = sub(meta["dim"], **meta["config"])
        ids = np.load(src / IDS_FILE, allow_pickle=False)
        vecs = np.load(src / VECTORS_FILE, allow_pickle=False)
        if vecs.dtype != np.float32 or vecs.shape != (len(ids), index.dim):
            raise InputError(f"{VECTORS_FILE} does not match {IDS_FILE} and dim", path=src)
        index._reserve(len(ids))
        index._vecs[: len(ids)] = vecs
        index._slot_ids[: len(ids)] = np.asarray(ids.tolist(), dtype=object)
        index._live[: len(ids)] = True
        index._n_slots = len(ids)
        index._pos = {str(k): i for i, k in enumerate(ids.tolist())}
        index._load_extra(src)
        return cast(Self, index)

    # -- hooks for subclasses ----------------------------------------------------------------
    def _after_upsert(self, replaced: np.ndarray, new_slots: np.ndarray) -> None:  # noqa: B027
        """Called after ``replaced`` slots got new vectors and ``new_slots`` were appended."""

    def _after_delete(self, slots: np.ndarray) -> None:  # noqa: B027
        """Called after ``slots`` were marked dead."""

    def _after_compact(self, old_to_new: np.ndarray) -> None:  # noqa: B027
        """Called after compaction; ``old_to_new[s]`` is slot s's new number, -1 if dead."""

    def _before_save(self) -> None:  # noqa: B027
        """Called first in `save`."""

    def _save_extra(self, out: Path) -> None:  # noqa: B027
        """Write subclass files into ``out``."""

    def _load_extra(self, src: Path) -> None:  # noqa: B027
        """Read subclass files from ``src`` (the store is loaded already)."""

    def _config(self) -> dict[str, Any]:
        """Constructor keyword arguments (besides ``dim``) that recreate this index."""
        return {}

    # -- internals ---------------------------------------------------------------------------
    def _reserve(self, n: int) -> None:
        cap = len(self._live)
        if n <= cap:
            return
        cap = max(n, 2 * cap if cap else n, 16)
        vecs = np.empty((cap, self.dim), dtype=np.float32)
        vecs[: self._n_slots] = self._vecs[: self._n_slots]
        ids = np.full(cap, None, dtype=object)
        ids[: self._n_slots] = self._slot_ids[: self._n_slots]
        live = np.zeros(cap, dtype=bool)
        live[: self._n_slots] = self._live[: self._n_slots]
        self._vecs, self._slot_ids, self._live = vecs, ids, live

    def _compact(self) -> None:
        n = self._n_slots
        keep = np.flatnonzero(self._live[:n])
        old_to_new = np.full(n, -1, dtype=np.int64)
        old_to_new[keep] = np.arange(len(keep))
        m = len(keep)
        self._vecs[:m] = self._vecs[keep]
        self._slot_ids[:m] = self._slot_ids[keep]
        self._slot_ids[m:n] = None
        self._live[:m] = True
        self._live[m:n] = False
        self._n_slots = m
        self._pos = {k: i for i, k in enumerate(self._slot_ids[:m].tolist())}
        self._after_compact(old_to_new)

    def _lookup(self, keys: Iterable[object]) -> np.ndarray:
        """Slots of ``keys``, -1 for the ones not in the index."""
        names = [k if isinstance(k, str) else str(k) for k in keys]
        return np.fromiter(map(self._pos.get, names, repeat(-1)), dtype=np.int64, count=len(names))

    def _slots_of(self, keys: list[str]) -> np.ndarray:
        slots = self._lookup(keys)
        if (slots < 0).any():
            raise UnknownIdError("vector", [k for k, s in zip(keys, slots, strict=True) if s < 0])
        return slots

    def _exclusions(
        self, exclude: Sequence[Collection[str]] | None, n_q: int, cand: np.ndarray | None
    ) -> list[np.ndarray] | None:
        """Per query the sorted unique slots to skip (known IDs, within ``cand``), or None."""
        if exclude is None:
            return None
        if isinstance(exclude, str | bytes) or len(exclude) != n_q:
            raise InputError(f"exclude must hold one collection of IDs per query ({n_q})")
        flat: list[object] = []
        lens = np.zeros(n_q, dtype=np.int64)
        for i, ex in enumerate(exclude):
            if isinstance(ex, str | bytes):
                raise InputError(f"exclude[{i}] is a single string; pass a collection of IDs")
            if ex is not None:
                before = len(flat)
                flat.extend(ex)
                lens[i] = len(flat) - before
        slots = self._lookup(flat)
        ok = slots >= 0
        if cand is not None:
            ok &= np.isin(slots, cand)
        if not ok.any():
            return None
        width = self._n_slots
        keys = np.unique(np.repeat(np.arange(n_q), lens)[ok] * width + slots[ok])
        rows, slots = np.divmod(keys, width)
        return np.split(slots, np.searchsorted(rows, np.arange(1, n_q)))

    def _check_matrix(self, x: np.ndarray, what: str, keys: list[str] | None = None) -> np.ndarray:
        """Validate ``x`` (``(len(keys), dim)`` for vectors) and return it normalised, float32."""
        arr = np.asarray(x)
        if arr.dtype.kind not in "iuf":
            raise InputError(f"{what} must be a real numeric array, got dtype {arr.dtype}")
        if keys is None and arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise InputError(f"{what} must have shape (n, {self.dim}), got {arr.shape}")
        if keys is not None and len(arr) != len(keys):
            raise InputError(f"got {len(keys)} ids but {len(arr)} vectors")
        arr = arr.astype(np.float32, copy=True)
        norms = np.linalg.norm(arr, axis=1)
        odd = np.flatnonzero(~np.isfinite(norms) | (norms == 0))
        if len(odd):  # overflow or underflow of the squares: rescale those rows first
            peak = np.abs(arr[odd]).max(axis=1)
            ok = np.isfinite(peak) & (peak > 0)
            arr[odd[ok]] /= peak[ok, None]
            norms[odd[ok]] = np.linalg.norm(arr[odd[ok]], axis=1)
        bad = np.flatnonzero(~np.isfinite(norms) | (norms == 0))
        if len(bad):
            i = int(bad[0])
            name = f"vector for id {keys[i]!r}" if keys is not None else f"query {i}"
            problem = "is all zeros" if norms[i] == 0 else "contains NaN or infinite values"
            raise InputError(f"{name} {problem} (cosine needs finite, non-zero vectors)")
        arr /= norms[:, None]
        return arr


def _as_ids(ids: Sequence[str]) -> list[str]:
    if isinstance(ids, str | bytes):
        raise InputError("ids must be a sequence of IDs, not a single string")
    return [str(i) for i in ids]


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"k must be an integer >= 1, got {k!r}")
    return int(k)
