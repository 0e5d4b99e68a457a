"""What every benchmark section shares: the run's sizes, tables, timers and processes.

`Scale` says how much each measurement does (`--quick` shrinks it for a smoke test); the rest
prints (figure, value, note) tables, reads the load average, turns step stamps into rates, times
child processes and generates and prepares leaves as the prepare stage would. Importing this
module loads no torch: the predict section's ONNX Runtime process imports it too.

Child processes that import `benchmarks` get `child_env()`: they start in temporary folders, so
the folder that holds `benchmarks/` goes first on their PYTHONPATH.
"""

from __future__ import annotations

import contextlib
import io
import os
import resource
import subprocess
import time
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlrepro.errors import DataError

if TYPE_CHECKING:
    from dlrepro.config.schema import DataConfig

# The folder that holds `benchmarks/` (the repository root).
PROJECT = Path(__file__).resolve().parents[1]
# --quick's sizes: leaves generated (train, test), or cached images kept (train, val).
QUICK_TRAIN_IMAGES, QUICK_TEST_IMAGES = 96, 32


class Scale:
    """How much each measurement does; `--quick` shrinks everything for a smoke test."""

    def __init__(
        self,
        quick: bool,
        seeds: tuple[int, ...] | None = None,
        design: int = 0,
        train_leaves: int = 0,
    ) -> None:
        self.quick = quick
        self.seeds = seeds  # the recipes section: one run per seed (None: params.yaml's seed)
        self.design = design  # the recipes section: extra generated leaves to score on (0: none)
        self.train_leaves = train_leaves  # the recipes section: other leaves to train on (0: none)
        self.import_repeats = 1 if quick else 3
        self.sgemm_repeats = 3 if quick else 10
        # Lightning and the plain loop alternate, one epoch each, `rounds` times: on a shared
        # machine the load drifts within minutes, so each ratio compares neighbours.
        self.rounds = 1 if quick else 3
        self.tuning_rounds = 1 if quick else 2
        self.tuning_steps = 3 if quick else 15
        self.tuning_variants = 2 if quick else None  # quick: configured and one other
        self.loading_epochs = 1 if quick else 3
        self.warmup_steps = 1 if quick else 3
        # quick: an evenly spaced subset of the cached images (both classes), whatever the cache
        self.image_limit = (QUICK_TRAIN_IMAGES, QUICK_TEST_IMAGES) if quick else None


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def load_row(start: list[float], end: list[float]) -> tuple[str, str, str]:
    return ("load average", "", f"1/5/15 min: {start} at start, {end} at end")


def print_table(title: str, rows: Sequence[tuple[str, str, str]]) -> None:
    """Rows of (figure, value, note), in aligned columns under a title."""
    header = ("figure", "value", "note")
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(2)]
    print(f"\n== {title} ==")
    for figure, value, note in (header, *rows):
        print(f"  {figure:<{widths[0]}}  {value:>{widths[1]}}  {note}".rstrip())


def ratio_row(value: float, target: float, at_least: bool) -> dict[str, Any]:
    met = value >= target if at_least else value <= target
    return {
        "value": round(value, 3),
        "target": f"{'>=' if at_least else '<='} {target}",
        "met": met,
    }


def steady_rate(stamps: Sequence[tuple[int, float, int]], warmup_steps: int) -> float:
    """Images per second from (epoch, time at the end of the step, images in the step) stamps.

    Step i lasts from the end of step i-1 to its own end, inside the same epoch; the first
    `warmup_steps` steps of the run (allocator, oneDNN kernel selection) are not counted.
    """
    steps = counted_steps(stamps, warmup_steps)
    return sum(images for images, _ in steps) / sum(seconds for _, seconds in steps)


def best_step_rate(stamps: Sequence[tuple[int, float, int]], warmup_steps: int) -> float:
    """Images per second of the fastest counted step: what a step gets when no other process
    interrupts it, the upper envelope on a shared machine."""
    return max(images / seconds for images, seconds in counted_steps(stamps, warmup_steps))


def counted_steps(
    stamps: Sequence[tuple[int, float, int]], warmup_steps: int
) -> list[tuple[int, float]]:
    """(images, seconds) of each step after the warm-up whose start lies in its own epoch."""
    steps = [
        (current[2], current[1] - previous[1])
        for index, (previous, current) in enumerate(pairwise(stamps), start=1)
        if index >= warmup_steps and previous[0] == current[0]
    ]
    if not steps:
        raise DataError(f"too few steps to time ({len(stamps)} steps, {warmup_steps} warm-up)")
    return steps


def peak_rss_bytes() -> int:
    """This process's peak resident set size.

    VmHWM, the high-water mark of the process's own memory map: on Linux `ru_maxrss` survives
    exec, so a child started from a large parent reports the parent's peak as its own.
    """
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:  # not Linux: ru_maxrss (bytes on macOS) is the best there is
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024  # reported in kB


def physical_cores() -> int:
    try:
        import psutil  # installed with dvc; counts cores, not hyper-threads
    except ImportError:
        return os.cpu_count() or 1
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def timed_subprocess(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, done


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def generate_and_prepare(
    leaves: Path, cache: Path, data: DataConfig, train: int, test: int, design: int = 0
) -> tuple[float, float]:
    """`train` + `test` (+ `design`, in design/) generated leaves in `leaves`, prepared into
    `cache` with `data`'s settings as the prepare stage would: (seconds generating, seconds
    preparing)."""
    from dlrepro.data.ingest import ingest
    from dlrepro.data.leaves import generate_dataset

    start = time.perf_counter()
    generate_dataset(leaves, train, test, data.seed, data.raw_size, design)
    generated = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # its "Found N images" lines
        ingest(
            leaves,
            cache,
            data.image_size,
            data.test_fraction,
            data.seed,
            data.min_side,
            data.val_fraction,
            0.0 if design else data.design_fraction,  # a design/ folder is the design split
        )
    return generated - start, time.perf_counter() - generated


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment with `extra`, for a child that imports `benchmarks` from
    wherever it starts."""
    env = {**os.environ, **(extra or {})}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(PROJECT), env.get("PYTHONPATH"))))
    return env


def text_classifier(**network: Any) -> Any:
    """The text's CNN (or `network`'s variant of it) in the pipeline's classifier (imported on
    call: it loads torch)."""
    from dlrepro.plant.classifier import LeafClassifier
    from dlrepro.plant.networks import ConvNet

    class_names = network.pop("class_names", None)
    return LeafClassifier(ConvNet(**network), class_names=class_names)


def classifier_class() -> type:
    """The pipeline's LightningModule class, to subclass with timing hooks."""
    from dlrepro.plant.classifier import LeafClassifier

    return LeafClassifier
