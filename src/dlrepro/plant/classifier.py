"""The LightningModule that trains a network (`dlrepro.plant.networks`) as the text compiles it:
`model.compile(optimizer='adam', loss='binary_crossentropy', metrics=['accuracy'])`.

It holds what training adds to a network: the loss (binary cross-entropy in its stable logits
form, cross-entropy for more than two classes), accuracy per split, the optimizer and LR
scheduler wiring, and the answer evaluation, export and prediction give (`predicted_probabilities`:
sigmoid or softmax, optionally averaged over the 8 symmetries of each image). The network is
passed in, as in Lightning's backbone pattern; a checkpoint stores its config, so
`load_checkpoint` rebuilds it without unpickling code.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, cast

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import BinaryAccuracy, MulticlassAccuracy

from dlrepro.errors import DataError
from dlrepro.plant.networks import ConvNet, build_network

# Keras' `optimizer='adam'`: the default when no optimizer is given (conf/optimizer/adam.yaml).
KERAS_ADAM = partial(torch.optim.Adam, lr=1e-3, betas=(0.9, 0.999), eps=1e-7)

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
# A `_partial_` LR scheduler: called with the optimizer and the run's step count, given as
# `total_steps` (OneCycleLR) or `T_max` (CosineAnnealingLR), whichever it takes; stepped per batch.
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]
# With fewer steps one-cycle's warm-up phase is empty and torch divides by zero.
MIN_SCHEDULE_STEPS = 16

SYMMETRIES = 8  # of a square: 4 quarter turns, each as it is and mirrored


def square_symmetries(images: torch.Tensor) -> list[torch.Tensor]:
    """The 8 symmetries of square images (N, C, S, S): each of the 4 quarter turns, as it is and
    mirrored left to right; the first is the images themselves."""
    views = []
    for turns in range(SYMMETRIES // 2):
        turned = torch.rot90(images, turns, dims=(2, 3)) if turns else images
        views += [turned, turned.flip(3)]
    return views


class LeafClassifier(pl.LightningModule):
    """Trains `net` on (images, labels) batches and answers class probabilities.

    Args:
        net: the network; its `config` is saved in the checkpoint's hyper-parameters.
        class_names: sorted class names, stored so that a loaded model says what each output
            means; label i is class_names[i], and the binary output is P(class_names[1]).
        optimizer: builds the optimizer from the parameters (a `_partial_` config node); None is
            Keras' `optimizer='adam'`. Its state is in the checkpoint, not its settings.
        scheduler: optional `_partial_` LR scheduler (see SchedulerFactory).
        average_symmetries: `predicted_probabilities` averages the 8 symmetries of each image;
            training and validation see each image once.
    """

    def __init__(
        self,
        net: ConvNet,
        class_names: Sequence[str] | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        average_symmetries: bool = False,
    ) -> None:
        super().__init__()
        if class_names is not None and len(class_names) != net.num_classes:
            raise ValueError(f"{len(class_names)} class names given for {net.num_classes} classes")
        self.net = net
        self.save_hyperparameters(
            {
                "network": dict(net.config),
                "class_names": None if class_names is None else [str(c) for c in class_names],
                "average_symmetries": bool(average_symmetries),
            }
        )
        self.optimizer_factory = optimizer or KERAS_ADAM
        self.scheduler_factory = scheduler
        self.train_acc, self.val_acc = self._accuracy(), self._accuracy()

    def _accuracy(self) -> Metric:
        if self.is_binary:
            return BinaryAccuracy()
        # average="micro" is plain accuracy (torchmetrics' multiclass default is macro)
        return MulticlassAccuracy(self.net.num_classes, average="micro")

    @property
    def is_binary(self) -> bool:
        return self.net.num_classes == 2

    @property
    def class_names(self) -> list[str] | None:
        return self.hparams["class_names"]

    @property
    def image_size(self) -> int:
        return self.net.image_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Binary: P(class 1) per image, shape (N,). Otherwise softmax over classes, (N, C)."""
        if self.is_binary:
            return torch.sigmoid(logits[:, 0])
        return torch.softmax(logits, dim=1)

    @property
    def views_per_image(self) -> int:
        """Forward passes behind each answer of `predicted_probabilities`: 8 or 1."""
        return SYMMETRIES if self.hparams["average_symmetries"] else 1

    def predicted_probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """What evaluation, export and prediction answer for float images (N, 3, S, S): the
        `probabilities` of the logits, averaged over the image's 8 symmetries when
        `average_symmetries`."""
        if self.views_per_image == 1:
            return self.probabilities(self(images))
        views = square_symmetries(images)
        # sum() of a non-empty sequence of tensors is a tensor; its stub adds the int start value
        return cast(
            torch.Tensor, sum(self.probabilities(self(view)) for view in views) / len(views)
        )

    def class_probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C) class probabilities, column i = P(class_names[i]): the binary model's
        P(class_names[1]) becomes [1 − p, p]. What the exports answer."""
        probabilities = self.predicted_probabilities(images)
        if self.is_binary:
            return torch.stack([1 - probabilities, probabilities], dim=1)
        return probabilities

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.is_binary:
            return F.binary_cross_entropy_with_logits(logits[:, 0], labels.float())
        return F.cross_entropy(logits, labels)

    def _step(self, batch: Any, stage: str, accuracy: Metric) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        loss = self.loss(logits, labels)
        # Probabilities, not logits: torchmetrics guesses "logits" only when some value falls
        # outside [0, 1], so a batch of small logits would be thresholded wrongly.
        accuracy(self.probabilities(logits.detach()), labels)
        # Epoch aggregates only: MLflow then gets one value per epoch, like Keras' history.
        log: dict[str, Any] = {"on_step": False, "on_epoch": True, "batch_size": labels.shape[0]}
        # sync_dist averages the loss over DDP ranks (accuracy objects sync themselves).
        self.log(f"{stage}/loss", loss, prog_bar=True, sync_dist=True, **log)
        self.log(f"{stage}/acc", accuracy, prog_bar=True, **log)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train", self.train_acc)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val", self.val_acc)

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images = batch[0] if isinstance(batch, list | tuple) else batch
        return self.predicted_probabilities(images)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.build_scheduler(optimizer), "interval": "step"},
        }

    def build_scheduler(
        self, optimizer: torch.optim.Optimizer, total_steps: int | None = None
    ) -> torch.optim.lr_scheduler.LRScheduler:
        """The configured scheduler over `total_steps` (default: the Trainer's whole run), at
        least MIN_SCHEDULE_STEPS (a run that short, a smoke test, ends part-way through it)."""
        assert self.scheduler_factory is not None
        steps = total_steps if total_steps is not None else self.trainer.estimated_stepping_batches
        steps = max(int(steps), MIN_SCHEDULE_STEPS)
        accepted = inspect.signature(self.scheduler_factory).parameters
        for name in ("total_steps", "T_max"):
            if name in accepted:
                return self.scheduler_factory(optimizer, **{name: steps})
        return self.scheduler_factory(optimizer)


def load_checkpoint(path: str | Path) -> LeafClassifier:
    """The classifier in `path`, on the CPU, in eval mode: weights-only unpickling (no code from
    the file runs), the network rebuilt from its stored config. A missing or unusable file
    (truncated, not a checkpoint, another format) is a DataError in one line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint; run `dvc repro train` first")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        hparams = checkpoint["hyper_parameters"]
        model = LeafClassifier(
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
