"""One image file → the RGB uint8 square the plant CNN takes, decoded with OpenCV.

RGB as Keras feeds the text's model (OpenCV decodes BGR); grayscale, CMYK, 16-bit and
transparent images converted (alpha composited on white); stretched to image_size like Keras'
`target_size`; images below `min_side` refused rather than invented by upscaling; large JPEGs
decoded at reduced scale so a huge photo never exists at full size. Each conversion is named in
`SquareImage.conversions`, so the data report shows it. docs/design.md gives each decision's why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# What Keras (png, jpg, jpeg, bmp, ppm, tif, tiff) and torchvision (+ pgm, webp) accept.
IMAGE_SUFFIXES = frozenset(
    {".bmp", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp"}
)

# 8 megapixels decode to 24 MB of BGR: the size above which a JPEG is decoded at reduced scale.
REDUCE_ABOVE_PIXELS = 8_000_000

_REDUCED_COLOR_FLAGS = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}
# Start-of-frame markers C0-CF, except C4 (Huffman tables), C8 (reserved), CC (arithmetic table).
_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_START_OF_SCAN = 0xDA


class UnusableImage(Exception):
    """A file that cannot become a training image; the message is the reason the report lists."""


@dataclass(frozen=True)
class SquareImage:
    rgb: np.ndarray  # image_size × image_size × 3, uint8, RGB
    conversions: tuple[str, ...]  # what was changed beyond BGR→RGB and resizing, for the report


@dataclass(frozen=True)
class _JpegFrame:
    height: int
    width: int
    components: int  # 1 grayscale, 3 YCbCr/RGB, 4 CMYK/YCCK


def load_square_rgb(path: str | Path, image_size: int, min_side: int = 1) -> SquareImage:
    """Decode `path` and resize it to image_size × image_size RGB uint8.

    Raises UnusableImage(reason) for files that cannot be used: empty, unreadable, corrupt or
    truncated, an unsupported sample type, or a short side below `min_side`.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise UnusableImage(f"cannot read the file ({err.strerror or err})") from err
    if data.size == 0:
        raise UnusableImage("empty file (0 bytes)")
    try:
        if data[:3].tobytes() == b"\xff\xd8\xff":
            pixels, conversions, (height, width) = _decode_jpeg(data, image_size)
        else:
            pixels, conversions, (height, width) = _decode_other(data)
    except cv2.error as err:  # e.g. OpenCV's pixel-count limit
        raise UnusableImage(f"OpenCV cannot decode it ({err.err})") from err
    if min(height, width) < min_side:
        raise UnusableImage(f"too small ({width}×{height}; min_side is {min_side})")
    if pixels.shape[0] < image_size or pixels.shape[1] < image_size:
        conversions = (*conversions, "upscaled")
    # colour order last, on the small image: one full-size copy less for a large one
    square = resize_square(pixels, image_size)
    to_rgb = cv2.COLOR_GRAY2RGB if square.ndim == 2 else cv2.COLOR_BGR2RGB
    return SquareImage(cv2.cvtColor(square, to_rgb), conversions)


def resize_square(pixels: np.ndarray, image_size: int) -> np.ndarray:
    """Stretch to image_size × image_size: INTER_AREA to shrink, INTER_CUBIC when a side grows."""
    height, width = pixels.shape[:2]
    shrinking = height >= image_size and width >= image_size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cv2.resize(pixels, (image_size, image_size), interpolation=interpolation)


def _decode_jpeg(
    data: np.ndarray, image_size: int
) -> tuple[np.ndarray, tuple[str, ...], tuple[int, int]]:
    frame = _read_jpeg_frame(data)
    if frame is None:
        raise UnusableImage("corrupt JPEG (no frame header before the image data)")
    factor = jpeg_reduction(frame.height, frame.width, image_size)
    bgr = cv2.imdecode(data, _REDUCED_COLOR_FLAGS[factor])
    if bgr is None:
        raise UnusableImage("corrupt or truncated JPEG (OpenCV cannot decode it)")
    conversions = {1: ("grayscale→RGB",), 4: ("CMYK→RGB",)}.get(frame.components, ())
    return bgr, conversions, (frame.height, frame.width)


def jpeg_reduction(height: int, width: int, image_size: int) -> int:
    """The libjpeg scale divisor (1, 2, 4 or 8) for a JPEG of height × width."""
    if height * width <= REDUCE_ABOVE_PIXELS:
        return 1
    return next((f for f in (8, 4, 2) if min(height, width) // f >= image_size), 1)


def _read_jpeg_frame(data: np.ndarray) -> _JpegFrame | None:
    """Walk the marker segments from SOI to the start-of-frame segment (size, components)."""
    position = 2
    while position + 10 <= data.size:
        if data[position] != 0xFF:
            return None
        marker = int(data[position + 1])
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker in _JPEG_FRAME_MARKERS:
            # FF Cn, length (2), sample precision (1), height (2), width (2), components (1)
            return _JpegFrame(
                height=_u16(data, position + 5),
                width=_u16(data, position + 7),
                components=int(data[position + 9]),
            )
        if marker == _JPEG_START_OF_SCAN:
            return None
        position += 2 + _u16(data, position + 2)
    return None


def _u16(data: np.ndarray, position: int) -> int:
    return int(data[position]) << 8 | int(data[position + 1])


def _decode_other(data: np.ndarray) -> tuple[np.ndarray, tuple[str, ...], tuple[int, int]]:
    """8-bit BGR or grayscale pixels, whatever the file's depth and alpha."""
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise UnusableImage("not a readable image (unknown format, corrupt or truncated)")
    conversions: list[str] = []
    if image.dtype == np.uint16:
        # x × 255 / 65535 = x / 257, rounded to nearest by convertScaleAbs' saturate_cast
        image = cv2.convertScaleAbs(image, alpha=1 / 257)
        conversions.append("16-bit→8-bit")
    elif image.dtype != np.uint8:
        raise UnusableImage(f"unsupported sample type {image.dtype} (8- and 16-bit images only)")
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels == 1:
        conversions.append("grayscale→RGB")
    elif channels == 4:
        image = _composite_on_white(image)
        conversions.append("RGBA→RGB")
    elif channels != 3:
        raise UnusableImage(f"unsupported channel count {channels}")
    return image, tuple(conversions), image.shape[:2]


def _composite_on_white(bgra: np.ndarray) -> np.ndarray:
    """colour × alpha + white × (1 − alpha), rounded; the largest sum, 255² + 127, fits uint16."""
    alpha = bgra[:, :, 3:].astype(np.uint16)
    colour = bgra[:, :, :3].astype(np.uint16)
    # in place: a 6000×4000 cut-out needs one 144 MB uint16 copy, not one per operation
    colour *= alpha
    np.subtract(255, alpha, out=alpha)
    alpha *= 255
    colour += alpha
    colour += 127
    colour //= 255
    return colour.astype(np.uint8)
