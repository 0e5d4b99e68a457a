"""Kill -9 in the middle of a stage of `dvc repro`, as a power cut or `kill -9` of the terminal
would: the kill points, finding the stage's process, and the temporaries a kill may leave."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from helpers.workspace import BIN, env

KILL_TIMEOUT_S = 600
TEMPORARY_MARKS = (".dlrepro-tmp-", ".dlrepro-run-", ".staging-")  # with the old ingest's


def jpegs(folder: Path) -> int:
    return sum(1 for _ in folder.rglob("*.jpg")) if folder.is_dir() else 0


# (the DVC stage, the moment to kill it, what is going on then); each stage's command comes
# from the uninterrupted run's dvc.lock.
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
        lambda root: (root / "models" / "plant_cnn" / ".dlrepro-run-text" / "last.ckpt").exists(),
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
