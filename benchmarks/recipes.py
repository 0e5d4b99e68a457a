"""The recipes section: train@text beside train@tuned, once per seed.

Each recipe's test accuracy and fit time, the tuned/text time ratio, and with `--design N` each
selected model's accuracy on the first N leaves of the pipeline's design split (generated with
`data.seed` + 1: neither train, val nor test), with its errors among them by what the generator
drew (interveinal chlorosis, mild blight, early spots, ...); with `--train-leaves N`, both
trained on N other generated leaves instead of the pipeline's, to see what more data buys. Each
run is the real train stage (`benchmarks.train_stage`).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import generate_and_prepare, load_average, load_row, print_table
from benchmarks.train_stage import dataset, run_train_stage
from dlrepro import paths
from dlrepro.config import load_config

RECIPES = ("text", "tuned")
TUNED_COST_TARGET = 3.0  # the tuned recipe's training at most 3x the text recipe's


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


MORE_SEED_OFFSET = 2  # --train-leaves' leaves: data.seed + 2 (the design split's: data.seed + 1)
MILD = 0.5  # `leaf_group`: a leaf with one blight or spots below this severity is mild


def design_set(tmp: Path, size: int) -> Path:
    """The first `size` leaves of the pipeline's design split (the generator's design/ folder,
    drawn with `data.seed` + 1), in a cache whose `design` split holds them, prepared as the
    prepare stage prepares it: images no other split holds, to compare recipes on more images
    than val's without touching test."""
    data = load_config(paths.repo_root() / "params.yaml").data
    folder = tmp / "design"
    # The fewest train and test leaves ingest accepts (val takes one per class): only the
    # design split is read.
    generate_and_prepare(folder / paths.LEAVES.name, folder / "cache", data, 4, 2, design=size)
    return folder / "cache"


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
    rows = json.loads((design_cache / "design" / "manifest.json").read_text())["paths"]
    return [  # a design/ path: describe_leaf draws it with data.seed + 1, as the generator did
        leaf_group(describe_leaf(data.seed, row, data.raw_size))
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
                run = run_train_stage(
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
