"""The pipeline section: `dvc repro` from a fresh clone, each stage's wall beside its target.

The repository's committed HEAD is cloned into a temporary folder (uncommitted changes are not
in it) and `dvc repro` runs there with this venv, the embedded MLflow store and an empty DVC
cache, as `make repro` runs after the venv exists. A stage's wall is the time from DVC's
"Running stage" line to the next one (or to the end): its command and DVC's hashing and caching
of its outputs, what a user waits for. `--quick` reproduces the first stages only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import PROJECT, Scale, load_average, load_row, print_table, ratio_row
from benchmarks.curriculum import CURRICULUM_TARGET_S
from dlrepro.errors import DataError

PIPELINE_TARGET_S = 200.0  # `dvc repro` of the whole pipeline, the venv built
STAGE_TARGETS_S = {
    "train@tuned": 80.0,
    "train@text": 45.0,
    "evaluate@text": 8.0,
    "evaluate@tuned": 8.0,
    "export": 10.0,
}
QUICK_TARGET = "gates"  # --quick: the stages `dvc repro gates` runs in a fresh clone, seconds
RUNNING = "Running stage '"


def stage_walls(lines: list[tuple[float, str]], end: float) -> dict[str, float]:
    """Each stage's wall from (time, line) pairs of DVC's output: from its "Running stage"
    line to the next stage's, the last one to `end`."""
    starts = [
        (stamp, line.split(RUNNING, 1)[1].split("'", 1)[0])
        for stamp, line in lines
        if RUNNING in line
    ]
    ends = [stamp for stamp, _ in starts[1:]] + [end]
    return {name: ends[i] - stamp for i, (stamp, name) in enumerate(starts)}


def _repro(clone: Path, targets: list[str]) -> tuple[list[tuple[float, str]], float, float, int]:
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["DVC_NO_ANALYTICS"] = "1"
    lines: list[tuple[float, str]] = []
    start = time.perf_counter()
    with subprocess.Popen(
        ["dvc", "repro", *targets],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append((time.perf_counter(), line.rstrip("\n")))
    return lines, start, time.perf_counter(), process.returncode


def bench_pipeline(scale: Scale) -> dict[str, Any]:
    load_start = load_average()
    targets = [QUICK_TARGET] if scale.quick else []
    with tempfile.TemporaryDirectory(prefix="dlrepro-bench-") as tmp:
        clone = Path(tmp) / "repo"
        subprocess.run(
            ["git", "clone", "--quiet", str(PROJECT), str(clone)], check=True, capture_output=True
        )
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=clone,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        lines, start, end, code = _repro(clone, targets)
    if code != 0:
        tail = "\n".join(line for _, line in lines[-5:])
        raise DataError(f"dvc repro in a clone of {commit} failed (exit {code}): {tail}")
    walls = stage_walls(lines, end)
    total = end - start
    curriculum = sum(s for name, s in walls.items() if name.startswith("curriculum-"))

    rows = []
    ratios: dict[str, Any] = {}

    def judged(key: str, seconds: float, target: float) -> str:
        """Record `seconds` against `target` under `key`; the table's note for it."""
        ratios[key] = ratio_row(seconds, target, at_least=False)
        verdict = "met" if ratios[key]["met"] else "not met"
        return f"target <= {target:.0f} s: ratio {seconds / target:.2f}, {verdict}"

    for name, seconds in walls.items():
        note = judged(name, seconds, STAGE_TARGETS_S[name]) if name in STAGE_TARGETS_S else ""
        rows.append((name, f"{seconds:.1f} s", note))
    if curriculum:
        note = judged("curriculum", curriculum, CURRICULUM_TARGET_S)
        rows.append(("curriculum, 7 stages", f"{curriculum:.1f} s", note))
    note = f"`dvc repro` in a fresh clone of {commit}"
    if scale.quick:
        note = f"`dvc repro {QUICK_TARGET}` (quick) in a fresh clone of {commit}"
    else:
        note += "; " + judged("pipeline", total, PIPELINE_TARGET_S)
    rows.append(("pipeline total", f"{total:.1f} s", note))
    load_end = load_average()
    rows.append(load_row(load_start, load_end))
    print_table("pipeline: dvc repro from a fresh clone, stage by stage", rows)
    return {
        "quick": scale.quick,
        "commit": commit,
        "stage_s": {name: round(seconds, 2) for name, seconds in walls.items()},
        "curriculum_s": round(curriculum, 2),
        "total_s": round(total, 2),
        "targets_s": {**STAGE_TARGETS_S, "curriculum": CURRICULUM_TARGET_S},
        "ratios": ratios,
        "load_average": {"start": load_start, "end": load_end},
    }
