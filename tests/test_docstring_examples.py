"""The examples in cxrlib's docstrings run and give what they show (a docstring example is a claim too)."""
from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

import cxrlib

ROOT = Path(cxrlib.__file__).parent
WITH_EXAMPLES = sorted(".".join(("cxrlib", *path.relative_to(ROOT).with_suffix("").parts))
                       for path in ROOT.rglob("*.py") if ">>> " in path.read_text())


def test_some_modules_carry_examples():
    assert len(WITH_EXAMPLES) >= 3


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples_hold(name):
    found = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert found.attempted > 0 and found.failed == 0
