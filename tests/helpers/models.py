"""Small classifiers for tests, built the way the train stage builds them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dlrepro.plant.classifier import LeafClassifier
from dlrepro.plant.networks import ConvNet


def plant_cnn(
    class_names: Sequence[str] | None = None,
    optimizer: Any = None,
    scheduler: Any = None,
    average_symmetries: bool = False,
    **network: Any,
) -> LeafClassifier:
    """A ConvNet (the text's CNN by default) of `network`'s arguments inside a LeafClassifier."""
    return LeafClassifier(
        ConvNet(**network),
        class_names=class_names,
        optimizer=optimizer,
        scheduler=scheduler,
        average_symmetries=average_symmetries,
    )
