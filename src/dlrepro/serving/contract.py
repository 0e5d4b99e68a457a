"""What a served model takes and answers, shared by the export that writes it and the predictor
that reads it; torch-free, so prediction starts without importing torch.

Input: uint8 RGB pixels (the cache's and `dlrepro.data.images.load_square_rgb`'s), as float32
NCHW × 1/255 (training's `images_to_tensor`, bit for bit). Output: class probabilities (N, C),
column i = P(classes[i]). The ONNX file carries this in its metadata_props under the META_* keys,
so a reader never guesses the class order or the scaling.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dlrepro import paths

if TYPE_CHECKING:
    from dlrepro.config import Config

ONNX_MODEL = paths.MODELS / "plant_cnn.onnx"
PROGRAM = paths.MODELS / "plant_cnn.pt2"
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
# The ingest's default (conf/data: min_side); an ONNX export carries the value training used.
DEFAULT_MIN_SIDE = 16
# Training's ImageDataGenerator(rescale=1./255): a float32 multiplication, as
# `dlrepro.plant.inference.images_to_tensor` does it, so the inputs are bit-identical.
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


@dataclass(frozen=True)
class ModelInfo:
    classes: list[str]
    image_size: int
    min_side: int


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 RGB (N, H, W, 3) → float32 (N, 3, H, W) in [0, 1], C-contiguous, as ORT takes it."""
    batch = np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)
    batch *= RESCALE
    return batch


def metadata(info: ModelInfo, views_per_image: int) -> dict[str, str]:
    """The metadata_props an exported model carries."""
    return {
        META_CLASSES: json.dumps(list(info.classes)),
        META_IMAGE_SIZE: str(info.image_size),
        META_MIN_SIDE: str(info.min_side),
        META_CHANNEL_ORDER: "RGB",
        META_LAYOUT: "NCHW",
        META_SCALE: "1/255",
        META_OUTPUT: f"{OUTPUT_NAME}: float32 (N, C), column i = P(classes[i]), rows sum to 1",
        META_VIEWS: str(views_per_image),
    }


def model_info(metadata: dict[str, str]) -> ModelInfo:
    """The contract a model's metadata states (REQUIRED_METADATA present)."""
    return ModelInfo(
        classes=json.loads(metadata[META_CLASSES]),
        image_size=int(metadata[META_IMAGE_SIZE]),
        min_side=int(metadata.get(META_MIN_SIDE, DEFAULT_MIN_SIDE)),
    )


def served_checkpoint(cfg: Config) -> Path:
    """The checkpoint `export` turns into the ONNX model: recipe `export.recipe`'s selected one."""
    recipe = cfg.export.recipe
    return paths.selected_checkpoint(recipe, cfg.recipes[recipe].selected_on)
