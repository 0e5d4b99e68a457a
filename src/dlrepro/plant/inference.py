"""A trained network's answer, without the training around it: the input scaling, the output
activation, the average over an image's 8 symmetries, and the checkpoint loader that evaluation,
export and prediction use.

Nothing here imports Lightning or torchmetrics (about 1.4 s of every process that only
predicts). `LeafClassifier` answers through the same functions while it trains, so a loaded
`Predictor` and the module that wrote the checkpoint compute the same numbers, op for op.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, cast

import numpy as np
import torch
from torch import nn

from dlrepro.errors import DataError
from dlrepro.plant.networks import ConvNet, build_network

# The text's rescale=1./255, applied as Keras applies it (a multiplication, not a division).
RESCALE = 1.0 / 255
SYMMETRIES = 8  # of a square: 4 quarter turns, each as it is and mirrored


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) → float32 (N, 3, H, W) in [0, 1]: the text's
    `ImageDataGenerator(rescale=1./255)`.

    The result is logically CHW but keeps NHWC memory (a permuted view), which is the
    channels_last layout the CNN prefers. The uint8 batch is copied once: slices of the read-only
    cache memmap must not become tensors that alias it.
    """
    batch = torch.from_numpy(np.array(images))
    return batch.permute(0, 3, 1, 2).float().mul_(RESCALE)


def square_symmetries(images: torch.Tensor) -> list[torch.Tensor]:
    """The 8 symmetries of square images (N, C, S, S): each of the 4 quarter turns, as it is and
    mirrored left to right; the first is the images themselves."""
    views = []
    for turns in range(SYMMETRIES // 2):
        turned = torch.rot90(images, turns, dims=(2, 3)) if turns else images
        views += [turned, turned.flip(3)]
    return views


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """One logit per image (binary): P(class 1), shape (N,). Otherwise softmax over classes."""
    if logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0])
    return torch.softmax(logits, dim=1)


def predicted_probabilities(
    net: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, views: int
) -> torch.Tensor:
    """`probabilities` of the logits `net` gives for float images (N, 3, S, S), averaged over
    the images' 8 symmetries when `views` is 8 (1: the images as they are)."""
    if views == 1:
        return probabilities(net(images))
    turned = square_symmetries(images)
    # sum() of a non-empty sequence of tensors is a tensor; its stub adds the int start value
    return cast(torch.Tensor, sum(probabilities(net(view)) for view in turned) / len(turned))


def class_columns(probabilities_: torch.Tensor) -> torch.Tensor:
    """(N, C) class probabilities, column i = P(class i): a binary model's P(class 1) becomes
    [1 − p, p]."""
    if probabilities_.dim() == 1:
        return torch.stack([1 - probabilities_, probabilities_], dim=1)
    return probabilities_


class Answers(Protocol):
    """What answers class probabilities: a `Predictor`, or the LeafClassifier in training."""

    def class_probabilities(self, images: torch.Tensor) -> torch.Tensor: ...


class Predictor(nn.Module):
    """A trained network and what its outputs mean: `forward` answers (N, C) class
    probabilities, column i = P(class_names[i]), averaged over the 8 symmetries when asked.

    Its parameters are named as in the LeafClassifier that trained it (`net.*`), so a
    checkpoint's state_dict loads unchanged.
    """

    def __init__(
        self,
        net: ConvNet,
        class_names: Sequence[str] | None = None,
        average_symmetries: bool = False,
    ) -> None:
        super().__init__()
        if class_names is not None and len(class_names) != net.num_classes:
            raise ValueError(f"{len(class_names)} class names given for {net.num_classes} classes")
        self.net = net
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        self.average_symmetries = bool(average_symmetries)

    @property
    def image_size(self) -> int:
        return self.net.image_size

    @property
    def views_per_image(self) -> int:
        """Forward passes behind each answer: 8 or 1."""
        return SYMMETRIES if self.average_symmetries else 1

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def predicted_probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Binary: P(class_names[1]) per image, (N,). Otherwise (N, C)."""
        return predicted_probabilities(self.net, images, self.views_per_image)

    def class_probabilities(self, images: torch.Tensor) -> torch.Tensor:
        return class_columns(self.predicted_probabilities(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.class_probabilities(images)


def load_checkpoint(path: str | Path) -> Predictor:
    """The classifier in `path`, on the CPU, in eval mode: weights-only unpickling (no code from
    the file runs), the network rebuilt from its stored config. A missing or unusable file
    (truncated, not a checkpoint, another format) is a DataError in one line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint; run `dvc repro train` first")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        hparams = checkpoint["hyper_parameters"]
        model = Predictor(
            build_network(hparams["network"]),
            class_names=hparams["class_names"],
            average_symmetries=hparams["average_symmetries"],
        )
        model.load_state_dict(checkpoint["state_dict"])
    except Exception as err:  # torch raises many kinds for a bad file, KeyError a foreign one
        text = str(err).strip()
        reason = text.splitlines()[0] if text else type(err).__name__
        if isinstance(err, KeyError):
            reason = f"no {reason} entry"
        raise DataError(
            f"{path}: not a usable classifier checkpoint ({reason}); `dvc repro` retrains it"
        ) from None
    return model.eval()


def torch_probabilities(model: Answers, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The classifier's class probabilities (N, C) on uint8 RGB (N, S, S, 3), batched: what the
    exports must reproduce."""
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = images_to_tensor(images[start : start + batch_size])
            chunks.append(model.class_probabilities(batch).numpy())
    return np.concatenate(chunks)
