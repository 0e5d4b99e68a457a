"""Procedural leaf photographs: the default dataset of the plant-disease case study.

The text trains its CNN on `plant_disease_dataset/{train,test}` read by `flow_from_directory`
("Found 800 images belonging to 2 classes", "Found 200 ..."). It does not ship that dataset, so this
module draws one with OpenCV and numpy, in the same layout::

    <root>/train/Healthy/healthy_0000.jpg ... <root>/test/Diseased/diseased_0099.jpg

What makes it a task rather than a colour threshold:

* leaves vary in shape (ovate, elliptic, obovate, lanceolate, cordate, palmately and pinnately
  lobed), size, rotation, bend, hue and vein pattern, and lie on soil, wooden benches, blurred
  foliage or plain gradients, under lighting gradients, white-balance casts and cast shadows, with
  blur, sensor noise and JPEG artefacts;
* diseased leaves carry localised lesions at several severities, down to a few small early spots:
  spots with a brown centre and a yellow halo, blight eating in from the margin, mosaic mottling;
* healthy leaves carry the confounders a camera sees on healthy plants (dust specks, specular
  highlights, natural yellowing, insect holes), so per-image colour statistics say little about
  the class (a logistic regression on per-channel mean and std stays well below 75 %; see
  tests/test_leaves.py). What separates the classes is local structure, which a CNN can learn.

Images are `image_size` square (160 by default): larger than the pipeline's 128×128 input, so the
resize in the data pipeline does real work, as with photographs.

Reproducibility: every image has its own RNG, seeded from (seed, split, class, index), so the bytes
of an image depend neither on the order of generation nor on how many other images are drawn; files
are written by `cv2.imwrite` at a fixed JPEG quality. Same arguments, same bytes.
"""

from __future__ import annotations

import colorsys
import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from dlrepro.errors import ConfigError, DataError

SPLITS = ("train", "test")
# The folder names are the labels flow_from_directory (and torchvision's ImageFolder) read. Their
# order here is not the label index: both loaders sort the names, so Diseased = 0, Healthy = 1.
CLASSES = ("Healthy", "Diseased")
JPEG_QUALITY = 92
_OWN_FILE = re.compile(r"^(healthy|diseased)_\d+\.jpg$")


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def _bgr(hue_degrees: float, saturation: float, value: float) -> np.ndarray:
    """An HSV colour as a float32 BGR triple in [0, 1] (OpenCV's channel order)."""
    r, g, b = colorsys.hsv_to_rgb((hue_degrees % 360.0) / 360.0, saturation, value)
    return np.array([b, g, r], dtype=np.float32)


def _smooth_noise(rng: np.random.Generator, size: int, cells: float) -> np.ndarray:
    """Value noise with about `cells` blobs across the image, zero mean and unit std."""
    cells = max(2, round(cells))
    grid = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    field = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    field -= field.mean()
    return field / (field.std() + 1e-6)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigmaX=max(sigma, 0.1))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30.0, 30.0)))


