"""A student distilled from MediaPipe's selfie segmenter on the carphone clip, built once and cached.

``edge-deeplab distill`` (the CLI, as a user runs it) labels the 120 frames of the real clip
(:func:`tests.support.real_media.real_clip`) with the selfie teacher, holds out the clip's last
third in time (frames 80-119), and trains the 128x128 alpha-0.35 student on the first 80 frames
with :data:`RECIPE`. The run lands in pytest's cache under a key that hashes the code that makes it
(:func:`tests.support.trained.code_key`) and the teacher's npm release; ``done.json`` is written last.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.support.real_media import SELFIE_NPM, real_clip
from tests.support.trained import cache_dir, cache_lock

#: The sources whose change rebuilds the cached student.
CODE = ("edge_deeplab/model", "edge_deeplab/data", "edge_deeplab/training", "edge_deeplab/core",
        "edge_deeplab/runtime/teacher.py", "edge_deeplab/runtime/labelling.py",
        "edge_deeplab/runtime/runners.py", "edge_deeplab/evaluation/distill_report.py",
        "edge_deeplab/app/commands/distill.py", "edge_deeplab/metrics.py",
        "tests/support/distilled.py")
#: Held-out share: the clip's last 40 of 120 frames (the lead's pre-check split).
VAL_FRACTION = 1 / 3
#: 800 steps of 8 (about 7 minutes on 2 shared cores). Measured with 500 steps: held-out mIoU vs
#: teacher 0.932 at step 100, 0.947 at 200, 0.957 at 500 (person IoU 0.953): too close to 0.95.
RECIPE = ["--steps", "800", "--batch-size", "8", "--checkpoint-every", "400", "--input-size", "128",
          "--alpha", "0.35", "--teacher-range", "0,1", "--classes", "background,person"]


def build_distilled(root: Path, teacher: Path) -> dict:
    from edge_deeplab.app.cli import main

    for p in root.iterdir():
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    run = root / "run"
    rc = main(["distill", "--teacher", str(teacher), "--images", str(real_clip()),
               "--val-fraction", str(VAL_FRACTION), "--out", str(run), *RECIPE])
    assert rc == 0, rc
    manifest = {"run": str(run), "keras": str(run / "model.keras"),
                "report": json.loads((run / "distill_report.json").read_text())["overall"]}
    (root / "done.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def distilled_student(config, teacher: Path) -> dict:
    """The cached run's manifest: ``run``, ``keras``, ``report`` (its overall metrics)."""
    root = cache_dir(config, "edge_deeplab_distilled", CODE, extra=SELFIE_NPM)
    done = root / "done.json"
    with cache_lock(root):
        if done.is_file():
            manifest = json.loads(done.read_text())
            if Path(manifest["keras"]).is_file():
                return manifest
        return build_distilled(root, teacher)


#: QAT of the distilled student: the quickstart's QAT learning rate (float lr 5e-3 x 0.2).
QAT_ARGS = ["--steps", "150", "--lr", "1e-3"]


def distilled_exports(config, teacher: Path) -> dict:
    """The distilled run fine-tuned with ``qat`` (:data:`QAT_ARGS`) and exported as float32 and
    qat-int8 through the CLI, cached beside the run: ``{"run", "float32", "qat-int8"}``."""
    from edge_deeplab.app.cli import main

    base = distilled_student(config, teacher)
    root = cache_dir(config, "edge_deeplab_distilled_qat", CODE + (
        "edge_deeplab/training/qat.py", "converters/export.py"), extra=SELFIE_NPM + " ".join(QAT_ARGS))
    done = root / "done.json"
    with cache_lock(root):
        if done.is_file():
            manifest = json.loads(done.read_text())
            if all(Path(manifest[k]).is_file() for k in ("float32", "qat-int8")):
                return manifest
        for p in root.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        run = root / "run"
        shutil.copytree(base["run"], run)
        # the copied run's train_config.json names the base run's labels folder: still there
        assert main(["qat", str(run), *QAT_ARGS]) == 0
        out = {"run": str(run)}
        for variant in ("float32", "qat-int8"):
            path = root / f"portrait_{variant}.tflite"
            assert main(["export", str(run), "--variant", variant, "--out", str(path)]) == 0
            out[variant] = str(path)
        done.write_text(json.dumps(out, indent=1))
        return out
