"""`make bench`: where the time goes on this machine, as figures and ratios (never pass/fail).

    python -m dlrepro.bench [--quick] [--only SECTION] [--output PATH] [--seeds S,S] [--design N]
                           [--train-leaves N]

Sections:

- curriculum: wall time of every `python -m dlrepro.stages.curriculum <chapter>` from a cold
  process, against a temporary copy of what the stages need (params.yaml, data/gates) and a
  temporary MLflow SQLite store; beside it, the cost of the imports alone, so the reader sees how
  much of a chapter is interpreter start, torch, Lightning and MLflow rather than its own work.
- training: the text's plant CNN on the default leaf dataset, measured in one run: this machine's
  fp32 sgemm rate and the FLOP limit it implies for a training step, Lightning's throughput with
  the pipeline's own `fit_plant_cnn` (in a fresh process, whose peak RSS is the training memory),
  the same model and batches in a plain PyTorch loop (the two take turns, one epoch at a time,
  and each Lightning epoch is set against the plain epochs either side of it), data loading
  alone, and a few settings tried for speed (channels_last on/off, thread count,
  OMP_WAIT_POLICY, glibc's malloc defaults instead of `dlrepro.allocator`'s); on a machine
  with a CUDA GPU, also each recipe of ACCELERATOR_RUNS fitted under accelerator="auto".
- vs_keras: the text's Keras program (its own TensorFlow venv, `make keras-env`) beside the train
  stage on the same data: walls, throughputs, peak RSS, accuracies and their ratios
  (dlrepro.bench_keras).
- recipes: train@text beside train@tuned, once per seed (`--seeds 0,1,2`): each one's test
  accuracy and fit time, the tuned/text time ratio, and with `--design N` each selected model's
  accuracy on N further generated leaves, with its errors among them by what the generator drew
  (interveinal chlorosis, mild blight, early spots, ...), and with `--train-leaves N` both
  trained on N other generated leaves instead of the pipeline's, to see what more data buys
  (dlrepro.bench_keras).
- scale (`--scale 800,4000,20000`, instead of the others): prepare and train cost per image
  and the train stage's peak RSS as the training set grows (dlrepro.bench_scale).
- predict: the rows of `dlrepro.bench_predict.run()` when that module exists.

Figures go to stdout as one table per section, and to `reports/bench.json` (a local measurement
file, not a pipeline output). Throughput counts only steady steps: the interval from the end of
one step to the end of the next inside one epoch (so each holds one batch's loading and its
training step), after the first warm-up steps; the gap between epochs (validation, checkpoints)
is left out. Shared machines are noisy: the load average is printed with every section, and
figures are only comparable with figures measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

from dlrepro import paths
from dlrepro.allocator import keep_freed_memory
from dlrepro.cli import run_stage
from dlrepro.config import Config, load_config
from dlrepro.config.schema import DataConfig
from dlrepro.errors import DataError
from dlrepro.stages.train import trainer_options

SECTIONS = ("curriculum", "training", "vs_keras", "recipes", "predict")
DEFAULT_OUTPUT = paths.REPORTS / "bench.json"
BENCH_RECIPE = "text"  # the training section times the text's CNN, as train@text builds it
# With a CUDA GPU, the training section also fits these (recipe, precision; None: the recipe's
# own) under accelerator="auto": the text recipe as configured and in bf16, the tuned recipe.
ACCELERATOR_RUNS = (("text", None), ("text", "bf16-mixed"), ("tuned", None))

CURRICULUM_TARGET_S = 40.0  # the seven chapter stages together (issue 10)
# (code, note): each run in a fresh interpreter; an import includes what it pulls in itself.
IMPORTS = {
    "python (no import)": ("pass", "interpreter start"),
    "import numpy": ("import numpy", ""),
    "import torch": ("import torch", ""),
    "import pytorch_lightning": (
        "import pytorch_lightning",
        "includes torch, torchmetrics, scipy",
    ),
    "import mlflow": ("import mlflow", "without torch"),
}

SGEMM_SIZE = 2048
LIGHTNING_VS_PLAIN_TARGET = 0.95
TRAINING_VS_FLOP_LIMIT_TARGET = 0.80
LOADING_VS_TRAINING_TARGET = 5.0
PEAK_RSS_TARGET_GB = 1.5
# The default dataset: the text's 800 train / 200 test images.
TRAIN_IMAGES, TEST_IMAGES = 800, 200
QUICK_TRAIN_IMAGES, QUICK_TEST_IMAGES = 96, 32


class Scale:
    """How much each measurement does; `--quick` shrinks everything for a smoke test."""

    def __init__(
        self,
        quick: bool,
        seeds: tuple[int, ...] | None = None,
        design: int = 0,
        train_leaves: int = 0,
    ) -> None:
        self.quick = quick
        self.seeds = seeds  # the recipes section: one run per seed (None: params.yaml's seed)
        self.design = design  # the recipes section: extra generated leaves to score on (0: none)
        self.train_leaves = train_leaves  # the recipes section: other leaves to train on (0: none)
        self.import_repeats = 1 if quick else 3
        self.sgemm_repeats = 3 if quick else 10
        # Lightning and the plain loop alternate, one epoch each, `rounds` times: on a shared
        # machine the load drifts within minutes, so each ratio compares neighbours.
        self.rounds = 1 if quick else 3
        self.tuning_rounds = 1 if quick else 2
        self.tuning_steps = 3 if quick else 15
        self.tuning_variants = 2 if quick else None  # quick: configured and one other
        self.loading_epochs = 1 if quick else 3
        self.warmup_steps = 1 if quick else 3
        # quick: an evenly spaced subset of the cached images (both classes), whatever the cache
        self.image_limit = (QUICK_TRAIN_IMAGES, QUICK_TEST_IMAGES) if quick else None


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def load_row(start: list[float], end: list[float]) -> tuple[str, str, str]:
    return ("load average", "", f"1/5/15 min: {start} at start, {end} at end")


def print_table(title: str, rows: Sequence[tuple[str, str, str]]) -> None:
    """Rows of (figure, value, note), in aligned columns under a title."""
    header = ("figure", "value", "note")
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(2)]
    print(f"\n== {title} ==")
    for figure, value, note in (header, *rows):
        print(f"  {figure:<{widths[0]}}  {value:>{widths[1]}}  {note}".rstrip())


def ratio_row(value: float, target: float, at_least: bool) -> dict[str, Any]:
    met = value >= target if at_least else value <= target
    return {
        "value": round(value, 3),
        "target": f"{'>=' if at_least else '<='} {target}",
        "met": met,
    }


def steady_rate(stamps: Sequence[tuple[int, float, int]], warmup_steps: int) -> float:
    """Images per second from (epoch, time at the end of the step, images in the step) stamps.

    Step i lasts from the end of step i-1 to its own end, inside the same epoch; the first
    `warmup_steps` steps of the run (allocator, oneDNN kernel selection) are not counted.
    """
    steps = counted_steps(stamps, warmup_steps)
    return sum(images for images, _ in steps) / sum(seconds for _, seconds in steps)


def best_step_rate(stamps: Sequence[tuple[int, float, int]], warmup_steps: int) -> float:
    """Images per second of the fastest counted step: what a step gets when no other process
    interrupts it, the upper envelope on a shared machine."""
    return max(images / seconds for images, seconds in counted_steps(stamps, warmup_steps))


def counted_steps(
    stamps: Sequence[tuple[int, float, int]], warmup_steps: int
) -> list[tuple[int, float]]:
    """(images, seconds) of each step after the warm-up whose start lies in its own epoch."""
    steps = [
        (current[2], current[1] - previous[1])
        for index, (previous, current) in enumerate(pairwise(stamps), start=1)
        if index >= warmup_steps and previous[0] == current[0]
    ]
    if not steps:
        raise DataError(f"too few steps to time ({len(stamps)} steps, {warmup_steps} warm-up)")
    return steps


def peak_rss_bytes() -> int:
    """This process's peak resident set size.

    VmHWM, the high-water mark of the process's own memory map: on Linux `ru_maxrss` survives
    exec, so a child started from a large parent reports the parent's peak as its own.
    """
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:  # not Linux: ru_maxrss (bytes on macOS) is the best there is
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024  # reported in kB


def physical_cores() -> int:
    try:
        import psutil  # installed with dvc; counts cores, not hyper-threads
    except ImportError:
        return os.cpu_count() or 1
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def timed_subprocess(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, done


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


# ---------------------------------------------------------------------------------------------
# Section 1: curriculum chapters from a cold process
# ---------------------------------------------------------------------------------------------


def bench_curriculum(scale: Scale) -> dict[str, Any]:
    from dlrepro.data.gates import write_gates
    from dlrepro.report import CHAPTERS

    chapters = list(CHAPTERS)[:1] if scale.quick else list(CHAPTERS)
    load_start = load_average()
    with tempfile.TemporaryDirectory(prefix="dlrepro-bench-") as tmp:
        root = Path(tmp)
        params = paths.repo_root() / "params.yaml"
        cfg = load_config(params)
        shutil.copy(params, root / "params.yaml")
        write_gates(root / paths.GATES, cfg.data.gates)
        uri = f"sqlite:///{root / 'mlflow.db'}"
        env = {**os.environ, "DVC_ROOT": str(root), "MLFLOW_TRACKING_URI": uri}

        imports = {}
        for name, (code, _) in IMPORTS.items():
            command = [sys.executable, "-c", code]
            if not scale.quick:  # an untimed run first: files in the page cache, as usual
                timed_subprocess(command, root, env)
            runs = [timed_subprocess(command, root, env)[0] for _ in range(scale.import_repeats)]
            imports[name] = round(statistics.median(runs), 3)

        # Creating the SQLite store runs MLflow's schema migrations once; a pipeline pays that on
        # its first stage only, so it is timed apart from the chapters.
        create = f"import mlflow; mlflow.set_tracking_uri({uri!r}); mlflow.search_experiments()"
        store_s, store = timed_subprocess([sys.executable, "-c", create], root, env)
        if store.returncode != 0:
            raise DataError(f"creating the MLflow store {uri} failed: {last_line(store.stderr)}")

        times: dict[str, float | None] = {}
        errors: dict[str, str] = {}
        for chapter in chapters:
            command = [sys.executable, "-m", "dlrepro.stages.curriculum", chapter]
            seconds, done = timed_subprocess(command, root, env)
            times[chapter] = round(seconds, 2) if done.returncode == 0 else None
            if done.returncode != 0:
                errors[chapter] = f"exit {done.returncode}: {last_line(done.stderr)}"
    total = sum(seconds for seconds in times.values() if seconds is not None)

    rows = [(name, f"{seconds:.2f} s", IMPORTS[name][1]) for name, seconds in imports.items()]
    rows.append(("mlflow store creation", f"{store_s:.2f} s", "once per new mlflow.db"))
    for chapter, seconds in times.items():
        if seconds is None:
            rows.append((f"curriculum-{chapter}", "failed", errors[chapter]))
        else:
            rows.append((f"curriculum-{chapter}", f"{seconds:.2f} s", "cold process, whole stage"))
    note = f"target {CURRICULUM_TARGET_S:.0f} s" + (
        f" (quick: {len(chapters)} of {len(CHAPTERS)} chapters)" if scale.quick else ""
    )
    rows.append(("curriculum total", f"{total:.2f} s", note))
    load_end = load_average()
    rows.append(load_row(load_start, load_end))
    print_table("curriculum: chapter stages from a cold process", rows)
    return {
        "quick": scale.quick,
        "import_s": imports,
        "mlflow_store_creation_s": round(store_s, 2),
        "chapter_s": times,
        "chapter_errors": errors,
        "total_s": round(total, 2),
        "target_s": CURRICULUM_TARGET_S,
        "total_vs_target": round(total / CURRICULUM_TARGET_S, 3),
        "load_average": {"start": load_start, "end": load_end},
    }


# ---------------------------------------------------------------------------------------------
# Section 2: training throughput of the plant CNN
# ---------------------------------------------------------------------------------------------


def generate_and_prepare(
    leaves: Path, cache: Path, data: DataConfig, train: int, test: int
) -> tuple[float, float]:
    """`train` + `test` generated leaves in `leaves`, prepared into `cache` with `data`'s
    settings as the prepare stage would: (seconds generating, seconds preparing)."""
    from dlrepro.data.ingest import ingest
    from dlrepro.data.leaves import generate_dataset

    start = time.perf_counter()
    generate_dataset(leaves, train, test, data.seed, data.raw_size)
    generated = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # its "Found N images" lines
        ingest(
            leaves,
            cache,
            data.image_size,
            data.test_fraction,
            data.seed,
            data.min_side,
            data.val_fraction,
        )
    return generated - start, time.perf_counter() - generated


def find_or_build_cache(tmp: Path, cfg: Config, scale: Scale) -> tuple[Path, dict[str, Any]]:
    """The repository's data/cache when it exists; else a freshly generated and ingested one."""
    existing = paths.repo_root() / paths.CACHE
    if (existing / "classes.json").is_file() and (existing / "train" / "images.npy").is_file():
        return existing, {"dataset": f"{paths.CACHE.as_posix()} (reused)"}
    train, test = (
        (QUICK_TRAIN_IMAGES, QUICK_TEST_IMAGES) if scale.quick else (TRAIN_IMAGES, TEST_IMAGES)
    )
    generate_s, ingest_s = generate_and_prepare(
        tmp / "leaves", tmp / "cache", cfg.data, train, test
    )
    return tmp / "cache", {
        "dataset": f"generated {train}/{test} leaves in a temp folder",
        "generate_img_s": round((train + test) / generate_s, 1),
        "ingest_img_s": round((train + test) / ingest_s, 1),
    }


