"""Where the export stage's time goes, part by part, in one cold process:

    python -m benchmarks.export_parts [CHECKPOINT]    # default: the tuned recipe's last.ckpt

Imports, the torch reference on the cached test split, the one `torch.export` trace, the ONNX
translation, the `.pt2` save, and each format's parity pass; the files go to a temporary folder.
Needs a trained checkpoint and the prepared cache (`dvc repro evaluate@tuned`).
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def main(argv: list[str]) -> None:
    started = time.perf_counter()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)  # the ONNX exporter's notes about absent torchvision ops
    from dlrepro.data.cache import load_split
    from dlrepro.paths import CACHE, repo_root
    from dlrepro.plant.inference import load_checkpoint, torch_probabilities
    from dlrepro.serving import export

    root = repo_root()
    checkpoint = Path(argv[0]) if argv else root / "models" / "plant_cnn" / "tuned" / "last.ckpt"
    parts: list[tuple[str, float]] = [("imports", time.perf_counter() - started)]

    def timed(name: str, work: Callable[[], T]) -> T:
        start = time.perf_counter()
        result = work()
        parts.append((name, time.perf_counter() - start))
        return result

    model = timed("load the checkpoint", lambda: load_checkpoint(checkpoint))
    images = load_split(root / CACHE, "test")[0]
    timed(
        f"torch reference ({len(images)} test images)",
        lambda: torch_probabilities(model, images, 32),
    )
    with tempfile.TemporaryDirectory() as tmp:
        onnx, pt2 = Path(tmp) / "m.onnx", Path(tmp) / "m.pt2"
        program = timed(
            "torch.export (once, for both files)", lambda: export.exported_program(model)
        )
        timed("ONNX translation and save", lambda: export.export_onnx(model, onnx, program=program))
        timed(".pt2 save", lambda: export.export_program(model, pt2, program))
        timed("ONNX parity pass", lambda: export.onnx_probabilities(onnx, images, 32))
        timed(".pt2 load and parity pass", lambda: export.program_probabilities(pt2, images, 32))
    for name, seconds in parts:
        print(f"{name:45s} {seconds:6.2f} s")
    print(f"{'total':45s} {sum(s for _, s in parts):6.2f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
