"""`dlrepro predict`: the text's `predict_image` (cv2.imread, resize, /255, `model.predict`,
"Diseased" if pred > 0.5) on the exported ONNX model, for files and folders.

Where it differs from the text, on purpose: images are decoded as training decoded them
(`load_square_rgb`: RGB, where the text feeds BGR to a model trained on RGB); class names, size
and scaling come from the model's metadata; the printed number is the probability of the
predicted class (the text prints P(classes[1]) beside either name). One image prints the text's
line; `--format json|csv` give every class probability. An unreadable image is one line on stderr
and exit status 1, the others still predicted; a missing or unusable model is one line and exit
status 2. Without an ONNX export the checkpoint is used (torch is imported only then).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

import numpy as np

from dlrepro import paths
from dlrepro.data.images import IMAGE_SUFFIXES, UnusableImage, load_square_rgb
from dlrepro.errors import DataError
from dlrepro.serving.contract import DEFAULT_MIN_SIDE, ONNX_MODEL, ModelInfo, served_checkpoint
from dlrepro.serving.runtime import OnnxModel

FORMATS = ("text", "json", "csv")
DEFAULT_BATCH_SIZE = 32


class Model(Protocol):
    info: ModelInfo

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """uint8 RGB (N, S, S, 3) → float32 (N, len(classes)); column i is P(classes[i])."""
        ...


class CheckpointModel:
    """A Lightning checkpoint, for when no ONNX export exists yet (imports torch: slow start).
    Weights-only loading: no code from the file runs."""

    def __init__(self, path: str | Path) -> None:
        from dlrepro.plant.inference import load_checkpoint

        self.model = load_checkpoint(path)
        if not self.model.class_names:
            raise DataError(f"{path}: the checkpoint names no classes (class_names)")
        self.info = ModelInfo(self.model.class_names, self.model.image_size, DEFAULT_MIN_SIDE)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        from dlrepro.plant.inference import torch_probabilities

        return torch_probabilities(self.model, images, batch_size=len(images))


def open_model(model_path: str | Path | None = None, err: TextIO | None = None) -> Model:
    """`model_path` (.onnx, or a .ckpt checkpoint); by default the repository's ONNX export,
    falling back to its best checkpoint with a note on `err` when there is no export yet."""
    if model_path is not None:
        model_path = Path(model_path)
        return (
            CheckpointModel(model_path) if model_path.suffix == ".ckpt" else OnnxModel(model_path)
        )
    root = paths.repo_root()
    if (root / ONNX_MODEL).is_file():
        return OnnxModel(root / ONNX_MODEL)
    from dlrepro.config import load_config

    checkpoint = served_checkpoint(load_config(root / "params.yaml"))
    if (root / checkpoint).is_file():
        print(
            "no ONNX export found; using the checkpoint (slower start): run `dvc repro export`",
            file=err or sys.stderr,
        )
        return CheckpointModel(root / checkpoint)
    raise DataError(
        f"{root / ONNX_MODEL}: no such model file, nor a checkpoint at {checkpoint}; "
        "run `dvc repro export` (or `dvc pull`), or pass --model"
    )


def expand_paths(inputs: Iterable[str | Path]) -> list[Path]:
    """Files as given; a folder becomes its image files (recursively, sorted, hidden ones
    skipped). Paths that do not exist are kept, so that each is reported by name."""
    files: list[Path] = []
    for given in map(Path, inputs):
        if not given.is_dir():
            files.append(given)
            continue
        found = (
            path
            for path in given.rglob("*")
            if path.is_file()
            and path.suffix.lower() in IMAGE_SUFFIXES
            and not any(part.startswith(".") for part in path.relative_to(given).parts)
        )
        files.extend(sorted(found, key=lambda p: p.relative_to(given).as_posix()))
    return files


@dataclass(frozen=True)
class Prediction:
    path: Path
    label: str
    probability: float  # of `label`
    probabilities: dict[str, float]  # every class


@dataclass(frozen=True)
class Failure:
    path: Path
    reason: str


def predict_files(
    model: Model, files: Sequence[Path], batch_size: int = DEFAULT_BATCH_SIZE
) -> Iterator[Prediction | Failure]:
    """Decode and predict `files` in batches of `batch_size`; an unusable file yields a Failure
    (and does not stop the others). Answers come in the order of `files`, failures included: a
    failure waits for the batch of the files before it."""
    info = model.info
    batch = np.empty((batch_size, info.image_size, info.image_size, 3), dtype=np.uint8)
    queue: list[Path | Failure] = []  # since the last flush, in order
    decoded = 0  # rows of `batch` in use

    def flush() -> Iterator[Prediction | Failure]:
        nonlocal decoded
        rows = iter(model.probabilities(batch[:decoded]) if decoded else [])
        for item in queue:
            if isinstance(item, Failure):
                yield item
                continue
            row = next(rows)
            best = int(np.argmax(row))  # ties → the first class; binary: classes[1] iff p > 0.5
            yield Prediction(
                item,
                info.classes[best],
                float(row[best]),
                {name: float(p) for name, p in zip(info.classes, row, strict=True)},
            )
        queue.clear()
        decoded = 0

    for path in files:
        try:
            batch[decoded] = load_square_rgb(path, info.image_size, info.min_side).rgb
        except UnusableImage as reason:
            queue.append(Failure(path, str(reason)))
            continue
        queue.append(path)
        decoded += 1
        if decoded == batch_size:
            yield from flush()
    if queue:
        yield from flush()


def text_line(prediction: Prediction, with_path: bool) -> str:
    line = f"Prediction: {prediction.label} ({prediction.probability:.2f})"  # the text's format
    return f"{prediction.path}: {line}" if with_path else line


def run(
    inputs: Sequence[str | Path],
    model_path: str | Path | None = None,
    output_format: str = "text",
    batch_size: int = DEFAULT_BATCH_SIZE,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Predict every image under `inputs` and write the answers to `out`; returns the exit
    status: 0, or 1 when some image could not be predicted (each named on `err`). A model that
    cannot be used raises DataError."""
    if output_format not in FORMATS:
        raise ValueError(f"output_format must be one of {FORMATS}, got {output_format!r}")
    out, err = out or sys.stdout, err or sys.stderr
    model = open_model(model_path, err)
    files: list[Path] = []
    status = 0
    for given in inputs:
        found = expand_paths([given])
        if not found:  # only a folder expands to nothing
            print(f"error: {given}: no image files in this folder", file=err)
            status = 1
        files += found
    predictions: list[Prediction] = []
    writer = csv.writer(out, lineterminator="\n")
    if output_format == "csv":
        columns = [f"P({name})" for name in model.info.classes]
        writer.writerow(["path", "prediction", "probability", *columns])
    for answer in predict_files(model, files, batch_size):
        if isinstance(answer, Failure):
            print(f"error: {answer.path}: {answer.reason}", file=err)
            status = 1
        elif output_format == "text":
            print(text_line(answer, with_path=len(files) > 1), file=out, flush=True)
        elif output_format == "csv":
            writer.writerow(
                [answer.path, answer.label, answer.probability, *answer.probabilities.values()]
            )
        else:
            predictions.append(answer)
    if output_format == "json":
        rows = [
            {
                "path": str(p.path),
                "prediction": p.label,
                "probability": p.probability,
                "probabilities": p.probabilities,
            }
            for p in predictions
        ]
        json.dump(rows, out, indent=2)
        out.write("\n")
    return status
