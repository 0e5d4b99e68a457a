"""The text's 2-2-1 sigmoid MLP in torch: autograd instead of the hand-written backward pass.

The parameters keep the text's layout (W as (in, out) matrices, b as (1, out) rows) and start
from the numpy arrays, so both versions descend from the same point; everything is float64 so
that the only differences left are rounding.

Training is a plain loop, not a Lightning Trainer: the text's run is 10,000 full-batch steps on
four rows. Through `toy_trainer` each step costs ~0.7 ms of CPU in hooks and loader (measured,
without a logger; more with one), ~7 s for the run against a ~5 s budget per chapter, while
this loop takes ~0.1 ms a step, and a fixed-batch gradient descent needs none of what the
Trainer adds (loader, devices, checkpoints).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

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


def train_gd(model: XorMLP, X, y, lr: float, epochs: int) -> np.ndarray:
    """Gradient descent on ½·Σ error²; returns the mean squared error at every epoch, taken
    before that epoch's update, which is the value the text prints.

    The update is written out (p -= lr·∂L/∂p) rather than left to torch.optim.SGD: the result
    is the same, but SGD's first step costs ~0.8 s of lazy imports and each later one ~30 µs
    of bookkeeping, a third of this loop's time.
    """
    X, y = as_tensors(X, y)
    parameters = list(model.parameters())
    outputs = torch.empty((epochs, *y.shape), dtype=torch.float64)
    for epoch in range(epochs):
        a2 = model(X)
        outputs[epoch] = a2.detach()
        gradients = torch.autograd.grad(half_sse(a2, y), parameters)
        with torch.no_grad():
            for parameter, gradient in zip(parameters, gradients, strict=True):
                parameter.sub_(gradient, alpha=lr)
    return torch.mean((y - outputs) ** 2, dim=(1, 2)).numpy()


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
