"""The leaf dataset on disk, in the layout `flow_from_directory` reads, and what drew each file.

Every image has its own generator, seeded from (seed, split, class, index), so its bytes depend
neither on the order of generation nor on how many other images are drawn; files are written at
a fixed JPEG quality. Same arguments, same bytes. The optional `design/` folder holds the leaves
that `seed` + 1 draws for its test split: images no split of this seed holds, to choose among
recipes on more images than val's without touching test.
"""

from __future__ import annotations

import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from dlrepro.data.leaves.render import render_leaf
from dlrepro.errors import ConfigError, DataError

SPLITS = ("train", "test")  # the generator's own splits: each seeds its images' generators
DESIGN = "design"  # the extra folder: (seed + DESIGN_SEED_OFFSET, "test") draws its leaves
DESIGN_SEED_OFFSET = 1
# The folder names are the labels flow_from_directory (and torchvision's ImageFolder) read. Their
# order here is not the label index: both loaders sort the names, so Diseased = 0, Healthy = 1.
CLASSES = ("Healthy", "Diseased")
JPEG_QUALITY = 92
_OWN_FILE = re.compile(r"^(healthy|diseased)_\d+\.jpg$")
# Below this many leaves per process a pool's start-up (an interpreter importing OpenCV and
# numpy, about 0.3 s) costs more than it saves; leaves are handed out CHUNK at a time.
MIN_JOBS_PER_WORKER, CHUNK = 100, 16


def _image_rng(seed: int, split: str, class_name: str, index: int) -> np.random.Generator:
    """One generator per image, so its bytes depend only on (seed, split, class, index)."""
    if split == DESIGN:
        seed, split = seed + DESIGN_SEED_OFFSET, "test"
    return np.random.default_rng([seed, SPLITS.index(split), CLASSES.index(class_name), index])


def describe_leaf(seed: int, relative_path: str, image_size: int = 160) -> dict[str, Any]:
    """What the generator drew for the leaf it wrote at `relative_path` (as `generate_dataset`
    names it under its root, e.g. "test/Diseased/diseased_0007.jpg" or "design/...") with
    `seed` and `image_size`, the size it was generated at (`data.raw_size`; how many numbers
    some steps draw depends on it, so another size describes another leaf). The leaf is
    rendered again, so this costs what generating it did (see `render_leaf`'s `drawn`)."""
    parts = Path(relative_path).parts
    if len(parts) != 3 or parts[0] not in (*SPLITS, DESIGN) or parts[1] not in CLASSES:
        raise DataError(f"{relative_path}: not a path the leaf generator writes")
    split, class_name, name = parts
    if not _OWN_FILE.match(name) or not name.startswith(class_name.lower() + "_"):
        raise DataError(f"{relative_path}: not a file name the leaf generator writes")
    index = int(name.split("_")[1].split(".")[0])
    drawn: dict[str, Any] = {}
    render_leaf(
        _image_rng(seed, split, class_name, index), class_name == "Diseased", image_size, drawn
    )
    return drawn


def _check_size(name: str, value: int, least: int = 2) -> None:
    if value < least or value % 2:
        raise ConfigError(
            f"{name} must be an even number >= {least} (two balanced classes), got {value}"
        )


def _clear_stale(root: Path, split: str, wanted: int) -> None:
    """Check `<root>/<split>/` holds only this generator's files and remove those beyond
    `wanted` per class; with `wanted` 0 (the design folder only), its emptied folders too."""
    folder = root / split
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder}: exists and is not a folder")
    if not folder.is_dir():
        return
    for path in sorted(folder.iterdir()):
        if path.name not in CLASSES:
            raise DataError(f"{path}: not a class of this dataset; remove it first")
    for class_name in CLASSES:
        class_dir = folder / class_name
        if class_dir.exists() and not class_dir.is_dir():
            raise DataError(f"{class_dir}: exists and is not a folder")
        if not class_dir.is_dir():
            continue
        keep = {f"{class_name.lower()}_{i:04d}.jpg" for i in range(wanted)}
        for path in sorted(class_dir.iterdir()):
            if not _OWN_FILE.match(path.name):
                raise DataError(f"{path}: not written by the leaf generator; remove it first")
            if path.name not in keep:
                path.unlink()
    if wanted == 0:
        for class_name in CLASSES:
            if (folder / class_name).is_dir():
                (folder / class_name).rmdir()
        folder.rmdir()


