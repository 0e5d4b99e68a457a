"""Kill -9 anywhere loses nothing: the next run carries on and writes exactly the bytes of an
uninterrupted run, and no temporary is left behind.

Two levels:
- The ingest alone, in a subprocess on 1,500 noise images (a couple of seconds of work), killed
  with SIGKILL while decoding into the staging memmap and while the new splits are written: the
  old cache stays whole, with nothing inside it, and the rerun sweeps the leftovers.
- The whole pipeline, as a user runs it: fresh copies of the repository on the small profile,
  one with a straight `dvc repro`, and one at a longer, different path whose `dvc repro` is
  SIGKILLed (DVC and the stage's process group alike, as a power cut or `kill -9` of the
  terminal would) in the middle of each stage in turn (KILL_POINTS), each next `dvc repro`
  carrying on from there. The killed copy must end exactly where the straight one did.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from dlrepro.data.ingest import ingest
from workspace import BIN, clone_copy, dvc, env, ran_stages, run

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


def kill_when(command: list[str], ready, timeout: float = 120) -> None:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while not ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert process.poll() is None, "the ingest ended before the kill point"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


@pytest.mark.parametrize("point", ["decoding", "writing splits"])
def test_kill_during_prepare_loses_nothing_and_leaves_nothing(source, tmp_path, point):
    reference = tmp_path / "reference" / "cache"
    ingest(source, reference, image_size=64, min_side=8)
    expected = digests(reference)

    work = tmp_path / "work"
    cache = work / "cache"
    ingest(source, cache, image_size=64, min_side=8)  # the previous version, complete
    before = digests(cache)

    def staging() -> list[Path]:
        return list(work.glob(".dlrepro-tmp-*"))

    ready = {
        "decoding": lambda: any(s.joinpath("images.u8").exists() for s in staging()),
        "writing splits": lambda: any(s.joinpath("cache", "val").exists() for s in staging()),
    }[point]
    kill_when([sys.executable, "-c", INGEST, str(source), str(cache)], ready)
    assert digests(cache) == before  # the old cache is whole
    assert not any(p.name.startswith(".") for p in cache.rglob("*"))  # nothing inside it

    ingest(source, cache, image_size=64, min_side=8)  # the rerun
    assert staging() == []  # the killed run's leftovers are swept
    assert digests(cache) == expected  # the bytes of an uninterrupted run


# -- kill -9 in every stage of `dvc repro` ----------------------------------------------------

KILL_TIMEOUT_S = 600
TEMPORARY_MARKS = (".dlrepro-tmp-", ".staging-")  # ours now, and the old ingest's


def jpegs(folder: Path) -> int:
    return sum(1 for _ in folder.rglob("*.jpg")) if folder.is_dir() else 0


# (the DVC stage, the moment to kill it, what is going on then); each stage's command comes
# from the straight run's dvc.lock.
# Each moment is a file the stage itself makes while it runs, so the kill lands mid-work.
KILL_POINTS: list[tuple[str, Callable[[Path], bool], str]] = [
    (
        "generate",
        lambda root: jpegs(root / "data" / "plant_disease_dataset") >= 16,
        "writing the leaf JPEGs",
    ),
    (
        "prepare",
        lambda root: any((root / "data").glob(".dlrepro-tmp-*/images.u8")),
        "decoding into the staging memmap",
    ),
    (
        "train@text",
        lambda root: (root / "models" / "plant_cnn" / "text" / "last.ckpt").exists(),
        "after the first epoch's checkpoint (the rerun resumes)",
    ),
    (
        "train@tuned",
        lambda root: (root / "metrics" / "train" / "tuned.json").exists(),
        "logging the finished fit to MLflow",
    ),
    (
        "evaluate@text",
        lambda root: any((root / "plots" / "evaluate" / "text").glob("*.png")),
        "writing the evaluation plots",
    ),
    (
        "export",
        lambda root: any((root / "models").glob(".dlrepro-tmp-*")),
        "staging the ONNX and pt2 files",
    ),
    (
        "curriculum-optimizers",
        lambda root: any((root / "plots" / "curriculum" / "optimizers").glob("*.png")),
        "writing the chapter's figures",
    ),
    (
        "report",
        lambda root: True,
        "as soon as it starts (imports, MLflow run)",
    ),
]


def stage_process(root: Path, command: tuple[str, ...]) -> int | None:
    """The pid of the stage process `python -m <command>` running in `root`, if any."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(proc / "cwd")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        args = [a.decode(errors="replace") for a in argv]
        if cwd == str(root) and "-m" in args:
            module_and_args = tuple(args[args.index("-m") + 1 :][: len(command)])
            if module_and_args == command:
                return int(proc.name)
    return None


