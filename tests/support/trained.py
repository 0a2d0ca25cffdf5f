"""A small *trained* DeepLab and its exports, built once and cached by the code that makes them.

The model (:data:`TRAINED_MODEL`, 64x64, alpha 0.35, 5 synthetic classes) is trained for real on
the bundled procedural dataset (:func:`edge_deeplab.data.synthetic.generate_synthetic`) with
:data:`TRAINED_RECIPE`, then fine-tuned quantization-aware for a few steps (``run_qat``), and exported
as every row of the table of variants (:data:`edge_deeplab.core.contract.variants.TABLE`). A trained network has
decisive logits (unlike a random one, whose near-ties any rounding flips), so the bounds checked on
it are real.

Everything lands in pytest's cache directory under a key that hashes the source of the code that
makes the artifacts (model, data, training, QAT, exporter, contract, this file), so a change to any of
them rebuilds, and nothing else does (not the TF version: the artifacts are checked, not trusted).
A ``done.json`` marker written last makes a half-built cache (killed run) rebuild.

The build runs in a child process with a fixed numeric environment (:data:`BUILD_ENV`: TensorFlow's
Eigen kernels, op determinism, a fixed hash seed), so the same machine kind always builds the same
model, whichever CI pass (oneDNN on or off) gets there first. Different CPU kinds still build
different models (Eigen's AVX2 and AVX-512 code paths round differently, and 600 steps of training
amplify that: float val mIoU 0.644 on an AVX-512 Xeon, 0.615 on a Zen 4 EPYC), so the model is
*checked* before any test sees it (:func:`check_trained`: float mIoU and every class's IoU above
:data:`FLOORS`, the QAT model evaluated and within its stated distance of float). A model that
misses a floor is rebuilt with the next seed of :data:`SEEDS`; if every seed misses, the fixture
fails once, naming the numbers, and every test that needs the model fails with that one message
(``failed.json``) instead of at its own assertions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: The sources whose change invalidates the cached trained model and exports.
CODE = ("edge_deeplab/model", "edge_deeplab/data", "edge_deeplab/training", "edge_deeplab/core",
        "edge_deeplab/metrics.py", "converters/export.py", "converters/calibration.py",
        "edge_deeplab/runtime/model_input.py", "edge_deeplab/runtime/tensors.py",
        "converters/litert_quant.py", "converters/layer_names.py",
        "tests/support/trained.py")

#: The trained model: the ``fast`` preset's head, small enough to train in well under a minute.
TRAINED_MODEL = dict(input_size=(64, 64), num_classes=5, alpha=0.35, output_stride=16, decoder=True,
                     aspp_filters=32, low_level_filters=16, decoder_filters=32,
                     labels=("background", "person", "ball", "box", "cone"))
#: Its recipe (synthetic 64x64 scenes, Adam, poly decay; batch-norm recalibrated before saving).
#: 600 steps (about a minute on 2 cores): at 150 steps (val mIoU 0.41) the model was too weak for
#: its bounds to mean much (median top-2 margin 1.4; the demo clip's person covered 1% of pixels
#: on one CPU); at 600, val mIoU 0.64 and margin 2.8 (measured on an AVX-512 Xeon).
TRAINED_RECIPE = dict(dataset="synthetic", steps=600, batch_size=8, lr=5e-3, optimizer="adam",
                      weight_decay=1e-5, min_scale=0.75, max_scale=1.25, checkpoint_every=600,
                      warmup_steps=10, bn_momentum=0.9, recalibrate_batches=4)
NUM_TRAIN, NUM_VAL = 160, 24
#: Scene size of the generated dataset (the model's input size).
DATA_SIZE = TRAINED_MODEL["input_size"][0]
QAT_STEPS = 20
#: The quickstart's QAT learning rate (float lr x ``QAT_LR_FACTOR`` 0.2). Before the concat-order
#: fix (``edge_deeplab.training.qat.restore_concat_order``) QAT started from a shuffled ASPP and
#: 20 steps at lr / 100 left it 4.7 points below float; now the calibrated QAT model starts within
#: a few tenths of float and 20 steps at lr / 5 end at 0.630 vs float 0.609 (Zen 4, seed 0).
QAT_LR = TRAINED_RECIPE["lr"] * 0.2
CALIBRATION_STEPS = 32
#: Seeds tried in turn until the model passes :func:`check_trained` (a bounded budget: each build
#: takes about a minute and a half on 2 idle cores).
SEEDS = (0, 1, 2)
#: What the tests rely on, checked on the held-out split before any test uses the model.
#: Measured (seed 0): Zen 4 EPYC (AVX-512 VNNI) float 0.615, per class [0.85, 0.42, 0.61, 0.69,
#: 0.50], QAT 0.627 [0.87, 0.46, 0.59, 0.70, 0.53]; AVX-512 Xeon float 0.644.
FLOORS = {
    "float_miou": 0.55,        # the contract's bounds mean little on a weaker model
    "float_class_iou": 0.30,   # every class, person included (the demo tests find the person)
    "qat_miou_drop": 0.03,     # QAT mIoU at most this far below float's
    "qat_class_ratio": 0.75,   # every class keeps at least this fraction of its float IoU
}
#: The child process that builds the model: the Eigen kernels every machine has (no oneDNN),
#: TensorFlow's op determinism, a fixed hash seed.
BUILD_ENV = {"TF_ENABLE_ONEDNN_OPTS": "0", "TF_DETERMINISTIC_OPS": "1", "PYTHONHASHSEED": "0",
             "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def code_key(paths=CODE, extra: str = "") -> str:
    """A short hash of the ``.py`` sources under ``paths`` (relative to the repository) and ``extra``."""
    h = hashlib.sha256(extra.encode())
    for rel in paths:
        p = REPO / rel
        files = sorted(p.rglob("*.py")) if p.is_dir() else [p]
        for f in files:
            h.update(str(f.relative_to(REPO)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def cache_dir(config, name: str, paths=CODE, extra: str = "") -> Path:
    """``.pytest_cache/d/NAME_<code key>`` (created; also without pytest's cache plugin)."""
    name = f"{name}_{code_key(paths, extra)}"
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.makedir(name))
    d = REPO / ".pytest_cache" / "d" / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def export_all(model, run_dir, out_dir: Path, cfg, data_dir) -> dict:
    """``{variant: path}`` for every row of the table of variants (the calibrated ones on
    ``data_dir``; the QAT ones from the QAT model of ``run_dir``)."""
    from converters.export import export_tflite
    from edge_deeplab.core.contract import variants

    paths = {}
    for v in variants.TABLE:
        kw = {}
        if v.calibrated:
            kw = dict(calibration_dataset="folder", data_dir=str(data_dir),
                      calibration_steps=CALIBRATION_STEPS)
        src = run_dir if v.qat else model
        paths[v.name] = export_tflite(src, out_dir / f"trained_{v.name}.tflite", v.name, config=cfg,
                                      **kw)["path"]
    return paths


