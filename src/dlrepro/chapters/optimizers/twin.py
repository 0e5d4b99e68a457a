"""The torch twin of chapter 6: torch.optim's seven rules on the same problems, in float64.

All the rules race at once, in one LightningModule (`OptimizerRace`). Each rule has its own
parameters; the problem's loss takes them stacked along a first "which optimizer" axis and
returns one loss per optimizer, so one backward pass per `training_step` fills every rule's
gradients (the losses are independent, so backpropagating their sum gives each parameter exactly
its own loss's gradient), then every torch.optim instance (`configure_optimizers` returns the
seven) steps its own parameters. Seven separate loops would cost seven passes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from dlrepro.chapters._common.toy_trainer import fit_full_batch
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


class OptimizerRace(pl.LightningModule):
    """Every rule in `rates` from `start`: rule r's parameters are `rules[r]`, one float64
    copy of each start array. `observe` records where each rule is and its loss there;
    `training_step` observes, then returns the sum of the rules' losses."""

    def __init__(
        self,
        losses_of: Callable[..., torch.Tensor],
        start: list[np.ndarray],
        rates: dict[str, float],
        hyper: OptimizerSpec,
    ) -> None:
        super().__init__()
        self.losses_of = losses_of
        self.rates = rates
        self.hyper = hyper
        self.rules = {
            name: nn.ParameterList(torch.tensor(p, dtype=torch.float64) for p in start)
            for name in rates
        }
        self.weights = nn.ModuleDict(self.rules)  # registers them: .parameters(), .to(device)
        self.paths: list[np.ndarray] = []  # per observation: (rules, parameters) flattened
        self.losses: list[np.ndarray] = []  # per observation: (rules,)

    def observe(self) -> torch.Tensor:
        names = list(self.rates)
        size = len(self.rules[names[0]])
        stacked = [torch.stack([self.rules[name][i] for name in names]) for i in range(size)]
        loss = self.losses_of(*stacked)
        self.losses.append(loss.detach().numpy())
        self.paths.append(
            torch.cat([s.detach().reshape(len(names), -1) for s in stacked], 1).numpy()
        )
        return loss

    def training_step(self, batch: None, batch_idx: int) -> torch.Tensor:
        return self.observe().sum()

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [
            make_optimizer(name, list(self.rules[name]), lr, self.hyper)
            for name, lr in self.rates.items()
        ]


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
    with float64_scalars():
        module = OptimizerRace(losses_of, start, rates, hyper)
        fit_full_batch(module, None, steps)
        module.observe()  # where the last step led
    paths, losses = np.stack(module.paths, 1), np.stack(module.losses, 1)
    return {name: (paths[i], losses[i]) for i, name in enumerate(rates)}


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
