"""Shared pytest setup: environment, the one capability gate and the trained model.

The capability gate (:mod:`tests.support.capability`) is the ONLY place that decides whether a
test may skip for something the machine lacks; each capability is probed once per session:

* ``@pytest.mark.gpu`` (or ``pytest.param(..., marks=pytest.mark.gpu)``): the test runs only where
  the LiteRT GPU accelerator starts (:func:`tests.support.gpu.probe_gpu`).
* ``board_python``: the python of the tflite_runtime-only "board" venv
  (:mod:`tests.support.board`, ``scripts/tflite_runtime_venv.sh``), made once and cached.
* ``mediapipe_python``: the python of the MediaPipe Tasks venv (:mod:`tests.support.mediapipe_venv`,
  ``scripts/mediapipe_venv.sh``), made once and cached.
* ``strace``: the path of ``strace``, which the multi-worker test runs each worker under to prove
  which process wrote which file.
* ``selfie_teacher``: MediaPipe's selfie segmentation ``.tflite`` from its npm package
  (:mod:`tests.support.real_media`), fetched once and cached.

A missing capability is a skip that names it, except under ``CI=true`` for the ones this project
installs itself (lavapipe, the two side venvs, strace): there it fails. A probe that crashes, hangs or makes
a broken venv fails everywhere. ``trained`` (not gated): the small trained model and its exports
of every variant (:mod:`tests.support.trained`), built once per session and cached.
"""

import os

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def require(name: str, probe):
    """``probe()``'s result, or the gate's skip or failure (:func:`tests.support.capability.verdict`):
    the suite's only ``pytest.skip``."""
    from tests.support.capability import verdict

    kind, value = verdict(name, probe)
    if kind == "skip":
        pytest.skip(value)
    if kind == "fail":
        pytest.fail(value, pytrace=False)
    return value


def pytest_runtest_setup(item):
    if item.get_closest_marker("gpu") is None:
        return
    from tests.support.gpu import probe_gpu

    require("gpu", lambda: probe_gpu(item.config))


@pytest.fixture(scope="session")
def trained(pytestconfig):
    """The small trained model: ``{"keras", "run", "data", "exports": {variant: path}, ...}``."""
    from tests.support.trained import trained_artifacts

    return trained_artifacts(pytestconfig)


@pytest.fixture(scope="session")
def board_python():
    """The board venv's python (tflite_runtime 2.14, NumPy 1, no TensorFlow/LiteRT), through the gate."""
    from tests.support.board import board_python as make

    return require("board", make)


@pytest.fixture(scope="session")
def mediapipe_python():
    """The MediaPipe Tasks venv's python (``str``), through the gate."""
    from tests.support.mediapipe_venv import mediapipe_python as make

    return str(require("mediapipe", make))


@pytest.fixture(scope="session")
def strace():
    """The path of ``strace`` (it must be able to trace here), through the gate."""
    from tests.support.capability import probe_strace

    return require("strace", probe_strace)


@pytest.fixture(scope="session")
def selfie_teacher(pytestconfig):
    """MediaPipe's selfie segmentation model (a real person segmenter; see :mod:`tests.support.real_media`),
    through the gate: only a machine without ``npm`` skips, in CI too (npm is not ours to install)."""
    from tests.support.capability import Missing
    from tests.support.real_media import CapabilityMissing
    from tests.support.real_media import selfie_teacher as fetch

    def probe():
        try:
            return fetch(pytestconfig.cache.mkdir("real_media"))
        except CapabilityMissing as e:
            raise Missing(str(e)) from None

    return require("npm", probe)
