"""Any ImageFolder-style dataset → a validated, memory-mapped uint8 cache per split.

Every file is validated (see `dlrepro.data.images` for the decoding decisions): hidden files,
files without an image suffix, empty, corrupt, truncated or too small images are skipped and
listed with their reason in the report, and val/design/test images that copy an earlier split's
are dropped (`dlrepro.data.partition`). Pixels are compared after decoding and resizing, so a
re-encoded copy of a picture counts as the same image: the model would see the same input.
Decoding streams through a staging memmap, so the disk needs room for the cache twice but RAM
never holds the dataset. The new cache is built beside cache_dir (never inside it: cache_dir is
a DVC output) and then takes its place, so a kill at any point leaves the old cache whole.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from dlrepro.data.cache import write_split
from dlrepro.data.images import UnusableImage, load_square_rgb
from dlrepro.data.layout import (
    GIVEN_SPLIT,
    SEEDED_SPLIT,
    Candidate,
    Layout,
    collect_candidates,
    find_layout,
    no_usable_image,
    require_train_files,
)
from dlrepro.data.partition import SPLITS, assign_splits, drop_leaks, duplicates
from dlrepro.errors import ConfigError, DataError
from dlrepro.outputs import refuse_link, replace_dir, staging_dir, write_json


@dataclass
class IngestReport:
    """What the ingest found, kept and dropped; `to_dict()` is the JSON data report."""

    source: str
    layout: str  # GIVEN_SPLIT or SEEDED_SPLIT
    image_size: int
    min_side: int
    seed: int  # seeds the test split (one-folder layout only), val and a carved design split
    test_fraction: float | None  # None for a given split
    val_fraction: float
    design_fraction: float | None  # None: the design split is a given design/ folder
    classes: list[str]
    counts: dict[str, dict[str, int]]  # split → class → images in the cache
    found: dict[str, str]  # split -> "Found 680 images belonging to 2 classes.", as Keras prints
    skipped: list[dict[str, str]] = field(default_factory=list)  # {path, reason}
    converted: list[dict[str, Any]] = field(default_factory=list)  # {path, conversions}
    conversion_counts: dict[str, int] = field(default_factory=dict)
    # {split, path, copy_of}: `path` (in val, design or test) dropped, its pixels equal `copy_of`'s
    leaks: list[dict[str, str]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)  # {split, paths}: all kept
    empty_classes: dict[str, list[str]] = field(default_factory=dict)  # split → no usable image
    ignored: list[dict[str, str]] = field(default_factory=list)  # {path, reason}: not looked into
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def ingest(
    source: str | Path,
    cache_dir: str | Path,
    image_size: int = 128,
    test_fraction: float = 0.2,
    seed: int = 0,
    min_side: int = 16,
    val_fraction: float = 0.15,
    design_fraction: float = 0.0,
) -> IngestReport:
    """Validate every file under `source` and write the train/val/design/test cache into
    `cache_dir`.

    image_size: side of the cached square images. test_fraction: the per-class test share of a
    one-folder dataset (unused for a given train/test split). val_fraction: the per-class share
    of train carved out as val (0: an empty val split). design_fraction: the per-class share of
    what train has left carved out as design, when no design/ folder gives it (0: an empty
    design split). seed: every draw. min_side: images whose short side is smaller are skipped.
    Prints one "Found N images belonging to K classes." line per split to stdout. Raises
    DataError (one line) when the dataset cannot be used.
    """
    _check_arguments(image_size, test_fraction, min_side, val_fraction, design_fraction)
    source, cache_dir = Path(source).resolve(), Path(cache_dir).resolve()
    if not source.is_dir():
        raise DataError(f"{source}: no such folder")
    if cache_dir.is_relative_to(source) or source.is_relative_to(cache_dir):
        raise DataError(f"{cache_dir}: the cache folder must lie outside the source {source}")

    ignored: list[dict[str, str]] = []
    layout = find_layout(source, ignored)
    if layout.design_folder and design_fraction > 0:
        raise ConfigError(
            f"{source / 'design'}: a design/ folder and data.design_fraction={design_fraction} "
            "both make a design split; remove the folder or set data.design_fraction=0"
        )
    skipped: list[dict[str, str]] = []
    candidates = collect_candidates(source, layout, skipped, ignored)
    require_train_files(source, layout, candidates, skipped)

    refuse_link(cache_dir)  # before decoding, not after it
    with staging_dir(cache_dir) as work:
        new_cache = work / "cache"
        staging = np.memmap(
            work / "images.u8",
            dtype=np.uint8,
            mode="w+",
            shape=(len(candidates), image_size, image_size, 3),
        )
        decoded, converted = _decode_all(source, candidates, staging, image_size, min_side, skipped)
        assign_splits(
            decoded,
            len(layout.classes),
            layout.name == SEEDED_SPLIT,
            test_fraction,
            val_fraction,
            seed,
            design_fraction,
        )
        leaks = drop_leaks(decoded)
        leaked = {leak["path"] for leak in leaks}
        kept = [c for c in decoded if c.path not in leaked]
        report = IngestReport(
            source=str(source),
            layout=layout.name,
            image_size=image_size,
            min_side=min_side,
            seed=seed,
            test_fraction=test_fraction if layout.name == SEEDED_SPLIT else None,
            val_fraction=val_fraction,
            design_fraction=None if layout.design_folder else design_fraction,
            classes=layout.classes,
            counts={split: _class_counts(kept, split, layout.classes) for split in SPLITS},
            found={},
            skipped=sorted(skipped, key=lambda entry: entry["path"]),
            converted=converted,
            conversion_counts=dict(
                sorted(Counter(c for entry in converted for c in entry["conversions"]).items())
            ),
            leaks=leaks,
            duplicates=duplicates(kept),
            ignored=sorted(ignored, key=lambda entry: entry["path"]),
        )
        _check_usable(source, layout, report)
        for split in SPLITS:
            rows = [c for c in kept if c.split == split]
            write_split(
                new_cache / split,
                staging,
                [c.row for c in rows],
                [c.label for c in rows],
                [c.path for c in rows],
                split,
            )
            report.found[split] = (
                f"Found {len(rows)} images belonging to {len(layout.classes)} classes."
            )
        del staging  # unmap before the staging folder is removed
        write_json(new_cache / "classes.json", layout.classes)
        replace_dir(new_cache, cache_dir)
    for split, line in report.found.items():
        print(f"{split}: {line}")
    if skipped or leaks:
        print(
            f"Skipped {len(skipped)} files and dropped {len(leaks)} val/design/test images also "
            "in an earlier split (see the data report)."
        )
    return report


def _check_arguments(
    image_size: int, test_fraction: float, min_side: int, val_fraction: float, design: float
) -> None:
    if image_size < 1:
        raise ConfigError(f"image_size must be at least 1, got {image_size}")
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    if not 0 <= design < 1:
        raise ConfigError(f"design_fraction must lie in [0, 1), got {design}")
    if min_side < 1:
        raise ConfigError(f"min_side must be at least 1, got {min_side}")


def _decode_all(
    source: Path,
    candidates: list[Candidate],
    staging: np.ndarray,
    image_size: int,
    min_side: int,
    skipped: list[dict[str, str]],
) -> tuple[list[Candidate], list[dict[str, Any]]]:
    """Decode into consecutive staging rows; returns the decoded candidates and conversions."""
    decoded: list[Candidate] = []
    converted: list[dict[str, Any]] = []
    for candidate in tqdm(candidates, desc="ingest", unit="file", disable=None):
        try:
            image = load_square_rgb(source / candidate.path, image_size, min_side)
        except UnusableImage as reason:
            skipped.append({"path": candidate.path, "reason": str(reason)})
            continue
        candidate.row = len(decoded)
        staging[candidate.row] = image.rgb
        candidate.digest = hashlib.sha256(image.rgb.tobytes()).hexdigest()
        decoded.append(candidate)
        if image.conversions:
            converted.append({"path": candidate.path, "conversions": list(image.conversions)})
    return decoded, converted


def _class_counts(kept: list[Candidate], split: str, classes: list[str]) -> dict[str, int]:
    counts = Counter(c.label for c in kept if c.split == split)
    return {name: counts[label] for label, name in enumerate(classes)}


def _check_usable(source: Path, layout: Layout, report: IngestReport) -> None:
    """Train needs every class; val, design and test may lack one (a warning), but must hold some
    images (val and a carved design only when one is asked for)."""
    for split in SPLITS:
        report.empty_classes[split] = [
            name for name, count in report.counts[split].items() if count == 0
        ]
    for name in report.empty_classes["train"]:
        folder = source / "train" / name if layout.name == GIVEN_SPLIT else source / name
        raise DataError(no_usable_image(folder, source, report.skipped))
    if not any(report.counts["test"].values()):
        where = source / "test" if layout.name == GIVEN_SPLIT else source
        raise DataError(f"{where}: no usable test image (see the skipped files)")
    if report.val_fraction > 0 and not any(report.counts["val"].values()):
        raise DataError(
            f"{source}: too few train images to carve a validation split "
            f"(val_fraction={report.val_fraction})"
        )
    carved = report.design_fraction or 0.0
    if carved > 0 and not any(report.counts["design"].values()):
        raise DataError(
            f"{source}: too few train images to carve a design split (design_fraction={carved})"
        )
    checked = ["val"] if report.val_fraction > 0 else []
    checked += ["design"] if layout.design_folder or carved > 0 else []
    for split in [*checked, "test"]:
        for name in report.empty_classes[split]:
            report.warnings.append(f"{split} has no usable image of class '{name}'")