def load_training_data(cache: Path, limit: tuple[int, int] | None) -> dict[str, Any]:
    """Both cached splits; with `limit`, evenly spaced rows (so both classes) loaded in memory."""
    import numpy as np

    from dlrepro.data.ingest import load_split

    splits = {}
    for split, count in zip(("train", "val"), limit or (None, None), strict=True):
        images, labels, classes = load_split(cache, split)
        if count is not None and count < len(labels):
            rows = np.round(np.linspace(0, len(labels) - 1, count)).astype(np.int64)
            images, labels = np.asarray(images[rows]), labels[rows]
        splits[split] = (images, labels)
    return {"classes": classes, **splits}


def build_datamodule(cfg: Config, data: dict[str, Any], recipe: str = BENCH_RECIPE) -> Any:
    """The datamodule train@<recipe> fits on, over `data`'s train and val splits."""
    from dlrepro.plant.train import build_datamodule as stage_datamodule

    return stage_datamodule(cfg, recipe, data["classes"], data["train"], data["val"])


def build_model(cfg: Config, classes: list[str], channels_last: bool, cls: type | None = None):
    """PlantCNN exactly as train@text builds it (or a subclass of it, `cls`)."""
    from dlrepro.plant.train import build_plant_cnn

    return build_plant_cnn(cfg, BENCH_RECIPE, classes, channels_last, cls)


