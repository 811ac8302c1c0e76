"""Shared facts every layer reads: the chapter manifest (chapters, parameters, profiles), classes, paths, errors."""
