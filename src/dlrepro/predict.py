"""`dlrepro predict`: the text's `predict_image`, on the exported ONNX model, for files and folders.

The text:

    img = cv2.imread(img_path); img = cv2.resize(img, img_size); img = img / 255.0
    pred = model.predict(img.reshape(1, 128, 128, 3))[0][0]
    class_name = "Diseased" if pred > 0.5 else "Healthy"
    print(f"Prediction: {class_name} ({pred:.2f})")

Here:

- Decoding is training's own: `dlrepro.data.images.load_square_rgb` (OpenCV, BGR→RGB, the same
  resize and colour conversions as the cache the model learnt from; the text's `cv2.imread`
  feeds BGR to a model trained on RGB). Images whose short side is below the model's `min_side`
  are refused, as the ingest refused them.
- The model is `models/plant_cnn.onnx` run by ONNX Runtime: this module imports neither torch
  nor Lightning (that costs 8 s), so a prediction starts in well under a second. Class names,
  input size, layout and scaling are read from the model's own metadata (written by
  `dlrepro.export`), never assumed.
- The model answers class probabilities, one column per class in `classes` order; the label is
  the most probable class (for two classes: classes[1] when its probability is above 0.5, the
  text's rule). The printed number is the probability *of the predicted class*, so
  "Prediction: Diseased (0.94)" means 94 % diseased. The text prints its raw sigmoid output,
  P(classes[1]), next to either name; with Keras' sorted classes (Diseased, Healthy) that output
  is P(Healthy), so its "Diseased (0.94)" would have meant 6 % diseased.
- One requested image prints exactly the text's line; several print `<path>: Prediction: ...`.
  `--format json` (one array) and `--format csv` (one row per image) give every class
  probability.
- A missing or unreadable image prints one line naming it and the reason on stderr; the other
  images are still predicted and the exit status is 1. A missing or unusable model is one line
  and exit status 2 (`dlrepro.cli.run_stage`).
- No ONNX export but a checkpoint: the checkpoint is used (torch is imported only then), with a
  note on stderr that `dvc repro export` makes later starts fast.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TextIO

import numpy as np
import onnxruntime as ort

from dlrepro import paths
from dlrepro.data.images import IMAGE_SUFFIXES, UnusableImage, load_square_rgb
from dlrepro.errors import DataError

if TYPE_CHECKING:
    from dlrepro.config import Config

ONNX_MODEL = paths.MODELS / "plant_cnn.onnx"
FORMATS = ("text", "json", "csv")
DEFAULT_BATCH_SIZE = 32
# The ingest's default (conf/data: min_side); an ONNX export carries the value training used.
DEFAULT_MIN_SIDE = 16
# Training's ImageDataGenerator(rescale=1./255): a float32 multiplication, as
# `dlrepro.plant.datamodule.images_to_tensor` does it, so the inputs are bit-identical.
RESCALE = np.float32(1.0 / 255)

# Keys of the ONNX model's metadata_props (all values are strings).
META_CLASSES = "classes"  # JSON list; column i of the output is P(classes[i])
META_IMAGE_SIZE = "image_size"  # side of the square input
META_MIN_SIDE = "min_side"  # images with a shorter side were refused by the ingest
META_CHANNEL_ORDER = "channel_order"  # "RGB"
META_LAYOUT = "layout"  # "NCHW"
META_SCALE = "scale"  # "1/255": uint8 pixels × 1/255, float32
META_OUTPUT = "output"  # what the single output means
META_VIEWS = "views_per_image"  # "8": each answer averages the 8 symmetries of the image
REQUIRED_METADATA = (META_CLASSES, META_IMAGE_SIZE)


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 RGB (N, H, W, 3) → float32 (N, 3, H, W) in [0, 1], C-contiguous, as ORT takes it."""
    batch = np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)
    batch *= RESCALE
    return batch


def physical_cores() -> int:
    """Physical cores this process may run on: extra hyper-threads only slow a conv net down."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not cpus:
        return os.cpu_count() or 1
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:  # no sysfs topology (a container may hide it): count logical CPUs
            return len(cpus)
        cores.add((package, core))
    return len(cores)


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """All graph optimisations (NCHWc conv layout, Conv+ReLU and Gemm fusions) and one intra-op
    thread per physical core; measured in `dlrepro.bench_predict`."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or physical_cores()
    options.log_severity_level = 3  # errors only: warnings would mix with the answers on stderr
    return options


@dataclass(frozen=True)
class ModelInfo:
    classes: list[str]
    image_size: int
    min_side: int


class Model(Protocol):
    info: ModelInfo

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """uint8 RGB (N, S, S, 3) → float32 (N, len(classes)); column i is P(classes[i])."""
        ...


class OnnxModel:
    """An exported plant CNN in an ONNX Runtime session, with the metadata it was exported with."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such model file; run `dvc repro export` or pass --model")
        try:
            self.session = ort.InferenceSession(
                str(path), session_options(threads), providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # ORT raises its own pybind classes, one per failure kind
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise DataError(f"{path}: not a usable ONNX model ({reason})") from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        missing = [key for key in REQUIRED_METADATA if key not in metadata]
        if missing:
            raise DataError(
                f"{path}: ONNX model without the metadata {', '.join(missing)}; "
                "export it with `dvc repro export`"
            )
        self.info = ModelInfo(
            classes=json.loads(metadata[META_CLASSES]),
            image_size=int(metadata[META_IMAGE_SIZE]),
            min_side=int(metadata.get(META_MIN_SIDE, DEFAULT_MIN_SIDE)),
        )
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        return self.run(to_model_input(images))

    def run(self, model_input: np.ndarray) -> np.ndarray:
        """float32 (N, 3, S, S), already scaled (`to_model_input`) → probabilities (N, C)."""
        return self.session.run([self.output_name], {self.input_name: model_input})[0]


class CheckpointModel:
    """The Lightning checkpoint, for when no ONNX export exists yet (imports torch: slow start)."""

    def __init__(self, path: str | Path) -> None:
        from dlrepro.export import load_checkpoint

        self.model = load_checkpoint(path)
        hparams = self.model.hparams
        if not hparams.get("class_names"):
            raise DataError(f"{path}: the checkpoint names no classes (class_names)")
        self.info = ModelInfo(list(hparams.class_names), hparams.image_size, DEFAULT_MIN_SIDE)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        from dlrepro.export import torch_probabilities

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


def served_checkpoint(cfg: Config) -> Path:
    """The checkpoint `export` turns into the ONNX model: recipe `export.recipe`'s selected one."""
    recipe = cfg.export.recipe
    return paths.selected_checkpoint(recipe, cfg.recipes[recipe].selected_on)


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
