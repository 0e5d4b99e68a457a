"""What a leaf carries on its surface: disease lesions, and the look-alikes healthy leaves carry.

Diseases (spots, blight, mosaic) come at several severities, down to a few small early spots.
Healthy leaves get what a camera sees on healthy plants too (yellowing, dust, highlights, insect
holes), so per-image colour statistics say little about the class: local structure separates them.
"""

from __future__ import annotations

import cv2
import numpy as np

from dlrepro.data.leaves.canvas import (
    bgr,
    blur,
    ellipse,
    lerp,
    points_inside,
    sigmoid,
    smooth_noise,
)
from dlrepro.data.leaves.leaf import Leaf


def yellowing(
    rng: np.random.Generator, leaf: Leaf, surface: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """Senescence: a broad, smooth yellowing from the tip, the margin or all over, no edges."""
    size = leaf.size
    yellow = bgr(rng.uniform(40, 70), rng.uniform(0.5, 0.9), rng.uniform(0.55, 0.9))
    style = rng.integers(3)
    if style == 0:
        ramp = (leaf.u_map - leaf.u_base) / (leaf.u_tip - leaf.u_base)
    elif style == 1:
        inside = cv2.distanceTransform((mask > 0.5).astype(np.uint8), cv2.DIST_L2, 3)
        ramp = 1.0 - np.clip(inside / (0.25 * leaf.length_px), 0, 1)
    else:
        ramp = np.full((size, size), 0.7, np.float32)
    ramp = np.clip(ramp + 0.15 * smooth_noise(rng, size, 3), 0, 1)
    return lerp(surface, yellow, ramp * rng.uniform(0.3, 0.85))


def spots(
    rng: np.random.Generator, leaf: Leaf, surface: np.ndarray, mask: np.ndarray, severity: float
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
    centres = points_inside(rng, mask, count)
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
        ellipse(core, centre, axes, angle, -1)
        ellipse(rim, centre, axes, angle, 1)
        ellipse(halo, centre, (axes[0] * halo_factor, axes[1] * halo_factor), angle, -1)
        if concentric and major > 3:
            ellipse(rim, centre, (axes[0] * 0.55, axes[1] * 0.55), angle, 1)
    roughness = 1.0 + 0.35 * smooth_noise(rng, size, size / 5)
    core = np.clip(blur(core, 0.6) * roughness, 0, 1) * mask
    rim = np.clip(blur(rim, 0.4), 0, 1) * mask
    halo = np.clip(blur(halo, rng.uniform(1.0, 2.5)), 0, 1) * mask
    halo_strength = rng.uniform(0.65, 1.0)

    necrotic = bgr(rng.uniform(15, 38), rng.uniform(0.45, 0.85), rng.uniform(0.18, 0.45))
    if rng.random() < 0.3:  # pale, greyish centres (e.g. Cercospora, Septoria)
        necrotic = bgr(rng.uniform(25, 45), rng.uniform(0.1, 0.3), rng.uniform(0.5, 0.75))
    halo_colour = bgr(rng.uniform(45, 62), rng.uniform(0.55, 0.95), rng.uniform(0.6, 0.9))
    speckle = 1.0 + 0.15 * rng.standard_normal((size, size)).astype(np.float32)
    surface = lerp(surface, halo_colour, halo * halo_strength)
    surface = lerp(surface, necrotic * speckle[..., None], core)
    surface = lerp(surface, necrotic * 0.45, rim * rng.uniform(0.4, 0.9))
    return surface, "spots, early" if early else "spots"


def blight(
    rng: np.random.Generator, leaf: Leaf, surface: np.ndarray, mask: np.ndarray, severity: float
) -> np.ndarray:
    """Blight or scorch: dead tissue eating in from parts of the margin, a yellow front ahead."""
    size = leaf.size
    inside = cv2.distanceTransform((mask > 0.5).astype(np.uint8), cv2.DIST_L2, 3)
    depth: float | np.ndarray = leaf.length_px * (0.06 + 0.15 * severity) * rng.uniform(0.8, 1.2)
    depth = depth * (1.0 + 0.45 * smooth_noise(rng, size, 6))
    # Only some stretches of the margin, more often near the tip.
    towards_tip = (leaf.u_map - leaf.u_base) / (leaf.u_tip - leaf.u_base)
    stretches = sigmoid(
        3.0 * smooth_noise(rng, size, 4) + rng.uniform(0, 2.5) + 2.0 * (towards_tip - 0.5)
    )
    dead = sigmoid((depth - inside) / 0.8) * stretches * mask
    band = rng.uniform(1.5, 5.0)
    front = np.clip(sigmoid((depth + band - inside) / 1.0) * stretches * mask - dead, 0, 1)
    brown = bgr(rng.uniform(15, 35), rng.uniform(0.4, 0.85), rng.uniform(0.2, 0.55))
    texture = 1.0 + 0.2 * smooth_noise(rng, size, size / 4)
    yellow = bgr(rng.uniform(42, 65), rng.uniform(0.5, 0.9), rng.uniform(0.55, 0.9))
    surface = lerp(surface, yellow, front * rng.uniform(0.5, 0.95))
    surface = lerp(surface, brown * texture[..., None], dead)
    edge = np.clip(dead * (1 - dead) * 4, 0, 1)  # a darker line where the dead tissue stops
    return lerp(surface, brown * 0.5, edge * rng.uniform(0.2, 0.7))


def mosaic(
    rng: np.random.Generator,
    leaf: Leaf,
    surface: np.ndarray,
    mask: np.ndarray,
    veins: np.ndarray,
    severity: float,
) -> tuple[np.ndarray, str]:
    """Virus mosaic (sharp-edged light and dark green patches) or interveinal chlorosis; and
    which ("mosaic, patches" or "mosaic, interveinal")."""
    size = leaf.size
    pale = bgr(rng.uniform(55, 85), rng.uniform(0.45, 0.8), rng.uniform(0.6, 0.9))
    if rng.random() < 0.6:
        blobs = smooth_noise(rng, size, rng.uniform(0.06, 0.12) * size)
        patches = sigmoid((blobs - rng.uniform(-0.2, 0.5)) * 6.0) * mask
        surface = lerp(surface, pale, patches * rng.uniform(0.6, 0.65 + 0.35 * severity))
        surface = surface * (1.0 - 0.25 * np.clip(-blobs - 0.8, 0, 1) * mask)[..., None]
        return surface, "mosaic, patches"
    near_vein = np.clip(blur(veins, rng.uniform(1.5, 3.0)) * 4.0, 0, 1)
    blotch = sigmoid(2.5 * smooth_noise(rng, size, 0.1 * size) + 1.0)
    between = (1.0 - near_vein) * blotch * mask
    surface = lerp(surface, pale, between * rng.uniform(0.6, 0.65 + 0.35 * severity))
    return surface, "mosaic, interveinal"


def dust(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray) -> None:
    """Soil and pollen specks on the blade: tiny dots with no halo."""
    size = image.shape[0]
    specks = np.zeros((size, size), np.float32)
    for x, y in points_inside(rng, mask, int(rng.integers(10, 70))):
        radius = int(rng.random() < 0.3)
        cv2.circle(specks, (int(x), int(y)), radius, rng.uniform(0.4, 1.0), -1, cv2.LINE_AA)
    colour = bgr(rng.uniform(20, 50), rng.uniform(0, 0.5), rng.uniform(0.2, 0.95))
    image[:] = lerp(image, colour, specks * rng.uniform(0.4, 0.8))
    if rng.random() < 0.4:  # a dusty film as well
        film = np.clip(smooth_noise(rng, size, 5) * 0.5 + 0.3, 0, 1) * mask
        image[:] = lerp(image, bgr(30, 0.2, 0.7), film * rng.uniform(0.1, 0.3))


def highlights(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray) -> None:
    """Specular sheen from a waxy cuticle: soft whitish blobs."""
    size = image.shape[0]
    sheen = np.zeros((size, size), np.float32)
    for x, y in points_inside(rng, mask, int(rng.integers(1, 5))):
        axes = (int(rng.uniform(0.03, 0.12) * size), int(rng.uniform(0.01, 0.05) * size))
        cv2.ellipse(sheen, (int(x), int(y)), axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    sheen = blur(sheen, rng.uniform(1.5, 4.0)) * mask
    image[:] = lerp(image, np.array([0.95, 0.97, 0.97], np.float32), sheen * rng.uniform(0.3, 0.7))


def insect_holes(
    rng: np.random.Generator, mask: np.ndarray, surface: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Chewed holes and margin bites (the background shows through), with a thin brown rim."""
    size = mask.shape[0]
    holes: np.ndarray = np.zeros((size, size), np.uint8)  # drawn as uint8, then scaled to 0..1
    for x, y in points_inside(rng, mask, int(rng.integers(1, 7))):
        radius = rng.uniform(0.008, 0.035) * size
        jitter = rng.uniform(0.6, 1.4, 9)
        theta = np.linspace(0, 2 * np.pi, 9, endpoint=False)
        polygon = np.stack(
            [x + radius * jitter * np.cos(theta), y + radius * jitter * np.sin(theta)], axis=1
        )
        cv2.fillPoly(holes, [np.round(polygon * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    holes = holes.astype(np.float32) / 255.0
    rim = np.clip(blur(holes, 1.0) * 2.5 - holes * 2.5, 0, 1) * mask
    brown = bgr(rng.uniform(20, 40), rng.uniform(0.4, 0.8), rng.uniform(0.25, 0.5))
    surface = lerp(surface, brown, rim * rng.uniform(0.3, 0.8))
    return mask * (1.0 - holes), surface
