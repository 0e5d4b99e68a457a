"""`make bench`'s side-by-side: the text's Keras program against dlrepro's `train` stage.

Both run as their own process on the same data, one after the other, and each is observed the
same way from outside its code:

- Keras: `src/dlrepro/plant/text_code.py` (the text's case study, verbatim) in the TensorFlow venv
  that `make keras-env` builds, through `plant/keras_reference.py`, from the folder that holds
  `plant_disease_dataset/`: it decodes the JPEGs itself, as the text does.
- dlrepro: `python -m dlrepro.stages.train`, the command `dvc repro` runs, in a temporary copy
  of what the stage reads (params.yaml, dvc.yaml, the prepared cache) with its own MLflow store;
  `Trainer.fit` is timed and every training step stamped by the observer below.

Figures of each side: program wall (interpreter start to exit, imports included), fit wall and
fit throughput (train images × epochs / fit wall, validation and data loading included, as
Keras' `fit` counts), peak RSS (VmHWM of the program's own process) and the final model's test
accuracy (Keras: its `model.evaluate(test_data)`; dlrepro: `last.ckpt` on the test split, the
last epoch unselected, as Keras' figure is). dlrepro's loop throughput is the steady rate of its
training steps (`dlrepro.bench.steady_rate`).

The data is the repository's `data/plant_disease_dataset` with its `data/cache` when both exist
(`make repro` builds them), else the same generator's leaves in a temporary folder; `--quick`
always uses a tiny generated set and one epoch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from dlrepro import paths
from dlrepro.bench import (
    generate_and_prepare,
    last_line,
    load_average,
    load_row,
    print_table,
    steady_rate,
    timed_subprocess,
)
from dlrepro.config import load_config
from dlrepro.errors import DataError

KERAS_VENV = ".venv-keras"
KERAS_MISSING = (
    "the text's Keras program needs its own environment: run `make keras-env` (builds "
    f"{KERAS_VENV} with tensorflow-cpu 2.21.0, about 2 minutes), then `make bench` again"
)
QUICK_SIZES = (96, 32)  # train, test images: three training steps, enough to time two
LOOP_SPEEDUP_TARGET = 2.0
STAGE_WALL_RATIO_TARGET = 0.5
WARMUP_STEPS = 3
# figure -> (target, whether it is a floor): the targets for the vs_keras ratios
TARGETS = {
    "loop_speedup": (LOOP_SPEEDUP_TARGET, True),
    "stage_wall_ratio": (STAGE_WALL_RATIO_TARGET, False),
    "peak_rss_ratio": (1.0, False),
}
BF16 = "bf16-mixed"  # the vs_keras section's second dlrepro run: the text recipe in bfloat16

# Runs the train stage as `python -m` would, and records around it what the Keras side records.
STAGE_OBSERVER = """
import atexit, json, runpy, sys, time
from pathlib import Path

result, observed = Path(sys.argv[1]), {"stamps": []}

import pytorch_lightning as pl
from dlrepro.plant.model import PlantCNN

fit = pl.Trainer.fit
def timed_fit(self, *args, **kwargs):
    start = time.perf_counter()
    try:
        return fit(self, *args, **kwargs)
    finally:
        observed["fit_s"] = time.perf_counter() - start
pl.Trainer.fit = timed_fit

step_end = PlantCNN.on_train_batch_end
def stamped(self, outputs, batch, batch_idx):
    step_end(self, outputs, batch, batch_idx)
    observed["stamps"].append((self.current_epoch, time.perf_counter(), len(batch[1])))
PlantCNN.on_train_batch_end = stamped

def write():
    status = Path("/proc/self/status").read_text().splitlines()
    hwm = next(line for line in status if line.startswith("VmHWM:"))
    observed["peak_rss_bytes"] = int(hwm.split()[1]) * 1024
    result.write_text(json.dumps(observed))
atexit.register(write)

