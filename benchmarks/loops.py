"""The training section's measured loops and the fresh processes they run in.

The plant CNN exactly as `train@<recipe>` builds it, fed by the recipe's own datamodule: its
FLOPs counted by torch, the train loader alone, and the same model and batches in a bare PyTorch
loop. `lightning_worker` (the pipeline's `fit_plant_cnn`) and `plain_worker` (the plain loop
under one tuning variant) each run in their own interpreter through `run_worker`, so that a
peak RSS is that run's alone and settings read when the OpenMP runtime starts take effect.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    child_env,
    classifier_class,
    last_line,
    peak_rss_bytes,
    timed_subprocess,
)
from dlrepro.allocator import keep_freed_memory
from dlrepro.config import Config, load_config
from dlrepro.errors import DataError

BENCH_RECIPE = "text"  # the training section times the text's CNN, as train@text builds it
SGEMM_SIZE = 2048


def load_training_data(cache: Path, limit: tuple[int, int] | None) -> dict[str, Any]:
    """Both cached splits; with `limit`, evenly spaced rows (so both classes) loaded in memory."""
    import numpy as np

    from dlrepro.data.cache import load_split

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


def build_model(
    cfg: Config,
    classes: list[str],
    channels_last: bool | None,
    cls: type | None = None,
    recipe: str = BENCH_RECIPE,
):
    """The classifier exactly as train@<recipe> builds it (or a subclass of it, `cls`);
    channels_last None: the recipe's own."""
    from dlrepro.plant.train import build_classifier

    if cls is None:
        return build_classifier(cfg, recipe, classes, channels_last)
    return build_classifier(cfg, recipe, classes, channels_last, cls)


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

    from dlrepro.plant.train import fit_plant_cnn

    # torch and Lightning are most of the footprint before any tensor exists
    imports_rss = peak_rss_bytes()
    stamps: list[tuple[int, float, int]] = []
    devices: set[str] = set()

    class TimedClassifier(classifier_class()):
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
    model = build_model(cfg, data["classes"], None, TimedClassifier, recipe)
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
    code = f"import sys; from benchmarks.loops import {worker}; {worker}(sys.argv[1])"
    command = [sys.executable, "-c", code, str(spec_path)]
    _, done = timed_subprocess(command, tmp, child_env(env))
    if done.returncode != 0:
        raise DataError(f"benchmark process {worker} failed: {last_line(done.stderr)}")
    result = json.loads(Path(spec["result"]).read_text())
    result["stamps"] = [tuple(stamp) for stamp in result["stamps"]]
    return result
