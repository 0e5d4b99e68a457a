"""DVC stage `train`: the text's plant CNN on the prepared cache, with Lightning and MLflow.

    python -m dlrepro.stages.train

Resuming: models/plant_cnn/ holds `run.json` (a fingerprint of the config and the data, and
whether the run finished). An interrupted run with the same fingerprint continues from
last.ckpt; anything else (new params, new data, a finished run under `dvc repro --force`)
starts afresh, so a checkpoint never leaks from one configuration into another.

Under DDP, Lightning re-executes this script once per extra process: only rank 0 tracks and
writes outputs; the other ranks just train.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dlrepro import paths
from dlrepro.cli import run_stage
from dlrepro.config import Config, load_config
from dlrepro.errors import ConfigError
from dlrepro.outputs import fresh_dir, save_figure, write_csv, write_json

RUN_FILE = "run.json"
# Settings that change how a run goes, not what it computes: not train's params in dvc.yaml, so
# changing one reruns nothing (tests/test_params.py proves that every other key is hashed).
RUNTIME_SWITCHES = ("trainer.enable_progress_bar", "datamodule.num_workers", "resume")
# The sections of params.yaml this stage reads whole (plus data.image_size).
READS = ("seed", "model", "optimizer", "datamodule", "trainer", "callbacks", "resume")


def unhashed_settings(params: dict[str, Any], stage_params: list[str]) -> list[str]:
    """Keys this stage reads that are neither in its dvc.yaml `params` nor run-time switches: a
    change to one would not rerun the stage (e.g. a Trainer option added with `-S +trainer.x`)."""

    def leaves(tree: dict[str, Any], prefix: str = "") -> list[str]:
        keys = []
        for key, value in tree.items():
            name = f"{prefix}{key}"
            keys += leaves(value, name + ".") if isinstance(value, dict) and value else [name]
        return keys

    read = [k for k in leaves(params) if k.split(".")[0] in READS]
    return [
        key
        for key in read
        if key not in RUNTIME_SWITCHES
        and not any(key == p or key.startswith(p + ".") for p in stage_params)
    ]


def check_hashed(root: Path) -> None:
    """Refuse a setting that DVC does not hash: it would be applied once and then go stale."""
    import yaml

    stage = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]["train"]
    unhashed = unhashed_settings(
        yaml.safe_load((root / "params.yaml").read_text()), stage["params"]
    )
    if unhashed:
        raise ConfigError(
            f"{unhashed[0]}: dvc.yaml's train stage does not list it in its params, so DVC would "
            f"not rerun training when it changes; add `- {unhashed[0]}` there"
        )


def fingerprint(cfg: Config, data_md5: str) -> str:
    """What the run computes: every setting but the run-time switches, and the data."""
    sections = {k: asdict(getattr(cfg, k)) for k in ("model", "datamodule")}
    sections |= {"optimizer": cfg.optimizer, "callbacks": cfg.callbacks, "seed": cfg.seed}
    sections["trainer"] = {k: v for k, v in cfg.trainer.items() if k != "enable_progress_bar"}
    sections["datamodule"].pop("num_workers")
    sections["data"] = {"image_size": cfg.data.image_size, "md5": data_md5}
    return hashlib.md5(json.dumps(sections, sort_keys=True).encode()).hexdigest()


def main() -> None:
    root = paths.repo_root()
    cfg = load_config(root / "params.yaml")

    from lightning_fabric.utilities.rank_zero import rank_zero_only

    leader = rank_zero_only.rank == 0
    if leader:
        from dlrepro.tracking import ensure_reachable

        ensure_reachable()

    import pytorch_lightning as pl

    from dlrepro.data.ingest import load_split
    from dlrepro.plant.train import (
        build_datamodule,
        build_plant_cnn,
        build_trainer,
        fit,
        history_figure,
    )
    from dlrepro.tracking import dvc_md5, stage_run, tracking_uri

    cache = root / paths.CACHE
    train_images, train_labels, classes = load_split(cache, "train")
    test_images, test_labels, _ = load_split(cache, "test")
    for labels in (train_labels, test_labels):  # as the text's flow_from_directory says it
        print(f"Found {len(labels)} images belonging to {len(classes)} classes.")

    # Everything that can fail on config is built before any output is touched.
    out_dir = root / paths.PLANT_MODEL_DIR
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build_datamodule(
        cfg, classes, (train_images, train_labels), (test_images, test_labels)
    )
    model = build_plant_cnn(cfg, classes)
    trainer, callbacks = build_trainer(cfg.trainer, out_dir, cfg.callbacks)
    check_hashed(root)

    stamp = fingerprint(cfg, dvc_md5(cache))
    previous = read_run_file(out_dir / RUN_FILE)
    resume = cfg.resume and previous.get("fingerprint") == stamp and not previous.get("finished")
    if leader and not resume:
        fresh_dir(out_dir)
    if leader:
        write_json(out_dir / RUN_FILE, {"fingerprint": stamp, "finished": False})
    if not leader:
        fit(trainer, callbacks, model, datamodule, resume)
        return

    from pytorch_lightning.loggers import MLFlowLogger

    from dlrepro.tracking import log_outcome

    params = {"model": asdict(cfg.model), "optimizer": cfg.optimizer, "trainer": cfg.trainer}
    params |= {"datamodule": asdict(cfg.datamodule), "callbacks": cfg.callbacks}
    params |= {"data": {"path": cfg.data.path, "image_size": cfg.data.image_size}}
    params |= {"seed": cfg.seed, "resume": cfg.resume}
    with stage_run("train", "plant", params, inputs=[cache]) as run:
        trainer.logger = MLFlowLogger(run_id=run.info.run_id, tracking_uri=tracking_uri())
        result = fit(trainer, callbacks, model, datamodule, resume)
        plots = fresh_dir(root / paths.PLOTS / "train")
        write_csv(plots / "history.csv", result.history)
        save_figure(history_figure(result.history), plots / "history.png")
        summary = {
            "best_val_acc": result.best_val_acc,
            "epochs": len(result.history),
            "classes": classes,
            "train_images": len(train_labels),
            "val_images": len(test_labels),
            "parameters": sum(p.numel() for p in model.parameters()),
            "resumed": resume,
        }
        metrics = write_json(root / paths.METRICS / "train.json", summary)
        write_json(out_dir / RUN_FILE, {"fingerprint": stamp, "finished": True})
        log_outcome(run.info.run_id, {}, {}, [metrics, plots])
    best = result.best_checkpoint.relative_to(root)
    print(f"train: best val/acc {result.best_val_acc:.4f} -> {best}")


def read_run_file(path: Path) -> dict:
    """The previous run's record; a missing or unreadable one means "no run to continue"."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


if __name__ == "__main__":
    run_stage(main)
