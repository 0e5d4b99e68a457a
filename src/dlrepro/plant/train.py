"""`model.fit(train_data, validation_data=test_data, epochs=10)` as a Lightning Trainer run.

What the Trainer adds to the text's one line: seeded, deterministic kernels; `best.ckpt` (highest
val/acc) and `last.ckpt` in `out_dir`; resuming from `last.ckpt`; optional early stopping; and a
per-epoch history like Keras' `History` object. The history travels inside the checkpoints, so a
resumed run still returns every epoch's row.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar

from dlrepro.config import Config
from dlrepro.data.datamodule import PlantDataModule
from dlrepro.nn.plant_cnn import PlantCNN

MONITOR = "val/acc"
HISTORY_METRICS = ("train/loss", "train/acc", "val/loss", "val/acc")
BEST_NAME = "best"
LAST_NAME = "last"


@dataclass(frozen=True)
class FitResult:
    best_checkpoint: Path  # highest val/acc so far (ties keep the earlier epoch)
    last_checkpoint: Path  # end of the latest completed epoch
    best_val_acc: float
    history: list[dict[str, float]]  # one row per epoch: "epoch" (from 1) and HISTORY_METRICS


class EpochHistory(pl.Callback):
    """Collects the epoch aggregates of HISTORY_METRICS at the end of every training epoch.

    At that point validation for the epoch has already run, and the hook runs before
    ModelCheckpoint saves (monitoring callbacks are called last), so each checkpoint holds the
    rows up to and including its own epoch.
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = trainer.callback_metrics
        row: dict[str, float] = {"epoch": trainer.current_epoch + 1}
        row.update({name: float(metrics[name]) for name in HISTORY_METRICS if name in metrics})
        self.rows.append(row)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(row) for row in self.rows]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(row) for row in state_dict["rows"]]


def fit_plant_cnn(
    datamodule: PlantDataModule,
    model: PlantCNN,
    out_dir: Path,
    max_epochs: int,
    accelerator: str = "auto",
    devices: int | str = "auto",
    strategy: str = "auto",
    num_nodes: int = 1,
    deterministic: bool = True,
    seed: int = 0,
    early_stopping_patience: int | None = None,
    logger: Any = None,
    enable_progress_bar: bool = True,
    resume: bool = True,
) -> FitResult:
    """Train `model` on `datamodule` for up to `max_epochs` epochs (counted from the first run).

    Args:
        out_dir: receives best.ckpt and last.ckpt (overwritten, never versioned as best-v1.ckpt).
        accelerator, devices, strategy, num_nodes: passed to `pl.Trainer` ("auto" picks a GPU
            when there is one, else the CPU).
        deterministic: deterministic kernels; with the same seed, data and thread count two runs
            give identical weights.
        seed: `pl.seed_everything(seed, workers=True)` for every RNG used during the fit. The
            initial weights come from the model's own `init_seed`, the batch order from the
            datamodule's `seed`.
        early_stopping_patience: stop after this many epochs without a better val/acc; None (the
            text) trains all `max_epochs`.
        logger: a Lightning logger (e.g. MLFlowLogger); None logs nowhere.
        resume: continue from out_dir/last.ckpt when it exists (weights, optimizer, epoch,
            history, best score); False starts afresh and overwrites the checkpoints.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(seed, workers=True, verbose=False)

    history = EpochHistory()
    # Two checkpoint callbacks rather than save_last=True: since Lightning 2.6, save_last only
    # refreshes last.ckpt in epochs where a top-k checkpoint was saved, so it would hold the best
    # epoch, not the last one, and a resumed run would repeat epochs.
    common = {"dirpath": out_dir, "enable_version_counter": False, "save_on_train_epoch_end": True}
    best = ModelCheckpoint(
        filename=BEST_NAME,
        monitor=MONITOR,
        mode="max",
        save_top_k=1,
        auto_insert_metric_name=False,  # a metric name in the file name would make "val/" a folder
        **common,
    )
    # No monitor: saved every epoch, overwriting the same file. Listed after `best`, so last.ckpt
    # carries the best score including this epoch's.
    last = ModelCheckpoint(filename=LAST_NAME, monitor=None, save_top_k=1, **common)
    callbacks: list[pl.Callback] = [history, best, last]
    if early_stopping_patience is not None:
        callbacks.append(
            EarlyStopping(monitor=MONITOR, mode="max", patience=early_stopping_patience)
        )
    if enable_progress_bar:
        callbacks.append(TQDMProgressBar())

    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        num_nodes=num_nodes,
        max_epochs=max_epochs,
        deterministic=deterministic,
        logger=logger if logger is not None else False,
        callbacks=callbacks,
        default_root_dir=out_dir,
        enable_progress_bar=enable_progress_bar,
        log_every_n_steps=1,  # only epoch aggregates are logged; this silences a length warning
    )
    last_path = out_dir / f"{LAST_NAME}{ModelCheckpoint.FILE_EXTENSION}"
    resume_from = last_path if resume and last_path.exists() else None
    with warnings.catch_warnings():
        # On a 2-core machine the CNN, not image loading, is the bottleneck: workers are optional.
        warnings.filterwarnings("ignore", message=r".*does not have many workers")
        # Raised inside Lightning 2.6 itself against torch 2.14's pytree API.
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
        if resume_from is not None:  # the checkpoints found are the ones being continued
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* is not empty")
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)

    return FitResult(
        best_checkpoint=out_dir / f"{BEST_NAME}{ModelCheckpoint.FILE_EXTENSION}",
        last_checkpoint=last_path,
        best_val_acc=float(best.best_model_score),
        history=list(history.rows),
    )


def history_figure(history: list[dict[str, float]]) -> Any:
    """Loss and accuracy per epoch, train against validation, like Keras' History plots."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.8))
    epochs = [row["epoch"] for row in history]
    for ax, metric in zip(figure.subplots(1, 2), ("loss", "acc"), strict=True):
        for split in ("train", "val"):
            ax.plot(epochs, [row.get(f"{split}/{metric}") for row in history], "o-", label=split)
        ax.set(xlabel="epoch", title=metric, xticks=epochs)
        ax.grid(alpha=0.3)
        ax.legend()
    figure.set_layout_engine("tight")
    return figure


def build_plant_cnn(
    cfg: Config, classes: list[str], channels_last: bool | None = None, cls: type = PlantCNN
) -> PlantCNN:
    """The model the train stage trains, from config (`cls`: a subclass, e.g. for timing)."""
    return cls(
        num_classes=len(classes),
        image_size=cfg.data.image_size,
        conv_channels=(cfg.model.conv1, cfg.model.conv2),
        dense_units=cfg.model.dense,
        lr=cfg.optimizer.lr,
        betas=(cfg.optimizer.beta1, cfg.optimizer.beta2),
        eps=cfg.optimizer.eps,
        class_names=classes,
        channels_last=cfg.model.channels_last if channels_last is None else channels_last,
        init_seed=cfg.seed,
    )


def build_datamodule(
    cfg: Config, classes: list[str], train: tuple[Any, Any], test: tuple[Any, Any]
) -> PlantDataModule:
    """The train stage's data: (images, labels) splits; validated on the test split, as the
    text does (`validation_data=test_data`)."""
    return PlantDataModule(
        classes,
        *train,
        *test,
        batch_size=cfg.data.batch_size,
        seed=cfg.data.seed,
        num_workers=cfg.data.num_workers,
    )
