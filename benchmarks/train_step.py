"""Milliseconds per training step of the quickstart model, for the oneDNN on/off comparison.

Runs the toolkit's own training step (:func:`edge_deeplab.training.train.make_train_step`) on the quickstart
model (128x128, alpha 0.35, output stride 16, 5 classes) with random batches, so it measures the
kernels and nothing of the data pipeline. Run it once per setting, on an idle machine:

    TF_ENABLE_ONEDNN_OPTS=0 python -m benchmarks.train_step --steps 30
    TF_ENABLE_ONEDNN_OPTS=1 python -m benchmarks.train_step --steps 30

It prints one JSON line: median/min/max ms per step, the TF_ENABLE_ONEDNN_OPTS value in effect,
the CPU's ISA features and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def measure(steps: int = 30, warmup: int = 5, batch: int = 16) -> dict:
    import numpy as np

    from edge_deeplab.core._tf import keras, tf
    from edge_deeplab.core.sysinfo import cpu_isa
    from edge_deeplab.model.deeplab import build_model
    from edge_deeplab.model.presets import QUICKSTART_MODEL
    from edge_deeplab.training.train import make_train_step

    cfg = QUICKSTART_MODEL
    h, w = cfg.input_size
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (batch, h, w, 3)).astype(np.float32)
    y = rng.integers(0, cfg.num_classes, (batch, h, w)).astype(np.int32)
    strategy = tf.distribute.get_strategy()
    model = build_model(cfg)
    opt = keras.optimizers.Adam(1e-3)
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False)
    it = iter(strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors((x, y)).repeat()))
    step = make_train_step(model, opt, strategy, step_var, weight_decay=4e-5)
    for _ in range(warmup):
        float(step(it))
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        float(step(it))
        times.append(1000 * (time.perf_counter() - t0))
    return {"ms_per_step_median": round(statistics.median(times), 1),
            "ms_per_step_min": round(min(times), 1), "ms_per_step_max": round(max(times), 1),
            "steps": steps, "batch": batch, "input": [h, w],
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
            "isa": cpu_isa(), "loadavg": [round(v, 2) for v in os.getloadavg()]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch", type=int, default=16)
    a = p.parse_args(argv)
    if a.steps < 1 or a.warmup < 0 or a.batch < 1:
        p.error("--steps and --batch must be >= 1, --warmup >= 0")
    print(json.dumps(measure(a.steps, a.warmup, a.batch)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
