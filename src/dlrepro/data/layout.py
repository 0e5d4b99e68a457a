"""Where an image dataset's files are: its layout, its classes and the image files to decode.

Two layouts, with class names the sorted class-folder names (as Keras' `flow_from_directory` and
torchvision's `ImageFolder` number them) and files found recursively inside a class folder:
`<source>/train/<Class>/` and `<source>/test/<Class>/` (a given split, with an optional
`<source>/design/<Class>/`), or `<source>/<Class>/` (one folder, split later). A given split needs
train and test, and test's (and design's) classes must be train's: re-splitting silently, or
numbering each folder's classes on its own as Keras does, would change what the test accuracy
measures. Anything that is not looked into or not an image is recorded with its reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dlrepro.data.images import IMAGE_SUFFIXES
from dlrepro.errors import DataError

SOURCE_SPLITS = ("train", "test")  # the folders of a given split (val is always carved from train)
DESIGN_SPLIT = "design"  # a given split's optional folder: the design split, else carved from train
GIVEN_SPLIT = "given split"
SEEDED_SPLIT = "one folder, seeded split"


@dataclass
class Candidate:
    """One image file to decode, and where the ingest puts it."""

    split: str | None  # None until the one-folder layout is split
    label: int
    path: str  # relative to the source, POSIX separators
    row: int = -1  # row in the staging memmap once decoded
    digest: str = ""  # SHA-256 of the cached pixels


@dataclass(frozen=True)
class Layout:
    """The layout found (GIVEN_SPLIT or SEEDED_SPLIT), its classes and their folders."""

    name: str
    classes: list[str]
    class_dirs: list[tuple[str | None, int, Path]]  # (split, label, folder) to collect from
    design_folder: bool = False  # a given split with a design/ folder


def find_layout(source: Path, ignored: list[dict[str, str]]) -> Layout:
    """The layout of `source`; a DataError when it is neither, or names too few classes."""
    top = _visible_subfolders(source, source, ignored)
    names = {folder.name for folder in top}
    if not names & set(SOURCE_SPLITS):
        classes = [folder.name for folder in top]
        _require_classes(source, classes)
        return Layout(
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
        if folder.name not in (*SOURCE_SPLITS, DESIGN_SPLIT):
            reason = "not train/, test/ or design/"
            ignored.append({"path": _relative(folder, source), "reason": reason})
    train_dirs = _visible_subfolders(source / "train", source, ignored)
    classes = [folder.name for folder in train_dirs]
    _require_classes(source / "train", classes)
    class_dirs: list[tuple[str | None, int, Path]] = [
        ("train", label, folder) for label, folder in enumerate(train_dirs)
    ]
    design = DESIGN_SPLIT in names
    for split in ("test", DESIGN_SPLIT) if design else ("test",):
        for folder in _visible_subfolders(source / split, source, ignored):
            if folder.name not in classes:
                raise DataError(
                    f"{folder}: class '{folder.name}' has no folder in train/ ({classes})"
                )
            class_dirs.append((split, classes.index(folder.name), folder))
    return Layout(GIVEN_SPLIT, classes, class_dirs, design_folder=design)


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


def collect_candidates(
    source: Path,
    layout: Layout,
    skipped: list[dict[str, str]],
    ignored: list[dict[str, str]],
) -> list[Candidate]:
    """Files with an image suffix, in sorted path order; everything else is skipped with why."""
    candidates = []
    for split, label, class_dir in layout.class_dirs:
        files: list[Path] = []
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
                candidates.append(Candidate(split, label, path))
    return candidates


def require_train_files(
    source: Path, layout: Layout, candidates: list[Candidate], skipped: list[dict[str, str]]
) -> None:
    """Fail before decoding anything when a class folder holds no image file at all."""
    train_split = "train" if layout.name == GIVEN_SPLIT else None
    present = {c.label for c in candidates if c.split == train_split}
    for label, name in enumerate(layout.classes):
        if label not in present:
            folder = source / "train" / name if train_split else source / name
            raise DataError(no_usable_image(folder, source, skipped))


def no_usable_image(folder: Path, source: Path, skipped: list[dict[str, str]]) -> str:
    """The one-line error for a class folder left empty, with an example of what was skipped."""
    prefix = _relative(folder, source) + "/"
    reasons = [entry for entry in skipped if entry["path"].startswith(prefix)]
    detail = (
        f"{len(reasons)} files skipped, e.g. {reasons[0]['path']}: {reasons[0]['reason']}"
        if reasons
        else "the folder is empty"
    )
    return f"{folder}: no usable image for class '{folder.name}' ({detail})"


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


def _relative(path: Path, source: Path) -> str:
    return path.relative_to(source).as_posix()
