"""Our exports in a real client: MediaPipe Tasks ``ImageSegmenter`` (mediapipe 0.10.35).

MediaPipe pins its own numpy/OpenCV, so it lives in its own venv (``.venv-mediapipe``, made and
cached by ``scripts/mediapipe_venv.sh``, created when absent) and runs
``tests/support/mediapipe_segment.py`` there. The venv comes from the one capability gate
(``mediapipe_python`` in ``tests/conftest.py``): skipped, with the reason, only if the venv cannot
be created (e.g. no network for pip) and never under ``CI=true``; a broken venv fails.

Per export with float32 or uint8 input: MediaPipe loads it, ``labels`` equal ours by name, and
its category mask agrees with our runtime's argmax on >= 99.5% of pixels of held-out images fed
at the model's input size. The model's classes follow image colour/brightness with wide margins
(:mod:`tests.support.segmentation_models`), so agreement means MediaPipe fed the input right.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from converters.calibration import structured_images
from converters.export import DEFAULT_CALIBRATION_STEPS

pytestmark = pytest.mark.mediapipe

ROOT = Path(__file__).resolve().parents[2]
HELPER = ROOT / "tests" / "support" / "mediapipe_segment.py"
MIN_AGREEMENT = 0.995

#: name -> (variant, kwargs). qat-int8 is left out: a QAT model needs training (or range
#: calibration) before its input quantization means anything; see the standard-metadata tests.
VARIANTS = {
    "float32": ("float32", {}),
    "float16": ("float16", {}),
    "dynamic": ("dynamic", {}),
    "int8_uint8_io": ("int8", {}),
    "int8_float_io": ("int8", {"io_type": "float32"}),
    "float32_raw_pixels": ("float32", {"normalize_in_graph": True}),
    "int8_raw_pixels": ("int8", {"normalize_in_graph": True}),
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, pytestconfig):
    from tests.support.segmentation_models import LABELS
    from tests.support.tiny import TINY, tiny_tflite

    d = tmp_path_factory.mktemp("mp")
    size = tuple(TINY["input_size"])
    # held out: int8 calibration uses generated scenes with seed 0
    images = list(structured_images(6, size, seed=1000))
    paths = []
    for i, im in enumerate(images):
        paths.append(str(d / f"heldout_{i}.npy"))
        np.save(paths[-1], im)
    cases = {**VARIANTS, "int8_int8_io": ("int8", {"io_type": "int8"}),
             "float32_classmap": ("float32", {"output": "classmap"})}
    models = {name: str(tiny_tflite(pytestconfig, v, weights="colour",
                                    options={"calibration_steps": DEFAULT_CALIBRATION_STEPS, **kw}))
              for name, (v, kw) in cases.items()}
    return d, images, paths, models, list(LABELS)


def _segment(py, model, out_dir, images) -> dict:
    proc = subprocess.run([py, str(HELPER), str(model), str(out_dir), *images],
                          capture_output=True, text=True, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"helper failed: {proc.stderr[-2000:]}"
    return json.loads(lines[-1])


def _ours(model, images):
    from edge_deeplab.runtime import open_runner

    with open_runner(model) as r:
        outs = [r.predict(im) for im in images]
    return [y if y.ndim == 2 else y.argmax(-1) for y in outs]


@pytest.mark.parametrize("name", list(VARIANTS))
def test_mediapipe_segments_like_our_runtime(mediapipe_python, setup, name):
    d, images, paths, models, labels = setup
    res = _segment(mediapipe_python, models[name], d / f"out_{name}", paths)
    assert res["ok"], f"MediaPipe refused {name}: {res}"
    assert res["labels"] == labels
    ours = _ours(models[name], images)
    agree = float(np.mean([np.mean(np.load(m).astype(int) == o.astype(int))
                           for m, o in zip(res["masks"], ours)]))
    classes = np.unique(np.concatenate([o.ravel() for o in ours]))
    print(f"{name}: MediaPipe vs our runtime argmax agreement {agree:.5f} "
          f"({len(images)} images {images[0].shape[:2]}, classes {classes.tolist()})")
    assert len(classes) == 3  # the comparison is not vacuous
    assert agree >= MIN_AGREEMENT


def test_int8_input_is_refused_and_analyze_says_so(mediapipe_python, setup):
    from converters.analyze import analyze_tflite, format_report

    d, _, paths, models, _ = setup
    res = _segment(mediapipe_python, models["int8_int8_io"], d / "out_int8io", paths[:1])
    assert not res["ok"] and res["stage"] == "load" and "INT8" in res["error"]
    text = format_report(analyze_tflite(models["int8_int8_io"], gpu=False))
    assert "MediaPipe Tasks ImageSegmenter: refuses it: input tensor is int8" in text


def test_classmap_output_is_flagged(mediapipe_python, setup):
    """MediaPipe loads an int32 class-map model but reads it as scores (wrong masks): analyze
    must not call it compatible."""
    from edge_deeplab.core.contract.tflite_metadata import mediapipe_compatibility

    d, images, paths, models, labels = setup
    c = mediapipe_compatibility(models["float32_classmap"])
    assert not c.accepted and any("--output logits" in p for p in c.problems)
    res = _segment(mediapipe_python, models["float32_classmap"], d / "out_cm", paths)
    if res["ok"]:
        ours = _ours(models["float32_classmap"], images)
        agree = float(np.mean([np.mean(np.load(m) == o) for m, o in zip(res["masks"], ours)]))
        print(f"float32_classmap: MediaPipe loads it; agreement with our class map {agree:.5f}")
        assert agree < MIN_AGREEMENT  # if MediaPipe ever gets this right, revisit the verdict
