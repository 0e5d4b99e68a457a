"""Kill -9 of the ingest loses nothing: the next run writes exactly the bytes of an uninterrupted
run, and no temporary is left behind.

The ingest alone, in a subprocess on 1,500 noise images (a couple of seconds of work), killed with
SIGKILL while decoding into the staging memmap and while the new splits are written: the old
cache stays whole, with nothing inside it, and the rerun sweeps the leftovers. (The whole
pipeline killed in every stage: tests/e2e/test_pipeline.py.)
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from dlrepro.data.ingest import ingest

pytestmark = pytest.mark.slow
INGEST = (
    "import sys; from dlrepro.data.ingest import ingest; "
    "ingest(sys.argv[1], sys.argv[2], image_size=64, min_side=8)"
)


def digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("leaves")
    rng = np.random.default_rng(0)
    for split, count in (("train", 600), ("test", 150)):
        for name in ("Diseased", "Healthy"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                image = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
                cv2.imwrite(str(folder / f"{i:04d}.png"), image)
    return root


def kill_when(command: list[str], ready, log: Path, timeout: float = 120) -> None:
    """Run `command`, SIGKILL it the moment `ready()` holds; fail if it never does."""
    with log.open("w") as errors:  # a file: a pipe nobody reads could block the child
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
    deadline = time.monotonic() + timeout
    while not ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    reached = ready()
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert reached, (
        f"the kill point was not reached (exit {process.returncode}):\n{log.read_text()}"
    )
    assert process.returncode == -signal.SIGKILL, "the ingest ended before the kill point"


@pytest.mark.parametrize("point", ["decoding", "writing splits"])
def test_kill_during_prepare_loses_nothing_and_leaves_nothing(source, tmp_path, point):
    reference = tmp_path / "reference" / "cache"
    ingest(source, reference, image_size=64, min_side=8)
    expected = digests(reference)

    work = tmp_path / "work"
    cache = work / "cache"
    ingest(source, cache, image_size=48, min_side=8)  # a previous version, complete and different
    before = digests(cache)
    assert before.keys() == expected.keys() and before != expected  # so a torn cache would show

    def staging() -> list[Path]:
        return list(work.glob(".dlrepro-tmp-*"))

    ready = {
        "decoding": lambda: any(s.joinpath("images.u8").exists() for s in staging()),
        "writing splits": lambda: any(s.joinpath("cache", "val").exists() for s in staging()),
    }[point]
    kill_when([sys.executable, "-c", INGEST, str(source), str(cache)], ready, tmp_path / "log")
    assert digests(cache) == before  # the old cache is whole
    assert not any(p.name.startswith(".") for p in cache.rglob("*"))  # nothing inside it

    ingest(source, cache, image_size=64, min_side=8)  # the rerun
    assert staging() == []  # the killed run's leftovers are swept
    assert digests(cache) == expected  # the bytes of an uninterrupted run
