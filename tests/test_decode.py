"""Known-answer decoding: wide PNGs scaled by the depth they use, colour and alpha to grey, blank images refused."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cxrlib.machinery.inputs.decode import (BadImage, as_array, checked_pixels, decode_bytes, inspect_header, problem,
                                            resized)
from cxrlib.machinery.inputs import decode as decode_module
from cxrlib.machinery.inputs.images import BLOCKS_PER_THREAD, THREADS, fill, load_images


def twin(seed: int = 0, size: int = 24) -> np.ndarray:
    """An 8-bit picture using the full range (0 and 255 included), like a radiograph's."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size)).astype(np.uint8)
    pixels[0, 0], pixels[0, 1] = 0, 255
    return pixels


def png(image: Image.Image) -> bytes:
    """The image as PNG bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png16(values: np.ndarray, sbit=None) -> bytes:
    """A 16-bit grey PNG, optionally with an sBIT chunk right after IHDR."""
    data = png(Image.fromarray(values.astype(np.uint16)))
    assert data[12:16] == b"IHDR"
    if sbit is None:
        return data
    body = b"sBIT" + bytes([sbit])
    chunk = struct.pack(">I", 1) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    return data[:33] + chunk + data[33:]


def luma(r, g, b):
    """ITU-R 601-2 luma in PIL's integer arithmetic."""
    return (np.asarray(r, np.int64) * 19595 + np.asarray(g, np.int64) * 38470 + np.asarray(b, np.int64) * 7471
            + 0x8000) >> 16


def test_full_range_16_bit_decodes_to_its_8_bit_twin():
    eight = twin()
    decoded = decode_bytes(png16(eight.astype(np.uint32) * 257))
    assert np.abs(decoded.astype(int) - eight).max() <= 1


def test_12_bit_values_in_a_16_bit_png_are_not_nearly_black():
    eight = twin(1)
    twelve = np.rint(eight * (4095 / 255))
    decoded = decode_bytes(png16(twelve))
    assert np.abs(decoded.astype(int) - eight).max() <= 1
    assert abs(decoded.mean() - eight.mean()) < 1


def test_the_sbit_chunk_names_the_depth_even_when_values_stay_low():
    values = np.rint(twin(2) * (1000 / 255))  # fits in 10 bits, but the file says 12 are significant
    expected = np.rint(values * (255 / 4095))
    assert np.abs(decode_bytes(png16(values, sbit=12)).astype(int) - expected).max() <= 1
    assert np.abs(decode_bytes(png16(values)).astype(int) - np.rint(values * (255 / 1023))).max() <= 1


def test_sbit_with_values_scaled_to_16_bits_as_the_standard_asks():
    eight = twin(3)
    decoded = decode_bytes(png16(eight.astype(np.uint32) * 257, sbit=12))
    assert np.abs(decoded.astype(int) - eight).max() <= 1


def test_rgb_decodes_to_luma():
    rgb = np.random.default_rng(4).integers(0, 256, (16, 16, 3)).astype(np.uint8)
    decoded = decode_bytes(png(Image.fromarray(rgb, "RGB")))
    np.testing.assert_array_equal(decoded, luma(rgb[..., 0], rgb[..., 1], rgb[..., 2]))


def test_palette_decodes_to_the_grey_of_each_colour():
    colours = [(0, 0, 0), (255, 0, 0), (0, 255, 0), (40, 80, 200), (255, 255, 255)]
    palette = Image.new("P", (1, 1))
    palette.putpalette([c for rgb in colours for c in rgb] + [0] * (768 - 3 * len(colours)))
    index = np.resize(np.arange(len(colours), dtype=np.uint8), (10, 10))
    image = Image.fromarray(index, "P")
    image.putpalette(palette.getpalette())
    decoded = decode_bytes(png(image))
    expected = np.array([luma(*c) for c in colours])[index]
    np.testing.assert_array_equal(decoded, expected)


def test_palette_with_a_transparent_entry_is_black_there():
    index = np.resize(np.arange(3, dtype=np.uint8), (9, 9))
    image = Image.fromarray(index, "P")
    image.putpalette([0, 0, 0, 120, 120, 120, 250, 250, 250] + [0] * 759)
    image.info["transparency"] = 1
    decoded = decode_bytes(png(image))
    np.testing.assert_array_equal(decoded, np.array([0, 0, 250])[index])


@pytest.mark.parametrize("transparent", [False, True])
def test_grey_with_alpha_composites_on_black(transparent):
    grey = twin(5, 12)
    alpha = np.full_like(grey, 255)
    if transparent:
        alpha[:, :6], alpha[:, 6:9] = 0, 128
    decoded = decode_bytes(png(Image.fromarray(np.stack([grey, alpha], -1), "LA")))
    np.testing.assert_array_equal(decoded, np.rint(grey * (alpha / 255)).astype(np.uint8))


