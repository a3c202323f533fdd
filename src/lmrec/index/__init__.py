"""Vector search over string IDs: exact and approximate (faiss), one `VectorIndex` interface."""

from lmrec.index.ann import AnnIndex
from lmrec.index.base import VectorIndex
from lmrec.index.exact import ExactIndex, exact_search

__all__ = ["AnnIndex", "ExactIndex", "VectorIndex", "exact_search"]
