"""What a chapter may use from its surroundings: where the data is, and where to log."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlrepro import paths


def _no_logger(name: str) -> bool:
    return False


@dataclass
class ChapterContext:
    """`logger(name)` returns a Lightning logger for a child run, or False (tests, no tracking)."""

    root: Path = field(default_factory=Path.cwd)
    logger: Callable[[str], Any] = _no_logger

    @property
    def gates_dir(self) -> Path:
        return self.root / paths.GATES
