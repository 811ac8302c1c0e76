"""One identity per result: a hash of everything that shapes it.

A trained model or cached features are reused only when their identity matches exactly: build spec, training
settings, the exact split (image id, label and split of every row), the images' content and decode version, the
upstream results, the chapter's notebook and the code of science/ and core/ (not present/ or machinery/, so a
figure fixed there trains nothing, nor the manifest, whose values enter as settings and whose words shape no number).
A chapter's page adds the whole library, whose present/ draws it.
"""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache

from cxrlib.core.config import REPO_ROOT
from cxrlib.machinery.inputs import decode

PACKAGE = REPO_ROOT / "cxrlib"
NUMBERS = ("core", "science")  # the layers whose code shapes a trained result's numbers
# ...but the manifest: its values reach an identity as the resolved settings and the upstream chapters' identities,
# and its words (help, titles, report rows) shape no number, so a reworded help line trains nothing
NOT_NUMBERS = ("core/manifest.py",)
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


@lru_cache(maxsize=4)
def _files_digest(stamp: tuple) -> str:
    """Hash of source files (cached per set of paths, mtimes and sizes)."""
    h = hashlib.sha256()
    for path, _, _ in stamp:
        h.update(path.encode())
        h.update((PACKAGE.parent / path).read_bytes())
    return h.hexdigest()[:20]


def _layers_digest(layers=None) -> str:
    """Hash of the .py files of these layers of the package but NOT_NUMBERS (None: all of it)."""
    folders = [PACKAGE / layer for layer in layers] if layers else [PACKAGE]
    skipped = {PACKAGE / path for path in NOT_NUMBERS} if layers else set()
    files = sorted(p for folder in folders for p in folder.rglob("*.py") if p not in skipped)
    return _files_digest(tuple((p.relative_to(PACKAGE.parent).as_posix(), p.stat().st_mtime_ns, p.stat().st_size)
                               for p in files))


def code_digest() -> str:
    """The code that shapes numbers (science and core): results made by other such code are never reused."""
    return _layers_digest(NUMBERS)


def library_digest() -> str:
    """The whole package: what a chapter's page (its text, tables and figures) is made by."""
    return _layers_digest()


def data_identity(data, settings: dict) -> str:
    """The exact split (each row's image id, label, split), the images' content, decoding and data settings."""
    rows = data.table[["Image Index", "label", "split"]].astype(str).to_numpy().tolist()
    return digest(digest(rows), data.source.fingerprint(), getattr(data, "harmonise_to", None), decode.DECODE_VERSION,
                  {k: settings.get(k) for k in DATA_SETTINGS})


def notebook_digest(notebook_bytes: bytes) -> str:
    """A chapter's own notebook, as its identities take it."""
    return hashlib.sha256(notebook_bytes).hexdigest()[:20]


def result_identity(spec: dict, settings: dict, data_id: str, notebook: str, upstream=()) -> str:
    """A trained model's: spec, training settings, data, upstream results, notebook and the code shaping numbers."""
    return digest(spec, {k: settings.get(k) for k in TRAINING_SETTINGS}, data_id, sorted(upstream), notebook,
                  code_digest())


def chapter_parts(chapter: str, notebook: str, settings: dict, data_id: str, upstream: dict) -> dict:
    """What a chapter's page is made of (chapter.json keeps it, so the runner can say what changed)."""
    return {"chapter": chapter, "notebook": notebook, "settings": digest(settings), "data": data_id,
            "upstream": dict(upstream), "code": library_digest()}


def chapter_identity(parts: dict) -> str:
    """A chapter's whole output: its notebook, resolved settings, data, upstream chapters and the library."""
    return digest(parts)
