"""``edge-deeplab distill`` end to end on a small budget: labels reused, nothing finished overwritten,
``--resume`` continues at the saved step."""

from __future__ import annotations

import json

from edge_deeplab.app.cli import main
from tests.support.cli import assert_one_line_error
from tests.support.real_media import real_clip

SMALL = ["--stride", "4", "--input-size", "64", "--batch-size", "4", "--checkpoint-every", "2",
         "--teacher-range", "0,1"]


def test_rerun_refuses_resume_continues_and_reuses_labels(selfie_teacher, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["distill", "--teacher", str(selfie_teacher), "--images", str(real_clip()),
            "--out", str(out), *SMALL]
    assert main([*args, "--steps", "4"]) == 0
    first = capsys.readouterr()
    summary = json.loads(first.out.splitlines()[-2])
    assert summary["train_frames"] == 24 and summary["val_frames"] == 6  # 30 frames, last 20% held out
    assert "30 new" in first.err
    report = json.loads((out / "distill_report.json").read_text())
    assert report["sources"][str(real_clip().resolve())]["frames"] == 6
    model = (out / "model.keras").read_bytes()
    labels_manifest = (out / "labels" / "manifest.json").read_text()

    rc = main([*args, "--steps", "6"])  # without --resume: finished work stays
    assert_one_line_error(capsys.readouterr(), "already has checkpoints", "--resume", rc=rc)
    assert (out / "model.keras").read_bytes() == model

    assert main([*args, "--steps", "6", "--resume"]) == 0
    second = capsys.readouterr()
    assert "resuming from" in second.out and "at step 4/6" in second.out
    assert "(0 new)" in second.err  # the teacher labelled nothing again
    result = json.loads((out / "train_result.json").read_text())
    assert (result["start_step"], result["final_step"], result["resumed"]) == (4, 6, True)
    assert (out / "labels" / "manifest.json").read_text() == labels_manifest