def sgemm_gflops(repeats: int) -> list[float]:
    """fp32 GFLOP/s of `repeats` SGEMM_SIZE² matmuls (2·n³ FLOPs) with torch's current threads."""
    import torch

    a, b = torch.randn(SGEMM_SIZE, SGEMM_SIZE), torch.randn(SGEMM_SIZE, SGEMM_SIZE)
    for _ in range(2):
        a @ b
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        seconds.append(time.perf_counter() - start)
    return [2 * SGEMM_SIZE**3 / s / 1e9 for s in seconds]


def training_step_flops(cfg: Config, classes: list[str]) -> tuple[int, int]:
    """(forward, forward + backward) FLOPs for one image, counted by torch's FlopCounterMode.

    It counts the convolutions and matrix products (2 FLOPs per multiply-add), the work the
    sgemm rate bounds; ReLU, pooling, biases and Adam's element-wise update add about 1 % more.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(cfg, classes, channels_last=False)
    image = torch.rand(1, 3, cfg.data.image_size, cfg.data.image_size)
    label = torch.zeros(1, dtype=torch.int64)
    with torch.no_grad(), FlopCounterMode(display=False) as forward:
        model(image)
    with FlopCounterMode(display=False) as step:
        model.loss(model(image), label).backward()
    return forward.get_total_flops(), step.get_total_flops()


def loading_stamps(datamodule: Any, epochs: int) -> list[tuple[int, float, int]]:
    """Iterate the train loader alone, as the Trainer would, without the model."""
    loader = datamodule.train_dataloader()
    stamps = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        for images, labels in loader:
            images.sum()  # touch the batch, as the first layer would
            stamps.append((epoch, time.perf_counter(), len(labels)))
    return stamps


def plain_loop_stamps(
    cfg: Config,
    data: dict[str, Any],
    channels_last: bool,
    epochs: int = 1,
    max_steps: int | None = None,
) -> list[tuple[int, float, int]]:
    """The same model, batches and Adam as the Trainer, in a bare PyTorch loop."""
    import torch

    torch.use_deterministic_algorithms(cfg.trainer["deterministic"])  # as Trainer(deterministic=)
    datamodule = build_datamodule(cfg, data)
    model = build_model(cfg, data["classes"], channels_last)
    optimizer = model.configure_optimizers()
    model.train()
    loader = datamodule.train_dataloader()
    stamps = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        for images, labels in loader:
            loss = model.loss(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            stamps.append((epoch, time.perf_counter(), len(labels)))
            if len(stamps) == max_steps:
                return stamps
    return stamps


def lightning_worker(spec_path: str) -> None:
    """Child process: `fit_plant_cnn` on train@<recipe>'s network and data, from scratch, with
    the spec's accelerator, precision and epochs; each step is stamped when it ends (on a GPU,
    once the device has finished it: a synchronisation per step, so a GPU rate is, if anything,
    a little low).

    Runs in its own interpreter so that its peak RSS is training's alone. Reads a JSON spec
    (params, cache, limit, out, recipe, accelerator, precision, epochs) and writes the step
    stamps, peak RSS and device to spec["result"].
    """
    spec = json.loads(Path(spec_path).read_text())
    keep_freed_memory()  # as the train stage does, before any tensor exists
    import torch

    from dlrepro.plant.model import PlantCNN
    from dlrepro.plant.train import build_plant_cnn, fit_plant_cnn

    # torch and Lightning are most of the footprint before any tensor exists
    imports_rss = peak_rss_bytes()
    stamps: list[tuple[int, float, int]] = []
    devices: set[str] = set()

    class TimedPlantCNN(PlantCNN):
        """Stamps the end of each training step (after the optimizer step)."""

        def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            devices.add(self.device.type)
            stamps.append((self.current_epoch, time.perf_counter(), len(batch[1])))

    cfg = load_config(spec["params"])
    recipe = spec["recipe"]
    limit = tuple(spec["limit"]) if spec["limit"] else None
    data = load_training_data(Path(spec["cache"]), limit)
    model = build_plant_cnn(cfg, recipe, data["classes"], cls=TimedPlantCNN)
    datamodule = build_datamodule(cfg, data, recipe)
    start = time.perf_counter()
    fit_plant_cnn(
        datamodule,
        model,
        Path(spec["out"]),
        max_epochs=spec["epochs"],
        accelerator=spec["accelerator"],
        devices=1,
        precision=spec["precision"],
        deterministic=cfg.trainer["deterministic"],
        seed=cfg.seed,
        enable_progress_bar=False,
        resume=False,
    )
    fit_s = time.perf_counter() - start
    cuda = "cuda" in devices
    result = {
        "stamps": stamps,
        "fit_s": fit_s,
        "peak_rss_bytes": peak_rss_bytes(),
        "imports_rss_bytes": imports_rss,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "peak_device_memory_bytes": torch.cuda.max_memory_allocated() if cuda else None,
    }
    Path(spec["result"]).write_text(json.dumps(result))


def plain_worker(spec_path: str) -> None:
    """Child process: the plain loop under one tuning variant, and the sgemm rate under it.

    Environment variables such as OMP_WAIT_POLICY act only when the OpenMP runtime starts, so
    every variant gets a fresh interpreter, the configured one included.
    """
    spec = json.loads(Path(spec_path).read_text())
    if spec["keep_freed_memory"]:
        keep_freed_memory()  # as the train stage does, before any tensor exists
    import torch

    if spec["threads"] is not None:
        torch.set_num_threads(spec["threads"])
    cfg = load_config(spec["params"])
    limit = tuple(spec["limit"]) if spec["limit"] else None
    data = load_training_data(Path(spec["cache"]), limit)
    stamps = plain_loop_stamps(cfg, data, spec["channels_last"], max_steps=spec["max_steps"])
    gflops = statistics.median(sgemm_gflops(spec["sgemm_repeats"]))
    result = {"stamps": stamps, "sgemm_gflops": gflops, "threads": torch.get_num_threads()}
    Path(spec["result"]).write_text(json.dumps(result))


def run_worker(
    tmp: Path, worker: str, spec: dict[str, Any], env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run one of this module's `*_worker` functions in a fresh interpreter; returns its result
    (step stamps as tuples). `env` adds to this process's environment."""
    spec_path = tmp / f"{worker}-spec.json"
    spec = {**spec, "result": str(tmp / f"{worker}-result.json")}
    spec_path.write_text(json.dumps(spec))
    code = f"import sys; from dlrepro.bench import {worker}; {worker}(sys.argv[1])"
    command = [sys.executable, "-c", code, str(spec_path)]
    _, done = timed_subprocess(command, tmp, {**os.environ, **(env or {})})
    if done.returncode != 0:
        raise DataError(f"benchmark process {worker} failed: {last_line(done.stderr)}")
    result = json.loads(Path(spec["result"]).read_text())
    result["stamps"] = [tuple(stamp) for stamp in result["stamps"]]
    return result


