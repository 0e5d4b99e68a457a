"""The callbacks every plant fit runs with: a Keras-like epoch history, per-step dropout seeds,
and checkpoints whose bytes depend only on what they hold (`best.ckpt` on val, `last.ckpt` to
resume from)."""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint

from dlrepro.errors import DivergedError
from dlrepro.outputs import temp_prefix

MONITOR = "val/acc"
TIE_BREAK = "val/loss"  # of epochs with the same best val/acc, best.ckpt holds the lowest loss
HISTORY_METRICS = ("train/loss", "train/acc", "val/loss", "val/acc")
BEST_NAME = "best"
LAST_NAME = "last"


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


class BatchSeed(pl.Callback):
    """Seeds torch's global RNG from (seed, epoch, batch) before each training step.

    Dropout draws from that RNG, which Lightning's checkpoints do not store, and which other code
    (a DataLoader's base seed, the sanity check) also draws from at moments that differ between a
    straight run and a resumed one: seeded per step, each step's masks are a function of where it
    is in the run, so a resumed run continues exactly. The batches need none of it: order and
    augmentation have their own (seed, epoch) generators.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        entropy = np.random.SeedSequence([self.seed, trainer.current_epoch, batch_idx])
        torch.manual_seed(int(entropy.generate_state(1, np.uint64)[0]))


class CanonicalCheckpoint(pl.Callback):
    """Checkpoint bytes that depend on what is saved, not on how the run got there.

    pickle writes a repeated object once and refers back to it, so the same state saved by a
    straight run (where the history rows and optimizer states share their key strings) and by a
    resumed one (where those came out of last.ckpt as separate strings) differs in bytes. Every
    string in a full checkpoint is interned before it is written, in both runs alike.
    """

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        for key in list(checkpoint):  # in place, in order: Lightning saves this very dict
            value = checkpoint.pop(key)
            checkpoint[_interned(key)] = _interned(value)


def _interned(value: Any) -> Any:
    if isinstance(value, str):
        return sys.intern(value)
    if isinstance(value, dict):
        return type(value)((_interned(k), _interned(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_interned(v) for v in value]
    if type(value) is tuple:
        return tuple(_interned(v) for v in value)
    return value


class FiniteLoss(pl.Callback):
    """Stops a fit whose training loss is no longer a finite number (a learning rate that ruins
    it), at the end of the epoch where it happened, so such a model is never kept, evaluated or
    registered."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise DivergedError(
                f"train/loss is {float(loss)} after epoch {trainer.current_epoch + 1}: the fit "
                "diverged; lower the learning rate (the recipe's optimizer.lr or scheduler.max_lr)"
            )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written under a temporary name and renamed into place, so a full disk or a
    kill mid-write leaves the previous file whole (Lightning writes in place)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        target = Path(path)
        temporary = target.with_name(f"{temp_prefix(target.name)}part")
        try:
            super().save_checkpoint(checkpoint, temporary, storage_options)
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)


@dataclass(frozen=True)
class FitCallbacks:
    """The callbacks every fit has: the epoch history and last.ckpt; and best.ckpt when it
    validates."""

    history: EpochHistory
    best: BestOnVal | None
    last: ModelCheckpoint


class RelocatableCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose saved state names files relative to its folder.

    Lightning stores `dirpath`, `best_model_path`, `last_model_path`, ... as absolute paths in
    every checkpoint, so two clones at different paths would write different bytes for the same
    weights (and dvc.lock would differ). Here they are saved relative to `dirpath` and resolved
    against this callback's own `dirpath` on resume, which also keeps resuming working after the
    repository has moved.

    `current_score` is saved by Lightning but not restored; it is restored here, so that a
    resumed run's next checkpoint holds what an uninterrupted run's would.
    """

    PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        assert self.dirpath is not None  # every checkpoint callback here is given its folder
        folder = Path(self.dirpath)
        state["dirpath"] = "."
        for key in self.PATH_KEYS:
            state[key] = _relative(state[key], folder)
        state["best_k_models"] = {
            _relative(k, folder): v for k, v in state["best_k_models"].items()
        }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        assert self.dirpath is not None  # every checkpoint callback here is given its folder
        folder = Path(self.dirpath)
        state = dict(state_dict, dirpath=self.dirpath)
        for key in self.PATH_KEYS:
            state[key] = _absolute(state.get(key, ""), folder)
        state["best_k_models"] = {
            _absolute(k, folder): v for k, v in state.get("best_k_models", {}).items()
        }
        super().load_state_dict(state)
        self.current_score = state.get("current_score", self.current_score)


class BestOnVal(RelocatableCheckpoint):
    """best.ckpt: the epoch with the highest val/acc and, of epochs tied on it, the lowest val/loss.

    Accuracy on a small val split takes few values, so ties are common, and ModelCheckpoint keeps
    the first epoch to reach the best accuracy: often an early one whose predictions are barely
    on the right side.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(monitor=MONITOR, mode="max", save_top_k=1, **kwargs)
        self.best_tie_break = math.inf
        self.best_epoch = 0  # from 1, as in the history; 0 before the first validation

    def check_monitor_top_k(self, trainer: pl.Trainer, current: torch.Tensor | None = None) -> bool:
        metric = trainer.callback_metrics.get(TIE_BREAK)
        loss = math.inf if metric is None or math.isnan(metric) else float(metric)  # NaN never wins
        if current is not None and self.best_k_models and current == self.best_model_score:
            better = trainer.strategy.reduce_boolean_decision(loss < self.best_tie_break)
        else:
            better = super().check_monitor_top_k(trainer, current)
        if better:  # Lightning saves best.ckpt right after a True
            self.best_tie_break = loss
            self.best_epoch = trainer.current_epoch + 1
        return better

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "best_tie_break": self.best_tie_break,
            "best_epoch": self.best_epoch,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.best_tie_break = state_dict.get("best_tie_break", math.inf)
        self.best_epoch = state_dict.get("best_epoch", 0)


def _relative(path: str, folder: Path) -> str:
    return Path(path).relative_to(folder).as_posix() if path else ""


def _absolute(path: str, folder: Path) -> str:
    return str(folder / path) if path else ""


def fit_callbacks(out_dir: Path, validates: bool = True) -> FitCallbacks:
    # Two checkpoint callbacks rather than save_last=True: since Lightning 2.6, save_last only
    # refreshes last.ckpt in epochs where a top-k checkpoint was saved, so it would hold the best
    # epoch, not the last one, and a resumed run would repeat epochs.
    common: dict[str, Any] = {
        "dirpath": out_dir,
        "enable_version_counter": False,
        "save_on_train_epoch_end": True,
    }
    # best.ckpt is read for its weights only (evaluate, export, predict): without Adam's moments
    # and the callbacks' state it is a third of last.ckpt's size, and cheaper to write on each
    # improvement. Resuming needs last.ckpt alone.
    best = None
    if validates:
        best = BestOnVal(
            filename=BEST_NAME,
            save_weights_only=True,
            auto_insert_metric_name=False,  # "val/acc" in a file name would make a folder
            **common,
        )
    # No monitor: saved every epoch, overwriting the same file. Listed after `best`, so last.ckpt
    # carries the best score including this epoch's.
    last = RelocatableCheckpoint(filename=LAST_NAME, monitor=None, save_top_k=1, **common)
    return FitCallbacks(EpochHistory(), best, last)
