"""Content hashes as DVC records them in dvc.lock, so a hash computed here can be compared with
(or stand for) the version DVC tracks: an input's identity in a fingerprint, a tag or a registry
version."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from dlrepro.outputs import file_digest


def file_md5(path: Path) -> str:
    return file_digest(path, "md5")


def dvc_md5(path: str | Path) -> str:
    """The md5 DVC records in dvc.lock: the file's md5, or for a folder the md5 of its listing
    (sorted {md5, relpath} entries as JSON) followed by '.dir'."""
    path = Path(path)
    if path.is_file():
        return file_md5(path)
    entries = [
        {"md5": file_md5(f), "relpath": f.relative_to(path).as_posix()}
        for f in sorted(path.rglob("*"), key=lambda p: p.relative_to(path).as_posix())
        if f.is_file()
    ]
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"
