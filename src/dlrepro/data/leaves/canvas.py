"""Drawing primitives (colour, value noise, blending, anti-aliased shapes) and the backdrops a
leaf lies on.

The backdrops include soil with pebbles and blurred green foliage, so that a brown speck or a green
pixel is, by itself, evidence of neither class.
"""

from __future__ import annotations

import colorsys
import math
from functools import lru_cache

import cv2
import numpy as np


def bgr(hue_degrees: float, saturation: float, value: float) -> np.ndarray:
    """An HSV colour as a float32 BGR triple in [0, 1] (OpenCV's channel order)."""
    r, g, b = colorsys.hsv_to_rgb((hue_degrees % 360.0) / 360.0, saturation, value)
    return np.array([b, g, r], dtype=np.float32)


def smooth_noise(rng: np.random.Generator, size: int, cells: float) -> np.ndarray:
    """Value noise with about `cells` blobs across the image, zero mean and unit std."""
    cells = max(2, round(cells))
    grid = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    field = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    field -= field.mean()
    return field / (field.std() + 1e-6)


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigmaX=max(sigma, 0.1))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30.0, 30.0)))


def lerp(image: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Blend towards `colour` (a triple or an image) by a per-pixel `alpha` map."""
    a = alpha.astype(np.float32, copy=False)[..., None]
    return image + (colour - image) * a


@lru_cache(maxsize=4)
def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y), shared read-only between images of one size."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    xs.setflags(write=False)
    ys.setflags(write=False)
    return xs, ys


def ellipse(
    canvas: np.ndarray,
    centre: tuple[float, float],
    axes: tuple[float, float],
    angle: float,
    thickness: int,
) -> None:
    """An anti-aliased ellipse of value 1 at sub-pixel precision (OpenCV's 4-bit `shift`)."""
    centre_fixed = (round(centre[0] * 16), round(centre[1] * 16))
    axes_fixed = (max(1, round(axes[0] * 16)), max(1, round(axes[1] * 16)))
    cv2.ellipse(canvas, centre_fixed, axes_fixed, angle, 0, 360, 1.0, thickness, cv2.LINE_AA, 4)


def points_inside(rng: np.random.Generator, mask: np.ndarray, count: int) -> np.ndarray:
    """`count` (x, y) pixel positions drawn uniformly from where `mask` is set."""
    inside = np.flatnonzero(mask.ravel() > 0.9)
    picks = rng.choice(inside, size=count)
    return np.stack([picks % mask.shape[1], picks // mask.shape[1]], axis=1)


# ---------------------------------------------------------------------------------------------
# Backgrounds
# ---------------------------------------------------------------------------------------------


def _soil(rng: np.random.Generator, size: int) -> np.ndarray:
    base = bgr(rng.uniform(12, 40), rng.uniform(0.25, 0.7), rng.uniform(0.16, 0.5))
    texture = (
        0.5 * smooth_noise(rng, size, 5)
        + 0.35 * smooth_noise(rng, size, size / 6)
        + 0.3 * rng.standard_normal((size, size)).astype(np.float32)
    )
    image = base * (1.0 + 0.16 * texture)[..., None]
    # Clods and pebbles: small blobs lighter and darker than the soil, in both classes, so a
    # brown speck is not a lesion by itself.
    for _ in range(int(rng.integers(8, 40))):
        centre = (int(rng.integers(0, size)), int(rng.integers(0, size)))
        shade = base * rng.uniform(0.6, 1.5) + rng.uniform(-0.03, 0.03)
        radius = int(rng.integers(1, max(2, size // 40)))
        cv2.circle(image, centre, radius, tuple(float(c) for c in shade), -1, cv2.LINE_AA)
    return image


def _wood(rng: np.random.Generator, size: int) -> np.ndarray:
    xs, ys = pixel_grid(size)
    base = bgr(rng.uniform(18, 42), rng.uniform(0.2, 0.6), rng.uniform(0.35, 0.85))
    angle = rng.uniform(0, np.pi)
    across = xs * math.cos(angle) + ys * math.sin(angle)
    along = -xs * math.sin(angle) + ys * math.cos(angle)
    period = rng.uniform(3, 9)
    warp = 2.5 * smooth_noise(rng, size, 3)
    grain = np.sin(2 * np.pi * across / period + warp)
    streaks = smooth_noise(rng, size, size / 4)
    image = base * (1.0 + 0.1 * grain + 0.05 * streaks + 0.04 * np.sin(along / 17.0))[..., None]
    plank = rng.uniform(0.3, 0.7) * size
    seam = np.abs(((across + rng.uniform(0, plank)) % plank) - plank / 2) > plank / 2 - 1.0
    image[seam] *= rng.uniform(0.35, 0.65)
    return image


def _foliage(rng: np.random.Generator, size: int) -> np.ndarray:
    """Out-of-focus leaves and stems behind the subject: green, so leaf pixels are not rare."""
    hue = rng.uniform(60, 140)
    dark = bgr(hue, rng.uniform(0.3, 0.8), rng.uniform(0.08, 0.3))
    light = bgr(hue + rng.uniform(-20, 20), rng.uniform(0.2, 0.7), rng.uniform(0.3, 0.7))
    mix = sigmoid(2.5 * smooth_noise(rng, size, rng.uniform(3, 7)))
    return blur(lerp(np.broadcast_to(dark, (size, size, 3)), light, mix), rng.uniform(1, 4))


def _gradient(rng: np.random.Generator, size: int) -> np.ndarray:
    """Paper, cloth, a painted tray or a photo backdrop: two muted colours blended."""
    xs, ys = pixel_grid(size)
    first = bgr(rng.uniform(0, 360), rng.uniform(0, 0.45), rng.uniform(0.25, 0.95))
    second = bgr(rng.uniform(0, 360), rng.uniform(0, 0.45), rng.uniform(0.25, 0.95))
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (xs * math.cos(angle) + ys * math.sin(angle)) / size
    ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min() + 1e-6)
    image = lerp(np.broadcast_to(first, (size, size, 3)), second, ramp)
    return image * (1.0 + 0.03 * smooth_noise(rng, size, size / 3))[..., None]


_BACKGROUNDS = (_soil, _wood, _foliage, _gradient)
_BACKGROUND_ODDS = (0.35, 0.25, 0.15, 0.25)


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A float32 backdrop: soil, a wooden bench, blurred foliage or a plain gradient."""
    kind = rng.choice(len(_BACKGROUNDS), p=_BACKGROUND_ODDS)
    return _BACKGROUNDS[kind](rng, size).astype(np.float32)
