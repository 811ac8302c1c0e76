"""What each image file holds: a content hash, its native size (from its header) and whether it is usable.

Hash and header are read once per file and kept in a small SQLite index under the cache folder, keyed by
the file's absolute path, size, mtime and ctime, so a file replaced by another of the same size and name is
hashed (and checked) afresh, and every cache or result keyed by content hashes is invalidated. Reading the
header decodes no pixel: whether the picture itself is usable is learnt from the first decode that a split
needs (images.first_decode), and stored here, so no image is decoded only to be checked.
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
from contextlib import closing, contextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm.std import tqdm  # plain text, never a notebook widget the static book cannot render

from cxrlib.core.config import PROGRESS_AFTER_S, cache_dir
from cxrlib.core.errors import DataError
from cxrlib.machinery.inputs.decode import inspect_header

# Bump when the checks in images.inspect_header or images.checked_pixels change, so old verdicts are recomputed.
# 3: every IHDR of a PNG counts for its stated size, not only a first one.
INDEX_VERSION = 3
COLUMNS = ("path", "size", "mtime_ns", "ctime_ns", "version", "sha256", "width", "height", "problem")


@dataclass(frozen=True)
class FileRecord:
    """One image file: sha256 of its bytes, native width and height, and why it is unusable.

    problem is '' for a usable image, None while its pixels have not been decoded yet.
    """

    sha256: str
    width: int
    height: int
    problem: str | None


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
        con.execute("CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, "
                    "mtime_ns INTEGER, ctime_ns INTEGER, version INTEGER, sha256 TEXT, width INTEGER, "
                    "height INTEGER, problem TEXT)")
        yield con


def _stat_key(path: Path) -> tuple:
    """What must be unchanged for a stored record to still describe the file."""
    try:
        st = path.stat()
    except OSError as err:
        raise DataError(f"cannot read image file {path}: {err.strerror or err}") from err
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, INDEX_VERSION


def inspect_file(path: Path) -> FileRecord:
    """Read the file once: hash its bytes and read its header (size, format, pixel budget), decoding no pixel."""
    try:
        data = path.read_bytes()
    except OSError as err:
        return FileRecord("", 0, 0, f"cannot read: {err.strerror or err}")
    width, height, problem = inspect_header(data)
    return FileRecord(hashlib.sha256(data).hexdigest(), width, height, problem)


def record_problems(paths, problems) -> None:
    """Store what decoding found ('' for usable), so an image is checked once per version of the file."""
    rows = [(problem, str(Path(p).expanduser().resolve())) for p, problem in zip(paths, problems)]
    with _connect() as con:
        con.executemany("UPDATE files SET problem = ? WHERE path = ?", rows)


def file_records(paths, desc: str = "hashing") -> list:
    """A FileRecord per path, in order; files not seen before (or changed since) are read in threads."""
    paths = [Path(p).expanduser().resolve() for p in paths]
    keys = [_stat_key(p) for p in paths]
    with _connect() as con:
        stored = {row[0]: row for row in _rows(con, paths)}
    records, stale = {}, []
    for path, key in zip(paths, keys):
        row = stored.get(str(path))
        if row is not None and tuple(row[1:5]) == key:
            records[str(path)] = FileRecord(row[5], row[6], row[7], row[8])
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
                                [(str(p), *k, r.sha256, r.width, r.height, r.problem)
                                 for (p, k), r in zip(part, fresh)])
            found.update({str(p): r for (p, _), r in zip(part, fresh)})
            progress.update(len(part))
    return found


def _rows(con, paths) -> list:
    """Stored rows for these paths, fetched in chunks that SQLite's parameter limit allows."""
    rows, names = [], [str(p) for p in paths]
    for start in range(0, len(names), 900):
        chunk = names[start:start + 900]
        rows += con.execute(f"SELECT * FROM files WHERE path IN ({', '.join('?' * len(chunk))})", chunk).fetchall()
    return rows


def content_hashes(paths) -> list:
    """sha256 of each file's bytes, computed once per version of the file."""
    return [r.sha256 for r in file_records(paths)]