sys.argv = ["dlrepro.stages.train", sys.argv[2]]
runpy.run_module("dlrepro.stages.train", run_name="__main__", alter_sys=True)
"""


def keras_python(root: Path) -> Path | None:
    python = root / KERAS_VENV / "bin" / "python"
    return python if python.is_file() else None


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


def run_keras(python: Path, data_root: Path, tmp: Path, epochs: int, seed: int) -> dict[str, Any]:
    script = Path(__file__).parent / "plant" / "keras_reference.py"
    result = tmp / "keras.json"
    command = [str(python), str(script), str(data_root), str(result), "--epochs", str(epochs)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    wall, done = timed_subprocess([*command, "--seed", str(seed)], tmp, env)
    if done.returncode != 0:
        raise DataError(f"the Keras program failed: {last_line(done.stderr)}")
    return {**json.loads(result.read_text()), "program_wall_s": wall}


def run_stage(
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
        run["design_acc"], run["design_right"] = checkpoint_answers(selected, design_cache)
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


def checkpoint_answers(checkpoint: Path, cache: Path) -> tuple[float, list[bool]]:
    """The checkpoint's accuracy on `cache`'s test split (as `evaluate` measures it), and per
    image, in the split's order, whether its answer was right."""
    from dlrepro.data.ingest import load_split
    from dlrepro.plant.evaluate import evaluate
    from dlrepro.plant.model import load_checkpoint

    model = load_checkpoint(checkpoint)
    images, labels, classes = load_split(cache, "test")
    metrics = evaluate(model, images, labels, classes)
    right = [p == t for p, t in zip(metrics["predictions"], metrics["labels"], strict=True)]
    return metrics["accuracy"], right


def comparison(keras: dict[str, Any] | None, stage: dict[str, Any]) -> dict[str, Any]:
    """The `vs_keras` figures; the ratios need the Keras side."""
    figures: dict[str, Any] = {
        "loop_img_s": round(stage["loop_img_s"], 1),
        "stage_wall_s": round(stage["program_wall_s"], 1),
        "stage_fit_s": round(stage["fit_s"], 1),
        "stage_fit_img_s": round(stage["fit_img_s"], 1),
        "stage_peak_rss_gb": round(stage["peak_rss_bytes"] / 1e9, 3),
        "stage_epoch_s": stage["epoch_s"],
        "stage_test_acc": round(stage["test_acc"], 4),
        "train_images": stage["train_images"],
        "val_images": stage["val_images"],
        "epochs": stage["epochs"],
    }
    if keras is None:
        return {**figures, "keras": KERAS_MISSING}
    return {
        **figures,
        "keras_fit_img_s": round(keras["fit_img_s"], 1),
        "keras_fit_s": round(keras["fit_s"], 1),
        "keras_program_wall_s": round(keras["program_wall_s"], 1),
        "keras_peak_rss_gb": round(keras["peak_rss_bytes"] / 1e9, 3),
        "keras_test_acc": round(keras["test_acc"], 4),
        "tensorflow": keras["tensorflow"],
        "loop_speedup": round(stage["loop_img_s"] / keras["fit_img_s"], 3),
        "fit_speedup": round(stage["fit_img_s"] / keras["fit_img_s"], 3),
        "stage_wall_ratio": round(stage["program_wall_s"] / keras["program_wall_s"], 3),
        "peak_rss_ratio": round(stage["peak_rss_bytes"] / keras["peak_rss_bytes"], 3),
    }


BF16_KEYS = ("loop_img_s", "stage_wall_s", "stage_fit_img_s", "stage_peak_rss_gb", "stage_test_acc")
BF16_RATIOS = ("loop_speedup", "stage_wall_ratio")


def bf16_figures(keras: dict[str, Any] | None, stage: dict[str, Any]) -> dict[str, Any]:
    """The text recipe once more under bfloat16 autocast: the same network and recipe in a
    different arithmetic (bf16 products, float32 sums and weights), so not the text's function;
    what `-S recipes.text.trainer.precision=bf16-mixed` buys on this machine."""
    figures = comparison(keras, stage)
    kept = [*BF16_KEYS, *(BF16_RATIOS if keras is not None else ())]
    return {"precision": stage["precision"], **{key: figures[key] for key in kept}}


def target_note(figures: dict[str, Any], key: str) -> str:
    """The figure against its target in TARGETS, e.g. `target >= 2.0: met`."""
    target, at_least = TARGETS[key]
    met = figures[key] >= target if at_least else figures[key] <= target
    return f"target {'>=' if at_least else '<='} {target}: {'met' if met else 'not met'}"


def bf16_rows(figures: dict[str, Any]) -> list[tuple[str, str, str]]:
    note = "the text recipe under bf16 autocast: a different arithmetic"
    out = [
        ("bf16 loop", f"{figures['loop_img_s']} img/s", note),
        ("bf16 program wall", f"{figures['stage_wall_s']} s", "process start to exit"),
        ("bf16 peak RSS", f"{figures['stage_peak_rss_gb']} GB", "VmHWM of the process"),
        ("bf16 test accuracy", f"{figures['stage_test_acc']}", "final model, test split"),
    ]
    for key in BF16_RATIOS:
        if key in figures:
            out.append((f"bf16 {key}", f"{figures[key]:.3f}", target_note(figures, key)))
    return out


