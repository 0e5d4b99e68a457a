"""The perceptron rule as a LightningModule: manual optimization, one sample per step.

The rule is not a gradient step, so Lightning's automatic optimization does not apply: each
`training_step` predicts with the same step function (step(0) = 1) and adds lr·error·x to the
weights in place, in float64 so that every intermediate value equals numpy's exactly.
"""

from __future__ import annotations

import warnings

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

warnings.filterwarnings("ignore", message=r".*configure_optimizers.*returned `None`")


class LightningPerceptron(pl.LightningModule):
    def __init__(self, input_size: int, lr: float = 0.1) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.lr = lr
        # Typed as Tensor: `+=` below updates them in place, and Tensor.__iadd__ is typed to
        # return a Tensor (here the same Parameter, which setattr registers again).
        self.weights: torch.Tensor = torch.nn.Parameter(
            torch.zeros(input_size, dtype=torch.float64), False
        )
        self.bias: torch.Tensor = torch.nn.Parameter(torch.zeros((), dtype=torch.float64), False)
        self.history: list[tuple[float, ...]] = []
        self.epoch_errors = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.weights + self.bias >= 0).to(torch.int64)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch[0][0], batch[1][0]
        # float64 before multiplying: lr * int64 tensor would round lr to float32
        error = (y - self(x)).to(torch.float64)
        with torch.no_grad():
            self.weights += self.lr * error * x
            self.bias += self.lr * error
        self.epoch_errors += int(error != 0)
        self.history.append(
            (self.current_epoch + 1, int(error), *self.weights.tolist(), float(self.bias))
        )

    def on_train_epoch_end(self) -> None:
        self.log("train/errors", float(self.epoch_errors), on_epoch=True)
        self.epoch_errors = 0

    def configure_optimizers(self) -> None:
        """No optimizer: the perceptron rule updates the weights itself."""
        return None


def gate_loader(X, y) -> DataLoader:
    """The four rows in the text's order, one at a time, never shuffled."""
    dataset = TensorDataset(torch.as_tensor(X, dtype=torch.float64), torch.as_tensor(y))
    return DataLoader(dataset, batch_size=1, shuffle=False)
