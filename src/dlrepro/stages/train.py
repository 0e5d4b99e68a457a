"""DVC stage `train@<recipe>`: one recipe's plant CNN on the prepared cache's train split,
validated on its val split (or, for a recipe with `fit_on: train+val`, on both splits with
nothing validated), with Lightning and MLflow.

    python -m dlrepro.stages.train text        # or tuned: the recipes of conf/recipe/

Resuming: models/plant_cnn/<recipe>/ holds `run.json` (a fingerprint of the config, the data and
the checkpoint format, and whether the run finished). An interrupted run with the same
fingerprint continues from last.ckpt; anything else (new params, new data, a checkpoint written
by older code, a finished run under `dvc repro --force`) starts afresh, so a checkpoint never
leaks from one configuration into another.

Under DDP, Lightning re-executes this script once per extra process: only rank 0 tracks and
writes outputs; the other ranks just train.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import yaml

from dlrepro import paths
from dlrepro.allocator import keep_freed_memory
from dlrepro.cli import recipe_argument, run_stage
from dlrepro.config import Config, load_config
from dlrepro.config.load import flatten
from dlrepro.errors import ConfigError
from dlrepro.outputs import fresh_dir, save_figure, write_csv, write_json

RUN_FILE = "run.json"
# The shape of the callbacks' state in last.ckpt (dlrepro.plant.train). Lightning files each
# callback's state under its class name and silently skips state it cannot match, so a run
# interrupted under another shape starts afresh rather than resuming with an empty best-so-far.
# 2: best.ckpt's callback became BestOnVal, with its tie-break and best epoch.
CHECKPOINT_FORMAT = 2
# What this stage reads from params.yaml: these sections whole, data.image_size, and its recipe's
# section (recipes.<name>).
READS = ("seed", "datamodule", "trainer", "resume", "data.image_size")
# Settings that change how a run goes, not what it computes: not train's params in dvc.yaml, so
# changing one reruns nothing (tests/test_params.py proves that every other setting is hashed).
RUNTIME_SWITCHES = ("trainer.enable_progress_bar", "datamodule.num_workers", "resume")


def _within(key: str, prefixes: tuple[str, ...] | list[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def read_settings(params: dict[str, Any], recipe: str) -> dict[str, Any]:
    """The settings `train@<recipe>` reads, by dotted key, from params.yaml as loaded: one
    inventory for the DVC check, the resume fingerprint and the MLflow params."""
    reads = (*READS, f"recipes.{recipe}")
    return {k: v for k, v in flatten(params).items() if _within(k, reads)}


def stage_params(root: Path, recipe: str) -> list[str]:
    """The `params` dvc.yaml lists for `train@<recipe>` (its foreach `${key}` filled in)."""
    stage = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]["train"]
    return [str(p).replace("${key}", recipe) for p in stage["do"]["params"]]


def unhashed_settings(settings: dict[str, Any], stage_params: list[str]) -> list[str]:
    """Settings that are neither in the stage's dvc.yaml `params` nor run-time switches: a change
    to one would not rerun the stage (e.g. a Trainer option added with `-S +trainer.x`)."""
    return [k for k in settings if k not in RUNTIME_SWITCHES and not _within(k, stage_params)]


def check_hashed(settings: dict[str, Any], root: Path, recipe: str) -> None:
    """Refuse a setting that DVC does not hash: it would be applied once and then go stale."""
    unhashed = unhashed_settings(settings, stage_params(root, recipe))
    if unhashed:
        raise ConfigError(
            f"{unhashed[0]}: dvc.yaml's train stage does not list it in its params, so DVC would "
            f"not rerun training when it changes; add `- {unhashed[0]}` there"
        )


def fingerprint(settings: dict[str, Any], data_md5: str) -> str:
    """What the run computes (every setting but the run-time switches, and the data), and the
    shape of the checkpoint state it resumes from."""
    computed = {k: v for k, v in settings.items() if k not in RUNTIME_SWITCHES}
    identity = [computed, data_md5, CHECKPOINT_FORMAT]
    return hashlib.md5(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def trainer_options(cfg: Config, recipe: str) -> dict[str, Any]:
    """The Trainer arguments of `train@<recipe>`: the shared `trainer`, the recipe's own over them
    (`recipes.<name>.trainer`, e.g. the tuned recipe's precision), and the recipe's epochs."""
    spec = cfg.recipes[recipe]
    return {**cfg.trainer, **spec.trainer, "max_epochs": spec.max_epochs}


def recipe_keyed(err: ConfigError, recipe: str, own: dict[str, Any]) -> ConfigError:
    """An error about a Trainer argument the recipe sets names the recipe's key, where the user
    would change it."""
    text = str(err)
    if any(text.startswith((f"trainer.{name}=", f"trainer.{name}:")) for name in own):
        return ConfigError(f"recipes.{recipe}.{text}")
    return err


def main() -> None:
    keep_freed_memory()  # before any tensor: each step reuses the last one's buffers
    root = paths.repo_root()
    cfg = load_config(root / "params.yaml")
    recipe = recipe_argument(list(cfg.recipes))
    spec = cfg.recipes[recipe]
    settings = read_settings(yaml.safe_load((root / "params.yaml").read_text()), recipe)

    from lightning_fabric.utilities.rank_zero import rank_zero_only

    leader = rank_zero_only.rank == 0
    if leader:
        from dlrepro.tracking.store import ensure_reachable

        ensure_reachable()

    import pytorch_lightning as pl

    from dlrepro.data.cache import load_split
    from dlrepro.hashing import dvc_md5
    from dlrepro.plant.train import (
        build_datamodule,
        build_plant_cnn,
        build_trainer,
        fit,
        history_figure,
    )
    from dlrepro.tracking.logger import mlflow_logger
    from dlrepro.tracking.runs import stage_run
    from dlrepro.tracking.store import tracking_uri

    cache = root / paths.CACHE
    # train and val only: the test split is read by `evaluate` alone
    train_images, train_labels, classes = load_split(cache, "train")
    val_images, val_labels, _ = load_split(cache, "val")
    # The images the fit learns from, and those it holds out to validate on.
    learns_from_val = spec.fit_on == "train+val"
    fitted = len(train_labels) + (len(val_labels) if learns_from_val else 0)
    held_out = 0 if learns_from_val else len(val_labels)
    for split, count in ((spec.fit_on.replace("+", " + "), fitted), ("val", held_out)):
        if count:
            print(f"{split}: Found {count} images belonging to {len(classes)} classes.")

    # Everything that can fail on config is built before any output is touched.
    out_dir = root / paths.recipe_model_dir(recipe)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build_datamodule(
        cfg, recipe, classes, (train_images, train_labels), (val_images, val_labels)
    )
    model = build_plant_cnn(cfg, recipe, classes)
    try:
        trainer, callbacks = build_trainer(
            trainer_options(cfg, recipe),
            out_dir,
            spec.callbacks,
            callbacks_key=f"recipes.{recipe}.callbacks",
            seed=cfg.seed,
            validates=not learns_from_val,
        )
    except ConfigError as err:
        raise recipe_keyed(err, recipe, spec.trainer) from None
    check_hashed(settings, root, recipe)

    stamp = fingerprint(settings, dvc_md5(cache))
    previous = read_run_file(out_dir / RUN_FILE)
    if previous is None:
        print(f"train@{recipe}: {RUN_FILE} is unreadable, so no run can continue; starting afresh")
        previous = {}
    resume = cfg.resume and previous.get("fingerprint") == stamp and not previous.get("finished")
    last = out_dir / "last.ckpt"
    if resume and last.exists() and not checkpoint_readable(last):
        print(f"train@{recipe}: the interrupted run's last.ckpt is unreadable; starting afresh")
        resume = False
    if leader and not resume:
        fresh_dir(out_dir)
    if leader:
        write_json(out_dir / RUN_FILE, {"fingerprint": stamp, "finished": False})
    if not leader:
        fit(trainer, callbacks, model, datamodule, resume)
        return

    from dlrepro.tracking.runs import FINGERPRINT_TAG, interrupted_run, log_outcome

    params = {**settings, "data.path": cfg.data.path, "data.seed": cfg.data.seed, "recipe": recipe}
    splits = [cache / "train", cache / "val"]
    inputs = [cache / "classes.json", *splits]  # its data deps in dvc.yaml
    with stage_run(
        "train",
        "plant",
        params,
        inputs,
        recipe=recipe,
        splits=splits,
        system_metrics=True,
        continue_run=interrupted_run("plant", stamp) if resume else None,
        # Whether it resumed is the run's history, not its result: a tag, not a metrics field
        # (a resumed run writes the same bytes as an uninterrupted one).
        tags={FINGERPRINT_TAG: stamp, "dlrepro.resumed": str(resume).lower()},
        contexts={"val": "training"} if learns_from_val else None,
    ) as run:
        trainer.logger = mlflow_logger(run_id=run.info.run_id, tracking_uri=tracking_uri())
        started = time.perf_counter()
        result = fit(trainer, callbacks, model, datamodule, resume)
        fit_seconds = time.perf_counter() - started
        plots = fresh_dir(root / paths.PLOTS / "train" / recipe)
        write_csv(plots / "history.csv", result.history)
        save_figure(history_figure(result.history), plots / "history.png")
        summary = {
            "recipe": recipe,
            "fit_on": spec.fit_on,
            "selected_on": spec.selected_on,
            "best_val_acc": result.best_val_acc,
            "best_epoch": result.best_epoch,
            "last_val_acc": result.history[-1].get("val/acc") if result.history else None,
            "epochs": len(result.history),
            "classes": classes,
            "train_images": fitted,
            "val_images": held_out,
            "parameters": sum(p.numel() for p in model.parameters()),
            "precision": trainer.precision,  # the shared trainer's or the recipe's own
        }
        metrics = write_json(root / paths.METRICS / "train" / f"{recipe}.json", summary)
        write_json(out_dir / RUN_FILE, {"fingerprint": stamp, "finished": True})
        # Wall time goes to MLflow only: metrics/ holds what the same inputs reproduce exactly.
        log_outcome(run.info.run_id, {"fit_seconds": fit_seconds}, {}, [metrics, plots])
    chosen = paths.selected_checkpoint(recipe, spec.selected_on)
    learnt = (
        "fit on train + val, nothing held out"
        if learns_from_val
        else f"best val/acc {result.best_val_acc:.4f} (epoch {result.best_epoch})"
    )
    print(
        f"train@{recipe}: {learnt}; evaluated and exported from {chosen} "
        f"(selected on {spec.selected_on})"
    )


def checkpoint_readable(path: Path) -> bool:
    """Whether an interrupted run's last.ckpt can be loaded (a kill mid-write truncates it)."""
    import torch

    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # torch raises many kinds for a torn or foreign file
        return False
    return True


def read_run_file(path: Path) -> dict | None:
    """The previous run's record: {} when there is none, None when it cannot be read (the caller
    says so and starts afresh: the record only ever decides whether to resume)."""
    if not path.exists():
        return {}
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


if __name__ == "__main__":
    run_stage(main)