def generate_dataset(
    root: Path,
    train_size: int = 800,
    test_size: int = 200,
    seed: int = 0,
    image_size: int = 160,
    design_size: int = 0,
    workers: int | None = None,
) -> dict[str, dict[str, int]]:
    """Write the Healthy/Diseased leaf dataset under `root` and return its counts.

    root: folder that receives `train/` and `test/`, each with `Healthy/` and `Diseased/`.
    train_size, test_size: images per split, split evenly between the two classes (even, >= 2).
    seed: non-negative integer; the same seed writes byte-identical files.
    image_size: side of the square images in pixels (>= 64; 160 leaves the 128×128 resize real).
    design_size: leaves in `design/` (even, >= 0; 0: no design folder), the ones `seed` + 1
    draws for its test split.
    workers: processes that render (default: one per available CPU; fewer for small sets). The
    files are the same bytes whatever the number.

    Files this generator wrote earlier (`healthy_NNNN.jpg`, `diseased_NNNN.jpg`) beyond the new
    counts are removed (with design_size 0, the whole design folder); any other file or folder
    under `<root>/<split>/` is a DataError, as it would join the dataset (or become a third
    class) unnoticed. Returns {"train": {"Healthy": n, "Diseased": n}, "test": {...}}, and
    "design" when design_size > 0.
    """
    root = Path(root)
    _check_size("train_size", train_size)
    _check_size("test_size", test_size)
    _check_size("design_size", design_size, least=0)
    if seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed}")
    if image_size < 64:
        raise ConfigError(f"image_size must be at least 64 pixels, got {image_size}")

    plan = {"train": train_size // 2, "test": test_size // 2, DESIGN: design_size // 2}
    for split, per_class in plan.items():
        _clear_stale(root, split, per_class)
    written = [split for split, per_class in plan.items() if split != DESIGN or per_class]
    for split in written:
        for class_name in CLASSES:
            (root / split / class_name).mkdir(parents=True, exist_ok=True)

    jobs = [
        (root / split / class_name, seed, split, class_name, index, image_size)
        for split in written
        for class_name in CLASSES
        for index in range(plan[split])
    ]
    if workers is None:
        workers = max(1, min(available_cpus(), len(jobs) // MIN_JOBS_PER_WORKER))
    with tqdm(total=len(jobs), desc="leaves", unit="img", disable=None) as bar:
        if workers <= 1:
            for job in jobs:
                _write_leaf(job)
                bar.update()
        else:
            # Each leaf's bytes depend only on its own generator: the order the processes
            # finish in changes nothing. Spawned, not forked: OpenCV's thread pool and MLflow's
            # store connection stay in this process.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                for _ in pool.map(_write_leaf, jobs, chunksize=CHUNK):
                    bar.update()
    return {split: {name: plan[split] for name in CLASSES} for split in written}


def available_cpus() -> int:
    """The CPUs this process may run on (a container's or taskset's limit, not the host's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _write_leaf(job: tuple[Path, int, str, str, int, int]) -> None:
    """Render leaf (seed, split, class, index) at `image_size` and write it into `folder`."""
    folder, seed, split, class_name, index, image_size = job
    image = render_leaf(
        _image_rng(seed, split, class_name, index), class_name == "Diseased", image_size
    )
    path = folder / f"{class_name.lower()}_{index:04d}.jpg"
    if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
        raise DataError(f"{path}: OpenCV could not write the image")


def contact_sheet(root: Path, per_class: int, out: Path, split: str = "train") -> Path:
    """A PNG grid of the first `per_class` images of each class, one labelled row per class.

    root: a dataset folder in the layout `generate_dataset` writes; split: "train" or "test".
    """
    root, out = Path(root), Path(out)
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if per_class < 1:
        raise ConfigError(f"per_class must be at least 1, got {per_class}")
    rows = []
    for class_name in CLASSES:
        folder = root / split / class_name
        paths = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
        if len(paths) < per_class:
            raise DataError(f"{folder}: needs {per_class} .jpg images, found {len(paths)}")
        tiles = []
        for path in paths[:per_class]:
            tile = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if tile is None:
                raise DataError(f"{path}: not a readable image")
            tiles.append(tile)
        side = tiles[0].shape[0]
        tiles = [cv2.resize(t, (side, side), interpolation=cv2.INTER_AREA) for t in tiles]
        label = np.full((side, 150, 3), 255, np.uint8)
        cv2.putText(
            label, class_name, (8, side // 2 + 8), cv2.FONT_HERSHEY_SIMPLEX, 0.75, (0, 0, 0), 2
        )
        gap = np.full((side, 4, 3), 255, np.uint8)
        row = [label]
        for tile in tiles:
            row += [tile, gap]
        rows.append(np.hstack(row))
        rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), np.vstack(rows[:-1])):
        raise DataError(f"{out}: OpenCV could not write the contact sheet")
    return out
