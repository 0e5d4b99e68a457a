"""DVC stages `evaluate@<recipe>` and `design@<recipe>`: the recipe's selected checkpoint on the
test split (the only stage that reads it; metrics, ROC, confusion, mistakes) or on the design
split (metrics only, what recipe searches compare).

    python -m dlrepro.stages.evaluate text          # or tuned: the test split
    python -m dlrepro.stages.evaluate text design   # the design split

The checkpoint is the recipe's `selected_on`: the last epoch (the text: `model.evaluate` right
after `fit`) or the best val/acc epoch. Nothing was chosen on the test split, so its accuracy is
an honest estimate; the metrics file says which recipe, split and selection it measured.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from dlrepro import paths
from dlrepro.cli import recipe_argument, run_stage
from dlrepro.config import load_config
from dlrepro.errors import ConfigError, DataError
from dlrepro.tracking.runs import log_outcome, stage_run
from dlrepro.tracking.store import ensure_reachable

SCALARS = ("accuracy", "precision", "recall", "f1", "roc_auc")
SPLITS = ("test", "design")  # the split scored: its stage is evaluate@ or design@
STAGE = {"test": "evaluate", "design": "design"}
EMPTY_DESIGN = (
    "the design split is empty (set data.design_size for generated data, data.design_fraction "
    "or a design/ folder for your own)"
)


def split_argument(argv: list[str]) -> str:
    """The split named after the recipe (default test); a ConfigError for any other."""
    if len(argv) > 2 or (len(argv) == 2 and argv[1] not in SPLITS):
        given = " ".join(argv[1:])
        raise ConfigError(
            f"expected a recipe name and optionally a split ({', '.join(SPLITS)}), got {given}"
        )
    return argv[1] if len(argv) == 2 else "test"


def main() -> None:
    root = paths.repo_root()
    cfg = load_config(root / "params.yaml")
    argv = sys.argv[1:]
    split = split_argument(argv)
    recipe = recipe_argument(list(cfg.recipes), argv[:1])
    selected_on = cfg.recipes[recipe].selected_on
    ensure_reachable()

    from dlrepro.data.cache import load_split
    from dlrepro.outputs import write_json
    from dlrepro.plant.evaluate import evaluate
    from dlrepro.plant.inference import load_checkpoint
    from dlrepro.tracking.lineage import log_test_metrics, train_run_of

    checkpoint = root / paths.selected_checkpoint(recipe, selected_on)
    if not checkpoint.is_file():
        raise DataError(
            f"{checkpoint.relative_to(root)} not found: run `dvc repro train@{recipe}` first"
        )
    cache = root / paths.CACHE
    images, labels, classes = load_split(cache, split)
    if split == "design" and len(labels) == 0:  # a user's folder without one: nothing to score
        empty = {"recipe": recipe, "split": split, "num_images": 0, "note": EMPTY_DESIGN}
        write_json(root / paths.METRICS / "design" / f"{recipe}.json", empty)
        print(f"design@{recipe}: {EMPTY_DESIGN}; nothing scored")
        return
    model = load_checkpoint(checkpoint)
    stage = STAGE[split]
    params = {"recipe": recipe, "selected_on": selected_on, "checkpoint": checkpoint.name}
    inputs = [checkpoint.parent, cache / "classes.json", cache / split]  # its deps in dvc.yaml
    splits = [cache / split]
    with stage_run(stage, "plant", params, inputs, recipe=recipe, splits=splits) as run:
        result = evaluate(model, images, labels, classes, batch_size=cfg.data.batch_size)
        plots = [write_plots(root, recipe, result, images, classes)] if split == "test" else []
        summary = {
            "recipe": recipe,
            "selected_on": selected_on,
            "split": split,
            "checkpoint": checkpoint.name,
            # 8: each answer averages the image's 8 symmetries (the model's average_symmetries)
            "views_per_image": model.views_per_image,
            **{k: result[k] for k in (*SCALARS, "classes", "num_images", "confusion_matrix")},
        }
        metrics = write_json(root / paths.METRICS / stage / f"{recipe}.json", summary)
        scalars = {k: result[k] for k in SCALARS}
        log_outcome(run.info.run_id, scalars, {}, [metrics, *plots])
        trained_by = train_run_of(checkpoint.parent, recipe)
        if trained_by:  # the scores beside the curves, on the run that made the weights
            log_test_metrics(trained_by, scalars, prefix=f"{split}/")
    if split == "test":
        print(f"\nevaluate@{recipe}: Test Accuracy: {result['accuracy']:.2f}")  # the text's line
    else:
        print(f"\ndesign@{recipe}: accuracy {result['accuracy']:.4f} on {len(labels)} images")


def write_plots(
    root: Path, recipe: str, result: dict[str, Any], images: Any, classes: list[str]
) -> Path:
    """The test split's ROC, confusion, predictions and misclassified gallery, swapped in whole."""
    from dlrepro.outputs import new_dir, save_figure, write_csv
    from dlrepro.plant.figures import confusion_figure, misclassified_gallery, roc_figure

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
    return plots


if __name__ == "__main__":
    run_stage(main, sweep=True)