def rows(figures: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, value, note) rows: each measure with dlrepro's value, Keras' and the ratio."""
    out = [
        (
            "data",
            f"{figures['train_images']} train images",
            f"{figures['epochs']} epochs; Keras fits all "
            f"{figures['train_images'] + figures['val_images']} of train/, dlrepro holds "
            f"{figures['val_images']} out as val",
        )
    ]
    pairs = (
        ("program wall", "stage_wall_s", "keras_program_wall_s", "s", "process start to exit"),
        ("fit wall", "stage_fit_s", "keras_fit_s", "s", "fit(), validation included"),
        ("fit throughput", "stage_fit_img_s", "keras_fit_img_s", "img/s", "images × epochs / fit"),
        ("peak RSS", "stage_peak_rss_gb", "keras_peak_rss_gb", "GB", "VmHWM of the process"),
        ("test accuracy", "stage_test_acc", "keras_test_acc", "", "final model, test split"),
    )
    for label, ours, theirs, unit, note in pairs:
        value = f"{figures[ours]} {unit}".strip()
        if theirs in figures:
            note = f"Keras {figures[theirs]} {unit}".strip() + f"; {note}"
        out.append((f"dlrepro {label}", value, note))
    out.append(("dlrepro loop", f"{figures['loop_img_s']} img/s", "steady training steps"))
    seconds = figures["stage_epoch_s"]
    each = " / ".join(f"{s:.1f}" for s in seconds)
    out.append(("dlrepro epoch", f"{sum(seconds) / len(seconds):.1f} s", f"mean; each: {each}"))
    if "keras" in figures:
        out.append(("Keras", "not run", figures["keras"]))
        return out
    for key, note in (
        ("loop_speedup", "dlrepro loop ÷ Keras fit throughput"),
        ("fit_speedup", "fit throughput ÷ Keras fit throughput"),
        ("stage_wall_ratio", "train stage wall ÷ Keras program wall"),
        ("peak_rss_ratio", "peak RSS ÷ Keras peak RSS"),
    ):
        if key in TARGETS:
            note += f"; {target_note(figures, key)}"
        out.append((key, f"{figures[key]:.3f}", note))
    return out


def bench_vs_keras(quick: bool) -> dict[str, Any]:
    """Both programs on the same data; returns the `vs_keras` figures and prints the table."""
    root = paths.repo_root()
    cfg = load_config(root / "params.yaml")
    epochs = 1 if quick else cfg.recipes["text"].max_epochs
    python = keras_python(root)
    load_start = load_average()
    with tempfile.TemporaryDirectory(prefix="dlrepro-bench-") as tmp_name:
        tmp = Path(tmp_name)
        data_root, cache, described = dataset(tmp, quick)
        keras = None if python is None else run_keras(python, data_root, tmp, epochs, cfg.seed)
        stage = run_stage(cache, tmp, epochs)
        (tmp / "bf16").mkdir()
        bf16 = run_stage(cache, tmp / "bf16", epochs, trainer={"precision": BF16})
    figures = {
        **comparison(keras, stage),
        "bf16": bf16_figures(keras, bf16),
        "dataset": described,
        "quick": quick,
    }
    load_end = load_average()
    figures["load_average"] = {"start": load_start, "end": load_end}
    print_table(
        "vs_keras: the text's Keras program beside the train stage",
        [*rows(figures), *bf16_rows(figures["bf16"]), load_row(load_start, load_end)],
    )
    return figures


RECIPES = ("text", "tuned")
TUNED_COST_TARGET = 3.0  # issue 11: the tuned recipe's training at most 3x the text recipe's


def other_leaves(folder: Path, seed_offset: int, train: int, test: int) -> Path:
    """`train` + `test` leaves from the pipeline's generator with `data.seed` + `seed_offset`,
    prepared like the pipeline's into `folder`/cache (val carved from train as prepare does):
    each image is a function of (seed, split, class, index), so none is one of the
    pipeline's own leaves, nor of another offset's."""
    data = load_config(paths.repo_root() / "params.yaml").data
    cache = folder / "cache"
    generate_and_prepare(
        folder / paths.LEAVES.name,
        cache,
        dataclasses.replace(data, seed=data.seed + seed_offset),
        train=train,
        test=test,
    )
    return cache


DESIGN_SEED_OFFSET = 1  # the design set's leaves: data.seed + 1
MORE_SEED_OFFSET = 2  # --train-leaves' leaves: data.seed + 2
MILD = 0.5  # `leaf_group`: a leaf with one blight or spots below this severity is mild


def design_set(tmp: Path, size: int) -> Path:
    """`size` leaves with `data.seed` + 1 (a cache whose test split holds them): images no
    split of the pipeline's dataset holds, to compare recipes on more images than val's
    without touching test."""
    # The fewest train images ingest accepts (val takes one per class): only `test` is read.
    return other_leaves(tmp / "design", DESIGN_SEED_OFFSET, train=4, test=size)


def leaf_group(drawn: dict[str, Any]) -> str:
    """The row a generated leaf counts in, in the errors-by-kind table, from what the generator
    drew (`dlrepro.data.leaves.describe_leaf`)."""
    diseases = drawn["diseases"]
    if not diseases:
        return "healthy, insect holes" if drawn["insect_holes"] else "healthy, no holes"
    if len(diseases) > 1:
        return "two kinds of disease"
    disease = diseases[0]
    if disease in ("blight", "spots"):
        return f"{disease}, {'mild' if drawn['severity'] < MILD else 'severe'}"
    return disease  # "spots, early", "mosaic, patches" or "mosaic, interveinal"


def design_groups(design_cache: Path) -> list[str]:
    """`leaf_group` of each design-set image, in the cache's order (each leaf drawn again)."""
    from tqdm import tqdm

    from dlrepro.data.leaves import describe_leaf

    data = load_config(paths.repo_root() / "params.yaml").data
    rows = json.loads((design_cache / "test" / "manifest.json").read_text())["paths"]
    seed = data.seed + DESIGN_SEED_OFFSET
    return [
        leaf_group(describe_leaf(seed, row, data.raw_size))
        for row in tqdm(rows, desc="design leaves described", unit="img", disable=None)
    ]


