"""Images checked and cached, before and after the splits: steps 2 and 4 of the data path.

Step 2 (on_disk): each kept row's image file found (in images/ or images_0XX/images/, as NIH ships them), hashed,
and its native size read from its header, decoding no pixel. Hash, header and (once decoded) problem are kept in
a small SQLite index under the cache folder, keyed by the file's absolute path, size, mtime and ctime: each file is
read once per version, and a file replaced by another of the same size and name is hashed afresh.

Step 4 (first_touch): the images a split uses checked, resized and cached in one decode each, into the arrays every
split is read from; images no split uses are never decoded. How one file is decoded is decode's.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.std import tqdm  # plain text, never a notebook widget the static book cannot render

from cxrlib.core.config import PROGRESS_AFTER_S, cache_dir
from cxrlib.core.errors import DataError
from cxrlib.core.files import write_atomic
from cxrlib.machinery.inputs import decode as decoder
from cxrlib.machinery.inputs.decode import DECODE_VERSION, BadImage, inspect_header, resized
from cxrlib.science.data.splits import SPLITS
from cxrlib.science.otsu import transform_step, unchanged

# Bump when the checks in decode.inspect_header or decode.checked_pixels change, so old verdicts are recomputed.
INDEX_VERSION = 3
COLUMNS = ("path", "size", "mtime_ns", "ctime_ns", "version", "sha256", "width", "height", "problem")
# What the table gains per image; problem is '' for a usable image, None while its pixels have not been decoded.
RECORD = ("sha256", "width", "height", "problem")
# Reading and decoding threads: Pillow and hashlib release the GIL, so a few per core pay.
THREADS = min(8, (os.cpu_count() or 2) * 2)
# Freed image memory Pillow keeps for reuse per decoding thread while decoding many images (a decoded
# image and the steps of its resize), so each image does not pay the page faults of fresh memory.
BLOCKS_PER_THREAD = 8


def on_disk(table: pd.DataFrame, source, drops) -> tuple:
    """(the table with each row's path and RECORD, DropSummary). A partial NIH download keeps the images present
    and counts the rest as missing; the sample and a synthetic set must be whole."""
    found = {}
    for folder in [source.root / "images", *sorted(source.root.glob("images_*/images")), source.root]:
        for path in folder.glob("*.png"):  # none where the folder is missing
            found.setdefault(path.name, path)
    missing = [n for n in table["Image Index"] if n not in found]
    if missing and source.kind == "nih" and len(missing) < len(table):
        warnings.warn(f"{len(missing)} of {len(table)} labelled images are not on disk "
                      f"(e.g. {', '.join(missing[:3])}); using the {len(table) - len(missing)} present")
        table = table[table["Image Index"].isin(found)].reset_index(drop=True)
        drops = drops.add("missing image", missing)
    elif missing:
        raise DataError(f"{len(missing)} image(s) listed in {source.label_file.name} are missing under "
                        f"{source.root}: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    paths = [found[n] for n in table["Image Index"]]
    records = pd.DataFrame(file_records(paths, desc="checking"), columns=RECORD)
    return pd.concat([table.assign(path=paths), records], axis=1), drops


@contextmanager
def _connect():
    """Open (and create) the index for one transaction; a generous timeout lets parallel runs share it."""
    with closing(sqlite3.connect(cache_dir() / "content_index.sqlite", timeout=120)) as con, con:
        con.execute(f"CREATE TABLE IF NOT EXISTS files ({', '.join(COLUMNS)}, PRIMARY KEY (path))")
        yield con


def inspect_file(path: Path) -> tuple:
    """Read the file once: hash its bytes and read its header (size, format, pixel budget), decoding no pixel."""
    try:
        data = path.read_bytes()
    except OSError as err:
        return "", 0, 0, f"cannot read: {err.strerror or err}"
    return hashlib.sha256(data).hexdigest(), *inspect_header(data)


def record_problems(paths, problems) -> None:
    """Store what decoding found ('' for usable), so an image is checked once per version of the file."""
    rows = [(problem, str(Path(p).expanduser().resolve())) for p, problem in zip(paths, problems)]
    with _connect() as con:
        con.executemany("UPDATE files SET problem = ? WHERE path = ?", rows)


def stat_key(path: Path) -> tuple:
    """What must be unchanged for a stored record to still describe the file."""
    try:
        st = path.stat()
    except OSError as err:
        raise DataError(f"cannot read image file {path}: {err.strerror or err}") from err
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, INDEX_VERSION


def file_records(paths, desc: str = "hashing", chunk: int = 2000) -> list:
    """RECORD per path, in order. Files not seen before (or changed since) are read in threads, each chunk stored
    as it is done, so an interrupted first pass over a large set keeps what it had read."""
    paths = [Path(p).expanduser().resolve() for p in paths]
    with _connect() as con:  # json_each: any number of paths in one query, whatever SQLite's parameter limit
        rows = con.execute("SELECT * FROM files WHERE path IN (SELECT value FROM json_each(?))",
                           [json.dumps([str(p) for p in paths])])
        stored = {row[0]: row for row in rows}
    keys, records = [stat_key(p) for p in paths], {}
    for path, key in zip(paths, keys):
        if str(path) in stored and tuple(stored[str(path)][1:5]) == key:
            records[str(path)] = tuple(stored[str(path)][5:9])
    stale = [(p, k) for p, k in zip(paths, keys) if str(p) not in records]
    with ThreadPoolExecutor(THREADS) as pool, tqdm(total=len(stale), desc=f"{desc} {len(stale)} images",
                                                   delay=PROGRESS_AFTER_S) as progress:
        for start in range(0, len(stale), chunk):
            part = stale[start:start + chunk]
            fresh = list(pool.map(lambda item: inspect_file(item[0]), part))
            with _connect() as con:
                con.executemany(f"INSERT OR REPLACE INTO files VALUES ({', '.join('?' * len(COLUMNS))})",
                                [(str(p), *k, *r) for (p, k), r in zip(part, fresh)])
            records.update({str(p): r for (p, _), r in zip(part, fresh)})
            progress.update(len(part))
    return [records[str(p)] for p in paths]


def first_touch(table: pd.DataFrame, drops, root, on_bad_image: str, size=None, harmonise: bool = False) -> tuple:
    """(table, drops, harmonise_to) once every image a split uses is known to be usable, before any training. An
    image never decoded is decoded now and its problem stored: with a size, each split holding one is decoded whole
    and cached at that size (the array its images() reads); without, it is only checked. Bad images fail in one
    error naming each or, with on_bad_image="skip", leave the table and are counted."""
    used = table["split"].notna()
    harmonise_to = smallest_size(table[used]) if harmonise else None
    usable = table[used & (table["problem"].fillna("") == "")]  # an image known to be bad joins no split's array
    if size is None:  # each image never decoded, only checked
        parts = [("checking", usable[usable["problem"].isna()])]
    else:  # each split holding an image never decoded, decoded whole and cached at the size
        parts = [(split, usable[usable["split"] == split]) for split in SPLITS]
    for desc, part in parts:
        if part["problem"].isna().any():
            paths = part["path"].tolist()
            problems = (decoded(decoder.checked_pixels, paths, f"checking {len(paths)} images") if size is None
                        else first_decode(paths, size, harmonise_to, desc))
            record_problems(paths, problems)
            table.loc[part.index, "problem"] = problems
    bad = table[used & (table["problem"] != "")]
    if bad.empty:
        return table, drops, harmonise_to
    listing = "; ".join(f"{name} ({why})" for name, why in zip(bad["Image Index"], bad["problem"]))
    if on_bad_image == "fail":
        raise DataError(f"{len(bad)} image(s) under {root} cannot be used: {listing}. Replace or remove them, "
                        f"or set on_bad_image='skip' to leave them out")
    warnings.warn(f"skipping {len(bad)} unusable image(s) under {root}: {listing}")
    table = table.drop(bad.index).reset_index(drop=True)
    harmonise_to = smallest_size(table[table["split"].notna()]) if harmonise else None
    return table, drops.add("unreadable image", bad["Image Index"]), harmonise_to


def smallest_size(rows: pd.DataFrame):
    """The native size (shorter side) every image is brought down to when harmonising; None when all agree.
    Images known to be unusable do not count."""
    usable = rows[rows["problem"].fillna("") == ""]
    sizes = usable[["width", "height"]].min(axis=1)
    return int(sizes.min()) if sizes.nunique() > 1 else None


def cache_file(paths, size: int, transform=None, harmonise_to=None) -> Path:
    """Where the array of these images at this size (harmonised, transformed) is cached: its name comes from the
    images' content hashes, the decode version, the size, the harmonised size and the transform."""
    digest = hashlib.sha256(f"{DECODE_VERSION}:{size}:{transform}:{harmonise_to}".encode())
    for sha, *_ in file_records(paths):
        digest.update(f"{sha};".encode())
    return cache_dir() / "images" / f"{digest.hexdigest()[:20]}_{size}.npy"


def load_images(paths, size: int, desc: str = "decoding", transform=None, harmonise_to=None) -> np.ndarray:
    """(N, size, size) uint8, decoded in threads the first time (every unusable image named in one error, and
    nothing cached) and memory-mapped afterwards. transform names a registered per-image function (e.g. "otsu"),
    applied to the cached untransformed array; harmonise_to first brings every larger image down to that size."""
    paths, step = [Path(p) for p in paths], transform_step(transform)
    target = cache_file(paths, size, transform, harmonise_to)
    if transform and not target.is_file():
        plain = load_images(paths, size, desc, None, harmonise_to)
        publish(target, len(paths), size, lambda out: copy_rows(out, plain, range(len(plain)), step))
    elif not target.is_file():
        reasons = first_decode(paths, size, harmonise_to, desc, keep_usable=False)
        errors = [f"{p.name}: {why}" for p, why in zip(paths, reasons) if why]
        if errors:
            raise BadImage(f"{len(errors)} of {len(paths)} image(s) cannot be used: {'; '.join(errors)}")
    return np.load(target, mmap_mode="r")


def first_decode(paths, size: int, harmonise_to=None, desc: str = "checking", keep_usable: bool = True) -> list:
    """Each image's problem ('' when usable), from one decode per image that checks and resizes it. The array is
    cached as load_images reads it when every image is usable; otherwise (keep_usable) the usable images' array,
    so a split that skips the bad ones is served without decoding again."""
    paths = [Path(p) for p in paths]
    target = cache_file(paths, size, None, harmonise_to)
    if target.is_file():
        return [""] * len(paths)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.first.tmp.npy")
    try:
        out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=(len(paths), size, size))
        reasons = fill(out, paths, size, unchanged, harmonise_to, desc)
        usable = [row for row, why in enumerate(reasons) if not why]
        out.flush()
        if len(usable) == len(paths):
            os.replace(partial, target)
        elif usable and keep_usable:
            publish(cache_file([paths[r] for r in usable], size, None, harmonise_to), len(usable), size,
                    lambda kept: copy_rows(kept, out, usable))
        del out
    finally:
        partial.unlink(missing_ok=True)
    return reasons


