"""cxrlib: the library behind cxr-book (NIH ChestX-ray14, four single-label classes)."""
import os

# TensorFlow's C++ start-up chatter drowns the chapters' own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from cxrlib.core.config import CLASSES, REPO_ROOT  # noqa: E402
from cxrlib.core.manifest import PROFILES  # noqa: E402

__version__ = "0.1.0"
__all__ = ["CLASSES", "PROFILES", "REPO_ROOT", "__version__"]
