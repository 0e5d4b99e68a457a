"""DVC stage `train@<recipe>`: one recipe's classifier on the cache's train split, validated on
val (or fitted on both, `fit_on: train+val`), with Lightning and MLflow.

    python -m dlrepro.stages.train text        # or tuned: the recipes of conf/recipe/

The fit writes into a run folder beside the outputs (`paths.recipe_run_dir`), which replaces
the recipe's model folder whole once everything succeeded: a crash, a full disk or a dead server
leaves the previous model complete. An interrupted run with the same settings continues from
the run folder's last.ckpt (`dlrepro.plant.runs`).
Under DDP, Lightning re-executes this script once per extra process: only rank 0 tracks and
writes outputs; the other ranks just train.
"""

from __future__ import annotations

import time

from dlrepro import paths
from dlrepro.allocator import keep_freed_memory
from dlrepro.cli import recipe_argument, run_stage
from dlrepro.config import load_config
from dlrepro.config.load import read_yaml
from dlrepro.errors import ConfigError
from dlrepro.hashing import dvc_md5
from dlrepro.outputs import (
    fresh_dir,
    new_dir,
    refuse_link,
    replace_dir,
    save_figure,
    write_csv,
    write_json,
)
from dlrepro.plant import runs


def main() -> None:
    keep_freed_memory()  # before any tensor: each step reuses the last one's buffers
    root = paths.repo_root()
    cfg = load_config(root / "params.yaml")
    recipe = recipe_argument(list(cfg.recipes))
    spec = cfg.recipes[recipe]
    settings = runs.read_settings(read_yaml(root / "params.yaml"), recipe)

    from lightning_fabric.utilities.rank_zero import rank_zero_only

    # `rank` is an attribute lightning_fabric sets on the function at import; its stub is the
    # decorator's overloads
    leader = rank_zero_only.rank == 0  # type: ignore[attr-defined]
    if leader:
        from dlrepro.tracking.store import ensure_reachable

        ensure_reachable()

    import pytorch_lightning as pl

    from dlrepro.data.cache import load_split
    from dlrepro.plant.figures import history_figure
    from dlrepro.plant.train import build_classifier, build_datamodule, build_trainer, fit

    cache = root / paths.CACHE
    train, val = load_split(cache, "train"), load_split(cache, "val")  # never test
    classes = train[2]
    learns_from_val = spec.fit_on == "train+val"
    fitted = len(train[1]) + (len(val[1]) if learns_from_val else 0)
    held_out = 0 if learns_from_val else len(val[1])
    for split, count in ((spec.fit_on.replace("+", " + "), fitted), ("val", held_out)):
        if count:
            print(f"{split}: Found {count} images belonging to {len(classes)} classes.")

    # Everything that can fail on config is built before any output is touched.
    out_dir = root / paths.recipe_model_dir(recipe)
    refuse_link(out_dir)  # before the fit, not after it
    run_dir = root / paths.recipe_run_dir(recipe)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build_datamodule(cfg, recipe, classes, train[:2], val[:2])
    model = build_classifier(cfg, recipe, classes)
    options = runs.trainer_options(cfg, recipe)
    try:
        trainer, callbacks = build_trainer(
            options,
            run_dir,
            spec.callbacks,
            callbacks_key=f"recipes.{recipe}.callbacks",
            seed=cfg.seed,
            validates=not learns_from_val,
        )
    except ConfigError as err:
        raise runs.recipe_keyed(err, recipe, spec.trainer) from None
    runs.check_hashed(settings, root, recipe)

    stamp = runs.fingerprint(settings, dvc_md5(cache))
    resume = runs.may_resume(run_dir, stamp, cfg.resume, recipe)
    if not leader:
        fit(trainer, callbacks, model, datamodule, resume)
        return
    if not resume:
        fresh_dir(run_dir)
    write_json(run_dir / runs.RUN_FILE, {"fingerprint": stamp, "finished": False})

    from dlrepro.tracking.lineage import tag_model
    from dlrepro.tracking.logger import mlflow_logger
    from dlrepro.tracking.runs import FINGERPRINT_TAG, interrupted_run, log_outcome, stage_run
    from dlrepro.tracking.store import tracking_uri

    params = runs.tracked_params(settings, recipe, options)
    params |= {"data.path": cfg.data.path, "data.seed": cfg.data.seed}
    splits = [cache / "train", cache / "val"]
    with stage_run(
        "train",
        "plant",
        params,
        [cache / "classes.json", *splits],  # its data deps in dvc.yaml
        recipe=recipe,
        splits=splits,
        system_metrics=True,
        continue_run=interrupted_run("plant", stamp) if resume else None,
        # Whether it resumed is the run's history, not its result: a tag, not a metric.
        tags={FINGERPRINT_TAG: stamp, "dlrepro.resumed": str(resume).lower()},
        contexts={"val": "training"} if learns_from_val else None,
    ) as run:
        trainer.logger = mlflow_logger(run_id=run.info.run_id, tracking_uri=tracking_uri())
        started = time.perf_counter()
        result = fit(trainer, callbacks, model, datamodule, resume)
        fit_seconds = time.perf_counter() - started
        plots = root / paths.PLOTS / "train" / recipe
        with new_dir(plots) as staged:
            write_csv(staged / "history.csv", result.history)
            save_figure(history_figure(result.history), staged / "history.png")
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
        write_json(run_dir / runs.RUN_FILE, {"fingerprint": stamp, "finished": True})
        replace_dir(run_dir, out_dir)  # the finished fit replaces the previous model whole
        tag_model(run.info.run_id, out_dir)  # what evaluate and export find this run by
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


if __name__ == "__main__":
    run_stage(main, sweep=True)
