"""Which split each decoded image goes to, and the copies that would leak across splits.

A one-folder dataset's test split is drawn per class with `np.random.default_rng(seed)`; val is
then carved out of train the same way with `default_rng([seed, 1])`, and the design split (when
no design/ folder gives it) after val with `default_rng([seed, 2])`, so adding val or design
leaves the earlier splits unchanged, and a given test split is never re-drawn. Checkpoint
selection, early stopping and tuning read val, recipe searches read design, so test is touched
once, by the evaluation. Identical images (equal cached pixels) always land on the same side of
a draw; an image equal to one of an earlier split (order: SPLITS) is a leak and is dropped.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dlrepro.data.layout import Candidate

SPLITS = ("train", "val", "design", "test")  # the cache's splits, in the order they are written
VAL_SEED_STREAM = 1  # val is drawn from rng([seed, 1]): the test split's rng(seed) is unchanged
DESIGN_SEED_STREAM = 2  # design from rng([seed, 2]), after val: val is unchanged


def assign_splits(
    decoded: list[Candidate],
    n_classes: int,
    draw_test: bool,
    test_fraction: float,
    val_fraction: float,
    seed: int,
    design_fraction: float = 0.0,
) -> None:
    """Set each candidate's split: test first when `draw_test` (the one-folder layout), then val,
    then design (`design_fraction` of what train has left; 0: none carved)."""
    if draw_test:
        _split_by_class(decoded, n_classes, "train", "test", test_fraction, seed)
    _split_by_class(decoded, n_classes, "train", "val", val_fraction, [seed, VAL_SEED_STREAM])
    if design_fraction > 0:
        stream = [seed, DESIGN_SEED_STREAM]
        _split_by_class(decoded, n_classes, "train", "design", design_fraction, stream)


def _split_by_class(
    decoded: list[Candidate],
    n_classes: int,
    source: str | None,
    target: str,
    fraction: float,
    seed: int | list[int],
) -> None:
    """Move round(n × fraction) of each class's `source` images (at least 1, at most n − 1; none
    for fraction 0) to `target`: a seeded shuffle of groups of identical images, so copies of one
    picture never straddle the two splits. `source` None: the unsplit one-folder layout."""
    rng = np.random.default_rng(seed)
    for label in range(n_classes):
        members = [c for c in decoded if c.label == label and c.split in (source, None)]
        groups: dict[str, list[Candidate]] = {}
        for candidate in members:
            groups.setdefault(candidate.digest, []).append(candidate)
        ordered = list(groups.values())
        # round half up (Python's round() rounds half to even), at least 1, at most n - 1
        wanted = math.floor(len(members) * fraction + 0.5)
        count = min(len(members) - 1, max(1, wanted)) if fraction > 0 else 0
        moved = 0
        for index in rng.permutation(len(ordered)):
            group = ordered[index]
            to_target = moved < count and moved + len(group) < len(members)
            for candidate in group:
                candidate.split = target if to_target else source or "train"
            moved += len(group) if to_target else 0


def drop_leaks(decoded: list[Candidate]) -> list[dict[str, str]]:
    """Images equal to one of an earlier split (order: train, val, design, test), each paired
    with the first such earlier image: a val copy of a train image, a design copy of a train or
    val image, a test copy of any."""
    first_seen: dict[str, tuple[str, str]] = {}  # digest -> (split, path) of its first image
    leaks = []
    for split in SPLITS:
        for candidate in (c for c in decoded if c.split == split):
            earlier_split, earlier_path = first_seen.setdefault(
                candidate.digest, (split, candidate.path)
            )
            if earlier_split != split:
                leaks.append({"split": split, "path": candidate.path, "copy_of": earlier_path})
    return leaks


def duplicates(kept: list[Candidate]) -> list[dict[str, Any]]:
    """Groups of identical images inside one split (kept: they weigh more, but do not leak)."""
    groups: dict[tuple[str | None, str], list[str]] = {}  # (split, digest) -> paths
    for candidate in kept:
        groups.setdefault((candidate.split, candidate.digest), []).append(candidate.path)
    return [
        {"split": split, "paths": paths} for (split, _), paths in groups.items() if len(paths) > 1
    ]
