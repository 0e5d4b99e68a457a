"""Procedural leaf photographs: the default dataset of the plant-disease case study.

The text trains on `plant_disease_dataset/{train,test}/{Healthy,Diseased}` but does not ship it,
so this package draws one with OpenCV and numpy, in that layout (plus an optional `design/`).
Diseased leaves carry lesions; healthy ones carry look-alikes in the same colours, so local
structure, which a CNN can learn, is what separates the classes. `canvas` holds the drawing
primitives and backdrops, `leaf` the leaf's shape and surface, `marks` the lesions and
look-alikes, `render` one photograph and `dataset` the files on disk.
"""

from dlrepro.data.leaves.dataset import (
    CLASSES,
    DESIGN,
    SPLITS,
    contact_sheet,
    describe_leaf,
    generate_dataset,
)
from dlrepro.data.leaves.render import render_leaf

__all__ = [
    "CLASSES",
    "DESIGN",
    "SPLITS",
    "contact_sheet",
    "describe_leaf",
    "generate_dataset",
    "render_leaf",
]