def repro_killed_at(root: Path, command: tuple[str, ...], moment: Callable[[Path], bool]) -> None:
    """`dvc repro` in `root`, SIGKILLed (DVC and the stage alike) once the stage `command` runs
    and `moment` holds: a power cut, or `kill -9` of the whole terminal's process group."""
    with (root.parent / "killed.log").open("a") as log:
        repro = subprocess.Popen(
            [str(BIN / "dvc"), "repro"], cwd=root, env=env(root), stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + KILL_TIMEOUT_S
    try:
        while time.monotonic() < deadline and repro.poll() is None:
            if stage_process(root, command) is not None and moment(root):
                os.killpg(repro.pid, signal.SIGKILL)
                repro.wait(timeout=30)
                break
            time.sleep(0.005)
        else:
            raise AssertionError(f"{' '.join(command)} never reached its kill point")
    finally:
        if repro.poll() is None:
            os.killpg(repro.pid, signal.SIGKILL)
            repro.wait()
    deadline = time.monotonic() + 30  # the killed group's processes are reaped by init
    while stage_process(root, command) is not None:
        assert time.monotonic() < deadline, "the killed stage is still running"
        time.sleep(0.1)


def temporaries(root: Path) -> list[str]:
    return [
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.name.startswith(TEMPORARY_MARKS) and ".git" not in p.relative_to(root).parts
    ]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> dict:
    """A fresh copy and one uninterrupted `dvc repro`: the reference."""
    root = clone_copy(tmp_path_factory.mktemp("straight"))
    done = dvc(root, "repro")
    return {"root": root, "order": ran_stages(done.stdout), "lock": (root / "dvc.lock").read_text()}


def test_kill_9_in_the_middle_of_every_stage_loses_nothing(straight, tmp_path_factory):
    """Each kill point in turn: `dvc repro` is SIGKILLed mid-stage, and the next `dvc repro`
    carries on from there. The last one completes, and the copy is then exactly what an
    uninterrupted run makes elsewhere: dvc.lock (the md5 of every output, checkpoints and
    exports included) byte-identical to the straight copy's, `dvc status` clean, no temporary
    anywhere, and git seeing what it sees after the straight run. Everything a stage writes is a
    function of code, params and data, so the different path changes no byte either."""
    root = tmp_path_factory.mktemp("another-place-for-the-same-repository") / "clone"
    root.mkdir()
    clone_copy(root)
    stages = yaml.safe_load(straight["lock"])["stages"]
    tried = []
    for stage, moment, what in sorted(KILL_POINTS, key=lambda p: straight["order"].index(p[0])):
        command = tuple(stages[stage]["cmd"].split(" -m ", 1)[1].split())  # after `python -m`
        repro_killed_at(root, command, moment)
        tried.append(f"{stage}: {what}")
    done = dvc(root, "repro")
    assert "Traceback" not in done.stdout + done.stderr

    assert dvc(root, "status", "--json").stdout.strip() == "{}"
    assert temporaries(root) == []
    lock = (root / "dvc.lock").read_text()
    assert str(root) not in lock and str(straight["root"]) not in straight["lock"]
    assert lock == straight["lock"], tried
    # Git sees what it sees after the straight run (dvc.lock, metrics/): no temporary, no junk.
    git = run(root, "git", "status", "--porcelain").stdout
    assert git == run(straight["root"], "git", "status", "--porcelain").stdout
    print(f"{len(tried)} kill points tried, all recovered:", *tried, sep="\n  ")
