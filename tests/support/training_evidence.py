"""Evidence that a distributed training step ran as claimed: the first step's loss, recomputed.

With ``R`` replicas each replica gets ``1/R`` of the global batch and BatchNorm (training mode)
normalizes with that slice's statistics; the step's reported loss is the mean of the slices'
losses. A single replica computes the pooled loss of the whole batch. Rebuilding the initial model
(same seed) and the first global batch (same data pipeline and seed) gives both numbers exactly,
so a logged first-step loss tells how many replicas ran and whether they saw the right data.
"""

from __future__ import annotations

import json
from pathlib import Path


def first_step_losses(run_dir, data_dir, replicas=(1, 2)) -> dict:
    """``{R: loss of step 1 as R replicas compute it}`` for the run in ``run_dir``."""
    from edge_deeplab.core._tf import tf
    from edge_deeplab.data import load_dataset
    from edge_deeplab.data.pipeline import make_train_dataset
    from edge_deeplab.model.config import ModelConfig, TrainConfig
    from edge_deeplab.training.train import masked_cross_entropy
    from tests.support.tiny import seeded_model

    saved = json.loads((Path(run_dir) / "train_config.json").read_text())
    mc, tc = ModelConfig.from_dict(saved["model"]), TrainConfig.from_dict(saved["train"])
    ds = load_dataset(tc.dataset, str(data_dir), tc.split)
    model = seeded_model(mc, tc.seed)  # seeded as train() does right before building the model
    batch = make_train_dataset(ds, crop_size=mc.input_size, batch_size=tc.batch_size, seed=tc.seed,
                               min_scale=tc.min_scale, max_scale=tc.max_scale, flip=tc.flip,
                               cache=False)
    x, y = next(iter(batch))

    def ce(xx, yy):
        s, c = masked_cross_entropy(yy, model(xx, training=True))
        return float(s / tf.maximum(c, 1.0))

    out = {}
    for r in replicas:
        k = tc.batch_size // r
        out[r] = sum(ce(x[i * k:(i + 1) * k], y[i * k:(i + 1) * k]) for i in range(r)) / r
    return out
