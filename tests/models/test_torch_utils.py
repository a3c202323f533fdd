"""Reproducible torch training: `seeded_training`."""

from __future__ import annotations

import numpy as np
import torch

from lmrec.models.torch_utils import seeded_training


def _gradient() -> torch.Tensor:
    """A gradient through indexing with repeated indices, whose multi-threaded CPU kernel
    sums in a thread-dependent order unless deterministic kernels are on."""
    base = torch.randn(1700, 64, requires_grad=True)
    idx = np.random.default_rng(0).integers(0, 1700, 20000)
    (base[idx] * torch.randn(20000, 64)).sum().backward()
    assert base.grad is not None
    return base.grad.clone()


def _fit(seed: int = 2020) -> torch.Tensor:
    with seeded_training(2, seed):
        return _gradient()


def test_two_threads_give_the_same_result_every_time() -> None:
    first = _fit()
    for _ in range(3):
        assert torch.equal(first, _fit())
    assert not torch.equal(first, _fit(seed=1))


def test_global_state_is_restored() -> None:
    threads = torch.get_num_threads()
    state = torch.random.get_rng_state()
    assert not torch.are_deterministic_algorithms_enabled()
    _fit()
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.random.get_rng_state(), state)
