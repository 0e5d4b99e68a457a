"""`model.fit(train_data, validation_data=..., epochs=10)` as a Lightning Trainer run.

The text validates on its test split; here the fit sees train and val only (the datamodule has no
test split), so checkpoint selection and early stopping never read the data the test accuracy
is measured on.

Every part is built from config the way lightning-hydra-template builds it
(`hydra.utils.instantiate` on `_target_` nodes): from the recipe (`recipes.<name>`), the model
(`model`), its optimizer and LR scheduler (`optimizer`, `scheduler`, `_partial_`), extra callbacks
(`callbacks`) and the epochs; shared by every recipe, the datamodule (`datamodule`) and the
Trainer (`trainer`: any Trainer argument). No key passes through a hand-written list, so none
can be lost; and every node is checked while it is built, which the train stage does before it
touches an output: a value that this machine cannot run, or that the class does not take, is one
line naming the key.

What the Trainer adds to the text's one line: seeded, deterministic kernels; `best.ckpt` (highest
val/acc; none for a fit that learns from val) and `last.ckpt` in `out_dir`; resuming from
`last.ckpt`; and a per-epoch history like Keras' `History` object. The history travels inside
the checkpoints, so a resumed run still returns every epoch's row. The checkpoints hold no
absolute path (`RelocatableCheckpoint`), so the same run writes the same bytes wherever the
repository lives.
"""

from __future__ import annotations

import inspect
import math
import os
import sys
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from lightning_fabric.connector import _PRECISION_INPUT_STR
from lightning_fabric.plugins.environments import (
    LSFEnvironment,
    MPIEnvironment,
    SLURMEnvironment,
    TorchElasticEnvironment,
)
from lightning_fabric.utilities.exceptions import MisconfigurationException
from pytorch_lightning.accelerators import AcceleratorRegistry
from pytorch_lightning.callbacks import (
    ModelCheckpoint,
    StochasticWeightAveraging,
    TQDMProgressBar,
    WeightAveraging,
)
from pytorch_lightning.strategies import StrategyRegistry

from dlrepro.config import Config
from dlrepro.errors import ConfigError
from dlrepro.plant.datamodule import PlantDataModule
from dlrepro.plant.model import PlantCNN

MONITOR = "val/acc"
TIE_BREAK = "val/loss"  # of epochs with the same best val/acc, best.ckpt holds the lowest loss
HISTORY_METRICS = ("train/loss", "train/acc", "val/loss", "val/acc")
BEST_NAME = "best"
LAST_NAME = "last"


@dataclass(frozen=True)
class FitResult:
    """What a fit left. The best-on-val fields are None for a fit that learns from val (nothing
    was held out to validate on, so there is no best.ckpt)."""

    best_checkpoint: Path | None  # highest val/acc so far, ties to the lowest val/loss (BestOnVal)
    last_checkpoint: Path  # end of the latest completed epoch
    best_val_acc: float | None
    best_epoch: int | None  # the epoch best_checkpoint holds, from 1
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
        folder = Path(self.dirpath)
        state["dirpath"] = "."
        for key in self.PATH_KEYS:
            state[key] = _relative(state[key], folder)
        state["best_k_models"] = {
            _relative(k, folder): v for k, v in state["best_k_models"].items()
        }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
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
    on the right side. On 12 val images (tests/test_case_study.py) it kept epoch 13 of 30, val/loss
    0.32, over epoch 30's 6e-5, and got one test image more wrong than the last epoch did.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(monitor=MONITOR, mode="max", save_top_k=1, **kwargs)
        self.best_tie_break = math.inf
        self.best_epoch = 0  # from 1, as in the history; 0 before the first validation

    def check_monitor_top_k(self, trainer: pl.Trainer, current: torch.Tensor | None = None) -> bool:
        loss = trainer.callback_metrics.get(TIE_BREAK)
        loss = math.inf if loss is None or math.isnan(loss) else float(loss)  # NaN never wins
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
    common = {"dirpath": out_dir, "enable_version_counter": False, "save_on_train_epoch_end": True}
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


@contextmanager
def config_errors(key: str) -> Iterator[None]:
    """A class that rejects its config node says why in one line naming the node."""
    try:
        yield
    except ConfigError:
        raise
    except InstantiationException as err:
        cause = err.__cause__ or err
        raise ConfigError(f"{key}: {_first_line(cause)}") from None
    except (MisconfigurationException, ValueError, TypeError) as err:
        raise ConfigError(f"{key}: {_first_line(err)}") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def check_arguments(key: str, node: Mapping[str, Any]) -> None:
    """Every key of an instantiable node must be an argument of its `_target_`."""
    with config_errors(f"{key}._target_"):
        target = get_class(node["_target_"])
    accepted = inspect.signature(target).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        return
    for name in node:
        if not name.startswith("_") and name not in accepted:
            raise ConfigError(f"{key}.{name}: not an argument of {node['_target_']}")


def visible_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def launched_on_several_nodes() -> bool:
    """A launcher that starts and connects the nodes: torchrun, SLURM, LSF or MPI."""
    environments = (TorchElasticEnvironment, SLURMEnvironment, LSFEnvironment, MPIEnvironment)
    return any(env.detect() for env in environments)


