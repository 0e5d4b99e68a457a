"""The prepared cache: one uint8 memory-mapped array per split, written and read back checked.

    <cache_dir>/classes.json                  class names, index = label
    <cache_dir>/<split>/images.npy            uint8, N × image_size × image_size × 3, RGB
    <cache_dir>/<split>/labels.npy            int64, N
    <cache_dir>/<split>/manifest.json         source-relative path of every row, in row order,
                                              and the SHA-256 of images.npy and labels.npy
A split is streamed from the ingest's staging memmap, never held in RAM. `load_split` checks each
file against its manifest's checksum, so a torn or changed file is refused in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dlrepro.errors import DataError
from dlrepro.outputs import file_digest, write_json

CHECKSUMMED = ("images.npy", "labels.npy")  # verified against the manifest by load_split
_COPY_ROWS = 256  # rows copied from staging into a split at a time


def load_split(cache_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images, labels, classes) of one cached split; images is a read-only memmap (N×H×W×3)."""
    cache_dir = Path(cache_dir)
    images_path = cache_dir / split / "images.npy"
    if not images_path.is_file():
        raise DataError(f"{images_path}: no cached '{split}' split; run the ingest first")
    rebuild = "rebuild it with `dvc repro --force prepare`"
    try:
        manifest = json.loads((cache_dir / split / "manifest.json").read_text())
        for name in CHECKSUMMED:
            if file_digest(cache_dir / split / name, "sha256") != manifest["sha256"][name]:
                raise DataError(
                    f"{cache_dir / split / name}: does not match the checksum in its manifest "
                    f"(a torn or changed file); {rebuild}"
                )
        images = np.load(images_path, mmap_mode="r")
        labels = np.load(cache_dir / split / "labels.npy")
        classes = json.loads((cache_dir / "classes.json").read_text())
    except (OSError, ValueError, EOFError, KeyError) as err:  # missing, truncated, not JSON
        raise DataError(
            f"{cache_dir / split}: unreadable cache ({_first_line(err)}); {rebuild}"
        ) from None
    if len(labels) != len(images):
        raise DataError(f"{cache_dir / split}: {len(images)} images but {len(labels)} labels")
    return images, labels, classes


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def write_split(
    folder: Path,
    staging: np.ndarray,
    rows: list[int],
    labels: list[int],
    paths: list[str],
    split: str,
) -> None:
    """Stream `rows` of staging into images.npy, never holding the split in RAM; `labels` and
    `paths` are theirs, in the same order."""
    folder.mkdir(parents=True, exist_ok=True)
    images = np.lib.format.open_memmap(
        folder / "images.npy", mode="w+", dtype=np.uint8, shape=(len(rows), *staging.shape[1:])
    )
    for start in range(0, len(rows), _COPY_ROWS):
        chunk = rows[start : start + _COPY_ROWS]
        images[start : start + len(chunk)] = staging[chunk]
    images.flush()
    del images
    np.save(folder / "labels.npy", np.array(labels, dtype=np.int64))
    checksums = {name: file_digest(folder / name, "sha256") for name in CHECKSUMMED}
    write_json(
        folder / "manifest.json",
        {"split": split, "paths": paths, "sha256": checksums},
    )