def build_trained(root: Path, seed: int = 0) -> dict:
    """Generates the data, trains (with ``seed``), runs QAT and exports into ``root``; returns the
    manifest (with both models' val mIoU and per-class IoU, and ``check_trained``'s verdict)."""
    from edge_deeplab.data.synthetic import generate_synthetic
    from edge_deeplab.model.config import ModelConfig, TrainConfig
    from edge_deeplab.model.model_io import load_model
    from edge_deeplab.training.qat import run_qat
    from edge_deeplab.training.train import train

    for p in root.iterdir():
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    data = generate_synthetic(root / "data", num_train=NUM_TRAIN, num_val=NUM_VAL, size=DATA_SIZE)
    cfg = ModelConfig(**TRAINED_MODEL)
    run = root / "run"
    res = train(cfg, TrainConfig(data_dir=str(data), seed=seed, **TRAINED_RECIPE), run, verbose=0)
    qres = run_qat(run, steps=QAT_STEPS, lr=QAT_LR, evaluate=True, verbose=0)
    manifest = {"data": str(data), "run": str(run), "keras": str(run / "model.keras"),
                "seed": seed, "labels": qres["labels"],
                "float_val_miou": qres["float_val_miou"], "qat_val_miou": qres["val_miou"],
                "float_per_class_iou": qres["float_per_class_iou"],
                "qat_per_class_iou": qres["per_class_iou"],
                "train_seconds": res["train_seconds"], "qat_seconds": qres.get("qat_seconds")}
    manifest["problems"] = check_trained(manifest)
    if not manifest["problems"]:
        model, cfg, _ = load_model(run / "model.keras")
        paths = export_all(model, run, root / "exports", cfg, data)
        manifest["exports"] = {k: str(v) for k, v in paths.items()}
    (root / "done.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def check_trained(m: dict) -> list:
    """What the model misses of :data:`FLOORS`, one sentence each (empty: good to use)."""
    problems = []
    labels = m["labels"]
    if m["qat_val_miou"] is None:
        return ["the QAT model was not evaluated"]
    if m["float_val_miou"] < FLOORS["float_miou"]:
        problems.append(f"float val mIoU {m['float_val_miou']:.3f} < {FLOORS['float_miou']}")
    for name, f, q in zip(labels, m["float_per_class_iou"], m["qat_per_class_iou"]):
        if f is None or f < FLOORS["float_class_iou"]:
            problems.append(f"float IoU of {name} {f} < {FLOORS['float_class_iou']}")
        elif q is None or q < FLOORS["qat_class_ratio"] * f:
            problems.append(f"QAT IoU of {name} {q if q is None else round(q, 3)} < "
                            f"{FLOORS['qat_class_ratio']} x float's {f:.3f}")
    if m["qat_val_miou"] < m["float_val_miou"] - FLOORS["qat_miou_drop"]:
        problems.append(f"QAT val mIoU {m['qat_val_miou']:.3f} more than {FLOORS['qat_miou_drop']} "
                        f"below float's {m['float_val_miou']:.3f}")
    return problems


@contextlib.contextmanager
def cache_lock(root: Path):
    """An exclusive lock on the cache folder ``root`` (a ``.lock`` file beside it), so that
    concurrent test processes (two CI passes, pytest-xdist workers) build it once: the others
    wait, then find it built."""
    import fcntl

    with open(root.parent / f"{root.name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _build_in_child(root: Path, seed: int) -> dict:
    env = {**os.environ, **BUILD_ENV}
    proc = subprocess.run([sys.executable, "-m", "tests.support.trained", str(root), str(seed)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    done = root / "done.json"
    if proc.returncode != 0 or not done.is_file():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"building the trained test model failed (exit {proc.returncode}):\n{tail}")
    return json.loads(done.read_text())


def _usable(manifest: dict) -> bool:
    return not manifest.get("problems") and "exports" in manifest \
        and all(Path(p).is_file() for p in manifest["exports"].values()) \
        and Path(manifest["keras"]).is_file()


def trained_artifacts(config) -> dict:
    """The cached manifest (built on first use): ``data``, ``run``, ``keras``, ``exports``, mIoUs.

    Fails (``pytest.fail``, once per session and then from the cache) when no seed of
    :data:`SEEDS` gives a model that passes :func:`check_trained`.
    """
    import pytest

    root = cache_dir(config, "edge_deeplab_trained")
    done, failed = root / "done.json", root / "failed.json"
    with cache_lock(root):
        if failed.is_file():
            pytest.fail(json.loads(failed.read_text())["message"], pytrace=False)
        if done.is_file():
            manifest = json.loads(done.read_text())
            if _usable(manifest):
                return manifest
        tried = []
        for seed in SEEDS:
            manifest = _build_in_child(root, seed)
            if _usable(manifest):
                return manifest
            tried.append(f"seed {seed}: " + "; ".join(manifest["problems"]))
        message = ("the trained test model misses its floors with every seed (tests/support/"
                   "trained.py FLOORS): " + " | ".join(tried))
        failed.write_text(json.dumps({"message": message}))
        pytest.fail(message, pytrace=False)


if __name__ == "__main__":  # the child process of _build_in_child
    build_trained(Path(sys.argv[1]), int(sys.argv[2]))
