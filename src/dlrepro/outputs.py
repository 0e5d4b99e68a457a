"""Byte-stable writers: the same results always give the same bytes, so DVC sees no change."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any


def fresh_dir(path: Path) -> Path:
    """Empty a stage-owned output folder (outputs are `persist: true`, so DVC leaves them)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def save_figure(fig: Any, path: Path) -> Path:
    """PNG without the Software tag, so a matplotlib upgrade alone does not change the bytes."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path
