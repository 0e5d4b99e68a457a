"""The case study's networks as plain `nn.Module`s, built from `conf/model/`.

One class, `ConvNet`, builds both: the text's CNN (`plant_cnn.yaml`: conv(3×3, relu) → maxpool
per width, Flatten, dense(128, relu) → output) and the leaf net (`leaf_net.yaml`: batch-normalised
"same" blocks, some with two convolutions, a global mean+max pool straight into the output).
With its defaults it builds the text's network exactly, layer for layer: "valid" convolutions,
floor pooling, 7,392,449 parameters at 128×128×3, Glorot-uniform kernels and zero biases as Keras
starts them. The network returns logits; loss, metrics and optimizer live in the classifier
(`dlrepro.plant.classifier`).

Each block computes conv → max-pool → ReLU instead of the text's conv → ReLU → max-pool: ReLU is
monotone, so the function and its gradient are the same, and the ReLU runs on a quarter of the
values (`pool_before_relu=False` builds the text's order; a test compares both).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from dlrepro.plant.shapes import feature_map_size, smallest_image_size

PADDINGS = ("valid", "same")
GLOBAL_POOLS = (None, "avg", "max", "avgmax")


class AvgMaxPool(nn.Module):
    """Each channel's mean and maximum over the feature map, side by side: (N, 2C, 1, 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)], 1)


class ConvNet(nn.Module):
    """Conv blocks (`features`), then a head (`head`) that answers logits: (N, 1) for two classes
    (the text's single sigmoid output), (N, C) for more.

    Args:
        num_classes: classes of the task (at least 2).
        image_size: side of the square RGB input, 128 in the text.
        conv_channels: output channels of each block, (32, 64) in the text.
        dense_units: width of the hidden dense layer (128 in the text); None: the pooled features
            go straight to the output layer.
        convs_per_block: 3×3 convolutions per block (None: one each); the extra ones keep the
            block's width, each followed by its ReLU.
        padding: "valid" (the text) or "same".
        batch_norm: BatchNorm2d after each convolution (its bias then replaces the conv's).
        norm_after_pool: with batch_norm, each block's last convolution is normalised after its
            pool (conv → pool → norm → ReLU): a different function, at a quarter of the cost.
        global_pool: None flattens the last map (the text); "avg", "max" or "avgmax" pool it.
        dropout: probability of zeroing a feature before each dense layer (0: the text).
        pool_before_relu: conv → pool → ReLU (same function as the text's order, faster).
        channels_last: keep convolutions in NHWC memory layout (faster on CPU, same function).
        init_seed: seeds the initial weights through a private generator.
    """

    def __init__(
        self,
        num_classes: int = 2,
        image_size: int = 128,
        conv_channels: Sequence[int] = (32, 64),
        dense_units: int | None = 128,
        convs_per_block: Sequence[int] | None = None,
        padding: str = "valid",
        batch_norm: bool = False,
        norm_after_pool: bool = False,
        global_pool: str | None = None,
        dropout: float = 0.0,
        pool_before_relu: bool = True,
        channels_last: bool = True,
        init_seed: int = 0,
    ) -> None:
        super().__init__()
        depths = _check(
            num_classes, image_size, conv_channels, convs_per_block, padding, batch_norm,
            norm_after_pool, global_pool, dropout, pool_before_relu,
        )  # fmt: skip
        # Plain Python values only: a checkpoint stores this to rebuild the network, and loads
        # with torch.load(weights_only=True).
        self.config: dict[str, Any] = {
            "num_classes": int(num_classes),
            "image_size": int(image_size),
            "conv_channels": [int(c) for c in conv_channels],
            "dense_units": None if dense_units is None else int(dense_units),
            "convs_per_block": None if convs_per_block is None else [int(n) for n in depths],
            "padding": str(padding),
            "batch_norm": bool(batch_norm),
            "norm_after_pool": bool(norm_after_pool),
            "global_pool": global_pool,
            "dropout": float(dropout),
            "pool_before_relu": bool(pool_before_relu),
            "channels_last": bool(channels_last),
            "init_seed": int(init_seed),
        }
        self.channels_last = channels_last
        self.features, width = _blocks(
            conv_channels, depths, padding, batch_norm, norm_after_pool, pool_before_relu
        )
        side = feature_map_size(image_size, depths, padding)
        pools: dict[str | None, list[nn.Module]] = {
            None: [],
            "avg": [nn.AdaptiveAvgPool2d(1)],
            "max": [nn.AdaptiveMaxPool2d(1)],
            "avgmax": [AvgMaxPool()],
        }
        pooled = pools[global_pool]
        features = width * {None: side * side, "avgmax": 2}.get(global_pool, 1)
        dropped = [nn.Dropout(dropout)] if dropout else []
        outputs = 1 if num_classes == 2 else num_classes
        hidden = [nn.Linear(features, dense_units), nn.ReLU(), *dropped] if dense_units else []
        self.head = nn.Sequential(
            *pooled, nn.Flatten(), *dropped, *hidden, nn.Linear(dense_units or features, outputs)
        )
        generator = torch.Generator().manual_seed(init_seed)
        for module in self.modules():  # Keras' initialisers, in layer order
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.xavier_uniform_(module.weight, generator=generator)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        if channels_last:
            # Module.to accepts memory_format at runtime; torch's overloads of `to` omit it
            self.features.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    @property
    def num_classes(self) -> int:
        return self.config["num_classes"]

    @property
    def image_size(self) -> int:
        return self.config["image_size"]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Float images (N, 3, S, S) in [0, 1] → logits."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.head(self.features(images))


def build_network(config: Mapping[str, Any]) -> ConvNet:
    """The network a checkpoint's stored `config` describes."""
    return ConvNet(**config)


def _check(
    num_classes: int,
    image_size: int,
    conv_channels: Sequence[int],
    convs_per_block: Sequence[int] | None,
    padding: str,
    batch_norm: bool,
    norm_after_pool: bool,
    global_pool: str | None,
    dropout: float,
    pool_before_relu: bool,
) -> list[int]:
    """Refuse an architecture that cannot be built, in one line; the convolutions per block."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if padding not in PADDINGS:
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
    if global_pool not in GLOBAL_POOLS:
        raise ValueError(f"global_pool must be null, 'avg', 'max' or 'avgmax', got {global_pool!r}")
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
    depths = [int(n) for n in convs_per_block or [1] * len(conv_channels)]
    if feature_map_size(image_size, depths, padding) < 1:
        each = "halves it" if padding == "same" else "trims 2 pixels per conv, halves the rest"
        raise ValueError(
            f"image_size {image_size} is too small for {len(depths)} blocks (each {each}): "
            f"at least {smallest_image_size(depths, padding)}"
        )
    return depths


def _blocks(
    conv_channels: Sequence[int],
    depths: Sequence[int],
    padding: str,
    batch_norm: bool,
    norm_after_pool: bool,
    pool_before_relu: bool,
) -> tuple[nn.Sequential, int]:
    """The conv blocks, and the channels they end with."""
    layers: list[nn.Module] = []
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
            layers += [*conv, nn.MaxPool2d(2), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
        elif pool_before_relu:
            layers += [*conv, nn.MaxPool2d(2), nn.ReLU(inplace=True)]
        else:
            layers += [*conv, nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*layers), in_channels
