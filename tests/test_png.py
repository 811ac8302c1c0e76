"""The fast PNG path decodes NIH's kind of PNG (8-bit grey) to exactly Pillow's pixels, whatever the row filters,
and hands every other file, and every file it cannot read exactly, to Pillow."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cxrlib.machinery.inputs import png
from cxrlib.machinery.inputs.decode import BadImage, decode_bytes

GREY8 = (8, 0, 0, 0, 0)


def chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk: length, type, body and CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_file(rows: bytes, width: int, height: int, header=GREY8, extra=b"", idat_parts: int = 1) -> bytes:
    """A PNG of these filtered rows (each a filter-type byte and width bytes), the stream split over IDAT chunks."""
    stream = zlib.compress(rows)
    cut = np.linspace(0, len(stream), idat_parts + 1).astype(int)
    return (png.SIGNATURE + chunk(b"IHDR", struct.pack(">II5B", width, height, *header)) + extra
            + b"".join(chunk(b"IDAT", stream[a:b]) for a, b in zip(cut[:-1], cut[1:])) + chunk(b"IEND", b""))


def random_rows(width: int, height: int, seed: int, kinds=(0, 1, 2, 3, 4)) -> bytes:
    """Random filtered rows, each with a filter type drawn from kinds: any such stream is a valid picture."""
    rng = np.random.default_rng(seed)
    rows = np.column_stack([rng.choice(kinds, height), rng.integers(0, 256, (height, width))]).astype(np.uint8)
    return rows.tobytes()


def pillow(data: bytes) -> np.ndarray:
    """Pillow's pixels: the known answer."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


@pytest.mark.parametrize("kind", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("width, height", [(1, 1), (1, 9), (7, 5), (64, 33)])
def test_every_filter_type_decodes_to_pillows_pixels(kind, width, height):
    data = png_file(random_rows(width, height, seed=kind, kinds=(kind,)), width, height)
    np.testing.assert_array_equal(png.decode_grey8(data), pillow(data))


def test_mixed_filters_over_several_idat_chunks_and_pillows_own_files_match_pillow():
    data = png_file(random_rows(300, 200, seed=1), 300, 200, idat_parts=7)
    np.testing.assert_array_equal(png.decode_grey8(data), pillow(data))
    smooth = np.add.outer(np.arange(256), np.arange(256)).astype(np.uint8)  # Pillow picks Paeth and Sub here
    buffer = io.BytesIO()
    Image.fromarray(smooth).save(buffer, format="PNG")
    np.testing.assert_array_equal(png.decode_grey8(buffer.getvalue()), smooth)


@pytest.mark.parametrize("what, data", [
    ("16-bit grey", png_file(bytes(1 + 8) * 4, 4, 4, header=(16, 0, 0, 0, 0))),
    ("RGB", png_file(bytes(1 + 12) * 4, 4, 4, header=(8, 2, 0, 0, 0))),
    ("interlaced", png_file(bytes(5) * 4, 4, 4, header=(8, 0, 0, 0, 1))),
    ("transparent grey level", png_file(bytes(5) * 4, 4, 4, extra=chunk(b"tRNS", b"\x00\x00"))),
    ("JPEG", b"\xff\xd8\xff\xe0" + bytes(100)),
])
def test_other_files_are_left_to_pillow(what, data):
    assert png.decode_grey8(data) is None, what


@pytest.mark.parametrize("what, data", [
    ("filter type 5", png_file(bytes([5]) + bytes(4) + bytes(5) * 3, 4, 4)),
    ("fewer rows than the header", png_file(bytes(5) * 3, 4, 4)),
    ("more rows than the header", png_file(bytes(5) * 5, 4, 4)),
    ("corrupt stream", png_file(bytes(5) * 4, 4, 4)[:-40] + bytes(28) + png_file(b"", 1, 1)[-12:]),
    ("no image data", png.SIGNATURE + chunk(b"IHDR", struct.pack(">II5B", 4, 4, *GREY8)) + chunk(b"IEND", b"")),
])
def test_a_file_not_exactly_as_its_header_says_goes_to_pillow_which_decides(what, data):
    assert png.decode_grey8(data) is None, what
    try:
        expected = pillow(data)
    except Exception:  # noqa: BLE001 - whatever Pillow raises, decode_bytes says it in one line
        with pytest.raises(BadImage):
            decode_bytes(data)
    else:
        np.testing.assert_array_equal(decode_bytes(data), expected)


def test_without_numba_or_libdeflate_pillow_decodes_everything(monkeypatch):
    data = png_file(random_rows(20, 10, seed=3), 20, 10)
    monkeypatch.setattr(png, "compiled", lambda: None)
    assert png.decode_grey8(data) is None
    np.testing.assert_array_equal(decode_bytes(data), pillow(data))
