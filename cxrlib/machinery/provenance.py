"""Where a result came from, as the chapter's provenance line says it: the commit, the device, the versions."""
from __future__ import annotations

import platform
import subprocess

import pandas as pd

from cxrlib.core.config import REPO_ROOT


def project_commit() -> str:
    """The git commit the code ran from, marked dirty when the working tree differs."""
    try:
        head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"


def device_text() -> str:
    """CPU or the GPUs TensorFlow sees."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return f"GPU x{len(gpus)}" if gpus else f"CPU ({platform.processor() or platform.machine()})"


def versions_text() -> str:
    """The library versions that shape the numbers."""
    import keras
    import numpy
    import sklearn
    import tensorflow as tf

    return (f"Python {platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}, "
            f"NumPy {numpy.__version__}, pandas {pd.__version__}, scikit-learn {sklearn.__version__}")
