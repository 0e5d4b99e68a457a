"""Byte-stable, atomic writers: the same results always give the same bytes, so DVC sees no
change, and a kill at any point leaves either the old file or the new one, never a torn one.

Temporaries are siblings named `.dlrepro-tmp-<pid>-*` (ignored by git), never inside a
DVC-tracked output, so a killed run cannot get one hashed into `dvc.lock`. Every stage starts by
sweeping the workspace's leftovers whose process is gone (`sweep_workspace`); a live process's
temporaries (another rank, a stage run by hand beside it) are never touched.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dlrepro.errors import DataError

TEMP_PREFIX = ".dlrepro-tmp-"


def file_digest(path: Path, algorithm: str = "md5") -> str:
    """Hex digest of a file's bytes, read 1 MiB at a time (md5: what DVC records)."""
    digest = hashlib.new(algorithm)
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def temp_prefix(name: str) -> str:
    """The prefix of this process's temporaries for `name`: the pid says whose they are."""
    return f"{TEMP_PREFIX}{os.getpid()}-{name}-"


def _owner_alive(leftover: Path) -> bool:
    pid = leftover.name[len(TEMP_PREFIX) :].split("-", 1)[0]
    if not pid.isdigit():
        return False  # not named by a process: nobody is writing it
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def sweep_temporaries(folder: Path) -> None:
    """Remove the `.dlrepro-tmp-*` leftovers in `folder` whose process is gone (a killed run)."""
    for leftover in Path(folder).glob(TEMP_PREFIX + "*"):
        if _owner_alive(leftover):
            continue
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


# Where stages write, and how deep their temporaries can sit (plots/train/<recipe>/,
# models/plant_cnn/.dlrepro-run-<recipe>/): nothing deeper is listed, so a user's image tree
# under data/ costs a few folder listings at most.
OUTPUT_FOLDERS = ("data", "models", "metrics", "plots", "reports")
SWEEP_DEPTH = 3


def sweep_workspace(root: Path) -> None:
    """Sweep a killed run's leftovers from every output folder of the workspace at `root`."""

    def walk(folder: Path, depth: int) -> None:
        sweep_temporaries(folder)
        if depth == 0:
            return
        with os.scandir(folder) as entries:
            below = [
                Path(e.path)
                for e in entries
                if e.is_dir(follow_symlinks=False) and not e.name.startswith(TEMP_PREFIX)
            ]
        for child in below:
            walk(child, depth - 1)

    for name in OUTPUT_FOLDERS:
        if (Path(root) / name).is_dir():
            walk(Path(root) / name, SWEEP_DEPTH - 1)


@contextmanager
def staging_dir(target: Path) -> Iterator[Path]:
    """A temporary folder beside `target`, removed on exit (after stale ones are swept)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_temporaries(target.parent)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=temp_prefix(target.name)) as d:
        yield Path(d)


def refuse_link(target: Path) -> None:
    """DataError when `target`, an output folder, is a symbolic link: replacing it would
    replace the link, and what it points to would be left stale. Stages call it before work."""
    if Path(target).is_symlink():
        raise DataError(
            f"{target}: a symbolic link where dlrepro writes an output folder; replace it with a "
            "folder (DVC's cache links files, never this folder)"
        )


def replace_dir(new: Path, target: Path) -> None:
    """Put the finished folder `new` in the place of `target` (two renames, then the old copy
    is removed), so readers see the old complete folder or the new one."""
    refuse_link(target)
    old = target.parent / f"{temp_prefix(target.name)}old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def new_dir(target: Path) -> Iterator[Path]:
    """An empty folder to write `target`'s new contents into; when the block ends without an
    error it replaces `target` whole, otherwise `target` is left as it was."""
    refuse_link(target)
    with staging_dir(target) as work:
        staged = work / target.name
        staged.mkdir()
        yield staged
        replace_dir(staged, target)


def _atomic_write(path: Path, write: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path.name))
    os.close(handle)
    try:
        write(Path(temporary))
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return path


def fresh_dir(path: Path) -> Path:
    """Empty a stage-owned output folder (outputs are `persist: true`, so DVC leaves them).
    A symbolic link in its place is refused rather than followed or replaced; a folder that
    cannot be emptied (read-only, not ours) raises its OSError, which the stage reports."""
    if path.is_symlink():
        raise DataError(
            f"{path}: a symbolic link where dlrepro writes an output folder; replace it with a "
            "folder (DVC's cache links files, never this folder)"
        )
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def write_json(path: Path, data: Any) -> Path:
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    return _atomic_write(path, lambda temporary: temporary.write_text(text))


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    columns = list(dict.fromkeys(key for row in rows for key in row))

    def write(temporary: Path) -> None:
        with temporary.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)

    return _atomic_write(path, write)


def save_figure(fig: Any, path: Path) -> Path:
    """PNG without the Software tag, so a matplotlib upgrade alone does not change the bytes."""
    import matplotlib.pyplot as plt

    def write(temporary: Path) -> None:
        fig.savefig(temporary, format="png", dpi=100, metadata={"Software": None})

    _atomic_write(path, write)
    plt.close(fig)
    return path
