"""Shared data for the vector-index tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

Data = tuple[list[str], np.ndarray]


def make_clustered(n: int, dim: int, n_centers: int, seed: int, noise: float = 0.6) -> np.ndarray:
    """``n`` float32 vectors around ``n_centers`` random centres (not normalised)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_centers, dim))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    x = centers[rng.integers(0, n_centers, n)] + noise * rng.normal(size=(n, dim)) / np.sqrt(dim)
    return (x * rng.uniform(0.5, 3.0, size=(n, 1))).astype(np.float32)  # norms vary


@pytest.fixture(scope="session")
def clustered() -> Callable[..., Data]:
    """Factory: string IDs (not row numbers) and clustered vectors."""

    def make(n: int = 600, dim: int = 16, n_centers: int = 12, seed: int = 0) -> Data:
        ids = [f"item-{i * 7 + 3}" for i in range(n)]
        return ids, make_clustered(n, dim, n_centers, seed)

    return make
