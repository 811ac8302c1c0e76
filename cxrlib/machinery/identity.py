"""One identity per result: a hash of everything that made it.

A trained model, a predictions file, a metrics row, cached features or a chapter's whole output is
reused only when its identity matches exactly: the build spec, the training settings, the exact split
(image id, label and split of every row), the content of the images, the upstream results it started
from, and the library code. The runner's stamps and a notebook run by hand use the same functions.
"""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache

from cxrlib.core.config import REPO_ROOT

# Settings that shape the data a chapter reads (rows or pixels); part of every data identity.
DATA_SETTINGS = ("seed", "fractions", "caps", "training_set", "max_per_class", "max_per_patient",
                 "harmonise_resolution", "on_bad_image")
# Settings that shape how a model trains; part of every trained model's identity.
TRAINING_SETTINGS = ("epochs", "patience", "batch_size", "learning_rate", "seed", "class_weight",
                     "mixed_precision", "deterministic", "run_eagerly", "balance_predictions")


def digest(*parts) -> str:
    """A stable short hash of JSON-able parts (dict keys sorted, tuples as lists)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@lru_cache(maxsize=1)
def _code_digest_cached(stamp: tuple) -> str:
    """Hash of the library's source files (cached per set of file mtimes)."""
    h = hashlib.sha256()
    for path in sorted((REPO_ROOT / "cxrlib").rglob("*.py")):
        h.update(path.relative_to(REPO_ROOT).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:20]


def code_digest() -> str:
    """Changes whenever any file of the library changes, so results made by other code are not reused."""
    files = sorted((REPO_ROOT / "cxrlib").rglob("*.py"))
    return _code_digest_cached(tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files))


def data_identity(data, settings: dict) -> str:
    """The exact split (every row's image id, label and split, in order), the images' content and the settings
    that shape their pixels."""
    rows = data.table[["Image Index", "label", "split"]].astype(str).to_numpy().tolist()
    return digest(digest(rows), data.source.fingerprint(), getattr(data, "harmonise_to", None),
                  {k: settings.get(k) for k in DATA_SETTINGS})


def result_identity(spec: dict, settings: dict, data_id: str, upstream=()) -> str:
    """A trained model's identity: its build spec, training settings, data, upstream results, code."""
    return digest(spec, {k: settings.get(k) for k in TRAINING_SETTINGS}, data_id, sorted(upstream),
                  code_digest())


def chapter_identity(chapter: str, notebook_bytes: bytes, settings: dict, data_id: str, upstream=()) -> str:
    """A chapter's whole output: its notebook, resolved settings, data, upstream chapters and code."""
    notebook = hashlib.sha256(notebook_bytes).hexdigest()
    return digest(chapter, notebook, settings, data_id, list(upstream), code_digest())