def fill(out: np.ndarray, paths, size: int, step=unchanged, harmonise_to=None, desc: str = "decoding") -> list:
    """Decode in threads straight into out (N, size, size), in path order, each image checked and resized in the
    same decode (no list stacked: peak memory stays near one array); each image's problem ('' when usable)."""
    def one(item):
        row, path = item
        out[row] = step(resized(decoder.checked_pixels(path), size, harmonise_to))

    before = Image.core.get_blocks_max()  # Pillow keeps freed image memory for reuse while decoding, then as it was
    Image.core.set_blocks_max(max(before, THREADS * BLOCKS_PER_THREAD))
    try:
        return decoded(one, list(enumerate(paths)), f"{desc} {len(paths)} images at {size}px")
    finally:
        Image.core.set_blocks_max(before)


def decoded(work, items: list, desc: str) -> list:
    """work(item) for every item in threads, with a progress bar; each item's BadImage reason ('' when none)."""
    def one(item):
        try:
            work(item)
            return ""
        except BadImage as err:
            return str(err)

    with ThreadPoolExecutor(THREADS) as pool:
        return list(tqdm(pool.map(one, items), total=len(items), desc=desc, delay=PROGRESS_AFTER_S))


def publish(target: Path, count: int, size: int, write) -> None:
    """Fill a new (count, size, size) array with write(out), then move it into place whole."""
    def fill_new(tmp):
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(count, size, size))
        write(out)
        out.flush()

    write_atomic(target, fill_new)


def copy_rows(out: np.ndarray, source: np.ndarray, rows, step=unchanged) -> None:
    """out[i] = step(source[rows[i]]), one row at a time, so no second array is held in memory."""
    for i, row in enumerate(rows):
        out[i] = step(np.array(source[row]))
