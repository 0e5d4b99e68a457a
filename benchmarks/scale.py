"""How cost grows with the data: `python -m benchmarks --scale 800,4000,20000`.

For each training-set size N the same generator writes N training leaves (and the default test
set) into a temporary folder; then the figures are

- prepare: `ingest` (what the prepare stage runs: decode, validate, leak check, cache) per image;
- train: one epoch of `python -m dlrepro.stages.train` (benchmarks.train_stage: its own process
  in a temporary root), its fit time per training image and its peak RSS.

Flat per-image times and a peak RSS that barely grows mean nothing holds a whole split: the
cache is memory-mapped and read one batch at a time. Not part of `make repro` or `make bench`'s
default sections: large sets take minutes to generate.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import generate_and_prepare, load_average, load_row, print_table
from benchmarks.train_stage import run_train_stage
from dlrepro import paths
from dlrepro.config import load_config

PER_IMAGE_FLAT_TARGET = 1.15  # largest per-image time ÷ smallest
RSS_GROWTH_TARGET_MB = 100.0


def measure(train_images: int, tmp: Path) -> dict[str, Any]:
    data = load_config(paths.repo_root() / "params.yaml").data
    _, prepare_s = generate_and_prepare(
        tmp / "leaves", tmp / "cache", data, train_images, data.test_size
    )
    stage = run_train_stage(tmp / "cache", tmp / "train", epochs=1)
    return {
        "train_images": train_images,
        "prepare_ms_per_image": round(1000 * prepare_s / (train_images + data.test_size), 3),
        "train_ms_per_image": round(1000 * stage["fit_s"] / stage["train_images"], 3),
        "train_peak_rss_gb": round(stage["peak_rss_bytes"] / 1e9, 3),
    }


def bench_scale(sizes: list[int]) -> dict[str, Any]:
    load_start = load_average()
    runs = []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="dlrepro-bench-") as tmp:
            (Path(tmp) / "train").mkdir()
            runs.append(measure(size, Path(tmp)))
    load_end = load_average()
    spread = {
        key: round(max(r[key] for r in runs) / min(r[key] for r in runs), 3)
        for key in ("prepare_ms_per_image", "train_ms_per_image")
    }
    rss_growth_mb = 1000 * (runs[-1]["train_peak_rss_gb"] - runs[0]["train_peak_rss_gb"])
    rows = [
        (
            f"{r['train_images']} train images",
            f"{r['train_ms_per_image']:.2f} ms",
            f"train per image (one epoch); prepare {r['prepare_ms_per_image']:.2f} ms per image; "
            f"train peak RSS {r['train_peak_rss_gb']:.3f} GB",
        )
        for r in runs
    ]
    for key, ratio in spread.items():
        met = "met" if ratio <= PER_IMAGE_FLAT_TARGET else "not met"
        rows.append((f"{key} max/min", f"{ratio:.3f}", f"target <= {PER_IMAGE_FLAT_TARGET}: {met}"))
    met = "met" if rss_growth_mb <= RSS_GROWTH_TARGET_MB else "not met"
    rows.append(("train peak RSS growth", f"{rss_growth_mb:.0f} MB", f"target <= 100 MB: {met}"))
    rows.append(load_row(load_start, load_end))
    print_table("scale: cost per image as the data grows", rows)
    return {
        "runs": runs,
        "per_image_max_over_min": spread,
        "train_peak_rss_growth_mb": round(rss_growth_mb, 1),
        "load_average": {"start": load_start, "end": load_end},
    }
