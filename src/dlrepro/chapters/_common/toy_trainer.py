"""One Trainer recipe for the curriculum's toy networks (four samples, a few parameters).

They always train on the CPU: moving a 4-row batch to an accelerator costs more than the math.
Checkpoints, model summaries and progress bars are off because a toy run takes milliseconds.
"""

from __future__ import annotations

import logging
import warnings

import pytorch_lightning as pl

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
