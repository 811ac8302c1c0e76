"""A fast path for the PNGs NIH ships (8-bit grey, not interlaced, no transparency): libdeflate's inflate and a
compiled unfilter decode them in about half of Pillow's time, to exactly Pillow's pixels.

Decoding a megapixel PNG is two steps: inflating the zlib stream (Pillow through the system's zlib: about 4 ms)
and undoing each row's filter (about 5 ms, almost all rows 'Paeth', where every pixel waits for the one on
its left). libdeflate (the `deflate` package) inflates in about 1.5 ms; numba compiles the unfilter loop of
the PNG standard (section 9) without the interpreter. Every other file, and any file this path cannot read
exactly as the standard says, returns None, and Pillow decodes it as before, so errors and odd files keep
Pillow's behaviour. tests/test_png.py holds this path to Pillow's pixels for every filter type.

References: PNG specification, 3rd edition (W3C, 2025), sections 7.3 (filtering) and 9 (filter types).
"""
from __future__ import annotations

import functools
import struct

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# IHDR's bit depth, colour type (0: grey), compression, filter and interlace methods of the fast path
FAST_HEADER = (8, 0, 0, 0, 0)


def chunks(data: bytes):
    """(type, payload) of each whole chunk of a PNG, in order, up to IEND or the end of the data."""
    at = len(SIGNATURE)
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        if at + 12 + length > len(data):
            return
        yield kind, data[at + 8:at + 8 + length]
        if kind == b"IEND":
            return
        at += 12 + length


def grey8_stream(data: bytes):
    """(width, height, zlib stream) of an 8-bit grey, non-interlaced PNG without transparency; None otherwise."""
    if not data.startswith(SIGNATURE):
        return None
    width = height = None
    parts = []
    for kind, payload in chunks(data):
        if kind == b"IHDR":
            if len(payload) != 13 or struct.unpack(">5B", payload[8:13]) != FAST_HEADER:
                return None
            width, height = struct.unpack(">II", payload[:8])
        elif kind == b"tRNS":
            return None  # a transparent grey level: Pillow's conversion composites it on black
        elif kind == b"IDAT":
            parts.append(payload)
    if not width or not height or not parts:
        return None
    return width, height, b"".join(parts)


def unfilter_rows(raw, height: int, width: int, out) -> bool:
    """Undo the filter of each row of one-byte pixels (PNG section 9) into out; False on an unknown filter type.
    One loop per filter type, each over ints (the sums wrap at 256), the row above zeros for the first row."""
    zeros = np.zeros(width, np.uint8)
    for r in range(height):
        kind, row = raw[r * (width + 1)], raw[r * (width + 1) + 1:(r + 1) * (width + 1)]
        above = out[r - 1] if r > 0 else zeros
        left, upleft = 0, 0
        if kind == 0:
            out[r] = row
        elif kind == 1:
            for i in range(width):
                left = (row[i] + left) & 255
                out[r, i] = left
        elif kind == 2:
            for i in range(width):
                out[r, i] = (row[i] + above[i]) & 255
        elif kind == 3:
            for i in range(width):
                left = (row[i] + ((left + above[i]) >> 1)) & 255
                out[r, i] = left
        elif kind == 4:  # Paeth: of left, up and up-left, the nearest to left + up - upleft (ties: left, then up)
            for i in range(width):
                up = np.int32(above[i])
                near_left, near_up, near_upleft = abs(up - upleft), abs(left - upleft), abs(left + up - 2 * upleft)
                guess = up if near_up <= near_upleft else upleft  # selects, not branches: the data decide
                guess = left if (near_left <= near_up) & (near_left <= near_upleft) else guess
                left, upleft = (row[i] + guess) & 255, up
                out[r, i] = left
        else:
            return False
    return True


@functools.cache
def compiled():
    """(libdeflate's zlib inflate, unfilter_rows compiled by numba once per process and cached on disk), or
    None where either package is missing."""
    try:
        import deflate
        import numba
    except ImportError:
        return None
    return deflate, numba.njit(nogil=True, cache=True)(unfilter_rows)


def decode_grey8(data: bytes):
    """The pixels (height, width) uint8 of an 8-bit grey PNG, exactly as Pillow decodes them; None for any other
    file, or where the stream is not exactly the rows its header states (Pillow then decides)."""
    stream = grey8_stream(data)
    tools = compiled() if stream else None  # numba is imported only for a file it will decode
    if tools is None:
        return None
    (width, height, packed), (deflate, unfilter) = stream, tools
    try:
        raw = deflate.zlib_decompress(packed, height * (width + 1))
    except (deflate.DeflateError, ValueError, MemoryError):
        return None
    if len(raw) != height * (width + 1):
        return None
    pixels = np.empty((height, width), np.uint8)
    return pixels if unfilter(np.frombuffer(raw, np.uint8), height, width, pixels) else None
