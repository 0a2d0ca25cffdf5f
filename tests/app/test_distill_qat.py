"""The distilled portrait student through the existing QAT and export machinery: the int8 model
stays within a point of the float one against the teacher, and runs wholly on the GPU accelerator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.kernels]


@pytest.fixture(scope="module")
def exports(pytestconfig, selfie_teacher):
    from tests.support.distilled import distilled_exports

    return distilled_exports(pytestconfig, selfie_teacher)


def _held_out_person_iou(model_path, labels):
    from edge_deeplab.evaluation.distill_report import distill_report, tflite_predictor

    rep = distill_report(tflite_predictor(model_path), labels, (128, 128))
    assert rep["overall"]["frames"] == 40  # the clip's last 40 frames
    return rep["overall"]["person_iou"]


def test_qat_int8_student_within_one_point_of_float(exports):
    # the teacher's labels of the held-out frames (the run records where they are)
    labels = json.loads((Path(exports["run"]) / "train_config.json").read_text())["train"]["data_dir"]
    f32 = _held_out_person_iou(exports["float32"], labels)
    q8 = _held_out_person_iou(exports["qat-int8"], labels)
    assert f32 >= 0.95, f32
    assert q8 >= f32 - 0.01, (q8, f32)


def test_exports_carry_the_portrait_labels(exports):
    from edge_deeplab.core.contract.semantics import labels, read_model_metadata

    for variant in ("float32", "qat-int8"):
        meta = read_model_metadata(exports[variant])
        assert labels(meta) == ["background", "person"]
        # the QAT model is run as its float parent is: frames stretched, not letterboxed
        assert meta["input_geometry"] == "stretch", (variant, meta.get("input_geometry"))


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["float32", "qat-int8"])
def test_exports_run_wholly_on_the_gpu_accelerator(exports, variant):
    from edge_deeplab.runtime import probe_accelerator

    p = probe_accelerator(exports[variant], "gpu", timeout=300)
    assert p.get("available") and not p.get("error"), p
    assert p.get("fully_accelerated") is True, p


@pytest.mark.mediapipe
def test_mediapipe_tasks_loads_the_int8_portrait_model_with_its_labels(exports, selfie_teacher,
                                                                       mediapipe_python, tmp_path):
    import subprocess

    import cv2
    import numpy as np

    from tests.app.test_distill import _clip, _teacher_person

    frames = _clip()[100::10]  # held-out frames 100 and 110
    paths = []
    for i, f in enumerate(frames):
        paths.append(str(tmp_path / f"frame_{i}.npy"))
        np.save(paths[-1], f)
    helper = Path(__file__).resolve().parents[1] / "support" / "mediapipe_segment.py"
    proc = subprocess.run([mediapipe_python, str(helper), exports["qat-int8"], str(tmp_path / "out"),
                           *paths], capture_output=True, text=True, timeout=600)
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["ok"] and res["labels"] == ["background", "person"], res
    for f, mask_path in zip(frames, res["masks"]):
        mp_person = np.load(mask_path) == 1
        teacher = _teacher_person(selfie_teacher, [f], f.shape[:2])[0]
        iou = (mp_person & teacher).sum() / (mp_person | teacher).sum()
        assert iou > 0.9, iou
        assert cv2.countNonZero(mp_person.astype(np.uint8)) > 0.2 * mp_person.size
