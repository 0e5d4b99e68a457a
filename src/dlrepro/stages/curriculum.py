"""DVC stage `curriculum-<chapter>`: run one chapter of the text, write and track its outputs.

python -m dlrepro.stages.curriculum perceptron
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
from pathlib import Path

from dlrepro import paths
from dlrepro.cli import run_stage
from dlrepro.config import load_config
from dlrepro.tracking.logger import lightning_logger
from dlrepro.tracking.runs import log_outcome, stage_run
from dlrepro.tracking.store import ensure_reachable

# The chapters are the packages with a runner; listed from the folder rather than imported, so a
# chapter's stage depends on its own package only (see tests/unit/test_stage_deps.py).
CHAPTERS_DIR = Path(__file__).resolve().parents[1] / "chapters"


def chapter_names() -> list[str]:
    return sorted(runner.parent.name for runner in CHAPTERS_DIR.glob("*/run.py"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("chapter", choices=chapter_names())
    chapter = parser.parse_args().chapter
    root = paths.repo_root()
    cfg = load_config(root / "params.yaml")
    ensure_reachable()

    from dlrepro.chapters._common.context import ChapterContext

    module = importlib.import_module(f"dlrepro.chapters.{chapter}.run")
    inputs = [root / path for path in module.INPUTS]
    params = dataclasses.asdict(getattr(cfg.curriculum, chapter))
    with stage_run(f"curriculum-{chapter}", "curriculum", params, inputs) as run:
        ctx = ChapterContext(
            root=root,
            logger=lambda name: lightning_logger("curriculum", name, run),
        )
        result = module.run(cfg, ctx)
        written = result.write(chapter, root)
        log_outcome(run.info.run_id, result.metrics, result.series, written)
    names = ", ".join(path.relative_to(root).as_posix() for path in written)
    print(f"curriculum-{chapter}: wrote {names}")


if __name__ == "__main__":
    run_stage(main, sweep=True)
