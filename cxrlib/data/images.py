"""Decode each image as it really is, check it is a plausible picture, resize it once and cache the result.

16-bit PNGs are scaled by the bit depth the file actually uses (its sBIT chunk, else the smallest
common depth that holds its largest value), so a 12-bit detector image is not read as nearly black
or clipped to white. Palette, grey+alpha, RGB and RGBA images become grey by the ITU-R 601 luma,
transparent pixels counting as no signal (black, like the air around a chest).
"""
from __future__ import annotations

import hashlib
import io
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.std import tqdm  # plain text, never a notebook widget the static book cannot render

from cxrlib.config import cache_dir
from cxrlib.data.errors import DataError

# Decoding a few hundred images takes a second; a progress bar only helps beyond that.
PROGRESS_FROM = 1000
# Bump when decoding changes, so arrays cached by older code are not served.
DECODE_VERSION = 2
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Depths detectors and exporters use; a 16-bit file without sBIT is read at the smallest that fits.
BIT_DEPTHS = (8, 10, 12, 14, 16)
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
# A decode with this share of pixels at the extreme is not a radiograph (a clipped 16-bit file, a blank page).
EXTREME_SHARE = 0.95
WHITE_FROM, BLACK_UP_TO = 250, 5


class BadImage(DataError):
    """An image file that cannot be decoded, or decodes to something that is not a picture."""


def png_chunks(data: bytes) -> dict:
    """The PNG chunks before the image data (IHDR, sBIT, ...), by type; {} for other formats."""
    if not data.startswith(PNG_SIGNATURE):
        return {}
    chunks, at = {}, len(PNG_SIGNATURE)
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        if kind == b"IDAT":
            break
        chunks[kind.decode("latin-1")] = data[at + 8:at + 8 + length]
        at += 12 + length
    return chunks


def significant_bits(data: bytes):
    """The PNG sBIT value (the largest over channels), or None where the file has none."""
    sbit = png_chunks(data).get("sBIT")
    return max(sbit) if sbit else None


def png_size(path: Path):
    """(width, height) from a PNG's header without decoding it; None for other formats."""
    with open(path, "rb") as f:
        head = f.read(24)
    if not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", head[16:24])


def bits_used(top: int, sbit=None, container: int = 16) -> int:
    """The bit depth a wide image's values fill.

    sBIT names it; values above it mean the writer scaled them to the container, as the PNG
    standard asks. Without sBIT: the smallest common depth that holds the largest value.
    """
    if sbit and top < 2 ** sbit:
        return int(sbit)
    if sbit:
        return container
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
    return np.asarray(image.convert("L"), dtype=np.uint8)


def problem(pixels: np.ndarray) -> str:
    """Why a decoded image is not a plausible radiograph ('' when it is)."""
    if pixels.size == 0:
        return "empty image (no pixels)"
    low, high = int(pixels.min()), int(pixels.max())
    if low == high:
        return f"constant image (every pixel is {low})"
    white = float((pixels >= WHITE_FROM).mean())
    if white >= EXTREME_SHARE:
        return f"nearly all white ({white:.0%} of pixels at {WHITE_FROM} or more)"
    black = float((pixels <= BLACK_UP_TO).mean())
    if black >= EXTREME_SHARE:
        return f"nearly all black ({black:.0%} of pixels at {BLACK_UP_TO} or less)"
    return ""


def decode_bytes(data: bytes) -> np.ndarray:
    """The file's full-size 8-bit grey pixels; BadImage when they cannot be had."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return grey_pixels(image, significant_bits(data))
    except UnidentifiedImageError as err:
        raise BadImage(f"cannot decode: not an image format Pillow reads (starts with {data[:8]!r})") from err
    except (OSError, ValueError, SyntaxError) as err:
        raise BadImage(f"cannot decode: {err}") from err


def inspect_bytes(data: bytes) -> tuple:
    """(width, height, problem) of an image file's bytes; problem is '' for a usable image."""
    try:
        pixels = decode_bytes(data)
    except BadImage as err:
        return 0, 0, str(err)
    return pixels.shape[1], pixels.shape[0], problem(pixels)


def decode(path: Path, size: int, harmonise_to=None) -> np.ndarray:
    """8-bit grey at size x size; with harmonise_to, first brought down to that native size."""
    name = Path(path).name
    try:
        pixels = decode_bytes(Path(path).read_bytes())
    except OSError as err:
        raise BadImage(f"{name}: cannot read: {err.strerror or err}") from err
    except BadImage as err:
        raise BadImage(f"{name}: {err}") from err
    reason = problem(pixels)
    if reason:
        raise BadImage(f"{name}: {reason}")
    gray = Image.fromarray(pixels)
    if harmonise_to and min(gray.size) > harmonise_to:
        gray = gray.resize((harmonise_to, harmonise_to), Image.LANCZOS)
    if gray.size != (size, size):
        gray = gray.resize((size, size), Image.BILINEAR)
    return np.asarray(gray, dtype=np.uint8)


TRANSFORMS = {}  # name -> function(uint8 image) -> uint8 image, registered by cxrlib.preprocessing


def cache_key(paths, size: int, transform=None, harmonise_to=None) -> str:
    """The images' content hashes, the target size, the harmonised size and the transform identify an array."""
    from cxrlib.data.content import content_hashes

    digest = hashlib.sha256(f"{DECODE_VERSION}:{size}:{transform}:{harmonise_to}".encode())
    for sha in content_hashes(paths):
        digest.update(f"{sha};".encode())
    return digest.hexdigest()[:20]


def decode_into(out: np.ndarray, paths, size: int, step, harmonise_to=None, desc: str = "decoding") -> np.ndarray:
    """Decode in threads straight into out (N, size, size), in path order; every unusable image in one error.

    Writing each image into its row, rather than stacking a list, keeps peak memory near one array.
    """
    def one(item):
        row, path = item
        try:
            out[row] = step(decode(path, size, harmonise_to))
            return None
        except BadImage as err:
            return str(err)

    workers = min(8, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(workers) as pool:
        errors = [e for e in tqdm(pool.map(one, enumerate(paths)), total=len(paths),
                                  desc=f"{desc} {len(paths)} images at {size}px",
                                  disable=len(paths) < PROGRESS_FROM) if e]
    if errors:
        raise BadImage(f"{len(errors)} of {len(paths)} image(s) cannot be used: {'; '.join(errors)}")
    return out


def load_images(paths, size: int, desc: str = "decoding", transform=None, harmonise_to=None) -> np.ndarray:
    """(N, size, size) uint8, decoded in threads the first time and memory-mapped afterwards.

    transform names a registered per-image function (e.g. "otsu") applied after decoding;
    harmonise_to first brings every larger image down to that many pixels a side.
    """
    paths = [Path(p) for p in paths]
    if transform:
        import cxrlib.preprocessing  # noqa: F401  (registers the transforms)
    if transform is not None and transform not in TRANSFORMS:
        raise ValueError(f"unknown image transform {transform!r}; known: {', '.join(TRANSFORMS)}")
    step = TRANSFORMS[transform] if transform else (lambda image: image)
    target = cache_dir() / "images" / f"{cache_key(paths, size, transform, harmonise_to)}_{size}.npy"
    if target.is_file():
        return np.load(target, mmap_mode="r")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.tmp.npy")
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=(len(paths), size, size))
    try:
        decode_into(out, paths, size, step, harmonise_to, desc)
        out.flush()
        del out
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return np.load(target, mmap_mode="r")