@pytest.mark.parametrize("transparent", [False, True])
def test_rgba_composites_on_black(transparent):
    rgb = np.random.default_rng(6).integers(0, 256, (12, 12, 3)).astype(np.uint8)
    alpha = np.full((12, 12), 255, np.uint8)
    if transparent:
        alpha[:4] = 0
    decoded = decode_bytes(png(Image.fromarray(np.dstack([rgb, alpha]), "RGBA")))
    expected = np.rint(luma(rgb[..., 0], rgb[..., 1], rgb[..., 2]) * (alpha / 255)).astype(np.uint8)
    np.testing.assert_array_equal(decoded, expected)


def test_constant_and_white_decodes_are_reported():
    assert "constant image (every pixel is 17)" in problem(np.full((8, 8), 17, np.uint8))
    white = np.full((20, 20), 255, np.uint8)
    white[0, :5] = 10
    assert "nearly all white" in problem(white)
    assert problem(twin()) == ""
    # what convert("L") made of a 12-bit copy: values clipped to white, now reported instead of trained on
    eight = np.maximum(twin(), 24)  # a radiograph's darkest regions are rarely pure black
    clipped = np.asarray(Image.fromarray(np.rint(eight * (4095 / 255)).astype(np.uint16)).convert("L"))
    assert "nearly all white" in problem(clipped) or "every pixel is 255" in problem(clipped)


def test_black_and_white_shares_are_counted_exactly_at_the_threshold():
    edge = np.full((20, 20), 128, np.uint8)
    edge.flat[:380] = 250  # exactly 95% at the white threshold
    assert problem(edge) == "nearly all white (95% of pixels at 250 or more)"
    edge.flat[:380] = 5
    assert problem(edge) == "nearly all black (95% of pixels at 5 or less)"
    edge.flat[0] = 6  # one pixel fewer: 94.75%, usable
    assert problem(edge) == ""


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (64, 33), (1024, 1024)])
def test_as_array_copies_the_pixels_exactly_into_an_array_of_its_own(shape):
    pixels = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    image = Image.fromarray(pixels).copy()
    copied = as_array(image)
    np.testing.assert_array_equal(copied, pixels)
    copied[0, 0] ^= 1  # writable, and not the image's memory
    assert image.getpixel((0, 0)) == pixels[0, 0]


def test_downscaling_reduces_by_whole_blocks_then_resizes_antialiased():
    pixels = twin(3, 100)
    expected = Image.fromarray(pixels).reduce(4).resize((24, 24), Image.BILINEAR, box=(0, 0, 25, 25))
    np.testing.assert_array_equal(resized(pixels, 24), np.asarray(expected))


def test_pillow_keeps_image_memory_only_while_decoding(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    path.write_bytes(png(Image.fromarray(twin())))
    before, seen = Image.core.get_blocks_max(), []
    real = decode_module.checked_pixels

    def watched(pixels_of):
        seen.append(Image.core.get_blocks_max())
        return real(pixels_of)

    monkeypatch.setattr(decode_module, "checked_pixels", watched)
    assert fill(np.zeros((1, 8, 8), np.uint8), [path], 8) == [""]
    assert seen == [max(before, THREADS * BLOCKS_PER_THREAD)]  # kept for reuse while decoding, then as it was
    assert Image.core.get_blocks_max() == before


def test_the_header_gives_the_size_and_the_decode_the_problems():
    assert inspect_header(png(Image.fromarray(twin(size=20)[:, :12]))) == (12, 20, None)
    assert inspect_header(png(Image.new("L", (8, 8), 0))) == (8, 8, None)  # the header alone: no pixel judged
    assert problem(decode_bytes(png(Image.new("L", (8, 8), 0)))).startswith("constant image")
    assert inspect_header(b"not an image")[2].startswith("cannot decode: not an image format")


def test_every_unusable_image_is_named_in_one_error(tmp_path, isolated):
    good = tmp_path / "good.png"
    good.write_bytes(png(Image.fromarray(twin())))
    (tmp_path / "blank.png").write_bytes(png(Image.new("L", (16, 16), 255)))
    (tmp_path / "broken.png").write_bytes(b"no png here")
    paths = [good, tmp_path / "blank.png", tmp_path / "broken.png"]
    with pytest.raises(BadImage, match=r"2 of 3 image\(s\).*blank\.png: constant image.*"
                                       r"broken\.png: cannot decode: not an image"):
        load_images(paths, 8)
    assert resized(checked_pixels(good), 8).shape == (8, 8)


def test_harmonised_decode_loses_the_detail_a_larger_image_had(tmp_path):
    path = tmp_path / "sharp.png"
    path.write_bytes(png(Image.fromarray(twin(7, 64))))
    plain, harmonised = resized(checked_pixels(path), 64).astype(int), resized(checked_pixels(path), 64, 16).astype(int)
    blurred = np.asarray(Image.fromarray(twin(7, 64)).resize((16, 16), Image.LANCZOS)
                         .resize((64, 64), Image.BILINEAR)).astype(int)
    np.testing.assert_array_equal(plain, twin(7, 64))
    np.testing.assert_array_equal(harmonised, blurred)
