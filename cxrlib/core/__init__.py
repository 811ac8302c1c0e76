"""Shared facts every layer reads: classes, profiles, paths, the chapter registry, errors."""
