"""`model.fit(train_data, validation_data=..., epochs=10)` as a Lightning Trainer run, every part
built from config with `hydra.utils.instantiate`, as lightning-hydra-template builds it.

The recipe (`recipes.<name>`) gives the network (`model`), its optimizer and LR scheduler
(`_partial_` nodes), extra callbacks and the epochs; the datamodule and the Trainer (any Trainer
argument) are shared by every recipe. Every node is checked while it is built, before the train
stage touches an output. The fit sees train and val only: the datamodule has no test split, so
nothing is ever selected on the data the test accuracy is measured on. The text validates on its
test split.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from pytorch_lightning.callbacks import (
    ModelCheckpoint,
    StochasticWeightAveraging,
    TQDMProgressBar,
    WeightAveraging,
)

from dlrepro.config import Config
from dlrepro.errors import ConfigError
from dlrepro.plant.callbacks import (
    BEST_NAME,
    LAST_NAME,
    MONITOR,
    AtomicCheckpointIO,
    BatchSeed,
    CanonicalCheckpoint,
    FiniteLoss,
    FitCallbacks,
    fit_callbacks,
)
from dlrepro.plant.checks import check_arguments, check_trainer, config_errors
from dlrepro.plant.classifier import LeafClassifier
from dlrepro.plant.datamodule import PlantDataModule


@dataclass(frozen=True)
class FitResult:
    """What a fit left. The best-on-val fields are None for a fit that learns from val (nothing
    was held out to validate on, so there is no best.ckpt)."""

    best_checkpoint: Path | None  # highest val/acc so far, ties to the lowest val/loss (BestOnVal)
    last_checkpoint: Path  # end of the latest completed epoch
    best_val_acc: float | None
    best_epoch: int | None  # the epoch best_checkpoint holds, from 1
    history: list[dict[str, float]]  # one row per epoch: "epoch" (from 1) and HISTORY_METRICS


def build_trainer(
    options: Mapping[str, Any],
    out_dir: Path,
    callbacks: Mapping[str, Any] | None = None,
    logger: Any = False,
    callbacks_key: str = "callbacks",
    seed: int = 0,
    validates: bool = True,
) -> tuple[pl.Trainer, FitCallbacks]:
    """The Trainer of `options` (a `_target_` node: any pl.Trainer argument), with the fit's own
    callbacks plus `callbacks` (name -> `_target_` node, None for off; `callbacks_key` names
    them in errors), writing to `out_dir`; `seed` seeds each step's dropout (BatchSeed).
    validates=False: a fit that learns from val (`fit_on: train+val`) runs no validation loop
    and keeps no best.ckpt.

    Raises ConfigError (one line naming the key) for anything that cannot run, and touches no
    file: build it before emptying an output folder.
    """
    check_trainer(options)
    fit = fit_callbacks(Path(out_dir), validates)
    if not validates:
        options = {**options, "limit_val_batches": 0}
    extra = []
    for name, node in (callbacks or {}).items():
        if node is not None:
            check_arguments(f"{callbacks_key}.{name}", node)
            if not validates and str(node.get("monitor", "")).startswith("val/"):
                raise ConfigError(
                    f"{callbacks_key}.{name}: monitors {node['monitor']}, but this fit learns "
                    "from val: nothing is held out to validate on"
                )
            with config_errors(f"{callbacks_key}.{name}"):
                callback = instantiate(node, _convert_="all")
            if isinstance(callback, (WeightAveraging, StochasticWeightAveraging)):
                raise ConfigError(
                    f"{callbacks_key}.{name}: {type(callback).__name__}: weight averaging is "
                    "refused here: best.ckpt holds weights alone, and Lightning puts the averaged "
                    "weights only into full checkpoints or into the model at the end of training, "
                    "so the model evaluated and exported would not be the averaged one"
                )
            extra.append(callback)
    if options.get("enable_progress_bar", True):
        extra.append(TQDMProgressBar())
    with config_errors("trainer"):
        trainer = instantiate(
            dict(options),
            _convert_="all",
            callbacks=[
                BatchSeed(seed),
                fit.history,
                *([fit.best] if fit.best is not None else []),
                fit.last,
                CanonicalCheckpoint(),
                FiniteLoss(),
                *extra,
            ],
            plugins=[AtomicCheckpointIO()],
            logger=logger,
            default_root_dir=out_dir,
            log_every_n_steps=1,  # only epoch aggregates are logged; this silences a length warning
        )
    return trainer, fit


def fit(
    trainer: pl.Trainer,
    callbacks: FitCallbacks,
    model: LeafClassifier,
    datamodule: PlantDataModule,
    resume: bool = True,
) -> FitResult:
    """Train `model` on `datamodule` for the Trainer's epochs (counted from the first run).

    resume: continue from out_dir/last.ckpt when it exists (weights, optimizer, epoch, history,
    best score); False starts afresh and overwrites the checkpoints.
    """
    assert callbacks.last.dirpath is not None  # fit_callbacks gives every checkpoint its folder
    out_dir = Path(callbacks.last.dirpath)
    out_dir.mkdir(parents=True, exist_ok=True)
    last_path = out_dir / f"{LAST_NAME}{ModelCheckpoint.FILE_EXTENSION}"
    resume_from = last_path if resume and last_path.exists() else None
    with warnings.catch_warnings():
        # On a 2-core machine the CNN, not image loading, is the bottleneck: workers are optional.
        warnings.filterwarnings("ignore", message=r".*does not have many workers")
        # Raised inside Lightning 2.6 itself against torch 2.14's pytree API.
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
        if resume_from is not None:  # the checkpoints found are the ones being continued
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* is not empty")
        try:
            trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
        except BaseException as err:
            # Lightning turns Ctrl-C into a graceful shutdown and then exit(1), and an error in
            # that shutdown (a logger meeting a locked SQLite store) replaces the interrupt:
            # hand either on as the interrupt it was, so the stage says so in one line and
            # exits 130.
            interrupted = isinstance(err, SystemExit) or isinstance(
                err.__context__, KeyboardInterrupt
            )
            if trainer.interrupted and interrupted:
                raise KeyboardInterrupt from None
            raise
    best = callbacks.best
    best_val_acc = None
    if best is not None:
        # set by the first validation; None only if the fit never validated, which has no best
        assert best.best_model_score is not None, "the fit ran no validation"
        best_val_acc = float(best.best_model_score)
    return FitResult(
        best_checkpoint=None if best is None else out_dir / f"{BEST_NAME}{best.FILE_EXTENSION}",
        last_checkpoint=last_path,
        best_val_acc=best_val_acc,
        best_epoch=None if best is None else best.best_epoch,
        history=list(callbacks.history.rows),
    )


def fit_plant_cnn(
    datamodule: PlantDataModule,
    model: LeafClassifier,
    out_dir: Path,
    max_epochs: int,
    accelerator: str = "cpu",
    devices: int | str = 1,
    seed: int = 0,
    early_stopping_patience: int | None = None,
    logger: Any = None,
    resume: bool = True,
    **trainer_options: Any,
) -> FitResult:
    """One call for tests and the bench: `build_trainer` with these Trainer options (plus any
    other pl.Trainer argument, e.g. precision, deterministic, enable_progress_bar), then `fit`."""
    pl.seed_everything(seed, workers=True, verbose=False)
    options = {
        "_target_": "pytorch_lightning.Trainer",
        "max_epochs": max_epochs,
        "accelerator": accelerator,
        "devices": devices,
        "deterministic": True,
        **trainer_options,
    }
    callbacks = {}
    if early_stopping_patience is not None:
        callbacks["early_stopping"] = {
            "_target_": "pytorch_lightning.callbacks.EarlyStopping",
            "monitor": MONITOR,
            "mode": "max",
            "patience": early_stopping_patience,
        }
    trainer, fit_state = build_trainer(
        options,
        out_dir,
        callbacks,
        logger or False,
        seed=seed,
        validates=not datamodule.learn_from_val,
    )
    return fit(trainer, fit_state, model, datamodule, resume)


def build_classifier(
    cfg: Config,
    recipe: str,
    classes: list[str],
    channels_last: bool | None = None,
    cls: type[LeafClassifier] = LeafClassifier,
) -> LeafClassifier:
    """The classifier `train@<recipe>` trains: the network of `recipes.<recipe>.model` for these
    classes, with the recipe's optimizer and LR scheduler (both checked on its parameters).
    `channels_last`: override the config's; `cls`: a subclass (e.g. with timing hooks)."""
    key = f"recipes.{recipe}"
    spec = cfg.recipes[recipe]
    node = asdict(spec.model)
    average_symmetries = node.pop("average_symmetries")
    if channels_last is not None:
        node["channels_last"] = channels_last
    factories = {}
    for part in ("optimizer", "scheduler"):
        part_node = getattr(spec, part)
        if part_node is not None:
            check_arguments(f"{key}.{part}", part_node)
            with config_errors(f"{key}.{part}"):
                factories[part] = instantiate(part_node, _convert_="all")
    with config_errors(f"{key}.model"):
        net = instantiate(
            node,
            _convert_="all",
            num_classes=len(classes),
            image_size=cfg.data.image_size,
            init_seed=cfg.seed,
        )
        model = cls(net, classes, average_symmetries=average_symmetries, **factories)
    with config_errors(f"{key}.optimizer"):
        optimizer = model.optimizer_factory(model.parameters())  # torch checks lr > 0, ... here
    if model.scheduler_factory is not None:
        with config_errors(f"{key}.scheduler"):
            model.build_scheduler(optimizer, total_steps=spec.max_epochs)
    return model


def build_datamodule(
    cfg: Config, recipe: str, classes: list[str], train: tuple[Any, Any], val: tuple[Any, Any]
) -> PlantDataModule:
    """The data `train@<recipe>` fits on: `cfg.datamodule` over the train and val splits, with
    the recipe's augmentation, learning from val too when the recipe fits on train+val. The
    test split is not an argument: no fit can see it."""
    augment = cfg.recipes[recipe].augment
    with config_errors("datamodule"):
        return instantiate(
            asdict(cfg.datamodule),
            _convert_="all",
            classes=list(classes),
            train_images=train[0],
            train_labels=train[1],
            val_images=val[0],
            val_labels=val[1],
            augment=None if augment is None else asdict(augment),
            learn_from_val=cfg.recipes[recipe].fit_on == "train+val",
        )
