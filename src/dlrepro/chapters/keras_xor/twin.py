"""The text's Keras XOR net as a LightningModule: Dense(h, relu) -> Dense(1, sigmoid), Adam, BCE.

Keras' defaults, reproduced: Glorot-uniform kernels and zero biases, the loss on the sigmoid's
logits (`BCEWithLogitsLoss`), Adam's lr 0.001 and epsilon 1e-7 (Keras adds epsilon before bias
correction, torch after: the steps differ only where a gradient is within a few epsilon of 0),
batch 32 shuffled each epoch, binary accuracy at 0.5, float32. docs/design.md compares the two
Adams. Epoch metrics are collected and written to MLflow once, when training ends: one store
call per epoch would cost more than the fits.
"""

from __future__ import annotations

import time

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

MLFLOW_MAX_METRICS_PER_BATCH = 1000  # the limit of MLflow's log_batch


class KerasXorNet(pl.LightningModule):
    def __init__(
        self,
        input_size: int = 2,
        hidden_size: int = 4,
        lr: float = 0.001,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-7,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.hidden = nn.Linear(input_size, hidden_size)
        self.output = nn.Linear(hidden_size, 1)
        for layer in (self.hidden, self.output):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.loss = nn.BCEWithLogitsLoss()
        # Keras' per-epoch `loss` and `accuracy`: means over the epoch's batches, before each update
        self.epoch_loss: list[float] = []
        self.epoch_acc: list[float] = []
        self._sums = torch.zeros(3)  # loss·n, correct, n over the current epoch

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(torch.relu(self.hidden(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        logits = self.logits(x)
        loss = self.loss(logits, y)
        correct = ((logits > 0) == (y > 0.5)).sum()
        self._sums += torch.stack([loss.detach() * len(x), correct, torch.tensor(len(x))])
        return loss

    def on_train_epoch_end(self) -> None:
        loss_sum, correct, count = self._sums.tolist()
        self.epoch_loss.append(loss_sum / count)
        self.epoch_acc.append(correct / count)
        self._sums.zero_()

    def on_train_end(self) -> None:
        if self.logger:
            log_history(self.logger, {"train/loss": self.epoch_loss, "train/acc": self.epoch_acc})

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return torch.optim.Adam(
            self.parameters(), lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"]
        )


def log_history(logger, history: dict[str, list[float]]) -> None:
    """Log each series at steps 1, 2, ... (epochs); to MLflow in as few batches as it accepts."""
    from pytorch_lightning.loggers import MLFlowLogger

    if not isinstance(logger, MLFlowLogger):
        for step, values in enumerate(zip(*history.values(), strict=True), start=1):
            logger.log_metrics(dict(zip(history, values, strict=True)), step=step)
        return
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    metrics = [
        Metric(key=key, value=float(value), timestamp=stamp, step=step)
        for key, values in history.items()
        for step, value in enumerate(values, start=1)
    ]
    for start in range(0, len(metrics), MLFLOW_MAX_METRICS_PER_BATCH):
        chunk = metrics[start : start + MLFLOW_MAX_METRICS_PER_BATCH]
        logger.experiment.log_batch(run_id=logger.run_id, metrics=chunk)


def xor_loader(X: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> DataLoader:
    """Keras `fit(X, Y)`: float32 rows, labels as a column, reshuffled every epoch (seeded)."""
    dataset = TensorDataset(
        torch.as_tensor(X, dtype=torch.float32),
        torch.as_tensor(y, dtype=torch.float32).reshape(-1, 1),
    )
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator)
