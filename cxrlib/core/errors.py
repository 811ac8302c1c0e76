"""One exception type for everything wrong with the user's data, so messages stay readable."""


class DataError(ValueError):
    """Raised for bad metadata, missing or undecodable images, and unsafe file names."""
