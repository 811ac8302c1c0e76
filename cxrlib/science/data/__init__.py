"""Splits, tf.data pipelines and the procedural synthetic set."""
