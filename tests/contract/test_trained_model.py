"""The contract's trained model is checked before any test uses it (:func:`tests.support.trained.check_trained`).

On one CPU kind the 600-step model came out weaker and its QAT model lost the person class, and 24
tests failed downstream for that one cause. The fixture now refuses such a model (rebuilding it
with the next seed, then failing once with the numbers); these tests hold what it promises.
"""

from __future__ import annotations

from tests.support.trained import FLOORS, check_trained


def test_trained_model_meets_its_floors(trained):
    print(f"seed {trained['seed']}: float {trained['float_val_miou']:.4f} "
          f"{[round(v, 3) for v in trained['float_per_class_iou']]}, QAT {trained['qat_val_miou']:.4f} "
          f"{[round(v, 3) for v in trained['qat_per_class_iou']]}")
    assert check_trained(trained) == []
    assert trained["float_val_miou"] >= FLOORS["float_miou"]
    assert min(trained["float_per_class_iou"]) >= FLOORS["float_class_iou"]
    assert "person" in trained["labels"]
    assert trained["qat_val_miou"] >= trained["float_val_miou"] - FLOORS["qat_miou_drop"]


def _manifest(**kw):
    m = {"labels": ["background", "person", "ball"], "float_val_miou": 0.62, "qat_val_miou": 0.61,
         "float_per_class_iou": [0.85, 0.42, 0.6], "qat_per_class_iou": [0.84, 0.40, 0.6]}
    return {**m, **kw}


def test_floor_check_names_each_miss():
    assert check_trained(_manifest()) == []
    assert check_trained(_manifest(qat_val_miou=None)) == ["the QAT model was not evaluated"]
    # the failure CI saw: QAT kept the mIoU close but lost half the person
    (p,) = check_trained(_manifest(qat_per_class_iou=[0.84, 0.24, 0.6], qat_val_miou=0.6))
    assert "QAT IoU of person 0.24" in p and "0.420" in p
    got = check_trained(_manifest(float_val_miou=0.5, float_per_class_iou=[0.85, 0.2, 0.6],
                                  qat_per_class_iou=[0.84, 0.2, 0.6], qat_val_miou=0.45))
    assert len(got) == 3, got
    assert "float val mIoU 0.500" in got[0] and "float IoU of person 0.2" in got[1]
    assert "QAT val mIoU 0.450" in got[2]
