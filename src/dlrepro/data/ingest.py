"""Any ImageFolder-style dataset → a validated, memory-mapped uint8 cache per split.

Input layouts (class names are the sorted class-folder names, as in Keras' `flow_from_directory`
and torchvision's `ImageFolder`; files are found recursively inside a class folder):

- given split: `<source>/train/<Class>/...` and `<source>/test/<Class>/...`. Both must exist: a
  `train/` without `test/` (or the reverse) is a DataError, not a silent re-split, because the
  test accuracy would then measure something else than the dataset's authors meant. The classes
  are train's; a test folder naming a class train lacks is a DataError (Keras would number the
  classes of each folder on its own and quietly shift the labels).
- one folder: `<source>/<Class>/...`, split per class with `np.random.default_rng(seed)`: each
  class sends round(n × test_fraction) images (at least 1, at most n − 1) to test. Identical
  images of a class stay on the same side, so the split itself never leaks.

Either way a validation split is then carved out of train the same way (per class,
round(n × val_fraction) of its train images, at least 1 and at most n − 1, drawn with
`np.random.default_rng([seed, 1])`, identical images kept together): checkpoint selection, early
stopping and tuning read val, so test is touched once, by the evaluation. The test split of a
given dataset is never re-drawn, and a one-folder dataset gets the same test split as without val.

Every file is validated (see `dlrepro.data.images` for the decoding decisions): hidden files,
files without an image suffix, empty, corrupt, truncated or too small images are skipped and
listed with their reason. A val image whose cached pixels equal a train image's, or a test image
equal to a train or val image, is a leak: it is dropped from the later split and reported.
Pixels are compared after decoding and resizing (SHA-256 of the cached bytes), so a re-encoded
or re-tagged copy of the same picture counts as the same image, since the model would see the
same input.

Cache layout (`load_split` reads it back without loading the images into memory):
    <cache_dir>/classes.json                  class names, index = label
    <cache_dir>/<split>/images.npy            uint8, N × image_size × image_size × 3, RGB
    <cache_dir>/<split>/labels.npy            int64, N
    <cache_dir>/<split>/manifest.json         source-relative path of every row, in row order,
                                              and the SHA-256 of images.npy and labels.npy
Row order is the sorted source paths, so a re-run over the same files writes the same bytes.
Decoding streams through a staging memmap, so neither the decoded dataset nor a split is ever
held in RAM; the disk needs room for the cache twice. The new cache is written into a temporary
folder beside cache_dir (never inside it: cache_dir is a DVC output) and then takes its place,
so a kill at any point leaves the old cache whole; `load_split` checks each file against its
manifest's checksum, so a torn file is refused in one line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from dlrepro.data.images import IMAGE_SUFFIXES, UnusableImage, load_square_rgb
from dlrepro.errors import ConfigError, DataError
from dlrepro.outputs import file_digest, replace_dir, staging_dir, write_json

CHECKSUMMED = ("images.npy", "labels.npy")  # verified against the manifest by load_split
SPLITS = ("train", "val", "test")  # the cache's splits, in the order they are written
SOURCE_SPLITS = ("train", "test")  # the folders of a given split (val is always carved from train)
VAL_SEED_STREAM = 1  # val is drawn from rng([seed, 1]): the test split's rng(seed) is unchanged
GIVEN_SPLIT = "given split"
SEEDED_SPLIT = "one folder, seeded split"
_COPY_ROWS = 256  # rows copied from staging to a split at a time (256 × 49 KB at 128 px)


@dataclass
class IngestReport:
    """What the ingest found, kept and dropped; `to_dict()` is the JSON data report."""

    source: str
    layout: str  # GIVEN_SPLIT or SEEDED_SPLIT
    image_size: int
    min_side: int
    seed: int  # seeds the test split (one-folder layout only) and the val split
    test_fraction: float | None  # None for a given split
    val_fraction: float
    classes: list[str]
    counts: dict[str, dict[str, int]]  # split → class → images in the cache
    found: dict[str, str]  # split -> "Found 680 images belonging to 2 classes.", as Keras prints
    skipped: list[dict[str, str]] = field(default_factory=list)  # {path, reason}
    converted: list[dict[str, Any]] = field(default_factory=list)  # {path, conversions}
    conversion_counts: dict[str, int] = field(default_factory=dict)
    # {split, path, copy_of}: `path` (in val or test) dropped, its pixels equal `copy_of`'s
    leaks: list[dict[str, str]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)  # {split, paths}: all kept
    empty_classes: dict[str, list[str]] = field(default_factory=dict)  # split → no usable image
    ignored: list[dict[str, str]] = field(default_factory=list)  # {path, reason}: not looked into
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class _Candidate:
    split: str | None  # None until the one-folder layout is split
    label: int
    path: str  # relative to the source, POSIX separators
    row: int = -1  # row in the staging memmap once decoded
    digest: str = ""  # SHA-256 of the cached pixels


@dataclass(frozen=True)
class _Layout:
    name: str
    classes: list[str]
    class_dirs: list[tuple[str | None, int, Path]]  # (split, label, folder) to collect from


def ingest(
    source: str | Path,
    cache_dir: str | Path,
    image_size: int = 128,
    test_fraction: float = 0.2,
    seed: int = 0,
    min_side: int = 16,
    val_fraction: float = 0.15,
) -> IngestReport:
    """Validate every file under `source` and write the train/val/test cache into `cache_dir`.

    image_size: side of the cached square images. test_fraction: the per-class test share of a
    one-folder dataset (unused for a given train/test split). val_fraction: the per-class share
    of train carved out as val (0: an empty val split). seed: both draws. min_side: images whose
    short side is smaller are skipped. Prints one "Found N images belonging to K classes." line per
    split to stdout. Raises DataError (one line) when the dataset cannot be used.
    """
    _check_arguments(image_size, test_fraction, min_side, val_fraction)
    source, cache_dir = Path(source).resolve(), Path(cache_dir).resolve()
    if not source.is_dir():
        raise DataError(f"{source}: no such folder")
    if cache_dir.is_relative_to(source) or source.is_relative_to(cache_dir):
        raise DataError(f"{cache_dir}: the cache folder must lie outside the source {source}")

    ignored: list[dict[str, str]] = []
    layout = _find_layout(source, ignored)
    skipped: list[dict[str, str]] = []
    candidates = _collect_candidates(source, layout, skipped, ignored)
    _require_train_files(source, layout, candidates, skipped)

    with staging_dir(cache_dir) as work:
        new_cache = work / "cache"
        staging = np.memmap(
            work / "images.u8",
            dtype=np.uint8,
            mode="w+",
            shape=(len(candidates), image_size, image_size, 3),
        )
        decoded, converted = _decode_all(source, candidates, staging, image_size, min_side, skipped)
        if layout.name == SEEDED_SPLIT:
            _split_by_class(decoded, len(layout.classes), "train", "test", test_fraction, seed)
        _split_by_class(
            decoded, len(layout.classes), "train", "val", val_fraction, [seed, VAL_SEED_STREAM]
        )
        leaks = _drop_leaks(decoded)
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
            classes=layout.classes,
            counts={split: _class_counts(kept, split, layout.classes) for split in SPLITS},
            found={},
            skipped=sorted(skipped, key=lambda entry: entry["path"]),
            converted=converted,
            conversion_counts=dict(
                sorted(Counter(c for entry in converted for c in entry["conversions"]).items())
            ),
            leaks=leaks,
            duplicates=_duplicates(kept),
            ignored=sorted(ignored, key=lambda entry: entry["path"]),
        )
        _check_usable(source, layout, report)
        for split in SPLITS:
            rows = [c for c in kept if c.split == split]
            _write_split(new_cache / split, staging, rows, split)
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
            f"Skipped {len(skipped)} files and dropped {len(leaks)} val/test images also in an "
            "earlier split (see the data report)."
        )
    return report


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


def _check_arguments(
    image_size: int, test_fraction: float, min_side: int, val_fraction: float
) -> None:
    if image_size < 1:
        raise ConfigError(f"image_size must be at least 1, got {image_size}")
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    if min_side < 1:
        raise ConfigError(f"min_side must be at least 1, got {min_side}")


def _visible_subfolders(folder: Path, source: Path, ignored: list[dict[str, str]]) -> list[Path]:
    """Sorted subfolders; hidden ones (.ipynb_checkpoints, .git) are ignored, never a class."""
    subfolders = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            ignored.append({"path": _relative(entry, source), "reason": "hidden"})
        elif entry.is_dir():
            subfolders.append(entry)
        else:
            ignored.append({"path": _relative(entry, source), "reason": "file outside a class"})
    return subfolders


def _find_layout(source: Path, ignored: list[dict[str, str]]) -> _Layout:
    top = _visible_subfolders(source, source, ignored)
    names = {folder.name for folder in top}
    if not names & set(SOURCE_SPLITS):
        classes = [folder.name for folder in top]
        _require_classes(source, classes)
        return _Layout(
            SEEDED_SPLIT,
            classes,
            [(None, label, folder) for label, folder in enumerate(top)],
        )
    for split in SOURCE_SPLITS:
        if split not in names:
            present = next(iter(names & set(SOURCE_SPLITS)))
            raise DataError(
                f"{source}: has {present}/ but no {split}/; give both train/ and test/, "
                "or point at a folder of class folders to split it"
            )
    for folder in top:
        if folder.name not in SOURCE_SPLITS:
            ignored.append({"path": _relative(folder, source), "reason": "not train/ or test/"})
    train_dirs = _visible_subfolders(source / "train", source, ignored)
    classes = [folder.name for folder in train_dirs]
    _require_classes(source / "train", classes)
    class_dirs = [("train", label, folder) for label, folder in enumerate(train_dirs)]
    for folder in _visible_subfolders(source / "test", source, ignored):
        if folder.name not in classes:
            raise DataError(f"{folder}: class '{folder.name}' has no folder in train/ ({classes})")
        class_dirs.append(("test", classes.index(folder.name), folder))
    return _Layout(GIVEN_SPLIT, classes, class_dirs)


def _require_classes(folder: Path, classes: list[str]) -> None:
    if not classes:
        raise DataError(
            f"{folder}: not an image dataset (no class subfolders; expected <Class>/<images> "
            "or train/<Class>/ and test/<Class>/)"
        )
    if len(classes) == 1:
        raise DataError(
            f"{folder}: only one class folder ({classes[0]}); a classifier needs at least two"
        )


def _collect_candidates(
    source: Path,
    layout: _Layout,
    skipped: list[dict[str, str]],
    ignored: list[dict[str, str]],
) -> list[_Candidate]:
    """Files with an image suffix, in sorted path order; everything else is skipped with why."""
    candidates = []
    for split, label, class_dir in layout.class_dirs:
        files = []
        for folder, subfolders, names in os.walk(class_dir):
            for hidden in [name for name in subfolders if name.startswith(".")]:
                subfolders.remove(hidden)
                hidden_path = _relative(Path(folder, hidden), source)
                ignored.append({"path": hidden_path, "reason": "hidden"})
            files.extend(Path(folder, name) for name in names)
        for file in sorted(files, key=lambda path: _relative(path, source)):
            path = _relative(file, source)
            if file.name.startswith("."):
                skipped.append({"path": path, "reason": "hidden file"})
            elif file.suffix.lower() not in IMAGE_SUFFIXES:
                suffix = f"suffix '{file.suffix}'" if file.suffix else "no suffix"
                skipped.append({"path": path, "reason": f"not an image file ({suffix})"})
            else:
                candidates.append(_Candidate(split, label, path))
    return candidates


def _require_train_files(
    source: Path, layout: _Layout, candidates: list[_Candidate], skipped: list[dict[str, str]]
) -> None:
    """Fail before decoding anything when a class folder holds no image file at all."""
    train_split = "train" if layout.name == GIVEN_SPLIT else None
    present = {c.label for c in candidates if c.split == train_split}
    for label, name in enumerate(layout.classes):
        if label not in present:
            folder = source / "train" / name if train_split else source / name
            raise DataError(_no_usable_image(folder, source, skipped))


def _no_usable_image(folder: Path, source: Path, skipped: list[dict[str, str]]) -> str:
    prefix = _relative(folder, source) + "/"
    reasons = [entry for entry in skipped if entry["path"].startswith(prefix)]
    detail = (
        f"{len(reasons)} files skipped, e.g. {reasons[0]['path']}: {reasons[0]['reason']}"
        if reasons
        else "the folder is empty"
    )
    return f"{folder}: no usable image for class '{folder.name}' ({detail})"


def _decode_all(
    source: Path,
    candidates: list[_Candidate],
    staging: np.ndarray,
    image_size: int,
    min_side: int,
    skipped: list[dict[str, str]],
) -> tuple[list[_Candidate], list[dict[str, Any]]]:
    """Decode into consecutive staging rows; returns the decoded candidates and conversions."""
    decoded: list[_Candidate] = []
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


def _split_by_class(
    decoded: list[_Candidate],
    n_classes: int,
    source: str | None,
    target: str,
    fraction: float,
    seed: int | list[int],
) -> None:
    """Move round(n × fraction) of each class's `source` images (at least 1, at most n − 1; none
    for fraction 0) to `target`: a seeded shuffle of groups of identical images, so copies of one
    picture never straddle the two splits. `source` None: the unsplit one-folder layout."""
    rng = np.random.default_rng(seed)
    for label in range(n_classes):
        members = [c for c in decoded if c.label == label and c.split in (source, None)]
        groups: dict[str, list[_Candidate]] = {}
        for candidate in members:
            groups.setdefault(candidate.digest, []).append(candidate)
        ordered = list(groups.values())
        # round half up (Python's round() rounds half to even), at least 1, at most n - 1
        wanted = math.floor(len(members) * fraction + 0.5)
        count = min(len(members) - 1, max(1, wanted)) if fraction > 0 else 0
        moved = 0
        for index in rng.permutation(len(ordered)):
            group = ordered[index]
            to_target = moved < count and moved + len(group) < len(members)
            for candidate in group:
                candidate.split = target if to_target else source or "train"
            moved += len(group) if to_target else 0


def _drop_leaks(decoded: list[_Candidate]) -> list[dict[str, str]]:
    """Val images equal to a train image, and test images equal to a train or val image, each
    paired with the first such earlier image (split order: train, val, test)."""
    first_seen: dict[str, tuple[str, str]] = {}  # digest -> (split, path) of its first image
    leaks = []
    for split in SPLITS:
        for candidate in (c for c in decoded if c.split == split):
            earlier_split, earlier_path = first_seen.setdefault(
                candidate.digest, (split, candidate.path)
            )
            if earlier_split != split:
                leaks.append({"split": split, "path": candidate.path, "copy_of": earlier_path})
    return leaks


def _duplicates(kept: list[_Candidate]) -> list[dict[str, Any]]:
    """Groups of identical images inside one split (kept: they weigh more, but do not leak)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for candidate in kept:
        groups.setdefault((candidate.split, candidate.digest), []).append(candidate.path)
    return [
        {"split": split, "paths": paths} for (split, _), paths in groups.items() if len(paths) > 1
    ]


