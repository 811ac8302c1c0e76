"""The fused net trains under tf.distribute.MirroredStrategy (two logical CPU devices stand in for two GPUs)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import json
import math
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from cxrlib.data.pipeline import make_dataset, steps_per_epoch
from cxrlib.models import count_params, fused_net

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
keras.utils.set_random_seed(0)
with strategy.scope():
    model = fused_net(40, 36)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy")
rng = np.random.default_rng(0)
images, labels = rng.integers(0, 256, (16, 40, 40), dtype=np.uint8), np.arange(16) % 4
history = model.fit(make_dataset(images, labels, 8, shuffle=True, seed=0), steps_per_epoch=steps_per_epoch(16, 8),
                    epochs=1, verbose=0)
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "loss": history.history["loss"][-1],
                  "params": count_params(model)}))
"""


def test_fused_net_trains_one_epoch_mirrored_over_two_devices():
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600, cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root), "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert math.isfinite(result["loss"])
    assert result["params"] == {"total": 9_211_847, "trainable": 9_211_719, "non_trainable": 128}
