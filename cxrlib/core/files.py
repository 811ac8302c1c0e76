"""Atomic writes: a file is either its old self or its new self, never half of one."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd


def write_atomic(path: Path, write) -> Path:
    """Call write(tmp_path), then move the result into place in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_csv(path: Path, frame: pd.DataFrame, index: bool = False) -> Path:
    """Atomic CSV."""
    return write_atomic(path, lambda tmp: frame.to_csv(tmp, index=index))


def write_json(path: Path, data) -> Path:
    """Atomic JSON."""
    return write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2, default=str)))
