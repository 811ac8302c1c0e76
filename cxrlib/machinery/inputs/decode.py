"""Decode one image as it really is, and check it is a plausible picture: pure functions, no cache.

Pillow decodes every file. The size the file's header states is checked against a pixel budget, MAX_PIXELS,
before any pixel is decoded, so a decompression bomb costs nothing; any failure of the decoder is a BadImage of
one line. 16-bit PNGs are scaled by the bit depth the file really uses (its sBIT chunk, else the smallest common
depth that holds its largest value), so a 12-bit detector image is neither nearly black nor clipped to white.
Palette, grey+alpha, RGB and RGBA images become grey by the ITU-R 601 luma, transparent pixels counting as black.
"""
from __future__ import annotations

import io
import struct
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cxrlib.core.errors import DataError

# Bump when decoding changes, so arrays cached by older code are not served.
# 3: the downscale to the target size reduces by whole blocks first (REDUCING_GAP).
DECODE_VERSION = 3
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Depths detectors and exporters use; a 16-bit file without sBIT is read at the smallest that fits.
BIT_DEPTHS = (8, 10, 12, 14, 16)
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
# A decode with this share of pixels at the extreme is not a radiograph (a clipped 16-bit file, a blank page).
EXTREME_SHARE = 0.95
WHITE_FROM, BLACK_UP_TO = 250, 5
# The pixel budget: an image whose header states more pixels is a bad image, refused before decoding.
# 6,000 x 6,000 = 36 million: 34 times NIH's 1,024 px images, 4 times a 3,000 px detector image, and
# below Pillow's own bomb warning (89 million), which it therefore never reaches.
MAX_PIXELS = 6000 * 6000
# Downscaling first averages whole blocks of pixels (Image.reduce, by the largest whole factor that keeps the
# image at least REDUCING_GAP times the target size), then resizes (antialiased bilinear) the rest of the way:
# NIH's 1,024 px to 250 px is a 4 x 4 block average, then 256 to 250 px, in a third of the time of one resize.
REDUCING_GAP = 1.0


class BadImage(DataError):
    """An image file that cannot be decoded, or decodes to something that is not a picture."""


def png_chunks(data: bytes):
    """(type, payload) of each whole chunk of a PNG, in order, up to IEND or the end of the data; none for other
    formats."""
    at = len(PNG_SIGNATURE) if data.startswith(PNG_SIGNATURE) else len(data)
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        if kind == b"IEND" or at + 12 + length > len(data):
            return
        yield kind, data[at + 8:at + 8 + length]
        at += 12 + length


def bits_used(top: int, sbit=None, container: int = 16) -> int:
    """The bit depth a wide image's values fill: sBIT's, unless values above it say the writer scaled them to the
    container, as the PNG standard asks; without sBIT, the smallest common depth that holds the largest value."""
    if sbit:
        return int(sbit) if top < 2 ** sbit else container
    return next((b for b in BIT_DEPTHS if top < 2 ** b), container)


