"""The side of each feature map a conv net's blocks leave, torch-free: the network checks its
input with it, and the config check refuses an image size too small for a recipe's depth before
any stage runs."""

from __future__ import annotations

from collections.abc import Sequence


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
