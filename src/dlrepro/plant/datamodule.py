"""Batches for the plant CNN from a uint8 image cache (N×H×W×3 RGB arrays, memory-mapped or not).

The text's `ImageDataGenerator(rescale=1./255)` becomes `images_to_tensor`: uint8 → float32 × 1/255,
HWC → CHW. The arrays stay where they are (an `np.memmap` is never read whole): each step gathers
one batch of rows with a single fancy-index read, far cheaper than 32 per-image reads and a collate.

Order is a pure function of (seed, epoch): `EpochBatchSampler` draws each epoch's permutation,
and each batch's augmentation seed (`dlrepro.plant.augment`), from
`np.random.default_rng([seed, epoch])`. Lightning calls its `set_epoch` every epoch (and forwards
it through the sampler wrapper it inserts under DDP, which then deals whole batches to the
ranks), so a run resumed from a checkpoint sees exactly the batches the uninterrupted run would
have seen, and worker processes need no seeding.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dlrepro.errors import DataError
from dlrepro.plant.augment import BatchAugment
from dlrepro.plant.inference import RESCALE, images_to_tensor


class BatchPlan(NamedTuple):
    """One batch: which rows to read, and the seed of its augmentation (None: not augmented)."""

    indices: np.ndarray
    augment_seed: int | None = None


class EpochBatchSampler(Sampler[BatchPlan]):
    """Yields `BatchPlan`s; shuffled per epoch from rng([seed, epoch]) when asked, and with a
    seed per batch from the same generator when `augment` is set."""

    def __init__(
        self, num_items: int, batch_size: int, shuffle: bool, augment: bool, seed: int
    ) -> None:
        self.num_items = num_items
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.num_items // self.batch_size)

    def __iter__(self) -> Iterator[BatchPlan]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.num_items) if self.shuffle else np.arange(self.num_items)
        seeds = rng.integers(2**62, size=len(self)) if self.augment else [None] * len(self)
        for batch, start in enumerate(range(0, self.num_items, self.batch_size)):
            # Reading rows in ascending order keeps memmap access sequential; the order of
            # samples inside a batch does not change the batch's mean loss.
            rows = np.sort(order[start : start + self.batch_size], kind="stable")
            seed = seeds[batch]
            yield BatchPlan(rows, None if seed is None else int(seed))


class StackedRows:
    """Several uint8 image arrays read as one, row after row, without copying any of them: the
    train split and the val split of a fit that learns from both, memory-mapped as they are."""

    def __init__(self, *parts: np.ndarray) -> None:
        shapes = {tuple(part.shape[1:]) for part in parts}
        if len(shapes) > 1:
            raise DataError(f"image shapes differ between splits: {sorted(shapes)}")
        self.parts = parts
        self.starts = np.cumsum([0, *(len(part) for part in parts)])
        self.shape = (int(self.starts[-1]), *parts[0].shape[1:])
        self.dtype = parts[0].dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"rows outside 0..{len(self) - 1}")
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        for part, start, end in zip(self.parts, self.starts[:-1], self.starts[1:], strict=True):
            inside = (rows >= start) & (rows < end)
            if inside.any():
                out[inside] = part[rows[inside] - start]
        return out


def release_mapped_pages(images: np.ndarray | StackedRows) -> None:
    """Unmap the pages of a memory-mapped cache that a batch read has touched.

    Pages of a file mapping count in the process's resident memory for as long as they stay
    mapped, so over an epoch a memmap would grow RSS by the whole split (20,000 images: 1 GB).
    The cache is read-only, so MADV_DONTNEED just drops the mapping's pages (the kernel's page
    cache keeps the data); the next read maps them again. Same bytes, bounded memory.
    """
    for part in images.parts if isinstance(images, StackedRows) else (images,):
        mapping = getattr(part, "_mmap", None)  # np.memmap's mmap.mmap (None for plain arrays)
        if mapping is not None and hasattr(mmap, "MADV_DONTNEED"):
            mapping.madvise(mmap.MADV_DONTNEED)


class ImageBatches(Dataset):
    """Map-style dataset indexed by a whole `BatchPlan` (use with `batch_size=None`); `augment`
    transforms a planned batch's uint8 pixels with the plan's seed."""

    def __init__(
        self,
        images: np.ndarray | StackedRows,
        labels: np.ndarray,
        augment: BatchAugment | None = None,
    ) -> None:
        self.images = images
        self.labels = labels
        self.augment = augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, plan: BatchPlan) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = self.images[plan.indices]
        release_mapped_pages(self.images)
        if self.augment is not None and plan.augment_seed is not None:
            chw = torch.from_numpy(np.array(pixels)).permute(0, 3, 1, 2)
            batch = self.augment(chw, plan.augment_seed).mul_(RESCALE)
        else:
            batch = images_to_tensor(pixels)
        return batch, torch.from_numpy(self.labels[plan.indices])


def check_split(name: str, images: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Validate one split's arrays; returns the labels as an in-memory int64 array."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{name} images: expected uint8 N×H×W×3, got {images.dtype} {tuple(images.shape)}"
        )
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (images.shape[0],):
        raise DataError(f"{name} labels: {labels.shape[0]} labels for {images.shape[0]} images")
    if len(labels) == 0:
        raise DataError(f"{name} split is empty")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise DataError(f"{name} labels: values outside 0..{num_classes - 1}")
    return labels


class PlantDataModule(pl.LightningDataModule):
    """Train and val loaders over uint8 image arrays: everything a fit may see.

    There is no test split here on purpose: the Trainer never holds test rows, so neither
    checkpoint selection nor early stopping can read them (the evaluation reads test itself).

    Args:
        classes: class names in label order (sorted, as the cache's classes.json lists them).
        train_images, val_images: uint8 (N, H, W, 3) RGB arrays or np.memmaps.
        train_labels, val_labels: class indices, one per image.
        batch_size: images per step, 32 in the text.
        seed: drives the per-epoch shuffle and augmentation (see module doc).
        num_workers: DataLoader worker processes; 0 loads in the training process (on a small CPU
            machine the CNN, not loading, is the bottleneck).
        augment: label-preserving transforms of training batches (a `BatchAugment`, or its
            settings as a mapping); None: the text's plain images.
        learn_from_val: fit on train and val together (rows of train, then val's), and validate
            on nothing: for a recipe whose settings were chosen beforehand (`fit_on: train+val`).
    """

    def __init__(
        self,
        classes: Sequence[str],
        train_images: np.ndarray,
        train_labels: np.ndarray,
        val_images: np.ndarray,
        val_labels: np.ndarray,
        *,
        batch_size: int = 32,
        seed: int = 0,
        num_workers: int = 0,
        augment: BatchAugment | Mapping[str, Any] | None = None,
        learn_from_val: bool = False,
    ) -> None:
        super().__init__()
        self.classes = list(classes)
        if len(self.classes) < 2:
            raise DataError(f"need at least two classes, got {self.classes}")
        n = len(self.classes)
        if isinstance(augment, Mapping):
            augment = BatchAugment(**augment)
        train_labels = check_split("train", train_images, train_labels, n)
        val_labels = check_split("val", val_images, val_labels, n)
        both = StackedRows(train_images, val_images)  # refuses splits of different image shapes
        self.learn_from_val = learn_from_val
        if learn_from_val:
            self.train = ImageBatches(both, np.concatenate([train_labels, val_labels]), augment)
            self.val = None
        else:
            self.train = ImageBatches(train_images, train_labels, augment)
            self.val = ImageBatches(val_images, val_labels)
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return int(self.train.images.shape[1])

    def _loader(self, split: ImageBatches, train: bool) -> DataLoader:
        sampler = EpochBatchSampler(
            len(split),
            self.batch_size,
            shuffle=train,
            augment=train and split.augment is not None,
            seed=self.seed,
        )
        return DataLoader(
            split,
            sampler=sampler,
            batch_size=None,  # the dataset returns whole batches
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, train=True)

    def val_dataloader(self) -> DataLoader:
        if self.val is None:  # the Trainer of such a fit runs no validation (limit_val_batches=0)
            raise DataError("this fit learns from val: there is no split left to validate on")
        return self._loader(self.val, train=False)

    def predict_dataloader(self) -> DataLoader:
        return self.val_dataloader()