def tuning_variants(
    cfg: Config, default_threads: int
) -> list[tuple[str, bool, int | None, dict[str, str], bool]]:
    """(label, channels_last, threads or None for torch's default, extra environment,
    keep_freed_memory).

    The configured setting comes first; the others change one thing each.
    """
    configured = cfg.recipes[BENCH_RECIPE].model.channels_last
    variants = [
        (f"configured (channels_last={configured})", configured, None, {}, True),
        (f"channels_last={not configured}", not configured, None, {}, True),
    ]
    for threads in dict.fromkeys((physical_cores(), 1)):
        if threads != default_threads:
            variants.append((f"torch.set_num_threads({threads})", configured, threads, {}, True))
    # libgomp's worker threads spin while they wait; on a CPU shared with other processes a
    # spinning thread holds a core another thread of the same step is waiting for.
    variants.append(
        ("OMP_WAIT_POLICY=PASSIVE", configured, None, {"OMP_WAIT_POLICY": "PASSIVE"}, True)
    )
    # What dlrepro.allocator buys: glibc's default, every large block a fresh mmap.
    variants.append(("glibc malloc defaults", configured, None, {}, False))
    return variants


def bench_tuning(
    tmp: Path, cache: Path, cfg: Config, scale: Scale, step_flops: int
) -> list[dict[str, Any]]:
    """Plain-loop throughput of each variant against the configured setting (listed first).

    The variants take turns for `tuning_rounds` rounds of `tuning_steps` steps, each in a fresh
    process; a variant's ratio is the median of its ratios to the configured run of the same
    round. Each variant is also set against its own FLOP limit (sgemm under the same setting).
    """
    import torch

    variants = tuning_variants(cfg, torch.get_num_threads())[: scale.tuning_variants]
    spec = {
        "params": str(paths.repo_root() / "params.yaml"),
        "cache": str(cache),
        "limit": scale.image_limit,
        "max_steps": scale.tuning_steps,
        "sgemm_repeats": scale.sgemm_repeats,
    }
    rates: dict[str, list[float]] = {label: [] for label, *_ in variants}
    limits: dict[str, list[float]] = {label: [] for label, *_ in variants}
    threads_used: dict[str, int] = {}
    for _ in range(scale.tuning_rounds):
        for label, channels_last, threads, env, keep_freed in variants:
            variant = {**spec, "channels_last": channels_last, "threads": threads}
            variant["keep_freed_memory"] = keep_freed
            result = run_worker(tmp, "plain_worker", variant, env)
            rates[label].append(steady_rate(result["stamps"], scale.warmup_steps))
            limits[label].append(result["sgemm_gflops"] * 1e9 / step_flops)
            threads_used[label] = result["threads"]
    baseline = rates[variants[0][0]]
    return [
        {
            "variant": label,
            "threads": threads_used[label],
            "img_s": round(statistics.median(rates[label]), 1),
            "img_s_rounds": [round(rate, 1) for rate in rates[label]],
            "vs_configured": round(
                statistics.median(r / b for r, b in zip(rates[label], baseline, strict=True)), 3
            ),
            "vs_flop_limit": round(
                statistics.median(r / f for r, f in zip(rates[label], limits[label], strict=True)),
                3,
            ),
        }
        for label, *_ in variants
    ]


