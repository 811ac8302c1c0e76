"""Step 3 of the data path: each kept row's image file found (in images/ or images_0XX/images/, as NIH ships them),
its content hash and its native size read from its header, and any problem already known.

Hash and header are read once per file and kept in a small SQLite index under the cache folder, keyed by
the file's absolute path, size, mtime and ctime, so a file replaced by another of the same size and name is
hashed (and checked) afresh, and every cache or result keyed by content hashes is invalidated. Reading the
header decodes no pixel: whether the picture itself is usable is learnt from the first decode that a split
needs (step 5, images.first_touch), and stored here, so no image is decoded only to be checked.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import warnings
from contextlib import closing, contextmanager
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from tqdm.std import tqdm  # plain text, never a notebook widget the static book cannot render

from cxrlib.core.config import PROGRESS_AFTER_S, cache_dir
from cxrlib.core.errors import DataError
from cxrlib.machinery.inputs.decode import inspect_header

# Bump when the checks in decode.inspect_header or decode.checked_pixels change, so old verdicts are recomputed.
# 3: every IHDR of a PNG counts for its stated size, not only a first one.
INDEX_VERSION = 3
COLUMNS = ("path", "size", "mtime_ns", "ctime_ns", "version", "sha256", "width", "height", "problem")
# What the table gains per image from its file; problem is '' for a usable image, None while its pixels have not
# been decoded yet.
RECORD = ("sha256", "width", "height", "problem")


def on_disk(table: pd.DataFrame, place, drops) -> tuple:
    """(the table with each row's path, sha256, width, height and problem, DropSummary). A partial NIH download
    keeps the images present and counts the rest as missing; the sample and a synthetic set must be whole."""
    found = index_images(place.root)
    missing = [n for n in table["Image Index"] if n not in found]
    if missing and place.kind == "nih" and len(missing) < len(table):
        warnings.warn(f"{len(missing)} of {len(table)} labelled images are not on disk "
                      f"(e.g. {', '.join(missing[:3])}); using the {len(table) - len(missing)} present")
        table = table[table["Image Index"].isin(found)].reset_index(drop=True)
        drops = drops.add("missing image", missing)
    elif missing:
        raise DataError(f"{len(missing)} image(s) listed in {place.label_file.name} are missing under {place.root}: "
                        f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    paths = [found[n] for n in table["Image Index"]]
    records = pd.DataFrame(file_records(paths, desc="checking"), columns=RECORD)
    return pd.concat([table.assign(path=paths), records], axis=1), drops


def index_images(root: Path) -> dict:
    """NIH ships images in images/ or in images_0XX/images/; find both layouts."""
    found = {}
    for folder in [root / "images", *sorted(root.glob("images_*/images")), root]:
        if folder.is_dir():
            for path in folder.glob("*.png"):
                found.setdefault(path.name, path)
    return found


def index_path() -> Path:
    """The SQLite file that remembers every hashed image."""
    return cache_dir() / "content_index.sqlite"


def threads() -> int:
    """Reading and decoding threads: Pillow and hashlib release the GIL, so a few per core pay."""
    return min(8, (os.cpu_count() or 2) * 2)


@contextmanager
def _connect():
    """Open (and create) the index for one transaction; a generous timeout lets parallel runs share it."""
    with closing(sqlite3.connect(index_path(), timeout=120)) as con, con:
        con.execute(f"CREATE TABLE IF NOT EXISTS files ({', '.join(COLUMNS)}, PRIMARY KEY (path))")
        yield con


def _stat_key(path: Path) -> tuple:
    """What must be unchanged for a stored record to still describe the file."""
    try:
        st = path.stat()
    except OSError as err:
        raise DataError(f"cannot read image file {path}: {err.strerror or err}") from err
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, INDEX_VERSION


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


def file_records(paths, desc: str = "hashing") -> list:
    """(sha256, width, height, problem) per path, in order; files not seen before (or changed since) are read in threads."""
    paths = [Path(p).expanduser().resolve() for p in paths]
    keys = [_stat_key(p) for p in paths]
    with _connect() as con:  # json_each: any number of paths in one query, whatever SQLite's parameter limit
        rows = con.execute("SELECT * FROM files WHERE path IN (SELECT value FROM json_each(?))",
                           [json.dumps([str(p) for p in paths])])
        stored = {row[0]: row for row in rows}
    records, stale = {}, []
    for path, key in zip(paths, keys):
        row = stored.get(str(path))
        if row is not None and tuple(row[1:5]) == key:
            records[str(path)] = tuple(row[5:9])
        else:
            stale.append((path, key))
    if stale:
        records.update(_inspect_and_store(stale, desc))
    return [records[str(p)] for p in paths]


def _inspect_and_store(stale: list, desc: str, chunk: int = 2000) -> dict:
    """Read new files in threads, storing each chunk as it is done, so an interrupted first pass over a
    large set keeps what it had read."""
    found = {}
    with ThreadPoolExecutor(threads()) as pool, tqdm(total=len(stale), desc=f"{desc} {len(stale)} images",
                                                   delay=PROGRESS_AFTER_S) as progress:
        for start in range(0, len(stale), chunk):
            part = stale[start:start + chunk]
            fresh = list(pool.map(lambda item: inspect_file(item[0]), part))
            with _connect() as con:
                con.executemany(f"INSERT OR REPLACE INTO files VALUES ({', '.join('?' * len(COLUMNS))})",
                                [(str(p), *k, *r) for (p, k), r in zip(part, fresh)])
            found.update({str(p): r for (p, _), r in zip(part, fresh)})
            progress.update(len(part))
    return found


def content_hashes(paths) -> list:
    """sha256 of each file's bytes, computed once per version of the file."""
    return [r[0] for r in file_records(paths)]