def check_trainer(options: Mapping[str, Any]) -> None:
    """Refuse, in one line naming the key, a Trainer setting that is not a known choice or that
    this machine cannot run (Lightning raises some of these only once `fit` has started, and lets
    others pass: fp16 on a CPU silently becomes bf16, 5 CPU processes on 2 cores just start)."""
    check_arguments("trainer", options)
    accelerator = options.get("accelerator", "auto")
    known = sorted({"auto", "gpu", *AcceleratorRegistry.available_accelerators()})
    if accelerator not in known:
        raise ConfigError(
            f"trainer.accelerator={accelerator!r}: unknown; allowed: {', '.join(known)}"
        )
    has_gpu = torch.cuda.is_available()
    if accelerator in ("gpu", "cuda") and not has_gpu:
        raise ConfigError(
            f"trainer.accelerator={accelerator!r}: this machine has no CUDA GPU; use auto or cpu"
        )
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            "trainer.accelerator='mps': this machine has no Apple GPU; use auto or cpu"
        )
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and has_gpu)

    strategy = options.get("strategy", "auto")
    strategies = ["auto", *StrategyRegistry.available_strategies()]
    if strategy not in strategies:
        raise ConfigError(
            f"trainer.strategy={strategy!r}: unknown; allowed: auto, ddp, ddp_spawn, fsdp, "
            "deepspeed (and the other names of Lightning's StrategyRegistry)"
        )

    precision = str(options.get("precision", "32-true"))
    precisions = [p for p in get_args(_PRECISION_INPUT_STR) if not p.startswith("transformer")]
    if precision not in precisions:
        raise ConfigError(
            f"trainer.precision={precision!r}: unknown; allowed: {', '.join(precisions)}"
        )
    if precision == "16-mixed" and not on_gpu:
        raise ConfigError(
            "trainer.precision='16-mixed': float16 autocast needs a CUDA GPU (Lightning would "
            "run bf16-mixed instead); on this machine use bf16-mixed or 32-true"
        )

    devices = options.get("devices", "auto")
    available, unit = (
        (torch.cuda.device_count(), "CUDA GPU(s)") if on_gpu else (visible_cpus(), "CPU cores")
    )
    count = len(devices) if isinstance(devices, list) else devices
    if isinstance(count, str) and count.strip().lstrip("-").isdigit():
        count = int(count)
    if count not in ("auto", -1) and not (isinstance(count, int) and 1 <= count <= available):
        raise ConfigError(
            f"trainer.devices={devices!r}: this machine has {available} {unit}; "
            f"allowed: 1..{available}, -1 (all) or auto"
        )

    num_nodes = options.get("num_nodes", 1)
    if not isinstance(num_nodes, int) or num_nodes < 1:
        raise ConfigError(f"trainer.num_nodes={num_nodes!r}: must be an integer >= 1")
    if num_nodes > 1 and not launched_on_several_nodes():
        raise ConfigError(
            f"trainer.num_nodes={num_nodes}: needs a launcher that starts every node "
            f"(torchrun --nnodes {num_nodes} ..., SLURM); alone, this run would wait for the others"
        )


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
                *extra,
            ],
            logger=logger,
            default_root_dir=out_dir,
            log_every_n_steps=1,  # only epoch aggregates are logged; this silences a length warning
        )
    return trainer, fit


def fit(
    trainer: pl.Trainer,
    callbacks: FitCallbacks,
    model: PlantCNN,
    datamodule: PlantDataModule,
    resume: bool = True,
) -> FitResult:
    """Train `model` on `datamodule` for the Trainer's epochs (counted from the first run).

    resume: continue from out_dir/last.ckpt when it exists (weights, optimizer, epoch, history,
    best score); False starts afresh and overwrites the checkpoints.
    """
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
    return FitResult(
        best_checkpoint=None if best is None else out_dir / f"{BEST_NAME}{best.FILE_EXTENSION}",
        last_checkpoint=last_path,
        best_val_acc=None if best is None else float(best.best_model_score),
        best_epoch=None if best is None else best.best_epoch,
        history=list(callbacks.history.rows),
    )


def fit_plant_cnn(
    datamodule: PlantDataModule,
    model: PlantCNN,
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


def history_figure(history: list[dict[str, float]]) -> Any:
    """Loss and accuracy per epoch, train against validation, like Keras' History plots."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.8))
    epochs = [row["epoch"] for row in history]
    # A fit on train+val validates on nothing: its curves are train's alone.
    splits = [s for s in ("train", "val") if any(f"{s}/loss" in row for row in history)]
    for ax, metric in zip(figure.subplots(1, 2), ("loss", "acc"), strict=True):
        for split in splits:
            ax.plot(epochs, [row.get(f"{split}/{metric}") for row in history], "o-", label=split)
        ax.set(xlabel="epoch", title=metric)
        if len(epochs) <= 15:  # one tick per epoch while they stay readable
            ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
        ax.legend()
    figure.set_layout_engine("tight")
    return figure


def build_plant_cnn(
    cfg: Config,
    recipe: str,
    classes: list[str],
    channels_last: bool | None = None,
    cls: type | None = None,
) -> PlantCNN:
    """The model `train@<recipe>` trains: `recipes.<recipe>.model` instantiated for these
    classes, with the recipe's optimizer and LR scheduler (both checked on the model's
    parameters). `cls`: a subclass of the configured class (e.g. for timing); `channels_last`:
    override the config's."""
    key = f"recipes.{recipe}"
    spec = cfg.recipes[recipe]
    node = asdict(spec.model)
    if channels_last is not None:
        node["channels_last"] = channels_last
    factories = {}
    for part in ("optimizer", "scheduler"):
        part_node = getattr(spec, part)
        if part_node is not None:
            check_arguments(f"{key}.{part}", part_node)
            with config_errors(f"{key}.{part}"):
                factories[part] = instantiate(part_node, _convert_="all")
    data = {
        "num_classes": len(classes),
        "image_size": cfg.data.image_size,
        "class_names": list(classes),
        "init_seed": cfg.seed,
        **factories,
    }
    with config_errors(f"{key}.model"):
        if cls is None:
            model = instantiate(node, _convert_="all", **data)
        else:  # a local subclass has no importable name for `_target_`
            model = cls(**{k: v for k, v in node.items() if k != "_target_"}, **data)
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