def grey_pixels(image: Image.Image, sbit=None) -> np.ndarray:
    """8-bit grey of any PIL image, scaling wide values by their real depth and compositing alpha on black."""
    if image.mode in WIDE_MODES:
        values = np.asarray(image).astype(np.int64)
        if values.size and values.min() < 0:
            raise ValueError(f"negative pixel values (down to {values.min()}) in a {image.mode} image")
        bits = bits_used(int(values.max()) if values.size else 0, sbit)
        return np.clip(np.rint(values * (255 / (2 ** bits - 1))), 0, 255).astype(np.uint8)
    if image.mode == "F":
        values = np.asarray(image, np.float64)
        low, high = float(values.min()), float(values.max())
        return np.rint((values - low) * (255 / max(high - low, 1e-12))).astype(np.uint8)
    if image.mode in ("LA", "La", "RGBA", "RGBa", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        grey = np.asarray(rgba.convert("RGB").convert("L"), np.float64)
        alpha = np.asarray(rgba, np.float64)[..., 3]
        return np.rint(grey * alpha / 255).astype(np.uint8)
    if image.mode == "P":
        image = image.convert("RGB")
    return as_array(image if image.mode == "L" else image.convert("L"))


def as_array(image: Image.Image) -> np.ndarray:
    """A new array of an 8-bit grey PIL image's pixels, copied by Pillow in C (np.asarray's tobytes is 10x slower)."""
    pixels = np.empty((image.height, image.width), np.uint8)
    if pixels.size:
        view = Image.frombuffer("L", image.size, pixels, "raw", "L", 0, 1)  # shares pixels' memory
        view.readonly = False  # so paste writes through to pixels instead of copying the view first
        view.paste(image)
    return pixels


def problem(pixels: np.ndarray) -> str:
    """Why a decoded image is not a plausible radiograph ('' when it is)."""
    if pixels.size == 0:
        return "empty image (no pixels)"
    low, high = int(pixels.min()), int(pixels.max())
    if low == high:
        return f"constant image (every pixel is {low})"
    # count_nonzero takes a fifth of mean's time
    white = np.count_nonzero(pixels >= WHITE_FROM) / pixels.size if high >= WHITE_FROM else 0.0
    if white >= EXTREME_SHARE:
        return f"nearly all white ({white:.0%} of pixels at {WHITE_FROM} or more)"
    black = np.count_nonzero(pixels <= BLACK_UP_TO) / pixels.size if low <= BLACK_UP_TO else 0.0
    if black >= EXTREME_SHARE:
        return f"nearly all black ({black:.0%} of pixels at {BLACK_UP_TO} or less)"
    return ""


def png_header_size(data: bytes):
    """The largest (width, height) any IHDR chunk of a PNG states, wherever it sits; None for other formats. The
    standard wants one IHDR, first, but Pillow takes the last before the image data: a bomb could hide behind another
    chunk or a small first IHDR."""
    sizes = [struct.unpack(">II", body[:8]) for kind, body in png_chunks(data) if kind == b"IHDR" and len(body) >= 8]
    return max(sizes, key=lambda size: size[0] * size[1], default=None)


def check_budget(width: int, height: int) -> None:
    """Refuse an image whose stated size exceeds MAX_PIXELS before any of its pixels is decoded."""
    if width * height > MAX_PIXELS:
        raise BadImage(f"too large: {width} x {height} pixels ({width * height:,}), over the budget of "
                       f"{MAX_PIXELS:,} pixels (MAX_PIXELS)")


@contextmanager
def opened(data: bytes):
    """The image with only its header read and its size within the budget; whatever fails inside (the decoder's
    errors, its warnings raised as errors) is a BadImage of one line."""
    stated = png_header_size(data)
    if stated:
        check_budget(*stated)  # before Pillow reads further, so a bomb is named by its size
    try:
        with Image.open(io.BytesIO(data)) as image:
            check_budget(*image.size)  # what Pillow will allocate, whatever the format
            yield image
    except BadImage:
        raise
    except UnidentifiedImageError as err:
        raise BadImage(f"cannot decode: not an image format Pillow reads (starts with {data[:8]!r})") from err
    except Exception as err:  # noqa: BLE001 - any decoder failure is a bad image, never a traceback
        text = " ".join(str(err).split()) or type(err).__name__  # the error's type where it has no message
        bomb = isinstance(err, (Image.DecompressionBombError, Image.DecompressionBombWarning))
        raise BadImage(f"{'too large' if bomb else 'cannot decode'}: {text}") from err


def decode_bytes(data: bytes) -> np.ndarray:
    """The file's full-size 8-bit grey pixels: the one place pixels are decoded; BadImage when they cannot be had."""
    # the depth each channel's values really use, where the file says
    sbit = next((body for kind, body in png_chunks(data) if kind == b"sBIT"), None)
    with opened(data) as image:
        return grey_pixels(image, max(sbit) if sbit else None)


def inspect_header(data: bytes) -> tuple:
    """(width, height, problem) from the header alone, decoding no pixel; problem is None when the header is fine."""
    try:
        with opened(data) as image:
            return image.size[0], image.size[1], None
    except BadImage as err:
        width, height = png_header_size(data) or (0, 0)
        return width, height, str(err)


def checked_pixels(path: Path) -> np.ndarray:
    """Full-size grey pixels of a usable image; BadImage saying why (without the file's name) otherwise."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise BadImage(f"cannot read: {err.strerror or err}") from err
    pixels = decode_bytes(data)
    reason = problem(pixels)
    if reason:
        raise BadImage(reason)
    return pixels


def resized(pixels: np.ndarray, size: int, harmonise_to=None) -> np.ndarray:
    """size x size; with harmonise_to, first brought down to that native size."""
    gray = Image.fromarray(pixels)
    if harmonise_to and min(gray.size) > harmonise_to:
        gray = gray.resize((harmonise_to, harmonise_to), Image.LANCZOS)
    if gray.size != (size, size):
        gray = gray.resize((size, size), Image.BILINEAR, reducing_gap=REDUCING_GAP)
    return as_array(gray)
