"""Benchmarks of cxr-book: `python -m benchmarks` (or `make bench`) runs the suite; see benchmarks/__main__.py."""