def bench_accelerator(
    tmp: Path, cache: Path, cfg: Config, scale: Scale, cpu_img_s: float
) -> list[dict[str, Any]]:
    """On a machine with a CUDA GPU: each of ACCELERATOR_RUNS under `accelerator="auto"` (what
    the train stage uses by default) for the recipe's own epochs, in a fresh process each, set
    against `cpu_img_s` (the CPU Lightning rate measured in the same bench).

    A run that fails is a row with its error, not the end of the bench: a GPU finding to read.
    """
    rows = []
    for recipe, precision in ACCELERATOR_RUNS:
        options = trainer_options(cfg, recipe)
        precision = precision or options["precision"]
        epochs = 2 if scale.quick else options["max_epochs"]
        spec = {
            "params": str(paths.repo_root() / "params.yaml"),
            "cache": str(cache),
            "limit": scale.image_limit,
            "out": str(tmp / f"accelerator-{recipe}-{precision}"),
            "recipe": recipe,
            "accelerator": "auto",
            "precision": precision,
            "epochs": epochs,
        }
        row: dict[str, Any] = {"recipe": recipe, "precision": precision, "epochs": epochs}
        try:
            result = run_worker(tmp, "lightning_worker", spec)
        except DataError as err:
            rows.append({**row, "error": str(err)})
            continue
        peak = result["peak_device_memory_bytes"]
        rate = steady_rate(result["stamps"], scale.warmup_steps)
        rows.append(
            {
                **row,
                "device": result["device"],
                "img_s": round(rate, 1),
                "vs_cpu_lightning": round(rate / cpu_img_s, 2),
                "best_step_img_s": round(best_step_rate(result["stamps"], scale.warmup_steps), 1),
                "fit_s": round(result["fit_s"], 2),
                "peak_device_memory_gb": None if peak is None else round(peak / 1e9, 3),
                "peak_rss_gb": round(result["peak_rss_bytes"] / 1e9, 3),
            }
        )
    return rows


