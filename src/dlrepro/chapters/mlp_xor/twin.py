"""The text's 2-2-1 sigmoid MLP in torch: autograd instead of the hand-written backward pass.

The parameters keep the text's layout (W as (in, out) matrices, b as (1, out) rows) and start
from the numpy arrays, so both versions descend from the same point; everything is float64 so
that the only differences left are rounding.

Training is the LightningModule `XorTwin` (the network passed in as its backbone): one
`training_step` is one full-batch step of the text's gradient descent, and `fit_full_batch` runs
10,000 of them, not the Trainer, whose per-step hooks would cost five times the step.
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from dlrepro.chapters._common.toy_trainer import fit_full_batch

PARAMETERS = ("W1", "b1", "W2", "b2")


class XorMLP(nn.Module):
    """a1 = σ(X·W1 + b1), a2 = σ(a1·W2 + b2), started from the given numpy arrays."""

    # registered by name in __init__; declared here for the type checker only
    W1: nn.Parameter
    b1: nn.Parameter
    W2: nn.Parameter
    b2: nn.Parameter

    def __init__(self, W1, b1, W2, b2) -> None:
        super().__init__()
        for name, value in zip(PARAMETERS, (W1, b1, W2, b2), strict=True):
            self.register_parameter(name, nn.Parameter(torch.tensor(value, dtype=torch.float64)))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        a1 = torch.sigmoid(X @ self.W1 + self.b1)
        return torch.sigmoid(a1 @ self.W2 + self.b2)


def half_sse(a2: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """½·Σ error²: the loss whose gradient the text's update follows (not the mean it prints)."""
    return 0.5 * torch.sum((y - a2) ** 2)


def as_tensors(X, y) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.as_tensor(X, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)


class XorTwin(pl.LightningModule):
    """The twin's training: each `training_step` is one step of the text's gradient descent on
    ½·Σ error² over the four rows, with plain SGD (p ← p − lr·∂L/∂p, as the numpy code updates).
    It keeps the outputs each step saw, before its update: the text prints their error."""

    def __init__(self, net: XorMLP, lr: float) -> None:
        super().__init__()
        self.net = net
        self.lr = lr
        self.outputs: list[torch.Tensor] = []

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        X, y = batch
        a2 = self.net(X)
        self.outputs.append(a2.detach())
        return half_sse(a2, y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr, foreach=False)


def train_gd(model: XorMLP, X, y, lr: float, epochs: int) -> np.ndarray:
    """`epochs` steps of XorTwin on `model`; returns the mean squared error at every epoch, taken
    before that epoch's update, which is the value the text prints."""
    X, y = as_tensors(X, y)
    twin = XorTwin(model, lr)
    fit_full_batch(twin, (X, y), epochs)
    return torch.mean((y - torch.stack(twin.outputs)) ** 2, dim=(1, 2)).numpy()


def predict(model: XorMLP, X) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(X, dtype=torch.float64)).numpy()


def gradients_along(X, y, trajectory: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Autograd's gradient of ½·Σ error² at each of a stack of parameter sets.

    `trajectory[name]` holds one set per row (e.g. the numpy weights before every update).
    Matrix products broadcast over that leading axis, so one XorMLP whose parameters are the
    stacks evaluates every set at once; the sets' losses are independent, so one backward pass
    of their sum leaves each set's own gradient in its row.
    """
    model = XorMLP(*(trajectory[name] for name in PARAMETERS))
    X, y = as_tensors(X, y)
    half_sse(model(X), y).backward()
    gradients: dict[str, np.ndarray] = {}
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None  # backward() reached every parameter
        gradients[name] = parameter.grad.numpy()
    return gradients
