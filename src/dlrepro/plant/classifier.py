"""The LightningModule that trains a network (`dlrepro.plant.networks`) as the text compiles it:
`model.compile(optimizer='adam', loss='binary_crossentropy', metrics=['accuracy'])`.

It holds what training adds to a network: the loss (binary cross-entropy in its stable logits
form, cross-entropy for more than two classes), accuracy per split, the optimizer and LR
scheduler wiring. Its answer (sigmoid or softmax, optionally averaged over the 8 symmetries of
each image) is `dlrepro.plant.inference`'s, which evaluation, export and prediction load without
Lightning. The network is passed in, as in Lightning's backbone pattern; a checkpoint stores its
config, so `inference.load_checkpoint` rebuilds it without unpickling code.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import BinaryAccuracy, MulticlassAccuracy

from dlrepro.plant import inference
from dlrepro.plant.networks import ConvNet

# Keras' `optimizer='adam'`: the default when no optimizer is given (conf/optimizer/adam.yaml).
KERAS_ADAM = partial(torch.optim.Adam, lr=1e-3, betas=(0.9, 0.999), eps=1e-7)

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
# A `_partial_` LR scheduler: called with the optimizer and the run's step count, given as
# `total_steps` (OneCycleLR) or `T_max` (CosineAnnealingLR), whichever it takes; stepped per batch.
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]
# With fewer steps one-cycle's warm-up phase is empty and torch divides by zero.
MIN_SCHEDULE_STEPS = 16


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

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> LeafClassifier:
        """The checkpoint's classifier as a LightningModule in eval mode (for `Trainer.predict`,
        or to train on from its weights; the optimizer's state is not restored), loaded as
        `inference.load_checkpoint` loads it: weights only, no code from the file runs."""
        loaded = inference.load_checkpoint(path)
        return cls(
            loaded.net, loaded.class_names, average_symmetries=loaded.average_symmetries
        ).eval()

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
        return inference.probabilities(logits)

    @property
    def views_per_image(self) -> int:
        """Forward passes behind each answer of `predicted_probabilities`: 8 or 1."""
        return inference.SYMMETRIES if self.hparams["average_symmetries"] else 1

    def predicted_probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """What evaluation, export and prediction answer for float images (N, 3, S, S): the
        `probabilities` of the logits, averaged over the image's 8 symmetries when
        `average_symmetries`."""
        return inference.predicted_probabilities(self, images, self.views_per_image)

    def class_probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C) class probabilities, column i = P(class_names[i]): the binary model's
        P(class_names[1]) becomes [1 − p, p]. What the exports answer."""
        return inference.class_columns(self.predicted_probabilities(images))

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