def bench_training(scale: Scale) -> dict[str, Any]:
    import torch

    load_start = load_average()
    cfg = load_config(paths.repo_root() / "params.yaml")
    configured = cfg.recipes[BENCH_RECIPE].model.channels_last
    warmup = scale.warmup_steps
    with tempfile.TemporaryDirectory(prefix="dlrepro-bench-") as tmp_name:
        tmp = Path(tmp_name)
        cache, dataset = find_or_build_cache(tmp, cfg, scale)
        data = load_training_data(cache, scale.image_limit)

        forward_flops, step_flops = training_step_flops(cfg, data["classes"])

        loader = loading_stamps(build_datamodule(cfg, data), scale.loading_epochs)
        loading = steady_rate(loader, 1)

        # plain, (sgemm, lightning, plain) × rounds: each Lightning epoch is compared with the
        # plain epochs either side of it and with the sgemm rate measured just before it.
        lightning_spec = {
            "params": str(paths.repo_root() / "params.yaml"),
            "cache": str(cache),
            "limit": scale.image_limit,
            "out": str(tmp / "lightning"),
            "recipe": BENCH_RECIPE,
            "accelerator": "cpu",
            "precision": trainer_options(cfg, BENCH_RECIPE)["precision"],
            "epochs": 1,
        }
        plain_stamps = plain_loop_stamps(cfg, data, configured)
        plain_runs = [steady_rate(plain_stamps, warmup)]
        plain_best = [best_step_rate(plain_stamps, warmup)]
        lightning_runs, lightning_best, pair_ratios, workers = [], [], [], []
        sgemm_rounds: list[list[float]] = []
        for _ in range(scale.rounds):
            sgemm_rounds.append(sgemm_gflops(scale.sgemm_repeats))
            workers.append(run_worker(tmp, "lightning_worker", lightning_spec))
            lightning_runs.append(steady_rate(workers[-1]["stamps"], warmup))
            lightning_best.append(best_step_rate(workers[-1]["stamps"], warmup))
            plain_stamps = plain_loop_stamps(cfg, data, configured)
            plain_runs.append(steady_rate(plain_stamps, warmup))
            plain_best.append(best_step_rate(plain_stamps, warmup))
            pair_ratios.append(lightning_runs[-1] / statistics.mean(plain_runs[-2:]))
        tuning = bench_tuning(tmp, cache, cfg, scale, step_flops)
        lightning = statistics.median(lightning_runs)
        # one row per ACCELERATOR_RUNS entry where CUDA is available; none on a CPU machine
        accelerated = (
            bench_accelerator(tmp, cache, cfg, scale, lightning)
            if torch.cuda.is_available()
            else []
        )

    plain = statistics.median(plain_runs)
    gflops = statistics.median(statistics.median(rates) for rates in sgemm_rounds)
    best_gflops = max(max(rates) for rates in sgemm_rounds)
    flop_limits = [statistics.median(rates) * 1e9 / step_flops for rates in sgemm_rounds]
    peak_rss_gb = max(worker["peak_rss_bytes"] for worker in workers) / 1e9
    ratios = {
        "lightning_vs_plain": ratio_row(
            statistics.median(pair_ratios), LIGHTNING_VS_PLAIN_TARGET, True
        ),
        "training_vs_flop_limit": ratio_row(
            statistics.median(
                rate / limit for rate, limit in zip(lightning_runs, flop_limits, strict=True)
            ),
            TRAINING_VS_FLOP_LIMIT_TARGET,
            True,
        ),
        "loading_vs_training": ratio_row(loading / lightning, LOADING_VS_TRAINING_TARGET, True),
        "peak_rss_gb": ratio_row(peak_rss_gb, PEAK_RSS_TARGET_GB, False),
    }
    load_end = load_average()
    figures = {
        "quick": scale.quick,
        **dataset,
        "train_images": len(data["train"][1]),
        "batch_size": cfg.data.batch_size,
        "channels_last": configured,
        "torch_threads": torch.get_num_threads(),
        "physical_cores": physical_cores(),
        "sgemm_gflops": round(gflops, 1),
        "sgemm_gflops_rounds": [round(statistics.median(r), 1) for r in sgemm_rounds],
        "sgemm_gflops_best": round(best_gflops, 1),
        "forward_gflop_per_image": round(forward_flops / 1e9, 4),
        "train_step_gflop_per_image": round(step_flops / 1e9, 4),
        "flop_limit_img_s": round(gflops * 1e9 / step_flops, 1),
        "lightning_img_s": round(lightning, 1),
        "lightning_img_s_rounds": [round(rate, 1) for rate in lightning_runs],
        "lightning_fit_s": round(statistics.median(w["fit_s"] for w in workers), 2),
        "plain_loop_img_s": round(plain, 1),
        "plain_loop_img_s_rounds": [round(rate, 1) for rate in plain_runs],
        # Fastest single steps against the best sgemm: the machine without its neighbours.
        "lightning_best_step_img_s": round(max(lightning_best), 1),
        "plain_loop_best_step_img_s": round(max(plain_best), 1),
        "best_step_vs_best_flop_limit": round(
            max(lightning_best) / (best_gflops * 1e9 / step_flops), 3
        ),
        "loading_img_s": round(loading, 1),
        "peak_rss_gb": round(peak_rss_gb, 3),
        "imports_rss_gb": round(workers[0]["imports_rss_bytes"] / 1e9, 3),
        "ratios": ratios,
        "tuning": tuning,
        "accelerator_auto": accelerated,
        "load_average": {"start": load_start, "end": load_end},
    }
    print_training(figures)
    return figures


