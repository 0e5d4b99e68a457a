"""Label-preserving augmentation of uint8 training batches (the tuned recipe's `augment`).

A leaf's class does not depend on its orientation, framing or exposure: each image may be
mirrored, turned by quarter turns, cropped and rescaled, and jittered in brightness, contrast and
saturation (not hue: lesions are colour), each image with its own draw. The operations are
torchvision.transforms.v2's, written batched (v2 draws one set of parameters per call) and without
importing torchvision (on these machines it needs torch's CUDA build); `grayscale` matches v2 bit
for bit. Every draw comes from the batch's own seed through a private generator, so a resumed
run sees the same batches and the global RNG is untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

MAX = 255.0  # pixel values stay on the uint8 scale; the datamodule rescales them as usual
# ITU-R BT.601 luma weights (0.299, 0.587, 0.114) as torchvision writes them.
LUMA = (0.2989, 0.587, 0.114)


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """Float (N, 3, H, W) → luma (N, 1, H, W): torchvision's rgb_to_grayscale, same op order."""
    r, g, b = images.unbind(dim=-3)
    return r.mul(LUMA[0]).add_(g, alpha=LUMA[1]).add_(b, alpha=LUMA[2]).unsqueeze(dim=-3)


@dataclass(frozen=True)
class BatchAugment:
    """Random label-preserving transforms; see the module doc.

    crop_scale: range of the cropped area as a fraction of the image (None: no crop);
    brightness, contrast, saturation: ColorJitter's factors, each drawn per image from
    [1 - f, 1 + f] (0: off).
    """

    hflip: bool = False
    vflip: bool = False
    rot90: bool = False
    crop_scale: Sequence[float] | None = None
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0

    def __call__(self, images: torch.Tensor, seed: int) -> torch.Tensor:
        """uint8 (N, 3, H, W) → float32 (N, 3, H, W) in [0, 255]; the same (images, seed) give
        the same result."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 (N, 3, H, W), got {images.dtype} {images.shape}")
        generator = torch.Generator().manual_seed(seed)
        n = images.shape[0]

        def uniform(spread: float) -> torch.Tensor:  # one factor per image in [1 - s, 1 + s]
            return 1 + (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * spread

        batch = self._orient(images, generator).float()
        if self.crop_scale is not None:
            batch = self._crop(batch, generator)
        if self.brightness:
            batch = (batch * uniform(self.brightness)).clamp_(0, MAX)
        if self.contrast:
            mean = grayscale(batch).mean(dim=(1, 2, 3), keepdim=True)
            batch = torch.lerp(mean, batch, uniform(self.contrast)).clamp_(0, MAX)
        if self.saturation:
            batch = torch.lerp(grayscale(batch), batch, uniform(self.saturation))
            batch = batch.clamp_(0, MAX)
        return batch

    def _orient(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Each image mirrored and rotated by its own draw (the 8 symmetries of the square)."""
        n = images.shape[0]
        never = torch.zeros(n, dtype=torch.bool)
        turns = torch.randint(4, (n,), generator=generator) if self.rot90 else never.long()
        hflips = torch.rand(n, generator=generator) < 0.5 if self.hflip else never
        vflips = torch.rand(n, generator=generator) < 0.5 if self.vflip else never
        out = images.clone()
        out[hflips] = out[hflips].flip(-1)
        out[vflips] = out[vflips].flip(-2)
        for k in (1, 2, 3):
            chosen = turns == k
            if chosen.any():
                out[chosen] = torch.rot90(out[chosen], k, dims=(2, 3))
        return out

    def _crop(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A square box of area fraction ~ U(crop_scale) at a random place, scaled to size."""
        assert self.crop_scale is not None  # __call__ crops only when it is set
        n = batch.shape[0]
        low, high = self.crop_scale
        side = (low + (high - low) * torch.rand(n, generator=generator)).sqrt()
        shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (1 - side)[:, None]
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = side
        theta[:, :, 2] = shift
        grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
        return F.grid_sample(batch, grid, mode="bilinear", align_corners=False)
