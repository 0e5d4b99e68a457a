"""The torch twin of chapter 6: torch.optim's seven rules on the same problems, in float64.

All the rules race at once. Each has its own leaf tensors; the problem's loss takes them
stacked along a first "which optimizer" axis and returns one loss per optimizer, so one
autograd pass per step fills every rule's gradients (the losses are independent, so
backpropagating their sum gives each leaf exactly its own loss's gradient), then every
torch.optim instance steps its own leaves. Seven separate loops would cost seven passes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch

from dlrepro.config.schema import OptimizerSpec


def make_optimizer(name: str, params: list[torch.Tensor], lr: float, hyper: OptimizerSpec):
    """torch.optim's rule for `name`, single-tensor implementation (the one scratch copies)."""
    match name:
        case "sgd":
            return torch.optim.SGD(params, lr=lr, foreach=False)
        case "momentum":
            return torch.optim.SGD(params, lr=lr, momentum=hyper.momentum, foreach=False)
        case "adagrad":
            return torch.optim.Adagrad(params, lr=lr, eps=hyper.eps[name], foreach=False)
        case "rmsprop":
            return torch.optim.RMSprop(
                params, lr=lr, alpha=hyper.rho, eps=hyper.eps[name], foreach=False
            )
        case "adam":
            betas = (hyper.beta1, hyper.beta2)
            return torch.optim.Adam(params, lr=lr, betas=betas, eps=hyper.eps[name], foreach=False)
        case "nadam":
            return torch.optim.NAdam(
                params,
                lr=lr,
                betas=(hyper.beta1, hyper.beta2),
                eps=hyper.eps[name],
                momentum_decay=hyper.momentum_decay,
                foreach=False,
            )
        case "adadelta":
            return torch.optim.Adadelta(
                params, lr=lr, rho=hyper.rho, eps=hyper.eps[name], foreach=False
            )
    raise ValueError(f"unknown optimizer {name!r}")


@contextmanager
def float64_scalars() -> Iterator[None]:
    """torch.optim keeps its step counters and NAdam's running product of μ in the default
    dtype, float32 unless changed, even for float64 parameters. That product's rounding alone
    moves NAdam's Rosenbrock path by about 0.2 in 1000 steps; float64 here keeps it exact."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def race(
    losses_of: Callable[..., torch.Tensor],
    start: list[np.ndarray],
    rates: dict[str, float],
    hyper: OptimizerSpec,
    steps: int,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every rule in `rates` from `start` for `steps` steps.

    `losses_of(*stacked)` gets one tensor per entry of `start`, shaped (rules, *start[i].shape),
    and returns the loss of each rule. Returns {name: (path, loss)}: path[t] is the flattened
    parameters after t steps (t = 0..steps) and loss[t] the loss there.
    """
    names = list(rates)
    with float64_scalars():
        leaves = {
            name: [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in start]
            for name in names
        }
        every_leaf = [leaf for name in names for leaf in leaves[name]]
        optimizers = [make_optimizer(name, leaves[name], rates[name], hyper) for name in names]
        size = sum(p.size for p in start)
        paths = np.empty((len(names), steps + 1, size))
        losses = np.empty((len(names), steps + 1))
        for t in range(steps + 1):
            stacked = [torch.stack([leaves[name][i] for name in names]) for i in range(len(start))]
            loss = losses_of(*stacked)
            losses[:, t] = loss.detach().numpy()
            paths[:, t] = torch.cat(
                [s.detach().reshape(len(names), -1) for s in stacked], 1
            ).numpy()
            if t == steps:
                break
            gradients = torch.autograd.grad(loss.sum(), every_leaf)
            for leaf, gradient in zip(every_leaf, gradients, strict=True):
                leaf.grad = gradient  # what optimizer.step() reads: no zero_grad() needed
            for optimizer in optimizers:
                optimizer.step()
    return {name: (paths[i], losses[i]) for i, name in enumerate(names)}


def quadratic_losses(x: torch.Tensor) -> torch.Tensor:
    """f(x) = Σ x², for each row of x."""
    return (x**2).sum(dim=1)


def rosenbrock_losses(p: torch.Tensor) -> torch.Tensor:
    """f(x, y) = (1 − x)² + 100·(y − x²)², for each row (x, y) of p."""
    x, y = p[:, 0], p[:, 1]
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def xor_mlp_losses(X: np.ndarray, y: np.ndarray) -> Callable[..., torch.Tensor]:
    """½·Σ error² of the text's sigmoid 2-2-1 net (what scratch.mlp descends), per weight set;
    autograd differentiates it."""
    inputs = torch.tensor(X, dtype=torch.float64)
    targets = torch.tensor(y, dtype=torch.float64).reshape(-1, 1)

    def losses(W1, b1, W2, b2):
        a1 = torch.sigmoid(inputs @ W1 + b1)
        a2 = torch.sigmoid(a1 @ W2 + b2)
        return 0.5 * ((targets - a2) ** 2).sum(dim=(1, 2))

    return losses
