"""The text's plant-disease CNN as a LightningModule.

The text (Keras):

    Conv2D(32, 3×3, relu) → MaxPooling2D(2) → Conv2D(64, 3×3, relu) → MaxPooling2D(2)
    → Flatten → Dense(128, relu) → Dense(1, sigmoid);  adam, binary_crossentropy, accuracy

Here, layer for layer: "valid" 3×3 convolutions and 2×2 floor pooling as in Keras, so a 128×128×3
input gives 126 → 63 → 61 → 30 and 64·30·30 = 57,600 features into the dense layer: 7,392,449
parameters, the same count Keras reports. Weights start as Keras starts them (Glorot-uniform
kernels, zero biases) rather than torch's default Kaiming-uniform, so a run begins from the same
distribution as the text's.

Deliberate differences from the Keras code, none of which changes what is learnt:

- The model returns logits and the loss is `BCEWithLogitsLoss`, the numerically stable form of
  sigmoid + binary_crossentropy (Keras itself recovers the logits cached on its sigmoid output for
  the same reason). The sigmoid is applied in `probabilities` / `predict_step`.
- Flatten order: Keras flattens NHWC (height, width, channel), torch flattens NCHW (channel,
  height, width). The dense layer's 57,600 inputs are therefore permuted relative to Keras. That
  only matters when porting trained Keras weights (permute the Dense kernel's rows); training from
  scratch, as here, learns the same function class.
- Adam: Keras adds ε to √v before bias correction ("ε-hat" of the Adam paper), torch adds it after;
  with ε = 1e-7 the two differ only in the first few steps, and only when √v is that small.
- Labels: `labels[i]` is an index into the sorted class names (the order Keras'
  flow_from_directory also uses), and the single binary output is P(class_names[1]); see
  `PlantCNN.probabilities`.

More than two classes use a `num_classes`-logit head with cross-entropy (softmax at predict time).

Beyond the text (the tuned recipe, `conf/model/leaf_net.yaml`): batch norm after each conv or
after each block's pool (`norm_after_pool`), "same" padding, a global average, max or
average-and-max pool instead of Flatten, dropout before the dense layers, more than one
convolution per block (`convs_per_block`, for the README's variants), and answers averaged over
the 8 symmetries of each image (`average_symmetries`, see `predicted_probabilities`). The
defaults build the text's network exactly.

Order of operations: each block computes conv → max-pool → ReLU rather than the text's conv →
ReLU → max-pool. ReLU is monotone, so max(relu(x)) = relu(max(x)) for every pooling window: the
function, and its gradient (both orders send it to the window's maximum, and zero it where that
maximum is negative), are the text's, and the parameters keep their names and indices. The ReLU
then runs on a quarter of the values, in place; `tests/test_plant_cnn.py` compares the outputs and
gradients of both orders with the same weights. `pool_before_relu=False` builds the text's order.

Memory format: NHWC ("channels_last") is oneDNN's preferred layout for CPU convolutions, so by
default the conv weights and every input are kept in it. Measured on the project's 2-core machines
it was 1.0-1.9× faster than NCHW for a training step, depending on thread count and load; results
are the same up to float rounding, and the option exists to measure the difference.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import BinaryAccuracy, MulticlassAccuracy

from dlrepro.errors import DataError

# Keras' `optimizer='adam'`: the default when no optimizer is given (conf/optimizer/adam.yaml).
KERAS_ADAM = partial(torch.optim.Adam, lr=1e-3, betas=(0.9, 0.999), eps=1e-7)

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
# A `_partial_` LR scheduler: called with the optimizer and the run's step count, given as
# `total_steps` (OneCycleLR) or `T_max` (CosineAnnealingLR), whichever it takes; stepped per batch.
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]
MIN_SCHEDULE_STEPS = 16


def feature_map_size(
    image_size: int, convs_per_block: Sequence[int], padding: str = "valid"
) -> int:
    """Side of the last feature map: each block's 3×3 convs (valid: -2 apiece), then a floor
    2×2 pool."""
    size = image_size
    for convs in convs_per_block:
        size = (size - (2 * convs if padding == "valid" else 0)) // 2
    return size


def smallest_image_size(convs_per_block: Sequence[int], padding: str = "valid") -> int:
    """The least image side leaving a 1×1 last map: the blocks undone from 1×1, last first (the
    pool doubles the side, each "valid" convolution adds the 2 pixels it trims)."""
    size = 1
    for convs in reversed(convs_per_block):
        size = 2 * size + (2 * convs if padding == "valid" else 0)
    return size


SYMMETRIES = 8  # of a square: 4 quarter turns, each as it is and mirrored


def square_symmetries(images: torch.Tensor) -> list[torch.Tensor]:
    """The 8 symmetries of square images (N, C, S, S): each of the 4 quarter turns, as it is and
    mirrored left to right; the first is the images themselves."""
    views = []
    for turns in range(SYMMETRIES // 2):
        turned = torch.rot90(images, turns, dims=(2, 3)) if turns else images
        views += [turned, turned.flip(3)]
    return views


class AvgMaxPool(nn.Module):
    """Each channel's mean and maximum over the feature map, side by side: (N, 2C, 1, 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)], 1)