def _class_counts(kept: list[_Candidate], split: str, classes: list[str]) -> dict[str, int]:
    counts = Counter(c.label for c in kept if c.split == split)
    return {name: counts[label] for label, name in enumerate(classes)}


def _check_usable(source: Path, layout: _Layout, report: IngestReport) -> None:
    """Train needs every class; val and test may lack one (a warning), but must hold some images
    (val only when one is asked for)."""
    for split in SPLITS:
        report.empty_classes[split] = [
            name for name, count in report.counts[split].items() if count == 0
        ]
    for name in report.empty_classes["train"]:
        folder = source / "train" / name if layout.name == GIVEN_SPLIT else source / name
        raise DataError(_no_usable_image(folder, source, report.skipped))
    if not any(report.counts["test"].values()):
        where = source / "test" if layout.name == GIVEN_SPLIT else source
        raise DataError(f"{where}: no usable test image (see the skipped files)")
    if report.val_fraction > 0 and not any(report.counts["val"].values()):
        raise DataError(
            f"{source}: too few train images to carve a validation split "
            f"(val_fraction={report.val_fraction})"
        )
    for split in ("val", "test") if report.val_fraction > 0 else ("test",):
        for name in report.empty_classes[split]:
            report.warnings.append(f"{split} has no usable image of class '{name}'")


def _write_split(folder: Path, staging: np.ndarray, rows: list[_Candidate], split: str) -> None:
    """Stream the split's rows from staging into images.npy, never holding the split in RAM."""
    folder.mkdir(parents=True, exist_ok=True)
    images = np.lib.format.open_memmap(
        folder / "images.npy", mode="w+", dtype=np.uint8, shape=(len(rows), *staging.shape[1:])
    )
    for start in range(0, len(rows), _COPY_ROWS):
        chunk = rows[start : start + _COPY_ROWS]
        images[start : start + len(chunk)] = staging[[c.row for c in chunk]]
    images.flush()
    del images
    np.save(folder / "labels.npy", np.array([c.label for c in rows], dtype=np.int64))
    checksums = {name: file_digest(folder / name, "sha256") for name in CHECKSUMMED}
    write_json(
        folder / "manifest.json",
        {"split": split, "paths": [c.path for c in rows], "sha256": checksums},
    )


def _relative(path: Path, source: Path) -> str:
    return path.relative_to(source).as_posix()
