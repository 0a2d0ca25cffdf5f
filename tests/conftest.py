"""Shared pytest setup: environment, the one GPU gate (the ``gpu`` marker) and the trained model.

* ``@pytest.mark.gpu`` (or ``pytest.param(..., marks=pytest.mark.gpu)``): the test runs only where
  the LiteRT GPU accelerator starts. This is the ONLY place that decides it: one probe per session
  (:func:`tests.support.gpu.gpu_capability`). A missing capability (no Vulkan device / driver) is a
  skip that names it; a probe that crashes or hangs is an error, never a skip.
* ``trained``: the small trained model and its exports of every variant
  (:mod:`tests.support.trained`), built once per session and cached by the code that makes them.
* ``board_python``: the python of the tflite_runtime-only "board" venv
  (:mod:`tests.support.board`, ``scripts/tflite_runtime_venv.sh``), made once and cached.
* ``selfie_teacher``: MediaPipe's selfie segmentation ``.tflite`` from its npm package
  (:mod:`tests.support.real_media`), fetched once and cached; skipped only where npm is missing.
"""

import os

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_runtest_setup(item):
    if item.get_closest_marker("gpu") is None:
        return
    from tests.support.gpu import gpu_capability

    cap = gpu_capability(item.config)
    if cap["available"]:
        return
    if cap["missing_capability"]:
        pytest.skip(f"no LiteRT GPU accelerator here: {cap['error']}")
    pytest.fail(f"the LiteRT GPU probe failed (a crash, not a missing capability): {cap['error']}",
                pytrace=False)


@pytest.fixture(scope="session")
def trained(pytestconfig):
    """The small trained model: ``{"keras", "run", "data", "exports": {variant: path}, ...}``."""
    from tests.support.trained import trained_artifacts

    return trained_artifacts(pytestconfig)


@pytest.fixture(scope="session")
def board_python():
    """The board venv's python (tflite_runtime 2.14, NumPy 1, no TensorFlow/LiteRT); see
    :mod:`tests.support.board` for when it skips and when it fails."""
    from tests.support.board import board_python as make

    return make()


@pytest.fixture(scope="session")
def selfie_teacher(pytestconfig):
    """MediaPipe's selfie segmentation model (a real person segmenter; see :mod:`tests.support.real_media`)."""
    from tests.support.real_media import CapabilityMissing
    from tests.support.real_media import selfie_teacher as fetch

    try:
        return fetch(pytestconfig.cache.mkdir("real_media"))
    except CapabilityMissing as e:
        pytest.skip(f"no real teacher here: {e}")