def errors_by_group(groups: list[str], right_per_seed: list[list[bool]]) -> dict[str, Any]:
    """Per group of leaves: how many, and the wrong answers among them (mean over seeds)."""
    if any(len(right) != len(groups) for right in right_per_seed):
        raise ValueError(f"one answer per leaf expected ({len(groups)}) from every seed")
    table: dict[str, Any] = {}
    for group in sorted(set(groups)):
        rows = [i for i, g in enumerate(groups) if g == group]
        wrong = statistics.fmean(sum(not right[i] for i in rows) for right in right_per_seed)
        table[group] = {
            "leaves": len(rows),
            "errors": round(wrong, 2),
            "error_pct": round(100 * wrong / len(rows), 1),
        }
    return table


def more_leaves(tmp: Path, train: int) -> tuple[Path, str]:
    """A dataset of `train` training leaves and the default number of test leaves, with
    `data.seed` + 2: neither the pipeline's leaves nor the design set's, to see what more data
    buys a recipe."""
    test = load_config(paths.repo_root() / "params.yaml").data.test_size
    cache = other_leaves(tmp / "more", MORE_SEED_OFFSET, train=train, test=test)
    return cache, f"generated {train}/{test} leaves (data.seed + 2)"


def bench_recipes(
    quick: bool, seeds: tuple[int, ...] | None = None, design: int = 0, train_leaves: int = 0
) -> dict[str, Any]:
    """train@text and train@tuned, one after the other on the same data, once per seed: what
    the tuned recipe costs against the text's, and what each buys on the test split (its
    selected checkpoint), with the seed-to-seed spread; with `design`, also each selected
    model's accuracy on that many extra generated leaves (`design_set`) and its errors among
    them per `leaf_group`, the mean over seeds; with `train_leaves`,
    both trained on that many other generated leaves (`more_leaves`) instead of the
    pipeline's."""
    root = paths.repo_root()
    seeds = seeds or (load_config(root / "params.yaml").seed,)
    load_start = load_average()
    runs: dict[str, list[dict[str, Any]]] = {recipe: [] for recipe in RECIPES}
    with tempfile.TemporaryDirectory(prefix="dlrepro-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if train_leaves:
            cache, described = more_leaves(tmp, train_leaves)
        else:
            _, cache, described = dataset(tmp, quick)
        design_cache = design_set(tmp, design) if design else None
        groups = design_groups(design_cache) if design_cache else []
        epochs = 1 if quick else None  # None: each recipe's own max_epochs
        for seed in seeds:
            for recipe in RECIPES:
                run = run_stage(
                    cache, tmp / f"seed{seed}", epochs, seed, recipe, design_cache=design_cache
                )
                runs[recipe].append(run)
                scored = f", design acc {run['design_acc']:.4f}" if design else ""
                print(
                    f"recipes: {recipe} seed {seed}: test acc {run['test_acc']:.4f}{scored}, "
                    f"fit {run['fit_s']:.1f} s",
                    flush=True,
                )
    figures: dict[str, Any] = {
        "dataset": described,
        "quick": quick,
        "seeds": list(seeds),
        "design_images": design,
        "train_leaves": train_leaves,
    }
    for recipe, per_seed in runs.items():
        accuracies = [run["test_acc"] for run in per_seed]
        fits = [run["fit_s"] for run in per_seed]
        figures[recipe] = {
            "test_acc": [round(a, 4) for a in accuracies],
            "test_acc_mean": round(statistics.fmean(accuracies), 4),
            "test_acc_sd": round(statistics.stdev(accuracies), 4) if len(seeds) > 1 else 0.0,
            "fit_s": [round(f, 1) for f in fits],
            "fit_s_mean": round(statistics.fmean(fits), 1),
            "stage_wall_s": [round(run["program_wall_s"], 1) for run in per_seed],
            "epochs": [run["epochs"] for run in per_seed],
            "epoch_s": per_seed[0]["epoch_s"],
            "peak_rss_gb": round(max(run["peak_rss_bytes"] for run in per_seed) / 1e9, 3),
            "fit_on": per_seed[0]["fit_on"],
            "selected_on": per_seed[0]["selected_on"],
            "best_val_acc": [
                None if run["best_val_acc"] is None else round(run["best_val_acc"], 4)
                for run in per_seed
            ],
        }
        if design:
            scores = [run["design_acc"] for run in per_seed]
            figures[recipe]["design_acc"] = [round(a, 4) for a in scores]
            figures[recipe]["design_acc_mean"] = round(statistics.fmean(scores), 4)
            figures[recipe]["design_errors_by_group"] = errors_by_group(
                groups, [run["design_right"] for run in per_seed]
            )
    figures["tuned_fit_ratio"] = round(
        figures["tuned"]["fit_s_mean"] / figures["text"]["fit_s_mean"], 3
    )
    load_end = load_average()
    figures["load_average"] = {"start": load_start, "end": load_end}
    table = []
    for recipe in RECIPES:
        run = figures[recipe]
        table.append(
            (
                f"{recipe}: test accuracy",
                f"{run['test_acc_mean']} ± {run['test_acc_sd']}",
                f"seeds {figures['seeds']}: {run['test_acc']}; fit on {run['fit_on']}; "
                f"selected on {run['selected_on']}"
                + ("" if run["fit_on"] == "train+val" else f"; best val/acc {run['best_val_acc']}"),
            )
        )
        if design:
            table.append(
                (
                    f"{recipe}: design accuracy",
                    f"{run['design_acc_mean']}",
                    f"{design} generated leaves (data.seed + 1), per seed {run['design_acc']}",
                )
            )
        table.append(
            (
                f"{recipe}: fit",
                f"{run['fit_s_mean']} s",
                f"per seed {run['fit_s']} s, epochs {run['epochs']}; stage walls "
                f"{run['stage_wall_s']} s; peak RSS {run['peak_rss_gb']} GB",
            )
        )
    met = figures["tuned_fit_ratio"] <= TUNED_COST_TARGET
    table.append(
        (
            "tuned_fit_ratio",
            f"{figures['tuned_fit_ratio']:.3f}",
            f"tuned fit ÷ text fit; target <= {TUNED_COST_TARGET}: {'met' if met else 'not met'}",
        )
    )
    table.append(load_row(load_start, load_end))
    print_table(f"recipes: train@text beside train@tuned ({described})", table)
    if design:
        print_table(
            f"recipes: errors on the design set by what the generator drew (mean over seeds "
            f"{figures['seeds']})",
            [
                (
                    f"{recipe}: {group}",
                    f"{row['errors']:.2f}",
                    f"of {row['leaves']} leaves, {row['error_pct']} %",
                )
                for recipe in RECIPES
                for group, row in figures[recipe]["design_errors_by_group"].items()
            ],
        )
    return figures
