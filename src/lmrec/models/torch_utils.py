"""Small torch helpers shared by the neural models (imported lazily: torch loads on use)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class TorchAdam:
    """torch's Adam (L2 ``weight_decay`` added to the gradient), without ``torch.optim``,
    whose first use imports ``torch._dynamo`` (several seconds)."""

    def __init__(self, params: list[torch.Tensor], lr: float, weight_decay: float) -> None:
        import torch

        self.params, self.lr, self.wd = params, lr, weight_decay
        self.b1, self.b2, self.eps, self.t = 0.9, 0.999, 1e-8, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        import torch

        self.t += 1
        c1, c2 = 1 - self.b1**self.t, 1 - self.b2**self.t
        with torch.no_grad():
            for p, m, v in zip(self.params, self.m, self.v, strict=True):
                if p.grad is None:
                    continue
                g = p.grad if not self.wd else p.grad + self.wd * p
                m.mul_(self.b1).add_(g, alpha=1 - self.b1)
                v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
                denom = (v.sqrt() / c2**0.5).add_(self.eps)
                p.addcdiv_(m, denom, value=-self.lr / c1)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with ``n`` torch threads (0: leave the count as it is)."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def seeded_training(threads: int, seed: int) -> Iterator[None]:
    """Train a block reproducibly: ``threads`` torch threads, a private seeded RNG, and
    deterministic kernels.

    Some multi-threaded CPU kernels (the gradient of indexing with repeated indices, for
    one) otherwise sum in a thread-dependent order; the rounding differences grow over
    epochs (two fits of one two-tower config differed by 0.16 in a score after 6 epochs).
    """
    import torch

    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch_threads(threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # warn_only: an op without a deterministic CPU kernel still runs (with a warning)
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(before, warn_only=warn_only)
