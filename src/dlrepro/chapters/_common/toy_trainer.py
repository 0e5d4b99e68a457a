"""How the curriculum's toy networks (four samples, a few parameters) train: one Trainer recipe
for the epoch-wise ones, one thin loop for the full-batch ones that take thousands of steps.

They always train on the CPU: moving a 4-row batch to an accelerator costs more than the math.
Checkpoints, model summaries and progress bars are off because a toy run takes milliseconds.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import pytorch_lightning as pl
import torch

# Lightning prints GPU/TPU availability and tips at INFO level for every Trainer: noise here.
for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
    logging.getLogger(name).setLevel(logging.WARNING)
# Raised inside Lightning 2.6 itself against torch 2.14's pytree API; nothing for us to change.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def toy_trainer(max_epochs: int, logger=False) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=max_epochs,
        logger=logger,
        log_every_n_steps=1,
        deterministic=True,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
    )


def fit_full_batch(module: pl.LightningModule, batch: Any, steps: int) -> None:
    """`steps` gradient steps of `module` on one fixed batch: its own `training_step` and its own
    `configure_optimizers` (one optimizer or a list, each stepping its own parameters).

    For the toys that take thousands of steps on four rows: the Trainer's hooks, loader and
    logging cost ~0.7 ms a step, five times the step itself, and a fixed full batch needs none
    of them. The arithmetic is the Trainer's automatic optimization: zero the gradients, the
    step's loss, backward, every optimizer's step.
    """
    optimizers = _optimizers(module.configure_optimizers())
    for step in range(steps):
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss = module.training_step(batch, step)
        if not isinstance(loss, torch.Tensor):
            raise TypeError(f"{type(module).__name__}.training_step must return the loss tensor")
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()


def _optimizers(configured: object) -> list[torch.optim.Optimizer]:
    """What configure_optimizers returned, as a list of plain optimizers (no schedulers)."""
    found = list(configured) if isinstance(configured, list | tuple) else [configured]
    optimizers = [o for o in found if isinstance(o, torch.optim.Optimizer)]
    if len(optimizers) != len(found):
        raise TypeError("fit_full_batch steps plain torch optimizers only")
    return optimizers