def spread(rates: list[float]) -> str:
    return " / ".join(f"{rate:.1f}" for rate in rates)


def print_training(figures: dict[str, Any]) -> None:
    layout = "channels_last" if figures["channels_last"] else "NCHW"
    setting = f"batch {figures['batch_size']}, {layout}, {figures['torch_threads']} threads"
    rows = [
        ("dataset", str(figures["train_images"]), f"train images; {figures['dataset']}"),
    ]
    for key, label, note in (
        ("generate_img_s", "leaf generation", "render and write JPEGs"),
        ("ingest_img_s", "ingest", "decode, validate, cache"),
    ):
        if key in figures:
            rows.append((label, f"{figures[key]:.0f} img/s", note))
    rows += [
        (
            "sgemm fp32",
            f"{figures['sgemm_gflops']:.1f} GFLOP/s",
            f"{SGEMM_SIZE}² matmul; median of each round's median: "
            + spread(figures["sgemm_gflops_rounds"]),
        ),
        ("forward", f"{figures['forward_gflop_per_image']:.3f} GFLOP", "per image"),
        ("training step", f"{figures['train_step_gflop_per_image']:.3f} GFLOP", "per image"),
        (
            "FLOP limit",
            f"{figures['flop_limit_img_s']:.1f} img/s",
            "sgemm rate / step FLOPs (the ratio below uses each round's own)",
        ),
        (
            "lightning",
            f"{figures['lightning_img_s']:.1f} img/s",
            f"fit_plant_cnn, {setting}; median of {spread(figures['lightning_img_s_rounds'])}",
        ),
        ("lightning fit", f"{figures['lightning_fit_s']:.1f} s", "one epoch incl. validation"),
        (
            "plain loop",
            f"{figures['plain_loop_img_s']:.1f} img/s",
            f"same batches, Adam; median of {spread(figures['plain_loop_img_s_rounds'])}",
        ),
        (
            "lightning best step",
            f"{figures['lightning_best_step_img_s']:.1f} img/s",
            f"{figures['best_step_vs_best_flop_limit']:.2f} of the best-sgemm FLOP limit "
            f"({figures['sgemm_gflops_best']:.1f} GFLOP/s); plain loop best "
            f"{figures['plain_loop_best_step_img_s']:.1f}",
        ),
        ("loading", f"{figures['loading_img_s']:.0f} img/s", "train dataloader alone"),
        ("peak RSS", f"{figures['peak_rss_gb']:.2f} GB", "training process (VmHWM)"),
        ("RSS after imports", f"{figures['imports_rss_gb']:.2f} GB", "torch + Lightning, no data"),
    ]
    for name, ratio in figures["ratios"].items():
        verdict = "met" if ratio["met"] else "not met"
        rows.append((name, f"{ratio['value']:.3f}", f"target {ratio['target']}: {verdict}"))
    for row in figures["tuning"]:
        rows.append(
            (
                f"tuning: {row['variant']}",
                f"{row['img_s']:.1f} img/s",
                f"× {row['vs_configured']:.2f} of configured, "
                f"{row['vs_flop_limit']:.2f} of its FLOP limit; {row['threads']} threads; "
                f"rounds {spread(row['img_s_rounds'])}",
            )
        )
    for row in figures["accelerator_auto"]:
        label = f"accelerator=auto: {row['recipe']}, {row['precision']}"
        if "error" in row:
            rows.append((label, "failed", row["error"]))
            continue
        memory = row["peak_device_memory_gb"]
        rows.append(
            (
                label,
                f"{row['img_s']:.1f} img/s",
                f"{row['device']}; × {row['vs_cpu_lightning']:.2f} of lightning on CPU above; "
                f"fit {row['fit_s']:.1f} s ({row['epochs']} epochs, validation included); "
                f"best step {row['best_step_img_s']:.0f} img/s; peak "
                + (f"device memory {memory:.2f} GB, " if memory is not None else "")
                + f"RSS {row['peak_rss_gb']:.2f} GB",
            )
        )
    load = figures["load_average"]
    rows.append(load_row(load["start"], load["end"]))
    print_table("training: the plant CNN", rows)