def _lerp(image: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Blend towards `colour` (a triple or an image) by a per-pixel `alpha` map."""
    a = alpha.astype(np.float32, copy=False)[..., None]
    return image + (colour - image) * a


@lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y), shared read-only between images of one size."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    xs.setflags(write=False)
    ys.setflags(write=False)
    return xs, ys


def _ellipse(
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


def _points_inside(rng: np.random.Generator, mask: np.ndarray, count: int) -> np.ndarray:
    """`count` (x, y) pixel positions drawn uniformly from where `mask` is set."""
    inside = np.flatnonzero(mask.ravel() > 0.9)
    picks = rng.choice(inside, size=count)
    return np.stack([picks % mask.shape[1], picks // mask.shape[1]], axis=1)


# ---------------------------------------------------------------------------------------------
# Backgrounds
# ---------------------------------------------------------------------------------------------


def _soil(rng: np.random.Generator, size: int) -> np.ndarray:
    base = _bgr(rng.uniform(12, 40), rng.uniform(0.25, 0.7), rng.uniform(0.16, 0.5))
    texture = (
        0.5 * _smooth_noise(rng, size, 5)
        + 0.35 * _smooth_noise(rng, size, size / 6)
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
    xs, ys = _grid(size)
    base = _bgr(rng.uniform(18, 42), rng.uniform(0.2, 0.6), rng.uniform(0.35, 0.85))
    angle = rng.uniform(0, np.pi)
    across = xs * math.cos(angle) + ys * math.sin(angle)
    along = -xs * math.sin(angle) + ys * math.cos(angle)
    period = rng.uniform(3, 9)
    warp = 2.5 * _smooth_noise(rng, size, 3)
    grain = np.sin(2 * np.pi * across / period + warp)
    streaks = _smooth_noise(rng, size, size / 4)
    image = base * (1.0 + 0.1 * grain + 0.05 * streaks + 0.04 * np.sin(along / 17.0))[..., None]
    plank = rng.uniform(0.3, 0.7) * size
    seam = np.abs(((across + rng.uniform(0, plank)) % plank) - plank / 2) > plank / 2 - 1.0
    image[seam] *= rng.uniform(0.35, 0.65)
    return image


def _foliage(rng: np.random.Generator, size: int) -> np.ndarray:
    """Out-of-focus leaves and stems behind the subject: green, so leaf pixels are not rare."""
    hue = rng.uniform(60, 140)
    dark = _bgr(hue, rng.uniform(0.3, 0.8), rng.uniform(0.08, 0.3))
    light = _bgr(hue + rng.uniform(-20, 20), rng.uniform(0.2, 0.7), rng.uniform(0.3, 0.7))
    mix = _sigmoid(2.5 * _smooth_noise(rng, size, rng.uniform(3, 7)))
    return _blur(_lerp(np.broadcast_to(dark, (size, size, 3)), light, mix), rng.uniform(1, 4))


def _gradient(rng: np.random.Generator, size: int) -> np.ndarray:
    """Paper, cloth, a painted tray or a photo backdrop: two muted colours blended."""
    xs, ys = _grid(size)
    first = _bgr(rng.uniform(0, 360), rng.uniform(0, 0.45), rng.uniform(0.25, 0.95))
    second = _bgr(rng.uniform(0, 360), rng.uniform(0, 0.45), rng.uniform(0.25, 0.95))
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (xs * math.cos(angle) + ys * math.sin(angle)) / size
    ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min() + 1e-6)
    image = _lerp(np.broadcast_to(first, (size, size, 3)), second, ramp)
    return image * (1.0 + 0.03 * _smooth_noise(rng, size, size / 3))[..., None]


_BACKGROUNDS = (_soil, _wood, _foliage, _gradient)
_BACKGROUND_ODDS = (0.35, 0.25, 0.15, 0.25)


# ---------------------------------------------------------------------------------------------
# Leaf geometry
# ---------------------------------------------------------------------------------------------

_SHAPES = ("ovate", "elliptic", "obovate", "lanceolate", "cordate", "palmate", "pinnate")
_SHAPE_ODDS = (0.2, 0.15, 0.1, 0.15, 0.15, 0.12, 0.13)


class _Leaf:
    """One leaf outline in image pixels, with the frame its veins and lesions are drawn in.

    Local frame: u runs along the midrib (base at u_base < 0, tip at u_tip > 0) and v across it,
    both in units of the leaf's length; `to_image` maps local points to pixels.
    """

    def __init__(self, rng: np.random.Generator, size: int):
        self.shape = str(rng.choice(_SHAPES, p=_SHAPE_ODDS))
        phi = np.linspace(-np.pi, np.pi, 720, endpoint=False)
        radius = np.ones_like(phi)
        aspect = rng.uniform(0.45, 0.65)
        tip_gain, tip_width = rng.uniform(0.05, 0.35), rng.uniform(0.25, 0.5)
        self.palmate_veins = False
        if self.shape == "ovate":
            radius *= 1 + rng.uniform(-0.25, -0.08) * np.cos(phi)
        elif self.shape == "obovate":
            radius *= 1 + rng.uniform(0.08, 0.2) * np.cos(phi)
            tip_gain *= 0.4
        elif self.shape == "lanceolate":
            aspect = rng.uniform(0.18, 0.32)
            radius *= 1 + rng.uniform(-0.15, 0.0) * np.cos(phi)
            tip_gain = rng.uniform(0.2, 0.5)
        elif self.shape == "cordate":
            # A cardioid: its dimple at phi = pi is the notch where the petiole joins.
            aspect = rng.uniform(0.7, 0.95)
            radius = 1 + rng.uniform(0.75, 0.95) * np.cos(phi)
            self.palmate_veins = True
        elif self.shape == "palmate":
            aspect = rng.uniform(0.8, 1.0)
            lobes = int(rng.choice([3, 5]))
            lobe_depth = rng.uniform(0.2, 0.42)
            radius *= 1 + lobe_depth * (np.cos(lobes * phi) * 0.5 + 0.5) ** 1.5 - lobe_depth / 2
            radius *= 1 + 0.4 * np.cos(phi)
            tip_gain *= 0.5
            self.palmate_veins = True
        elif self.shape == "pinnate":
            aspect = rng.uniform(0.4, 0.6)
            radius *= 1 + rng.uniform(0.07, 0.16) * np.cos(int(rng.integers(7, 12)) * phi)
        radius *= 1 + tip_gain * np.exp(-((phi / tip_width) ** 2))
        # Serrated margins, and a little irregularity so no two leaves are mirror-perfect.
        teeth = rng.uniform(0, 0.035) * ((phi * rng.integers(18, 50) / np.pi) % 1.0)
        wobble = sum(
            rng.normal(0, 0.025) * np.cos(k * phi + rng.uniform(0, 2 * np.pi)) for k in (1, 2, 3)
        )
        radius *= 1 + teeth + wobble
        u, v = radius * np.cos(phi), aspect * radius * np.sin(phi)
        length = u.max() - u.min()
        u, v = u / length, v / length
        self.u_tip, self.u_base = float(u.max()), float(u[0])  # phi = -pi is the base
        self.bend = rng.uniform(-0.35, 0.35)

        length_px = size * rng.uniform(0.65, 0.95)
        angle = rng.uniform(0, 2 * np.pi)
        cos_a, sin_a = math.cos(angle), math.sin(angle)
        centre = [float(c) for c in size / 2 + rng.normal(0, 0.07 * size, 2)]
        self.matrix = np.array(
            [
                [cos_a * length_px, -sin_a * length_px, centre[0]],
                [sin_a * length_px, cos_a * length_px, centre[1]],
            ]
        )
        self.length_px = length_px
        self.size = size
        self.outline = self.to_image(np.stack([u, v], axis=1))

        # Local coordinates of every pixel: lesions and yellowing are placed along the leaf.
        xs, ys = _grid(size)
        dx, dy = xs - centre[0], ys - centre[1]
        self.u_map = (dx * cos_a + dy * sin_a) / length_px
        self.v_map = (-dx * sin_a + dy * cos_a) / length_px
        self.v_map -= self.bend * (self.u_map - self.u_base) ** 2

    def to_image(self, local: np.ndarray) -> np.ndarray:
        """Local (u, v) points to pixels; the midrib's bend curves everything drawn on it."""
        u, v = local[:, 0], local[:, 1] + self.bend * (local[:, 0] - self.u_base) ** 2
        return np.stack([u, v], axis=1) @ self.matrix[:, :2].T + self.matrix[:, 2]

    def midrib(self, start: float, stop: float, points: int = 24) -> np.ndarray:
        u = np.linspace(start, stop, points)
        return self.to_image(np.stack([u, np.zeros_like(u)], axis=1))

    def mask(self) -> np.ndarray:
        """Anti-aliased coverage in [0, 1] (sub-pixel vertices via fillPoly's `shift`)."""
        canvas = np.zeros((self.size, self.size), np.uint8)
        vertices = np.round(self.outline * 16).astype(np.int32)
        cv2.fillPoly(canvas, [vertices], 255, cv2.LINE_AA, shift=4)
        return canvas.astype(np.float32) / 255.0

    def veins(self, rng: np.random.Generator) -> np.ndarray:
        """Midrib and lateral veins as a [0, 1] map, not yet clipped to the leaf."""
        canvas = np.zeros((self.size, self.size), np.float32)
        thick = max(1, round(self.size / 110))
        span = self.u_tip - self.u_base

        def draw(local: np.ndarray, width: int) -> None:
            pts = np.round(self.to_image(local) * 16).astype(np.int32)
            cv2.polylines(canvas, [pts], False, 1.0, width, cv2.LINE_AA, shift=4)

        draw(np.stack([np.linspace(self.u_base, self.u_tip, 24), np.zeros(24)], axis=1), thick)
        if self.palmate_veins:
            for side in (-1, 1):
                for spread in rng.uniform([0.5, 1.0, 1.6], [0.8, 1.4, 2.1]):
                    ray = np.linspace(0, 0.8 * span, 12)
                    local = np.stack(
                        [self.u_base + ray * np.cos(spread), side * ray * np.sin(spread)], axis=1
                    )
                    draw(local, thick)
        pairs = int(rng.integers(5, 11))
        slope = rng.uniform(0.6, 1.4)
        curve = rng.uniform(-0.6, 0.2)
        for t in np.linspace(0.1, 0.85, pairs):
            u0 = self.u_base + t * span
            for side in (-1, 1):
                reach = np.linspace(0, 0.5, 10)
                local = np.stack([u0 + reach * slope + curve * reach**2, side * reach], axis=1)
                draw(local, 1)
        return canvas


# ---------------------------------------------------------------------------------------------
# Surfaces: leaf colour, disease, confounders
# ---------------------------------------------------------------------------------------------


def _leaf_surface(
    rng: np.random.Generator, leaf: _Leaf, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The healthy leaf's colour image and its vein map."""
    size = leaf.size
    hue = rng.uniform(65, 135)
    colour = _bgr(hue, rng.uniform(0.35, 0.9), rng.uniform(0.3, 0.75))
    # Gentle, broad colour variation (never the mottled contrast of a mosaic virus).
    tint = _bgr(hue + rng.uniform(-25, 25), rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.8))
    surface = _lerp(
        np.broadcast_to(colour, (size, size, 3)),
        tint,
        np.clip(0.35 + 0.25 * _smooth_noise(rng, size, 3), 0, 1),
    )
    fine = _smooth_noise(rng, size, size / 3)
    surface = surface * (1.0 + 0.05 * fine)[..., None]

    # Thickness shading: darker at the margin, and one half of the blade tilted off the light.
    inside = cv2.distanceTransform((mask > 0.5).astype(np.uint8), cv2.DIST_L2, 3)
    bulge = np.sqrt(np.clip(inside / (0.08 * leaf.length_px), 0, 1))
    fold = np.where(leaf.v_map > 0, 1.0, 1.0 - rng.uniform(0, 0.2)).astype(np.float32)
    surface = surface * ((0.8 + 0.2 * bulge) * fold)[..., None]

    veins = leaf.veins(rng) * mask
    vein_colour = _bgr(hue - rng.uniform(0, 30), rng.uniform(0.2, 0.6), rng.uniform(0.55, 0.95))
    if rng.random() < 0.25:  # some species have veins darker than the blade
        vein_colour = colour * 0.55
    surface = _lerp(surface, vein_colour, _blur(veins, 0.5) * rng.uniform(0.25, 0.7))
    return surface, veins


def _yellowing(
    rng: np.random.Generator, leaf: _Leaf, surface: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """Senescence: a broad, smooth yellowing from the tip, the margin or all over, no edges."""
    size = leaf.size
    yellow = _bgr(rng.uniform(40, 70), rng.uniform(0.5, 0.9), rng.uniform(0.55, 0.9))
    style = rng.integers(3)
    if style == 0:
        ramp = (leaf.u_map - leaf.u_base) / (leaf.u_tip - leaf.u_base)
    elif style == 1:
        inside = cv2.distanceTransform((mask > 0.5).astype(np.uint8), cv2.DIST_L2, 3)
        ramp = 1.0 - np.clip(inside / (0.25 * leaf.length_px), 0, 1)
    else:
        ramp = np.full((size, size), 0.7, np.float32)
    ramp = np.clip(ramp + 0.15 * _smooth_noise(rng, size, 3), 0, 1)
    return _lerp(surface, yellow, ramp * rng.uniform(0.3, 0.85))


def _spots(
    rng: np.random.Generator, leaf: _Leaf, surface: np.ndarray, mask: np.ndarray, severity: float
) -> tuple[np.ndarray, str]:
    """Fungal or bacterial leaf spot: brown necrotic centres, dark rims, yellow halos; and which
    ("spots" or "spots, early").

    One case in four is an early infection: a scatter of pinpoint lesions (1-2 px across at
    128×128) whose halos are what give them away.
    """
    size = leaf.size
    early = rng.random() < 0.25
    if early:
        count = int(rng.integers(10, 31))
        scale = size * rng.uniform(0.008, 0.013)
    else:
        count = round(6 + severity * rng.uniform(10, 34))
        scale = size * (0.016 + 0.03 * severity) * rng.uniform(0.85, 1.2)
    centres = _points_inside(rng, mask, count)
    core = np.zeros((size, size), np.float32)
    rim = np.zeros((size, size), np.float32)
    halo = np.zeros((size, size), np.float32)
    halo_factor = rng.uniform(2.0, 2.8)
    concentric = rng.random() < 0.3  # target spots (early blight) show rings
    for x, y in centres:
        major = max(1.0, scale * rng.lognormal(0, 0.35))
        axes = (major, major * rng.uniform(0.6, 1.0))
        angle = float(rng.uniform(0, 180))
        centre = (float(x), float(y))
        _ellipse(core, centre, axes, angle, -1)
        _ellipse(rim, centre, axes, angle, 1)
        _ellipse(halo, centre, (axes[0] * halo_factor, axes[1] * halo_factor), angle, -1)
        if concentric and major > 3:
            _ellipse(rim, centre, (axes[0] * 0.55, axes[1] * 0.55), angle, 1)
    roughness = 1.0 + 0.35 * _smooth_noise(rng, size, size / 5)
    core = np.clip(_blur(core, 0.6) * roughness, 0, 1) * mask
    rim = np.clip(_blur(rim, 0.4), 0, 1) * mask
    halo = np.clip(_blur(halo, rng.uniform(1.0, 2.5)), 0, 1) * mask
    halo_strength = rng.uniform(0.65, 1.0)

    necrotic = _bgr(rng.uniform(15, 38), rng.uniform(0.45, 0.85), rng.uniform(0.18, 0.45))
    if rng.random() < 0.3:  # pale, greyish centres (e.g. Cercospora, Septoria)
        necrotic = _bgr(rng.uniform(25, 45), rng.uniform(0.1, 0.3), rng.uniform(0.5, 0.75))
    halo_colour = _bgr(rng.uniform(45, 62), rng.uniform(0.55, 0.95), rng.uniform(0.6, 0.9))
    speckle = 1.0 + 0.15 * rng.standard_normal((size, size)).astype(np.float32)
    surface = _lerp(surface, halo_colour, halo * halo_strength)
    surface = _lerp(surface, necrotic * speckle[..., None], core)
    surface = _lerp(surface, necrotic * 0.45, rim * rng.uniform(0.4, 0.9))
    return surface, "spots, early" if early else "spots"


def _blight(
    rng: np.random.Generator, leaf: _Leaf, surface: np.ndarray, mask: np.ndarray, severity: float
) -> np.ndarray:
    """Blight or scorch: dead tissue eating in from parts of the margin, a yellow front ahead."""
    size = leaf.size
    inside = cv2.distanceTransform((mask > 0.5).astype(np.uint8), cv2.DIST_L2, 3)
    depth = leaf.length_px * (0.06 + 0.15 * severity) * rng.uniform(0.8, 1.2)
    depth = depth * (1.0 + 0.45 * _smooth_noise(rng, size, 6))
    # Only some stretches of the margin, more often near the tip.
    towards_tip = (leaf.u_map - leaf.u_base) / (leaf.u_tip - leaf.u_base)
    stretches = _sigmoid(
        3.0 * _smooth_noise(rng, size, 4) + rng.uniform(0, 2.5) + 2.0 * (towards_tip - 0.5)
    )
    dead = _sigmoid((depth - inside) / 0.8) * stretches * mask
    band = rng.uniform(1.5, 5.0)
    front = np.clip(_sigmoid((depth + band - inside) / 1.0) * stretches * mask - dead, 0, 1)
    brown = _bgr(rng.uniform(15, 35), rng.uniform(0.4, 0.85), rng.uniform(0.2, 0.55))
    texture = 1.0 + 0.2 * _smooth_noise(rng, size, size / 4)
    yellow = _bgr(rng.uniform(42, 65), rng.uniform(0.5, 0.9), rng.uniform(0.55, 0.9))
    surface = _lerp(surface, yellow, front * rng.uniform(0.5, 0.95))
    surface = _lerp(surface, brown * texture[..., None], dead)
    edge = np.clip(dead * (1 - dead) * 4, 0, 1)  # a darker line where the dead tissue stops
    return _lerp(surface, brown * 0.5, edge * rng.uniform(0.2, 0.7))


def _mosaic(
    rng: np.random.Generator,
    leaf: _Leaf,
    surface: np.ndarray,
    mask: np.ndarray,
    veins: np.ndarray,
    severity: float,
) -> tuple[np.ndarray, str]:
    """Virus mosaic (sharp-edged light and dark green patches) or interveinal chlorosis; and
    which ("mosaic, patches" or "mosaic, interveinal")."""
    size = leaf.size
    pale = _bgr(rng.uniform(55, 85), rng.uniform(0.45, 0.8), rng.uniform(0.6, 0.9))
    if rng.random() < 0.6:
        blobs = _smooth_noise(rng, size, rng.uniform(0.06, 0.12) * size)
        patches = _sigmoid((blobs - rng.uniform(-0.2, 0.5)) * 6.0) * mask
        surface = _lerp(surface, pale, patches * rng.uniform(0.6, 0.65 + 0.35 * severity))
        surface = surface * (1.0 - 0.25 * np.clip(-blobs - 0.8, 0, 1) * mask)[..., None]
        return surface, "mosaic, patches"
    near_vein = np.clip(_blur(veins, rng.uniform(1.5, 3.0)) * 4.0, 0, 1)
    blotch = _sigmoid(2.5 * _smooth_noise(rng, size, 0.1 * size) + 1.0)
    between = (1.0 - near_vein) * blotch * mask
    surface = _lerp(surface, pale, between * rng.uniform(0.6, 0.65 + 0.35 * severity))
    return surface, "mosaic, interveinal"


def _dust(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray) -> None:
    """Soil and pollen specks on the blade: tiny dots with no halo."""
    size = image.shape[0]
    specks = np.zeros((size, size), np.float32)
    for x, y in _points_inside(rng, mask, int(rng.integers(10, 70))):
        radius = int(rng.random() < 0.3)
        cv2.circle(specks, (int(x), int(y)), radius, rng.uniform(0.4, 1.0), -1, cv2.LINE_AA)
    colour = _bgr(rng.uniform(20, 50), rng.uniform(0, 0.5), rng.uniform(0.2, 0.95))
    image[:] = _lerp(image, colour, specks * rng.uniform(0.4, 0.8))
    if rng.random() < 0.4:  # a dusty film as well
        film = np.clip(_smooth_noise(rng, size, 5) * 0.5 + 0.3, 0, 1) * mask
        image[:] = _lerp(image, _bgr(30, 0.2, 0.7), film * rng.uniform(0.1, 0.3))


def _highlights(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray) -> None:
    """Specular sheen from a waxy cuticle: soft whitish blobs."""
    size = image.shape[0]
    sheen = np.zeros((size, size), np.float32)
    for x, y in _points_inside(rng, mask, int(rng.integers(1, 5))):
        axes = (int(rng.uniform(0.03, 0.12) * size), int(rng.uniform(0.01, 0.05) * size))
        cv2.ellipse(sheen, (int(x), int(y)), axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    sheen = _blur(sheen, rng.uniform(1.5, 4.0)) * mask
    image[:] = _lerp(image, np.array([0.95, 0.97, 0.97], np.float32), sheen * rng.uniform(0.3, 0.7))


def _insect_holes(
    rng: np.random.Generator, mask: np.ndarray, surface: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Chewed holes and margin bites (the background shows through), with a thin brown rim."""
    size = mask.shape[0]
    holes = np.zeros((size, size), np.uint8)
    for x, y in _points_inside(rng, mask, int(rng.integers(1, 7))):
        radius = rng.uniform(0.008, 0.035) * size
        jitter = rng.uniform(0.6, 1.4, 9)
        theta = np.linspace(0, 2 * np.pi, 9, endpoint=False)
        polygon = np.stack(
            [x + radius * jitter * np.cos(theta), y + radius * jitter * np.sin(theta)], axis=1
        )
        cv2.fillPoly(holes, [np.round(polygon * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    holes = holes.astype(np.float32) / 255.0
    rim = np.clip(_blur(holes, 1.0) * 2.5 - holes * 2.5, 0, 1) * mask
    brown = _bgr(rng.uniform(20, 40), rng.uniform(0.4, 0.8), rng.uniform(0.25, 0.5))
    surface = _lerp(surface, brown, rim * rng.uniform(0.3, 0.8))
    return mask * (1.0 - holes), surface


# ---------------------------------------------------------------------------------------------
# The camera
# ---------------------------------------------------------------------------------------------


def _lighting(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Exposure, a light falling off across the frame, lens vignetting and a white-balance cast."""
    size = image.shape[0]
    xs, ys = _grid(size)
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
    xs, ys = _grid(size)
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * np.pi)
        signed = (xs - size / 2) * math.cos(angle) + (ys - size / 2) * math.sin(angle)
        wavy = signed + 0.06 * size * _smooth_noise(rng, size, 3)
        region = _sigmoid((wavy - rng.uniform(-0.3, 0.3) * size) / rng.uniform(1.0, 6.0))
    else:
        region = np.zeros((size, size), np.float32)
        for _ in range(int(rng.integers(2, 7))):
            centre = (int(rng.integers(0, size)), int(rng.integers(0, size)))
            axes = (int(rng.uniform(0.05, 0.3) * size), int(rng.uniform(0.03, 0.15) * size))
            cv2.ellipse(region, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        region = _blur(region, rng.uniform(2.0, 6.0))
    return image * (1.0 - rng.uniform(0.25, 0.6) * region)[..., None]


def _jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok, "OpenCV failed to encode an in-memory JPEG"
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


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
    background_kind = rng.choice(len(_BACKGROUNDS), p=_BACKGROUND_ODDS)
    image = _BACKGROUNDS[background_kind](rng, size).astype(np.float32)

    leaf = _Leaf(rng, size)
    mask = leaf.mask()
    surface, veins = _leaf_surface(rng, leaf, mask)

    # Confounders appear on both classes (a diseased leaf can be dusty too); natural yellowing is
    # commoner on healthy leaves so that "yellow" is not a synonym for "diseased".
    if rng.random() < (0.15 if diseased else 0.4):
        surface = _yellowing(rng, leaf, surface, mask)
    if diseased:
        severity = rng.uniform(0.25, 1.0)  # from a few small early spots to a ruined leaf
        kinds = [rng.choice(3, p=(0.5, 0.25, 0.25))]
        if rng.random() < 0.35:
            kinds.append(rng.choice(3))
        for kind in sorted(set(int(k) for k in kinds)):
            if kind == 0:
                surface, disease = _spots(rng, leaf, surface, mask, severity)
            elif kind == 1:
                surface = _blight(rng, leaf, surface, mask, severity)
                disease = "blight"
            else:
                surface, disease = _mosaic(rng, leaf, surface, mask, veins, severity)
            diseases.append(disease)
    insect_holes = rng.random() < 0.25
    if insect_holes:
        mask, surface = _insect_holes(rng, mask, surface)
    if drawn is not None:
        drawn.update(diseases=sorted(diseases), severity=severity, insect_holes=insect_holes)

    # The leaf's own shadow on the ground, then the petiole, then the blade over both.
    offset = rng.normal(0, 0.025 * size, 2)
    shift = np.float32([[1, 0, offset[0]], [0, 1, offset[1]]])
    drop = cv2.warpAffine(mask, shift, (size, size))
    image = image * (1.0 - rng.uniform(0.2, 0.55) * _blur(drop, rng.uniform(1.5, 4.0)))[..., None]
    stalk = leaf.midrib(leaf.u_base - rng.uniform(0.05, 0.25), leaf.u_base + 0.02, 8)
    stalk_colour = _bgr(rng.uniform(40, 100), rng.uniform(0.3, 0.7), rng.uniform(0.25, 0.6))
    cv2.polylines(
        image,
        [np.round(stalk * 16).astype(np.int32)],
        False,
        tuple(map(float, stalk_colour)),
        max(1, round(size / 70)),
        cv2.LINE_AA,
        shift=4,
    )
    image = _lerp(image, surface, mask)

    if rng.random() < 0.45:
        _dust(rng, image, mask)
    if rng.random() < 0.4:
        _highlights(rng, image, mask)
    if rng.random() < 0.35:
        image = _cast_shadow(rng, image)
    image = _lighting(rng, image)
    if rng.random() < 0.3:
        image = _blur(image, rng.uniform(0.3, 1.0))
    noise = rng.normal(0, rng.uniform(0.004, 0.03), (size, size, 1)) + rng.normal(
        0, rng.uniform(0.002, 0.012), (size, size, 3)
    )
    image = np.clip((image + noise.astype(np.float32)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:  # an earlier, harsher compression (a phone, a messaging app)
        image = _jpeg_roundtrip(image, int(rng.integers(40, 90)))
    return image


def _image_rng(seed: int, split: str, class_name: str, index: int) -> np.random.Generator:
    """One generator per image, so its bytes depend only on (seed, split, class, index)."""
    return np.random.default_rng([seed, SPLITS.index(split), CLASSES.index(class_name), index])


def describe_leaf(seed: int, relative_path: str, image_size: int = 160) -> dict[str, Any]:
    """What the generator drew for the leaf it wrote at `relative_path` (as `generate_dataset`
    names it under its root, e.g. "test/Diseased/diseased_0007.jpg") with `seed` and
    `image_size`, the size it was generated at (`data.raw_size`; how many numbers some steps
    draw depends on it, so another size describes another leaf). The leaf is rendered again,
    so this costs what generating it did (see `render_leaf`'s `drawn`)."""
    parts = Path(relative_path).parts
    if len(parts) != 3 or parts[0] not in SPLITS or parts[1] not in CLASSES:
        raise DataError(f"{relative_path}: not a path the leaf generator writes")
    split, class_name, name = parts
    if not _OWN_FILE.match(name) or not name.startswith(class_name.lower() + "_"):
        raise DataError(f"{relative_path}: not a file name the leaf generator writes")
    index = int(name.split("_")[1].split(".")[0])
    drawn: dict[str, Any] = {}
    render_leaf(
        _image_rng(seed, split, class_name, index), class_name == "Diseased", image_size, drawn
    )
    return drawn


def _check_size(name: str, value: int) -> None:
    if value < 2 or value % 2:
        raise ConfigError(f"{name} must be an even number >= 2 (two balanced classes), got {value}")


def generate_dataset(
    root: Path,
    train_size: int = 800,
    test_size: int = 200,
    seed: int = 0,
    image_size: int = 160,
) -> dict[str, dict[str, int]]:
    """Write the Healthy/Diseased leaf dataset under `root` and return its counts.

    root: folder that receives `train/` and `test/`, each with `Healthy/` and `Diseased/`.
    train_size, test_size: images per split, split evenly between the two classes (even, >= 2).
    seed: non-negative integer; the same seed writes byte-identical files.
    image_size: side of the square images in pixels (>= 64; 160 leaves the 128×128 resize real).

    Files this generator wrote earlier (`healthy_NNNN.jpg`, `diseased_NNNN.jpg`) beyond the new
    counts are removed; any other file or folder under `<root>/<split>/` is a DataError, as it
    would join the dataset (or become a third class) unnoticed.
    Returns {"train": {"Healthy": n, "Diseased": n}, "test": {...}}.
    """
    root = Path(root)
    _check_size("train_size", train_size)
    _check_size("test_size", test_size)
    if seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed}")
    if image_size < 64:
        raise ConfigError(f"image_size must be at least 64 pixels, got {image_size}")

    plan = {"train": train_size // 2, "test": test_size // 2}
    for split in SPLITS:
        if (root / split).is_dir():
            for path in sorted((root / split).iterdir()):
                if path.name not in CLASSES:
                    raise DataError(f"{path}: not a class of this dataset; remove it first")
        for class_name in CLASSES:
            folder = root / split / class_name
            if folder.exists() and not folder.is_dir():
                raise DataError(f"{folder}: exists and is not a folder")
            folder.mkdir(parents=True, exist_ok=True)
            wanted = {f"{class_name.lower()}_{i:04d}.jpg" for i in range(plan[split])}
            for path in sorted(folder.iterdir()):
                if not _OWN_FILE.match(path.name):
                    raise DataError(f"{path}: not written by the leaf generator; remove it first")
                if path.name not in wanted:
                    path.unlink()

    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    counts: dict[str, dict[str, int]] = {}
    with tqdm(total=train_size + test_size, desc="leaves", unit="img", disable=None) as bar:
        for split in SPLITS:
            counts[split] = {}
            for class_name in CLASSES:
                folder = root / split / class_name
                for index in range(plan[split]):
                    rng = _image_rng(seed, split, class_name, index)
                    image = render_leaf(rng, class_name == "Diseased", image_size)
                    path = folder / f"{class_name.lower()}_{index:04d}.jpg"
                    if not cv2.imwrite(str(path), image, params):
                        raise DataError(f"{path}: OpenCV could not write the image")
                    bar.update()
                counts[split][class_name] = plan[split]
    return counts


def contact_sheet(root: Path, per_class: int, out: Path, split: str = "train") -> Path:
    """A PNG grid of the first `per_class` images of each class, one labelled row per class.

    root: a dataset folder in the layout `generate_dataset` writes; split: "train" or "test".
    """
    root, out = Path(root), Path(out)
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if per_class < 1:
        raise ConfigError(f"per_class must be at least 1, got {per_class}")
    rows = []
    for class_name in CLASSES:
        folder = root / split / class_name
        paths = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
        if len(paths) < per_class:
            raise DataError(f"{folder}: needs {per_class} .jpg images, found {len(paths)}")
        tiles = []
        for path in paths[:per_class]:
            tile = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if tile is None:
                raise DataError(f"{path}: not a readable image")
            tiles.append(tile)
        side = tiles[0].shape[0]
        tiles = [cv2.resize(t, (side, side), interpolation=cv2.INTER_AREA) for t in tiles]
        label = np.full((side, 150, 3), 255, np.uint8)
        cv2.putText(
            label, class_name, (8, side // 2 + 8), cv2.FONT_HERSHEY_SIMPLEX, 0.75, (0, 0, 0), 2
        )
        gap = np.full((side, 4, 3), 255, np.uint8)
        row = [label]
        for tile in tiles:
            row += [tile, gap]
        rows.append(np.hstack(row))
        rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), np.vstack(rows[:-1])):
        raise DataError(f"{out}: OpenCV could not write the contact sheet")
    return out
