"""The train stage as `dvc repro` runs it, in a temporary root, observed from outside its code.

`run_train_stage` runs `python -m dlrepro.stages.train` (through the observer program below)
against a temporary copy of what the stage reads (params.yaml, dvc.yaml, the prepared cache)
with its own MLflow store: `Trainer.fit` is timed, every training step stamped, the process's
peak RSS read, and the selected model scored on the test split (and on a design set's when
given). The vs_keras, recipes and scale sections build on it.

`dataset` picks the data: the repository's `data/plant_disease_dataset` with its `data/cache`
when both exist (`make repro` builds them), else the same generator's leaves in a temporary
folder; `quick` always uses a tiny generated set.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import generate_and_prepare, last_line, steady_rate, timed_subprocess
from dlrepro import paths
from dlrepro.config import load_config
from dlrepro.errors import DataError

QUICK_SIZES = (96, 32)  # train, test images: three training steps, enough to time two
WARMUP_STEPS = 3

# Runs the train stage as `python -m` would, and records around it what the Keras side records.
STAGE_OBSERVER = """
import atexit, json, runpy, sys, time
from pathlib import Path

result, observed = Path(sys.argv[1]), {"stamps": []}

import pytorch_lightning as pl
from dlrepro.plant.classifier import LeafClassifier

fit = pl.Trainer.fit
def timed_fit(self, *args, **kwargs):
    start = time.perf_counter()
    try:
        return fit(self, *args, **kwargs)
    finally:
        observed["fit_s"] = time.perf_counter() - start
pl.Trainer.fit = timed_fit

step_end = LeafClassifier.on_train_batch_end
def stamped(self, outputs, batch, batch_idx):
    step_end(self, outputs, batch, batch_idx)
    observed["stamps"].append((self.current_epoch, time.perf_counter(), len(batch[1])))
LeafClassifier.on_train_batch_end = stamped

def write():
    status = Path("/proc/self/status").read_text().splitlines()
    hwm = next(line for line in status if line.startswith("VmHWM:"))
    observed["peak_rss_bytes"] = int(hwm.split()[1]) * 1024
    result.write_text(json.dumps(observed))
atexit.register(write)

sys.argv = ["dlrepro.stages.train", sys.argv[2]]
runpy.run_module("dlrepro.stages.train", run_name="__main__", alter_sys=True)
"""


def dataset(tmp: Path, quick: bool) -> tuple[Path, Path, str]:
    """(folder holding plant_disease_dataset/, its prepared cache, description)."""
    root = paths.repo_root()
    if (
        not quick
        and (root / paths.LEAVES).is_dir()
        and (root / paths.CACHE / "classes.json").is_file()
    ):
        return root / paths.DATA, root / paths.CACHE, f"{paths.LEAVES.as_posix()} (the pipeline's)"
    data = load_config(root / "params.yaml").data
    train, test = QUICK_SIZES if quick else (data.train_size, data.test_size)
    leaves = tmp / "data" / paths.LEAVES.name
    generate_and_prepare(leaves, tmp / "cache", data, train, test)
    return leaves.parent, tmp / "cache", f"generated {train}/{test} leaves in a temp folder"


def run_train_stage(
    cache: Path,
    tmp: Path,
    epochs: int | None,
    seed: int | None = None,
    recipe: str = "text",
    design_cache: Path | None = None,
    trainer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`train@<recipe>` in a temporary root, for `epochs` (None: the recipe's) and `seed`, with
    `trainer` over the recipe's own Trainer arguments; its selected model scored on the test
    split, and on `design_cache`'s when given."""
    root = paths.repo_root()
    stage_root = tmp / f"stage-{recipe}"
    shutil.copytree(cache, stage_root / paths.CACHE)  # inside the root, as the stage reads it
    shutil.copy(root / "dvc.yaml", stage_root / "dvc.yaml")
    params = yaml.safe_load((root / "params.yaml").read_text())
    if epochs is not None:
        params["recipes"][recipe]["max_epochs"] = epochs
    params["trainer"]["enable_progress_bar"] = False
    if trainer:
        params["recipes"][recipe]["trainer"] = {
            **params["recipes"][recipe].get("trainer", {}),
            **trainer,
        }
    if seed is not None:  # the model's initial weights, the batch order and augmentation
        params["seed"] = params["datamodule"]["seed"] = seed
    (stage_root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {
        **os.environ,
        "DVC_ROOT": str(stage_root),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
    }
    result = tmp / f"stage-{recipe}.json"
    wall, done = timed_subprocess(
        [sys.executable, "-c", STAGE_OBSERVER, str(result), recipe], stage_root, env
    )
    if done.returncode != 0:
        raise DataError(f"the train stage failed: {last_line(done.stderr)}")
    observed = json.loads(result.read_text())
    train = json.loads((stage_root / paths.METRICS / "train" / f"{recipe}.json").read_text())
    selected = stage_root / paths.selected_checkpoint(recipe, train["selected_on"])
    images = train["train_images"]
    run = {
        "program_wall_s": wall,
        "fit_s": observed["fit_s"],
        "fit_img_s": images * train["epochs"] / observed["fit_s"],
        "loop_img_s": loop_rate(observed["stamps"]),
        "epoch_s": epoch_seconds(observed["stamps"]),
        "peak_rss_bytes": observed["peak_rss_bytes"],
        "train_images": images,
        "val_images": train["val_images"],
        "epochs": train["epochs"],
        "best_val_acc": train["best_val_acc"],  # None for a fit on train+val
        "fit_on": train.get("fit_on", "train"),
        "selected_on": train["selected_on"],
        "precision": train["precision"],
        "test_acc": checkpoint_answers(selected, cache)[0],
    }
    if design_cache is not None:
        run["design_acc"], run["design_right"] = checkpoint_answers(
            selected, design_cache, "design"
        )
    return run


def loop_rate(stamps: list[list[float]]) -> float:
    steps = [tuple(stamp) for stamp in stamps]
    return steady_rate(steps, min(WARMUP_STEPS, max(len(steps) - 2, 0)))


def epoch_seconds(stamps: list[list[float]]) -> list[float]:
    """Training time of each epoch: its first step's end to its last step's end."""
    ends: dict[int, list[float]] = {}
    for epoch, stamp, _ in stamps:
        ends.setdefault(int(epoch), []).append(stamp)
    return [round(max(times) - min(times), 2) for _, times in sorted(ends.items())]


def checkpoint_answers(
    checkpoint: Path, cache: Path, split: str = "test"
) -> tuple[float, list[bool]]:
    """The checkpoint's accuracy on `cache`'s `split` (as `evaluate` measures it), and per
    image, in the split's order, whether its answer was right."""
    from dlrepro.data.cache import load_split
    from dlrepro.plant.evaluate import evaluate
    from dlrepro.plant.inference import load_checkpoint

    model = load_checkpoint(checkpoint)
    images, labels, classes = load_split(cache, split)
    metrics = evaluate(model, images, labels, classes)
    right = [p == t for p, t in zip(metrics["predictions"], metrics["labels"], strict=True)]
    return metrics["accuracy"], right
