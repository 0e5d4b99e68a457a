"""`make bench`: where the time goes on this machine, as figures and ratios (never pass/fail).

    python -m benchmarks [--quick] [--only SECTION] [--output PATH] [--seeds S,S] [--design N]
                         [--train-leaves N] [--scale N,N,...]

Run from the repository root (the folder that holds `benchmarks/`). Sections, one module each:

- curriculum (benchmarks.curriculum): wall time of every `python -m dlrepro.stages.curriculum
  <chapter>` from a cold process, beside the cost of the imports alone.
- training (benchmarks.training, its loops in benchmarks.loops): the text's plant CNN on the
  default leaf dataset: this machine's sgemm rate and the FLOP limit it implies, Lightning's
  throughput and peak RSS, the same model in a plain PyTorch loop, data loading alone, a few
  settings tried for speed; on a machine with a CUDA GPU, also accelerator="auto".
- vs_keras (benchmarks.vs_keras): the text's Keras program (its own TensorFlow venv, `make
  keras-env`) beside the train stage on the same data: walls, throughputs, peak RSS, accuracies
  and their ratios.
- recipes (benchmarks.recipes): train@text beside train@tuned, once per seed (`--seeds 0,1,2`),
  with `--design N` scored on N further generated leaves and with `--train-leaves N` trained on
  N other generated leaves.
- scale (benchmarks.scale; `--scale 800,4000,20000`, instead of the others): prepare and train
  cost per image and the train stage's peak RSS as the training set grows.
- predict (benchmarks.predict): `dlrepro predict`'s cold start, latency and throughput.
- pipeline (benchmarks.pipeline): `dvc repro` in a fresh clone of HEAD, each stage's wall beside
  its target, the curriculum's and the pipeline's totals.

Figures go to stdout as one table per section, and to `reports/bench.json` (a local measurement
file, not a pipeline output). Throughput counts only steady steps: the interval from the end of
one step to the end of the next inside one epoch (so each holds one batch's loading and its
training step), after the first warm-up steps; the gap between epochs (validation, checkpoints)
is left out. Shared machines are noisy: the load average is printed with every section, and
figures are only comparable with figures measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import Scale, load_average
from benchmarks.curriculum import bench_curriculum
from benchmarks.pipeline import bench_pipeline
from benchmarks.predict import bench_predict
from benchmarks.recipes import bench_recipes
from benchmarks.scale import bench_scale
from benchmarks.training import bench_training
from benchmarks.vs_keras import bench_vs_keras
from dlrepro import paths
from dlrepro.allocator import keep_freed_memory
from dlrepro.cli import run_stage

SECTIONS = ("curriculum", "training", "vs_keras", "recipes", "predict", "pipeline")
DEFAULT_OUTPUT = paths.REPORTS / "bench.json"


RUNNERS: dict[str, Callable[[Scale], dict[str, Any]]] = {
    "curriculum": bench_curriculum,
    "training": bench_training,
    "vs_keras": lambda scale: bench_vs_keras(scale.quick),
    "recipes": lambda scale: bench_recipes(
        scale.quick, scale.seeds, scale.design, scale.train_leaves
    ),
    "predict": lambda scale: bench_predict(scale.quick),
    "pipeline": bench_pipeline,
}


def write_results(output: Path, section: str, figures: dict[str, Any]) -> None:
    """Replace one section of the JSON file, keeping the other sections' last figures."""
    try:
        results = json.loads(output.read_text())
    except (OSError, ValueError):
        results = {}
    if not isinstance(results, dict):
        results = {}
    results[section] = figures
    results["machine"] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "logical_cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


def training_sizes(text: str) -> list[int]:
    """`--scale 800,4000,20000`: even training-set sizes (the generator splits them by class)."""
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected sizes like 800,4000,20000") from None
    # A rate needs two timed steps in an epoch: at least 64 images at the text's batch of 32.
    if len(sizes) < 2 or any(size < 64 or size % 2 for size in sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: two or more even sizes >= 64")
    return sizes


def seed_list(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected seeds like 0,1,2") from None
    if any(seed < 0 for seed in seeds) or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r}: distinct seeds >= 0")
    return seeds


def leaf_count(text: str) -> int:
    """`--design N`, `--train-leaves N`: an even number of leaves (the generator splits them by
    class)."""
    try:
        size = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an even number of images") from None
    if size < 2 or size % 2:
        raise argparse.ArgumentTypeError(f"{text!r}: an even number of images >= 2")
    return size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="shrink everything (smoke test)")
    parser.add_argument("--only", choices=SECTIONS, help="run one section")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"JSON file for the figures (default: <repo>/{DEFAULT_OUTPUT.as_posix()})",
    )
    parser.add_argument(
        "--scale",
        type=training_sizes,
        metavar="N,N,...",
        help="instead of the sections: prepare and train cost per image at these training-set "
        "sizes, e.g. 800,4000,20000 (benchmarks.scale)",
    )
    parser.add_argument(
        "--seeds",
        type=seed_list,
        metavar="S,S,...",
        help="the recipes section trains each recipe once per seed (seed and datamodule.seed) "
        "and reports mean and standard deviation, e.g. 0,1,2",
    )
    parser.add_argument(
        "--design",
        type=leaf_count,
        default=0,
        metavar="N",
        help="the recipes section also scores each selected model on N extra generated leaves "
        "(data.seed + 1: neither train, val nor test), for recipe choices finer than val's "
        "120 images can tell apart, e.g. 1200",
    )
    parser.add_argument(
        "--train-leaves",
        type=leaf_count,
        default=0,
        metavar="N",
        help="the recipes section trains on N other generated leaves (data.seed + 2, val carved "
        "from them) instead of the pipeline's, to see what more data buys, e.g. 4000",
    )
    args = parser.parse_args(argv)
    # As the train stage does, before any tensor: the plain loop and the predict section's torch
    # figures run in this process, and every section then measures under the same allocator.
    keep_freed_memory()
    output = args.output or paths.repo_root() / DEFAULT_OUTPUT
    scale = Scale(args.quick, args.seeds, args.design, args.train_leaves)
    print(f"load average at start: {load_average()} on {os.cpu_count()} logical CPUs")
    if args.scale:
        figures = bench_scale(args.scale)
        write_results(output, "scale", figures)
        print(f"\nfigures written to {output}")
        return
    for section in [args.only] if args.only else SECTIONS:
        write_results(output, section, RUNNERS[section](scale))
    print(f"\nfigures written to {output}")


if __name__ == "__main__":
    run_stage(main)
