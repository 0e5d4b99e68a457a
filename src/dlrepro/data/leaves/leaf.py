"""One leaf's geometry (outline, bent midrib, veins) and the colour of its healthy surface.

Shape, size, rotation, bend, hue and vein pattern all vary, so that no outline or colour tells
the classes apart.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from dlrepro.data.leaves.canvas import bgr, blur, lerp, pixel_grid, smooth_noise

_SHAPES = ("ovate", "elliptic", "obovate", "lanceolate", "cordate", "palmate", "pinnate")
_SHAPE_ODDS = (0.2, 0.15, 0.1, 0.15, 0.15, 0.12, 0.13)


class Leaf:
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
        xs, ys = pixel_grid(size)
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


def leaf_surface(
    rng: np.random.Generator, leaf: Leaf, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The healthy leaf's colour image and its vein map."""
    size = leaf.size
    hue = rng.uniform(65, 135)
    colour = bgr(hue, rng.uniform(0.35, 0.9), rng.uniform(0.3, 0.75))
    # Gentle, broad colour variation (never the mottled contrast of a mosaic virus).
    tint = bgr(hue + rng.uniform(-25, 25), rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.8))
    surface = lerp(
        np.broadcast_to(colour, (size, size, 3)),
        tint,
        np.clip(0.35 + 0.25 * smooth_noise(rng, size, 3), 0, 1),
    )
    fine = smooth_noise(rng, size, size / 3)
    surface = surface * (1.0 + 0.05 * fine)[..., None]

    # Thickness shading: darker at the margin, and one half of the blade tilted off the light.
    inside = cv2.distanceTransform((mask > 0.5).astype(np.uint8), cv2.DIST_L2, 3)
    bulge = np.sqrt(np.clip(inside / (0.08 * leaf.length_px), 0, 1))
    fold = np.where(leaf.v_map > 0, 1.0, 1.0 - rng.uniform(0, 0.2)).astype(np.float32)
    surface = surface * ((0.8 + 0.2 * bulge) * fold)[..., None]

    veins = leaf.veins(rng) * mask
    vein_colour = bgr(hue - rng.uniform(0, 30), rng.uniform(0.2, 0.6), rng.uniform(0.55, 0.95))
    if rng.random() < 0.25:  # some species have veins darker than the blade
        vein_colour = colour * 0.55
    surface = lerp(surface, vein_colour, blur(veins, 0.5) * rng.uniform(0.25, 0.7))
    return surface, veins