# ---------------------------------------------------------------------------------------------
# Section 3: inference (written by another module)
# ---------------------------------------------------------------------------------------------


def number_or_text(value: Any) -> float | str:
    """A figure as a number when it reads as one ("4.2"), else its text ("216 img/s")."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def bench_predict(scale: Scale) -> dict[str, Any] | None:
    """The (figure, value) rows of `dlrepro.bench_predict.run()`, when that module is there."""
    try:
        module = importlib.import_module("dlrepro.bench_predict")
    except ImportError as err:
        print(f"\npredict: not available yet ({err})")
        return None
    load_start = load_average()
    rows = module.run()  # it sizes itself; --quick does not reach it
    load_end = load_average()
    print_table(
        "predict: inference",
        [(name, str(value), "") for name, value in rows] + [load_row(load_start, load_end)],
    )
    return {
        "quick": scale.quick,
        "figures": {name: number_or_text(value) for name, value in rows},
        "load_average": {"start": load_start, "end": load_end},
    }


def bench_vs_keras(scale: Scale) -> dict[str, Any]:
    """The text's Keras program beside the train stage (dlrepro.bench_keras, which builds on the
    helpers here; imported when the section runs, so neither module imports the other at load)."""
    return importlib.import_module("dlrepro.bench_keras").bench_vs_keras(scale.quick)


def bench_recipes(scale: Scale) -> dict[str, Any]:
    """train@text beside train@tuned (dlrepro.bench_keras, imported when the section runs)."""
    module = importlib.import_module("dlrepro.bench_keras")
    return module.bench_recipes(scale.quick, scale.seeds, scale.design, scale.train_leaves)


RUNNERS: dict[str, Callable[[Scale], dict[str, Any] | None]] = {
    "curriculum": bench_curriculum,
    "training": bench_training,
    "vs_keras": bench_vs_keras,
    "recipes": bench_recipes,
    "predict": bench_predict,
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
        prog="python -m dlrepro.bench", description=__doc__.split("\n\n")[0]
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
        "sizes, e.g. 800,4000,20000 (dlrepro.bench_scale)",
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
        figures = importlib.import_module("dlrepro.bench_scale").bench_scale(args.scale)
        write_results(output, "scale", figures)
        print(f"\nfigures written to {output}")
        return
    for section in [args.only] if args.only else SECTIONS:
        figures = RUNNERS[section](scale)
        if figures is not None:
            write_results(output, section, figures)
    print(f"\nfigures written to {output}")


if __name__ == "__main__":
    run_stage(main)
