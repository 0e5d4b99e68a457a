"""Batches for the plant CNN from a uint8 image cache (N×H×W×3 RGB arrays, memory-mapped or not).

The text's `ImageDataGenerator(rescale=1./255)` becomes `images_to_tensor`: uint8 → float32 × 1/255,
HWC → CHW. The arrays stay where they are (an `np.memmap` is never read whole): each step gathers
one batch of rows with a single fancy-index read, far cheaper than 32 per-image reads and a collate.

Order is a pure function of (seed, epoch): `EpochBatchSampler` draws each epoch's permutation, and
the optional horizontal flips, from `np.random.default_rng([seed, epoch])`. Lightning calls its
`set_epoch` every epoch (and forwards it through the sampler wrapper it inserts under DDP, which
then deals whole batches to the ranks), so a run resumed from a checkpoint sees exactly the
batches the uninterrupted run would have seen, and worker processes need no seeding.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dlrepro.errors import DataError

# The text's rescale=1./255, applied as Keras applies it (a multiplication, not a division).
RESCALE = 1.0 / 255


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) → float32 (N, 3, H, W) in [0, 1].

    The result is logically CHW but keeps NHWC memory (a permuted view), which is the
    channels_last layout the CNN prefers. The uint8 batch is copied once: slices of the read-only
    cache memmap must not become tensors that alias it.
    """
    batch = torch.from_numpy(np.array(images))
    return batch.permute(0, 3, 1, 2).float().mul_(RESCALE)


class BatchPlan(NamedTuple):
    """One batch: which rows to read, and which of them to mirror left-right."""

    indices: np.ndarray
    flips: np.ndarray


class EpochBatchSampler(Sampler[BatchPlan]):
    """Yields `BatchPlan`s; shuffled (and flipped) per epoch from rng([seed, epoch]) when asked."""

    def __init__(
        self, num_items: int, batch_size: int, shuffle: bool, hflip: bool, seed: int
    ) -> None:
        self.num_items = num_items
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.hflip = hflip
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.num_items // self.batch_size)

    def __iter__(self) -> Iterator[BatchPlan]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.num_items) if self.shuffle else np.arange(self.num_items)
        flips = rng.random(self.num_items) < 0.5 if self.hflip else np.zeros(self.num_items, bool)
        for start in range(0, self.num_items, self.batch_size):
            rows = order[start : start + self.batch_size]
            # Reading rows in ascending order keeps memmap access sequential; the order of
            # samples inside a batch does not change the batch's mean loss.
            ascending = np.argsort(rows, kind="stable")
            yield BatchPlan(rows[ascending], flips[start : start + self.batch_size][ascending])


def release_mapped_pages(images: np.ndarray) -> None:
    """Unmap the pages of a memory-mapped cache that a batch read has touched.

    Pages of a file mapping count in the process's resident memory for as long as they stay
    mapped, so over an epoch a memmap would grow RSS by the whole split (20,000 images: 1 GB).
    The cache is read-only, so MADV_DONTNEED just drops the mapping's pages (the kernel's page
    cache keeps the data); the next read maps them again. Same bytes, bounded memory.
    """
    mapping = getattr(images, "_mmap", None)  # np.memmap's mmap.mmap (None for plain arrays)
    if mapping is not None and hasattr(mmap, "MADV_DONTNEED"):
        mapping.madvise(mmap.MADV_DONTNEED)


class ImageBatches(Dataset):
    """Map-style dataset indexed by a whole `BatchPlan` (use with `batch_size=None`)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, plan: BatchPlan) -> tuple[torch.Tensor, torch.Tensor]:
        batch = images_to_tensor(self.images[plan.indices])
        release_mapped_pages(self.images)
        if plan.flips.any():
            flips = torch.from_numpy(plan.flips)
            batch[flips] = batch[flips].flip(-1)
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
    """Train/val (and optional test) loaders over uint8 image arrays.

    Args:
        classes: class names in label order (sorted, as the cache's classes.json lists them).
        train_images, val_images, test_images: uint8 (N, H, W, 3) RGB arrays or np.memmaps.
        train_labels, val_labels, test_labels: class indices, one per image.
        batch_size: images per step, 32 in the text.
        seed: drives the per-epoch shuffle and flips (see module doc).
        num_workers: DataLoader worker processes; 0 loads in the training process (on a small CPU
            machine the CNN, not loading, is the bottleneck).
        hflip: mirror a random half of each training batch left-right (off: the text does not
            augment).
    """

    def __init__(
        self,
        classes: Sequence[str],
        train_images: np.ndarray,
        train_labels: np.ndarray,
        val_images: np.ndarray,
        val_labels: np.ndarray,
        *,
        test_images: np.ndarray | None = None,
        test_labels: np.ndarray | None = None,
        batch_size: int = 32,
        seed: int = 0,
        num_workers: int = 0,
        hflip: bool = False,
    ) -> None:
        super().__init__()
        self.classes = list(classes)
        if len(self.classes) < 2:
            raise DataError(f"need at least two classes, got {self.classes}")
        n = len(self.classes)
        self.train = ImageBatches(train_images, check_split("train", train_images, train_labels, n))
        self.val = ImageBatches(val_images, check_split("val", val_images, val_labels, n))
        self.test = None
        if test_images is not None:
            self.test = ImageBatches(test_images, check_split("test", test_images, test_labels, n))
        shapes = {
            tuple(split.images.shape[1:]) for split in (self.train, self.val, self.test) if split
        }
        if len(shapes) > 1:
            raise DataError(f"image shapes differ between splits: {sorted(shapes)}")
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.hflip = hflip

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return int(self.train.images.shape[1])

    def _loader(self, split: ImageBatches, train: bool) -> DataLoader:
        sampler = EpochBatchSampler(
            len(split), self.batch_size, shuffle=train, hflip=train and self.hflip, seed=self.seed
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
        return self._loader(self.val, train=False)

    def test_dataloader(self) -> DataLoader:
        if self.test is None:
            raise DataError("this datamodule was built without a test split")
        return self._loader(self.test, train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test if self.test is not None else self.val, train=False)
