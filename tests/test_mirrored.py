"""The fused net under tf.distribute.MirroredStrategy (two logical CPU devices stand in for two GPUs) trains to the
weights one device reaches on the same batches."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import json
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from cxrlib.science.data.pipeline import make_dataset, steps_per_epoch
from cxrlib.science.models import count_params, fused_net

rng = np.random.default_rng(0)
images, labels = rng.integers(0, 256, (16, 40, 40), dtype=np.uint8), np.arange(16) % 4


def train(strategy, resizer):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = fused_net(40, 36, resizer=resizer)
        start = [w.numpy().copy() for w in model.trainable_weights]
        # plain SGD: each update is the gradient itself, so a gradient summed or averaged wrongly over the replicas
        # shows (Adam's first steps move every weight by its learning rate, whatever the gradient's scale)
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    history = model.fit(make_dataset(images, labels, 8, shuffle=True, seed=0), steps_per_epoch=steps_per_epoch(16, 8),
                        epochs=1, verbose=0)
    return start, [w.numpy() for w in model.trainable_weights], history.history["loss"][-1]


strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    params = count_params(fused_net(40, 36))  # the report's fused net, built under the strategy
# without the resizer, whose BatchNormalization normalises each replica's half batch on its own (as Keras does
# unless synchronized), two replicas must compute what one device computes on the whole batch
start, mirrored, mirrored_loss = train(strategy, resizer=False)
start_one, one, one_loss = train(tf.distribute.get_strategy(), resizer=False)
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "params": params, "loss": [mirrored_loss, one_loss],
                  "same start": all(np.array_equal(a, b) for a, b in zip(start, start_one)),
                  "largest difference": max(float(np.abs(a - b).max()) for a, b in zip(mirrored, one)),
                  "relative difference": max(float(np.abs(a - b).max() / np.abs(b - c).max())
                                             for a, b, c in zip(mirrored, one, start_one))}))
"""


def test_mirrored_over_two_devices_trains_as_one_device_does():
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600, cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root), "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["params"] == {"total": 9_211_847, "trainable": 9_211_719, "non_trainable": 128}
    assert result["same start"]
    # every weight array moved where one device moved it, to float32 rounding
    assert result["relative difference"] < 1e-3, result
    assert abs(result["loss"][0] - result["loss"][1]) < 1e-5 and math.isfinite(result["loss"][0])