class PlantCNN(pl.LightningModule):
    """conv(3×3, relu) → maxpool(2) per width in `conv_channels`, then dense(relu) → output logits.

    Args:
        num_classes: 2 gives one output logit (the text's binary model); more gives one per class.
        image_size: side of the square RGB input, 128 in the text.
        conv_channels: output channels of each conv block, (32, 64) in the text.
        dense_units: width of the hidden dense layer, 128 in the text; None: the pooled
            features go straight to the output layer.
        optimizer: builds the optimizer from the parameters (a `_partial_` config node, e.g.
            `torch.optim.Adam` with its settings); None is Keras' `optimizer='adam'`. Not saved
            in the checkpoint's hyper-parameters: the optimizer's own state is.
        class_names: optional, sorted class names stored in the checkpoint so that a loaded model
            says which class each output means.
        channels_last: keep convolutions in NHWC memory layout (faster on CPU, see module doc).
        pool_before_relu: conv → pool → ReLU (the same function, faster: see module doc);
            False: the text's conv → ReLU → pool.
        init_seed: seeds the initial weights through a private generator, so the same arguments
            always build the same network, whatever the global RNG state.
        batch_norm: BatchNorm2d after each convolution (its bias then replaces the conv's).
        padding: "valid" (the text's Keras default) or "same".
        global_pool: None flattens the last feature map (the text); "avg" or "max" pools it to
            one value per channel, so the head no longer depends on the image size; "avgmax"
            keeps both (the max finds a few small lesions, the mean a diffuse mottling).
        dropout: probability of zeroing a feature before each dense layer (0: the text).
        scheduler: optional `_partial_` LR scheduler (see SchedulerFactory); not saved in the
            hyper-parameters, its state is.
        convs_per_block: 3×3 convolutions in each block (None: one each, the text); the extra
            ones keep the block's width and resolution, each followed by its ReLU, before the
            block's last convolution and pool.
        norm_after_pool: with batch_norm, each block's last convolution is normalised after
            its pool (conv → pool → norm → ReLU): a different function from conv → norm →
            pool (the statistics are the pooled values', and a negative scale no longer
            commutes with the max), at a quarter of the normalisation's memory traffic.
        average_symmetries: `predicted_probabilities` (what evaluation, export and prediction
            answer) averages the probabilities of the image's 8 symmetries (`square_symmetries`);
            training and validation see each image once, as it comes.
    """

    def __init__(
        self,
        num_classes: int = 2,
        image_size: int = 128,
        conv_channels: Sequence[int] = (32, 64),
        dense_units: int | None = 128,
        optimizer: OptimizerFactory | None = None,
        class_names: Sequence[str] | None = None,
        channels_last: bool = True,
        pool_before_relu: bool = True,
        init_seed: int = 0,
        batch_norm: bool = False,
        padding: str = "valid",
        global_pool: str | None = None,
        dropout: float = 0.0,
        scheduler: SchedulerFactory | None = None,
        convs_per_block: Sequence[int] | None = None,
        norm_after_pool: bool = False,
        average_symmetries: bool = False,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names given for {num_classes} classes")
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
        if global_pool not in (None, "avg", "max", "avgmax"):
            raise ValueError(
                f"global_pool must be null, 'avg', 'max' or 'avgmax', got {global_pool!r}"
            )
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        if norm_after_pool and not (batch_norm and pool_before_relu):
            raise ValueError(
                "norm_after_pool needs batch_norm (a norm to move) and the conv → pool → ReLU "
                "order (pool_before_relu)"
            )
        if convs_per_block is not None and (
            len(convs_per_block) != len(conv_channels) or min(convs_per_block) < 1
        ):
            raise ValueError(
                f"convs_per_block needs one count of at least 1 per block "
                f"({len(conv_channels)}), got {list(convs_per_block)}"
            )
        depths = list(convs_per_block or [1] * len(conv_channels))
        side = feature_map_size(image_size, depths, padding)
        if side < 1:
            each = "halves it" if padding == "same" else "trims 2 pixels per conv, halves the rest"
            raise ValueError(
                f"image_size {image_size} is too small for {len(depths)} blocks (each {each}): "
                f"at least {smallest_image_size(depths, padding)}"
            )
        # Plain Python types only (config objects such as OmegaConf's ListConfig would arrive as
        # their own classes): checkpoints then load with torch.load(weights_only=True).
        # save_hyperparameters() reads these locals, so they are normalised before it runs.
        conv_channels = [int(c) for c in conv_channels]
        if convs_per_block is not None:
            convs_per_block = [int(n) for n in convs_per_block]
        class_names = None if class_names is None else [str(name) for name in class_names]
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.optimizer_factory = optimizer or KERAS_ADAM
        self.scheduler_factory = scheduler

        blocks: list[nn.Module] = []
        in_channels = 3
        for out_channels, depth in zip(conv_channels, depths, strict=True):
            conv: list[nn.Module] = []
            for index in range(depth):
                last = index == depth - 1
                conv.append(
                    nn.Conv2d(in_channels, out_channels, 3, padding=padding, bias=not batch_norm)
                )
                if batch_norm and not (last and norm_after_pool):
                    conv.append(nn.BatchNorm2d(out_channels))
                if not last:
                    conv.append(nn.ReLU(inplace=True))
                in_channels = out_channels
            if batch_norm and norm_after_pool:
                blocks += [*conv, nn.MaxPool2d(2), nn.BatchNorm2d(out_channels)]
                blocks.append(nn.ReLU(inplace=True))
            elif pool_before_relu:
                blocks += [*conv, nn.MaxPool2d(2), nn.ReLU(inplace=True)]
            else:
                blocks += [*conv, nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*blocks)
        pooled: list[nn.Module] = {
            None: [],
            "avg": [nn.AdaptiveAvgPool2d(1)],
            "max": [nn.AdaptiveMaxPool2d(1)],
            "avgmax": [AvgMaxPool()],
        }[global_pool]
        features = in_channels * {None: side * side, "avgmax": 2}.get(global_pool, 1)
        dropped = [nn.Dropout(dropout)] if dropout else []
        outputs = 1 if num_classes == 2 else num_classes
        hidden = [nn.Linear(features, dense_units), nn.ReLU(), *dropped] if dense_units else []
        self.classifier = nn.Sequential(
            *pooled,
            nn.Flatten(),
            *dropped,
            *hidden,
            nn.Linear(dense_units or features, outputs),
        )
        self._init_like_keras(torch.Generator().manual_seed(init_seed))
        if channels_last:
            self.features.to(memory_format=torch.channels_last)

        if num_classes == 2:
            self.train_acc, self.val_acc = BinaryAccuracy(), BinaryAccuracy()
        else:
            # average="micro" is plain accuracy (torchmetrics' multiclass default is macro).
            self.train_acc = MulticlassAccuracy(num_classes, average="micro")
            self.val_acc = MulticlassAccuracy(num_classes, average="micro")

    def _init_like_keras(self, generator: torch.Generator) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.xavier_uniform_(module.weight, generator=generator)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    @property
    def is_binary(self) -> bool:
        return self.hparams.num_classes == 2

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Float images (N, 3, H, W) in [0, 1] → logits (N, 1) for binary, (N, C) otherwise."""
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.classifier(self.features(images))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Binary: P(class 1) per image, shape (N,). Otherwise softmax over classes, (N, C)."""
        if self.is_binary:
            return torch.sigmoid(logits[:, 0])
        return torch.softmax(logits, dim=1)

    @property
    def views_per_image(self) -> int:
        """Forward passes behind each answer of `predicted_probabilities`: 8 or 1."""
        return SYMMETRIES if self.hparams.average_symmetries else 1

    def predicted_probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """What evaluation, export and prediction answer for float images (N, 3, S, S): the
        `probabilities` of the logits, averaged over the 8 symmetries of each image when
        `average_symmetries` (one forward pass per symmetry: 8× the cost)."""
        if self.views_per_image == 1:
            return self.probabilities(self(images))
        views = square_symmetries(images)
        return sum(self.probabilities(self(view)) for view in views) / len(views)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.is_binary:
            return F.binary_cross_entropy_with_logits(logits[:, 0], labels.float())
        return F.cross_entropy(logits, labels)

    def _step(self, batch, stage: str, accuracy) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        loss = self.loss(logits, labels)
        # Probabilities, not logits: torchmetrics guesses "logits" only when some value falls
        # outside [0, 1], so a batch of small logits would be thresholded wrongly.
        accuracy(self.probabilities(logits.detach()), labels)
        # Epoch aggregates only: MLflow then gets one value per epoch, like Keras' history.
        log = {"on_step": False, "on_epoch": True, "batch_size": labels.shape[0]}
        # sync_dist averages the loss over DDP ranks (accuracy objects sync themselves).
        self.log(f"{stage}/loss", loss, prog_bar=True, sync_dist=True, **log)
        self.log(f"{stage}/acc", accuracy, prog_bar=True, **log)
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train", self.train_acc)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val", self.val_acc)

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        images = batch[0] if isinstance(batch, list | tuple) else batch
        return self.predicted_probabilities(images)

    def configure_optimizers(self) -> torch.optim.Optimizer | dict:
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
        """The configured scheduler over `total_steps` (default: the Trainer's whole run).

        At least MIN_SCHEDULE_STEPS: with fewer, one-cycle's warm-up phase is empty and torch
        divides by zero (4 steps at pct_start 0.25); a run that short (a smoke test) then ends
        part-way through its schedule.
        """
        steps = total_steps if total_steps is not None else self.trainer.estimated_stepping_batches
        steps = max(int(steps), MIN_SCHEDULE_STEPS)
        accepted = inspect.signature(self.scheduler_factory).parameters
        for name in ("total_steps", "T_max"):
            if name in accepted:
                return self.scheduler_factory(optimizer, **{name: steps})
        return self.scheduler_factory(optimizer)


def load_checkpoint(path: str | Path) -> PlantCNN:
    """The PlantCNN in `path`, on the CPU, in eval mode (weights-only unpickling); a missing or
    unreadable file (truncated, not a checkpoint) is a DataError in one line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint; run `dvc repro train` first")
    try:
        model = PlantCNN.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch and Lightning raise many kinds for a bad file
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(
            f"{path}: not a usable PlantCNN checkpoint ({reason}); `dvc repro` retrains it"
        ) from None
    return model.eval()
