"""One leaf photograph: a backdrop, the leaf with its disease or confounders, then the camera
(cast shadows, uneven lighting, blur, sensor noise, an earlier JPEG compression).

Every random choice is drawn from the caller's generator in a fixed order, so a generator state
is a picture: reordering the draws changes every image.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from dlrepro.data.leaves import marks
from dlrepro.data.leaves.canvas import (
    background,
    bgr,
    blur,
    lerp,
    pixel_grid,
    sigmoid,
    smooth_noise,
)
from dlrepro.data.leaves.leaf import Leaf, leaf_surface


def render_leaf(
    rng: np.random.Generator,
    diseased: bool,
    image_size: int = 160,
    drawn: dict[str, Any] | None = None,
) -> np.ndarray:
    """One leaf photograph as a BGR uint8 array of shape (image_size, image_size, 3).

    Every random choice comes from `rng`, so the same generator state gives the same pixels.
    drawn: when given, receives what was drawn, without changing a pixel: "diseases" (a sorted
    list of "spots", "spots, early", "blight", "mosaic, patches", "mosaic, interveinal"; empty
    for a healthy leaf), "severity" (0.25-1, None when healthy) and "insect_holes" (bool).
    """
    diseases: list[str] = []
    severity = None
    size = image_size
    image = background(rng, size)

    leaf = Leaf(rng, size)
    mask = leaf.mask()
    surface, veins = leaf_surface(rng, leaf, mask)

    # Confounders appear on both classes (a diseased leaf can be dusty too); natural yellowing is
    # commoner on healthy leaves so that "yellow" is not a synonym for "diseased".
    if rng.random() < (0.15 if diseased else 0.4):
        surface = marks.yellowing(rng, leaf, surface, mask)
    if diseased:
        severity = rng.uniform(0.25, 1.0)  # from a few small early spots to a ruined leaf
        kinds = [rng.choice(3, p=(0.5, 0.25, 0.25))]
        if rng.random() < 0.35:
            kinds.append(rng.choice(3))
        for kind in sorted(set(int(k) for k in kinds)):
            if kind == 0:
                surface, disease = marks.spots(rng, leaf, surface, mask, severity)
            elif kind == 1:
                surface = marks.blight(rng, leaf, surface, mask, severity)
                disease = "blight"
            else:
                surface, disease = marks.mosaic(rng, leaf, surface, mask, veins, severity)
            diseases.append(disease)
    insect_holes = rng.random() < 0.25
    if insect_holes:
        mask, surface = marks.insect_holes(rng, mask, surface)
    if drawn is not None:
        drawn.update(diseases=sorted(diseases), severity=severity, insect_holes=insect_holes)

    # The leaf's own shadow on the ground, then the petiole, then the blade over both.
    offset = rng.normal(0, 0.025 * size, 2)
    shift = np.array([[1, 0, offset[0]], [0, 1, offset[1]]], dtype=np.float32)
    drop = cv2.warpAffine(mask, shift, (size, size))
    image = image * (1.0 - rng.uniform(0.2, 0.55) * blur(drop, rng.uniform(1.5, 4.0)))[..., None]
    stalk = leaf.midrib(leaf.u_base - rng.uniform(0.05, 0.25), leaf.u_base + 0.02, 8)
    stalk_colour = bgr(rng.uniform(40, 100), rng.uniform(0.3, 0.7), rng.uniform(0.25, 0.6))
    cv2.polylines(
        image,
        [np.round(stalk * 16).astype(np.int32)],
        False,
        tuple(map(float, stalk_colour)),
        max(1, round(size / 70)),
        cv2.LINE_AA,
        shift=4,
    )
    image = lerp(image, surface, mask)

    if rng.random() < 0.45:
        marks.dust(rng, image, mask)
    if rng.random() < 0.4:
        marks.highlights(rng, image, mask)
    if rng.random() < 0.35:
        image = _cast_shadow(rng, image)
    image = _lighting(rng, image)
    if rng.random() < 0.3:
        image = blur(image, rng.uniform(0.3, 1.0))
    noise = rng.normal(0, rng.uniform(0.004, 0.03), (size, size, 1)) + rng.normal(
        0, rng.uniform(0.002, 0.012), (size, size, 3)
    )
    image = np.clip((image + noise.astype(np.float32)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:  # an earlier, harsher compression (a phone, a messaging app)
        image = _jpeg_roundtrip(image, int(rng.integers(40, 90)))
    return image


def _lighting(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Exposure, a light falling off across the frame, lens vignetting and a white-balance cast."""
    size = image.shape[0]
    xs, ys = pixel_grid(size)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = ((xs - size / 2) * math.cos(angle) + (ys - size / 2) * math.sin(angle)) / size
    gain = rng.uniform(0.7, 1.25) * (1.0 + rng.uniform(0, 0.7) * ramp)
    radius2 = ((xs - size / 2) ** 2 + (ys - size / 2) ** 2) / (size / 2) ** 2
    gain = gain * (1.0 - rng.uniform(0, 0.3) * radius2)
    white_balance = rng.normal(1.0, 0.06, 3).astype(np.float32)
    return image * gain[..., None] * white_balance


def _cast_shadow(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """A shadow from a stem, a hand or a neighbouring plant: a soft-edged dark region."""
    size = image.shape[0]
    xs, ys = pixel_grid(size)
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * np.pi)
        signed = (xs - size / 2) * math.cos(angle) + (ys - size / 2) * math.sin(angle)
        wavy = signed + 0.06 * size * smooth_noise(rng, size, 3)
        region = sigmoid((wavy - rng.uniform(-0.3, 0.3) * size) / rng.uniform(1.0, 6.0))
    else:
        region = np.zeros((size, size), np.float32)
        for _ in range(int(rng.integers(2, 7))):
            centre = (int(rng.integers(0, size)), int(rng.integers(0, size)))
            axes = (int(rng.uniform(0.05, 0.3) * size), int(rng.uniform(0.03, 0.15) * size))
            cv2.ellipse(region, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        region = blur(region, rng.uniform(2.0, 6.0))
    return image * (1.0 - rng.uniform(0.25, 0.6) * region)[..., None]


def _jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok, "OpenCV failed to encode an in-memory JPEG"
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    assert decoded is not None, "OpenCV failed to decode its own JPEG"
    return decoded
