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

import dataclasses
import hashlib
import json

from dlrepro import paths
from dlrepro.cli import run_stage
from dlrepro.config import Config, load_config
from dlrepro.outputs import fresh_dir, save_figure, write_csv, write_json

RUN_FILE = "run.json"


def fingerprint(cfg: Config, data_md5: str) -> str:
    sections = {k: dataclasses.asdict(getattr(cfg, k)) for k in ("model", "optimizer", "trainer")}
    sections["data"] = {"batch_size": cfg.data.batch_size, "seed": cfg.data.seed, "md5": data_md5}
    sections["seed"] = cfg.seed
    return hashlib.md5(json.dumps(sections, sort_keys=True).encode()).hexdigest()


def main() -> None:
    root = paths.repo_root()
    cfg = load_config(root / "params.yaml")

    from lightning_fabric.utilities.rank_zero import rank_zero_only

    leader = rank_zero_only.rank == 0
    if leader:
        from dlrepro.tracking import ensure_reachable

        ensure_reachable()

    from dlrepro.data.ingest import load_split
    from dlrepro.plant.train import (
        build_datamodule,
        build_plant_cnn,
        fit_plant_cnn,
        history_figure,
    )
    from dlrepro.tracking import dvc_md5, stage_run, tracking_uri

    cache = root / paths.CACHE
    train_images, train_labels, classes = load_split(cache, "train")
    test_images, test_labels, _ = load_split(cache, "test")
    for labels in (train_labels, test_labels):  # as the text's flow_from_directory says it
        print(f"Found {len(labels)} images belonging to {len(classes)} classes.")

    out_dir = root / paths.PLANT_MODEL_DIR
    stamp = fingerprint(cfg, dvc_md5(cache))
    previous = json.loads((out_dir / RUN_FILE).read_text()) if (out_dir / RUN_FILE).exists() else {}
    resume = (
        cfg.trainer.resume and previous.get("fingerprint") == stamp and not previous.get("finished")
    )
    if leader and not resume:
        fresh_dir(out_dir)
    if leader:
        write_json(out_dir / RUN_FILE, {"fingerprint": stamp, "finished": False})

    datamodule = build_datamodule(
        cfg, classes, (train_images, train_labels), (test_images, test_labels)
    )
    model = build_plant_cnn(cfg, classes)
    trainer = cfg.trainer
    fit_args = {
        "max_epochs": trainer.max_epochs,
        "accelerator": trainer.accelerator,
        "devices": trainer.devices,
        "strategy": trainer.strategy,
        "num_nodes": trainer.num_nodes,
        "deterministic": trainer.deterministic,
        "seed": cfg.seed,
        "early_stopping_patience": trainer.early_stopping_patience or None,
        "enable_progress_bar": trainer.enable_progress_bar,
        "resume": resume,
    }
    if not leader:
        fit_plant_cnn(datamodule, model, out_dir, logger=None, **fit_args)
        return

    from pytorch_lightning.loggers import MLFlowLogger

    from dlrepro.tracking import log_outcome

    params = {k: dataclasses.asdict(getattr(cfg, k)) for k in ("model", "optimizer", "trainer")}
    params |= {"data": {"batch_size": cfg.data.batch_size, "path": cfg.data.path}, "seed": cfg.seed}
    with stage_run("train", "plant", params, inputs=[cache]) as run:
        logger = MLFlowLogger(run_id=run.info.run_id, tracking_uri=tracking_uri())
        result = fit_plant_cnn(datamodule, model, out_dir, logger=logger, **fit_args)
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


if __name__ == "__main__":
    run_stage(main)
