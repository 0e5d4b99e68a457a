"""DVC stage `evaluate@<recipe>`: the recipe's selected checkpoint on the test split (the only
stage that reads it); metrics, ROC, confusion, mistakes.

    python -m dlrepro.stages.evaluate text        # or tuned

The checkpoint is the recipe's `selected_on`: the last epoch (the text: `model.evaluate` right
after `fit`) or the best val/acc epoch. Nothing was chosen on the test split, so its accuracy is
an honest estimate; the metrics file says which recipe and which selection it measured.
"""

from __future__ import annotations

from dlrepro import paths
from dlrepro.cli import recipe_argument, run_stage
from dlrepro.config import load_config
from dlrepro.errors import DataError
from dlrepro.tracking.runs import log_outcome, stage_run
from dlrepro.tracking.store import ensure_reachable

SCALARS = ("accuracy", "precision", "recall", "f1", "roc_auc")


def main() -> None:
    root = paths.repo_root()
    cfg = load_config(root / "params.yaml")
    recipe = recipe_argument(list(cfg.recipes))
    selected_on = cfg.recipes[recipe].selected_on
    ensure_reachable()

    from dlrepro.data.cache import load_split
    from dlrepro.outputs import new_dir, save_figure, write_csv, write_json
    from dlrepro.plant.classifier import load_checkpoint
    from dlrepro.plant.evaluate import evaluate
    from dlrepro.plant.figures import confusion_figure, misclassified_gallery, roc_figure
    from dlrepro.tracking.lineage import log_test_metrics, train_run_of

    checkpoint = root / paths.selected_checkpoint(recipe, selected_on)
    if not checkpoint.is_file():
        raise DataError(
            f"{checkpoint.relative_to(root)} not found: run `dvc repro train@{recipe}` first"
        )
    model = load_checkpoint(checkpoint)
    cache = root / paths.CACHE
    images, labels, classes = load_split(cache, "test")
    params = {"recipe": recipe, "selected_on": selected_on, "checkpoint": checkpoint.name}
    inputs = [checkpoint.parent, cache / "classes.json", cache / "test"]  # its deps in dvc.yaml
    splits = [cache / "test"]
    with stage_run("evaluate", "plant", params, inputs, recipe=recipe, splits=splits) as run:
        result = evaluate(model, images, labels, classes, batch_size=cfg.data.batch_size)
        plots = root / paths.PLOTS / "evaluate" / recipe
        with new_dir(plots) as staged:
            save_figure(confusion_figure(result), staged / "confusion.png")
            if result["average"] == "binary":
                save_figure(roc_figure(result), staged / "roc.png")
                roc = result["roc"]
                write_csv(
                    staged / "roc.csv",
                    [{"fpr": f, "tpr": t} for f, t in zip(roc["fpr"], roc["tpr"], strict=True)],
                )
            write_csv(
                staged / "predictions.csv",
                [
                    {"actual": classes[a], "predicted": classes[p]}
                    for a, p in zip(result["labels"], result["predictions"], strict=True)
                ],
            )
            misclassified_gallery(
                images,
                result["labels"],
                result["predictions"],
                result["probabilities"],
                classes,
                staged / "misclassified.png",
            )
        summary = {
            "recipe": recipe,
            "selected_on": selected_on,
            "split": "test",
            "checkpoint": checkpoint.name,
            # 8: each answer averages the image's 8 symmetries (the model's average_symmetries)
            "views_per_image": model.views_per_image,
            **{k: result[k] for k in (*SCALARS, "classes", "num_images", "confusion_matrix")},
        }
        metrics = write_json(root / paths.METRICS / "evaluate" / f"{recipe}.json", summary)
        scalars = {k: result[k] for k in SCALARS}
        log_outcome(run.info.run_id, scalars, {}, [metrics, plots])
        trained_by = train_run_of(checkpoint.parent, recipe)
        if trained_by:  # the test figures beside the curves, on the run that made the weights
            log_test_metrics(trained_by, scalars)
    print(f"\nevaluate@{recipe}: Test Accuracy: {result['accuracy']:.2f}")  # the text's line


if __name__ == "__main__":
    run_stage(main, sweep=True)
