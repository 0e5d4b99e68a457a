"""The curriculum section: each chapter stage's wall time from a cold process.

Every `python -m dlrepro.stages.curriculum <chapter>` runs against a temporary copy of what the
stages need (params.yaml, data/gates) and a temporary MLflow SQLite store; beside it, the cost
of the imports alone, so the reader sees how much of a chapter is interpreter start, torch,
Lightning and MLflow rather than its own work.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import (
    Scale,
    last_line,
    load_average,
    load_row,
    print_table,
    timed_subprocess,
)
from dlrepro import paths
from dlrepro.config import load_config
from dlrepro.errors import DataError

CURRICULUM_TARGET_S = 20.0  # the seven chapter stages together
# (code, note): each run in a fresh interpreter; an import includes what it pulls in itself.
IMPORTS = {
    "python (no import)": ("pass", "interpreter start"),
    "import numpy": ("import numpy", ""),
    "import torch": ("import torch", ""),
    "import pytorch_lightning": (
        "import pytorch_lightning",
        "includes torch, torchmetrics, scipy",
    ),
    "import mlflow": ("import mlflow", "without torch"),
    "every chapter's imports": (
        "import torch, mlflow, matplotlib.pyplot; import mlflow.store.tracking.sqlalchemy_store",
        "torch, MLflow with its SQL store, matplotlib: what each chapter loads before its work",
    ),
    "a trained chapter's imports": (
        "import pytorch_lightning, mlflow, matplotlib.pyplot; "
        "import mlflow.store.tracking.sqlalchemy_store",
        "the same and Lightning: a chapter with a trained twin (five of the seven)",
    ),
}
LIBRARY_FLOOR = "every chapter's imports"


def bench_curriculum(scale: Scale) -> dict[str, Any]:
    from dlrepro.data.gates import write_gates
    from dlrepro.report.load import CHAPTERS

    chapters = list(CHAPTERS)[:1] if scale.quick else list(CHAPTERS)
    load_start = load_average()
    with tempfile.TemporaryDirectory(prefix="dlrepro-bench-") as tmp:
        root = Path(tmp)
        params = paths.repo_root() / "params.yaml"
        cfg = load_config(params)
        shutil.copy(params, root / "params.yaml")
        write_gates(root / paths.GATES, cfg.data.gates)
        uri = f"sqlite:///{root / 'mlflow.db'}"
        env = {**os.environ, "DVC_ROOT": str(root), "MLFLOW_TRACKING_URI": uri}

        imports = {}
        for name, (code, _) in IMPORTS.items():
            command = [sys.executable, "-c", code]
            if not scale.quick:  # an untimed run first: files in the page cache, as usual
                timed_subprocess(command, root, env)
            runs = [timed_subprocess(command, root, env)[0] for _ in range(scale.import_repeats)]
            imports[name] = round(statistics.median(runs), 3)

        # Creating the SQLite store runs MLflow's schema migrations once; a pipeline pays that on
        # its first stage only, so it is timed apart from the chapters.
        create = f"import mlflow; mlflow.set_tracking_uri({uri!r}); mlflow.search_experiments()"
        store_s, store = timed_subprocess([sys.executable, "-c", create], root, env)
        if store.returncode != 0:
            raise DataError(f"creating the MLflow store {uri} failed: {last_line(store.stderr)}")

        times: dict[str, float | None] = {}
        errors: dict[str, str] = {}
        for chapter in chapters:
            command = [sys.executable, "-m", "dlrepro.stages.curriculum", chapter]
            seconds, done = timed_subprocess(command, root, env)
            times[chapter] = round(seconds, 2) if done.returncode == 0 else None
            if done.returncode != 0:
                errors[chapter] = f"exit {done.returncode}: {last_line(done.stderr)}"
    total = sum(seconds for seconds in times.values() if seconds is not None)

    rows = [(name, f"{seconds:.2f} s", IMPORTS[name][1]) for name, seconds in imports.items()]
    rows.append(("mlflow store creation", f"{store_s:.2f} s", "once per new mlflow.db"))
    for chapter, seconds in times.items():
        if seconds is None:
            rows.append((f"curriculum-{chapter}", "failed", errors[chapter]))
        else:
            rows.append((f"curriculum-{chapter}", f"{seconds:.2f} s", "cold process, whole stage"))
    note = f"target {CURRICULUM_TARGET_S:.0f} s" + (
        f" (quick: {len(chapters)} of {len(CHAPTERS)} chapters)" if scale.quick else ""
    )
    rows.append(("curriculum total", f"{total:.2f} s", note))
    floor = imports[LIBRARY_FLOOR] * len(chapters)
    rows.append(
        (
            "  of which library imports, at least",
            f"{floor:.2f} s",
            f"{len(chapters)} cold stages × {imports[LIBRARY_FLOOR]:.2f} s; ratio to target "
            f"{floor / CURRICULUM_TARGET_S:.2f}",
        )
    )
    load_end = load_average()
    rows.append(load_row(load_start, load_end))
    print_table("curriculum: chapter stages from a cold process", rows)
    return {
        "quick": scale.quick,
        "import_s": imports,
        "mlflow_store_creation_s": round(store_s, 2),
        "chapter_s": times,
        "chapter_errors": errors,
        "total_s": round(total, 2),
        "target_s": CURRICULUM_TARGET_S,
        "total_vs_target": round(total / CURRICULUM_TARGET_S, 3),
        "library_import_floor_s": round(floor, 2),
        "load_average": {"start": load_start, "end": load_end},
    }
