"""The hard requirement of training, in a file of its own: it is the suite's longest test (about
5 min on 2 cores), and parallel test workers take test files whole, so alone here it runs beside
the rest of the training tests instead of after them."""

import dataclasses
import json
import time

import pytest

from edge_deeplab.model.presets import QUICKSTART_MODEL, QUICKSTART_TRAIN
from edge_deeplab.training.train import train

pytestmark = pytest.mark.kernels


@pytest.mark.slow
def test_quickstart_recipe_reaches_target_miou(tmp_path):
    """>= 0.80 held-out mIoU on the synthetic dataset with the quickstart recipe."""
    from edge_deeplab.data.synthetic import ensure_synthetic

    data = ensure_synthetic(tmp_path / "syn")
    t = time.time()
    result = train(QUICKSTART_MODEL, dataclasses.replace(QUICKSTART_TRAIN, data_dir=str(data)),
                   tmp_path / "run", verbose=0)
    elapsed = time.time() - t
    print(json.dumps({"elapsed_s": round(elapsed, 1), **result}))
    assert result["best_miou"] >= 0.80, result
