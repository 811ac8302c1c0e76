"""Hostile image and label files fail in one line (issue 16); each image is decoded once on first touch (issue 18)."""
from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFile

from cxrlib.core.config import CLASSES
from cxrlib.machinery import cli
from cxrlib.machinery.inputs import DataError, load_data, read_metadata, read_source
from cxrlib.machinery.inputs import decode as decode_module
from cxrlib.machinery.inputs.decode import MAX_PIXELS, BadImage, checked_pixels, decode_bytes, inspect_header, resized
from cxrlib.machinery.inputs.images import load_images

from tests.conftest import make_rows, write_folder


def chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk: length, type, body and CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def bomb_png(side: int, depth: int = 1) -> bytes:
    """A valid grey PNG of side x side black pixels, built from one compressed block of 100 rows repeated, so
    neither its rows nor its pixels are ever held in memory: a few hundred kB that decode to side² pixels."""
    assert side % 100 == 0
    block = b"\0" * (1 + side * depth // 8) * 100  # 100 rows, each a filter byte and side pixels of depth bits
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)  # byte-aligned, no back-references
    adler = 1
    for _ in range(side // 100):
        adler = zlib.adler32(block, adler)
    stream = b"\x78\xda" + piece * (side // 100) + deflate.flush(zlib.Z_FINISH) + struct.pack(">I", adler)
    header = struct.pack(">IIBBBBB", side, side, depth, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")


def hidden_bomb(side: int, hiding: str) -> bytes:
    """An 8-bit bomb whose IHDR is not the first chunk, or one of two (Pillow takes the last before the image data)."""
    bomb, small = bomb_png(side, depth=8), chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 0, 0, 0, 0))
    if hiding == "second IHDR, after a small one":
        return bomb[:8] + small + bomb[8:]
    if hiding == "first IHDR, before a small one":
        return bomb[:33] + small + bomb[33:]
    return bomb[:8] + chunk(b"tEXt", b"Comment\0a chest") + bomb[8:]  # IHDR behind another chunk


def good_png(seed: int = 0) -> bytes:
    """A small usable picture."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (32, 32)).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def pixel_loads(monkeypatch):
    """Counts every time Pillow decodes pixels (ImageFile.load), so a test can show a file was never decoded."""
    calls = []
    real = ImageFile.ImageFile.load

    def load(image):
        calls.append(image.size)
        return real(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return calls


# --- images: size checked from the header, any decoder failure one named line ---

def test_a_decompression_bomb_is_refused_by_its_header_without_decoding(pixel_loads):
    bomb = bomb_png(40_000)
    assert len(bomb) < 1_000_000
    with pytest.raises(BadImage) as refused:
        decode_bytes(bomb)
    message = str(refused.value)
    assert message.startswith("too large: 40000 x 40000 pixels (1,600,000,000)") and f"{MAX_PIXELS:,}" in message
    assert "\n" not in message and pixel_loads == []


def test_an_image_over_the_budget_but_under_pillows_limit_is_not_decoded(pixel_loads):
    side = 7_000  # 49 million pixels: Pillow alone would decode it without a word
    assert MAX_PIXELS < side * side < Image.MAX_IMAGE_PIXELS
    with pytest.raises(BadImage, match=r"^too large: 7000 x 7000 pixels"):
        decode_bytes(bomb_png(side))
    assert pixel_loads == []
    assert MAX_PIXELS >= 4 * 3000 * 3000  # comfortably above a 3,000 px detector image


@pytest.mark.parametrize("hiding", ["IHDR not first", "second IHDR, after a small one",
                                    "first IHDR, before a small one"])
def test_a_bomb_whose_ihdr_hides_is_refused_by_its_stated_size_in_one_line(tmp_path, isolated, pixel_loads, hiding):
    path = tmp_path / "00000001_000.png"
    path.write_bytes(hidden_bomb(15_000, hiding))
    assert path.stat().st_size < 300_000
    with pytest.raises(BadImage) as refused:
        load_images([path], 16)
    message = str(refused.value)
    why = f"too large: 15000 x 15000 pixels (225,000,000), over the budget of {MAX_PIXELS:,} pixels (MAX_PIXELS)"
    assert message.endswith(f"{path.name}: {why}") and "\n" not in message
    assert inspect_header(path.read_bytes()) == (15_000, 15_000, why)
    assert pixel_loads == []


def split_idat(data: bytes) -> bytes:
    """The PNG with its image data split in two IDAT chunks around a text chunk, which the standard forbids."""
    at = data.index(b"IDAT")
    length = struct.unpack(">I", data[at - 4:at])[0]
    body, half = data[at + 4:at + 4 + length], length // 2
    middle = chunk(b"IDAT", body[:half]) + chunk(b"tEXt", b"Comment\0x") + chunk(b"IDAT", body[half:])
    return data[:at - 4] + middle + data[at + 8 + length:]


def bad_ihdr_checksum(data: bytes) -> bytes:
    """The PNG with its IHDR's CRC zeroed."""
    return data[:29] + bytes(4) + data[33:]


@pytest.mark.parametrize("spoil, reason", [(bad_ihdr_checksum, "not an image format Pillow reads"),
                                           (split_idat, "image file is truncated")])
def test_a_png_against_the_standard_is_a_one_line_bad_image(spoil, reason):
    with pytest.raises(BadImage, match=rf"^cannot decode: .*{reason}[^\n]*$"):
        decode_bytes(spoil(good_png()))


@pytest.mark.parametrize("error", [zlib.error("Error -3 while decompressing data: invalid distance too far back"),
                                   Image.DecompressionBombWarning("Image size (100000000 pixels) exceeds limit"),
                                   KeyError("tEXt"), MemoryError()])
def test_any_exception_from_the_decoder_is_a_one_line_bad_image(monkeypatch, error):
    def broken(image, sbit=None):
        raise error

    monkeypatch.setattr(decode_module, "grey_pixels", broken)
    with pytest.raises(BadImage) as refused:
        decode_bytes(good_png())
    message = str(refused.value)
    assert message.startswith(("cannot decode: ", "too large: ")) and "\n" not in message
    assert type(error).__name__ in message or str(error).strip("'") in message


def test_pillow_warnings_raised_as_errors_are_bad_images(monkeypatch):
    def warns(image, sbit=None):
        warnings.warn("Image size (100000000 pixels) exceeds limit", Image.DecompressionBombWarning)

    monkeypatch.setattr(decode_module, "grey_pixels", warns)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(BadImage, match=r"^too large: Image size \(100000000 pixels\)"):
            decode_bytes(good_png())


def hostile_folder(root):
    """A small NIH folder where three images the splits use are a bomb, a truncated file and random bytes."""
    write_folder(root, make_rows(per_class=12))
    table = pd.read_csv(root / "Data_Entry_2017.csv").drop_duplicates("Finding Labels")
    names = table.set_index("Finding Labels").loc[list(CLASSES[:3]), "Image Index"].tolist()
    whole = good_png(1)
    (root / "images" / names[0]).write_bytes(bomb_png(40_000))
    (root / "images" / names[1]).write_bytes(whole[: len(whole) // 2])
    (root / "images" / names[2]).write_bytes(np.random.default_rng(0).bytes(4096))
    return names


def test_bomb_truncated_and_random_files_are_named_in_one_line_each(tmp_path, isolated, pixel_loads):
    bomb, truncated, random = hostile_folder(tmp_path / "nih")
    with pytest.raises(DataError) as refused:
        load_data(tmp_path / "nih", fractions=(0.5, 0.25, 0.25), image_size=16)
    message = str(refused.value)
    assert "\n" not in message and message.startswith("3 image(s) under")
    assert f"{bomb} (too large: 40000 x 40000 pixels" in message
    assert f"{truncated} (cannot decode: image file is truncated)" in message
    assert f"{random} (cannot decode: not an image format Pillow reads" in message
    assert (40_000, 40_000) not in pixel_loads
    with pytest.warns(UserWarning, match="skipping 3 unusable"):
        data = load_data(tmp_path / "nih", fractions=(0.5, 0.25, 0.25), image_size=16, on_bad_image="skip")
    assert sorted(data.drops.dropped["unreadable image"]) == sorted([bomb, truncated, random])
    assert not data.table["Image Index"].isin([bomb, truncated, random]).any()
    assert "3 unreadable image(s) skipped" in data.source.describe()
    assert data.images("train", 16).shape[0] == len(data.split("train"))


def test_the_runner_stops_on_hostile_images_with_one_line_and_no_traceback(tmp_path, isolated, capsys):
    from cxrlib.machinery import runner

    names = hostile_folder(tmp_path / "nih")
    code = cli.main(["run", "dataset", "--profile", "smoke", "--data", str(tmp_path / "nih"),
                        "--book-root", str(isolated)])
    error = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in error and "Traceback" not in error
    assert error.startswith("cxr: error: chapter 'dataset': 3 image(s) under") and all(n in error for n in names)


# --- decode once: check and resize in one decode, only images a split uses ---

@pytest.fixture
def decodes(monkeypatch):
    """Every full decode of an image file, by the file's first bytes' hash: the one function that decodes pixels."""
    counts = {}
    real = decode_module.decode_bytes

    def counted(data):
        key = zlib.crc32(data)
        counts[key] = counts.get(key, 0) + 1
        return real(data)

    monkeypatch.setattr(decode_module, "decode_bytes", counted)
    return counts


def file_key(path) -> int:
    """The key the decodes fixture counts a file under."""
    return zlib.crc32(path.read_bytes())


def test_each_used_image_is_decoded_once_on_first_touch_and_unused_ones_never(nih_folder, isolated, decodes):
    import cxrlib.science.otsu  # noqa: F401  (registers the transforms)

    source = read_source(nih_folder)
    assert decodes == {}  # reading the folder hashes files and reads headers, decoding none
    data = load_data(nih_folder, fractions=(0.5, 0.25, 0.25), max_per_class=2, image_size=24)
    used = set(data.table["Image Index"])
    every_file = {p.name: p for p in (nih_folder / "images").glob("*.png")}
    assert len(used) == 24 and len(every_file) == 72
    counts = {name: decodes.get(file_key(path), 0) for name, path in every_file.items()}
    assert {n: c for n, c in counts.items() if n in used} == {n: 1 for n in used}
    assert {n: c for n, c in counts.items() if n not in used} == {n: 0 for n in every_file if n not in used}
    assert set(source.table["Image Index"]) - used  # single-label images left out by the limit: not decoded
    before = dict(decodes)
    for split in ("train", "val", "test"):
        assert data.images(split, 24).shape == (len(data.split(split)), 24, 24)
        data.images(split, 24, transform="otsu")  # a transform starts from the cached pixels
    load_data(nih_folder, fractions=(0.5, 0.25, 0.25), max_per_class=2, image_size=24)
    assert decodes == before


def test_first_decode_fills_the_cache_with_what_a_later_decode_gives(nih_folder, isolated):
    data = load_data(nih_folder, fractions=(0.5, 0.25, 0.25), image_size=20)
    cached = np.asarray(data.images("val", 20))
    fresh = np.stack([resized(checked_pixels(path), 20) for path in data.source.paths(data.split("val")["Image Index"])])
    np.testing.assert_array_equal(cached, fresh)


def test_a_bad_image_is_reported_only_when_a_split_uses_it_and_before_training(nih_folder, isolated, decodes):
    data = load_data(nih_folder, fractions=(0.5, 0.25, 0.25), max_per_class=2)
    unused = sorted(set(data.source.table["Image Index"]) - set(data.table["Image Index"]))[0]
    (nih_folder / "images" / unused).write_bytes(b"not an image at all")
    again = load_data(nih_folder, fractions=(0.5, 0.25, 0.25), max_per_class=2)  # not used: not reported
    assert list(again.table["Image Index"]) == list(data.table["Image Index"])
    used = data.split("test")["Image Index"][0]
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(nih_folder / "images" / used)
    with pytest.raises(DataError, match=rf"1 image\(s\) .*{used} \(constant image"):  # at loading, before any model
        load_data(nih_folder, fractions=(0.5, 0.25, 0.25), max_per_class=2)


def test_a_skipped_bad_image_does_not_set_the_harmonised_size(nih_folder, isolated):
    table = pd.read_csv(nih_folder / "Data_Entry_2017.csv")
    name = table.loc[table["Finding Labels"] == "Effusion", "Image Index"].iloc[0]
    Image.new("L", (1, 1), 0).save(nih_folder / "images" / name)  # a constant 1 x 1 image
    first = table.loc[table["Finding Labels"] == "Atelectasis", "Image Index"].iloc[0]
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (16, 16)).astype(np.uint8)).save(
        nih_folder / "images" / first)
    with pytest.warns(UserWarning, match="skipping 1 unusable"):
        data = load_data(nih_folder, fractions=(0.5, 0.25, 0.25), harmonise_resolution=True, on_bad_image="skip",
                         image_size=16)
    assert data.harmonise_to == 16


# --- label files: encodings, unknown label values ---

def label_file(path, text: str, encoding: str):
    """A label file of four rows, one per class, written in an encoding."""
    path.write_bytes(text.encode(encoding))
    return path


ROWS = ("Image Index,Finding Labels,Patient ID,Patient Gender,Note\n"
        "00000001_000.png,No Finding,1,F,{note}\n00000002_000.png,Effusion,2,M,ok\n"
        "00000003_000.png,Infiltration,3,F,ok\n00000004_000.png,Atelectasis,4,M,ok\n")


@pytest.mark.parametrize("encoding, note, named", [("latin-1", "épanchement", "Latin-1"),
                                                   ("cp1252", "patient’s 2nd film €0", "Windows-1252"),
                                                   ("utf-8-sig", "épanchement", "UTF-8")])
def test_label_files_saved_by_spreadsheets_are_read_and_the_encoding_named(tmp_path, encoding, note, named):
    path = label_file(tmp_path / "Data_Entry_2017.csv", ROWS.format(note=note), encoding)
    table = read_metadata(path)
    assert table["Note"].iloc[0] == note and list(table.columns)[0] == "Image Index"
    from cxrlib.machinery.inputs.sources import read_labels

    _, drops = read_labels(path)
    assert drops.encoding == named
    if named == "UTF-8":
        assert "UTF-8" not in drops.line()
    else:
        assert drops.line().endswith(f"; read as {named}, not UTF-8")
        assert f"(read as {named})" in drops.table().index.name


def test_a_label_file_in_no_8_bit_encoding_is_refused_with_the_line_and_what_to_save_it_as(tmp_path):
    path = label_file(tmp_path / "Data_Entry_2017.csv", ROWS.format(note="ok"), "utf-16")
    with pytest.raises(DataError) as refused:
        read_metadata(path)
    message = str(refused.value)
    assert "\n" not in message and f"label file {path}, line 1:" in message and "save the file as UTF-8" in message


def test_unknown_label_values_are_shown_with_their_counts_and_how_labels_were_normalised(tmp_path, isolated):
    rows = [{"Image Index": f"0000000{i}_000.png", "Finding Labels": c, "Patient ID": i} for i, c in enumerate(CLASSES)]
    rows += [{"Image Index": "00000010_000.png", "Finding Labels": "Infiltrate", "Patient ID": 10},
             {"Image Index": "00000011_000.png", "Finding Labels": "Infiltrate", "Patient ID": 11},
             {"Image Index": "00000012_000.png", "Finding Labels": " effusion ", "Patient ID": 12},
             {"Image Index": "00000013_000.png", "Finding Labels": "Effusion ", "Patient ID": 13}]
    write_folder(tmp_path / "nih", rows)
    drops = read_source(tmp_path / "nih").drops
    line = drops.line()
    assert "3 unknown label (00000010_000.png, 00000011_000.png, 00000012_000.png)" in line and "\n" not in line
    assert ("; unknown label: 'Infiltrate' ×2, ' effusion ' ×1 (NIH spells it 'Effusion'); labels matched after "
            "trimming stray spaces (2 trimmed), case not changed") in line
    assert drops.rows_kept == 5  # "Effusion " is kept: only its stray space differed
    assert drops.table().loc["dropped: unknown label", "values"].startswith("'Infiltrate' ×2")
