"""A small *trained* DeepLab and its exports, built once and cached by the code that makes them.

The model (:data:`TRAINED_MODEL`, 64x64, alpha 0.35, 5 synthetic classes) is trained for real on
the bundled procedural dataset (:func:`edge_deeplab.data.synthetic.generate_synthetic`) with
:data:`TRAINED_RECIPE`, then fine-tuned quantization-aware for a few steps (``run_qat``), and exported
as every variant of :data:`edge_deeplab.core.contract.semantics.VARIANTS`. A trained network has
decisive logits (unlike a random one, whose near-ties any rounding flips), so the bounds checked on
it are real.

Everything lands in pytest's cache directory under a key that hashes the source of the code that
makes the artifacts (model, data, training, QAT, exporter, contract, this file), so a change to any of
them rebuilds, and nothing else does (not the TF version: the artifacts are checked, not trusted).
A ``done.json`` marker written last makes a half-built cache (killed run) rebuild.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: The sources whose change invalidates the cached trained model and exports.
CODE = ("edge_deeplab/model", "edge_deeplab/data", "edge_deeplab/training", "edge_deeplab/core",
        "edge_deeplab/metrics.py", "converters/export.py", "converters/litert_quant.py",
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
#: The quickstart's QAT learning rate (float lr x ``QAT_LR_FACTOR`` 0.2). At ``run_qat``'s default
#: (float lr / 100), 20 steps left the QAT model 4.7 points below float (0.597 vs 0.644); at lr / 5,
#: 1.4 points (0.630).
QAT_LR = TRAINED_RECIPE["lr"] * 0.2
CALIBRATION_STEPS = 32


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
    """``{variant: path}`` for every variant of the vocabulary (int8/w8a16 calibrated on ``data_dir``;
    ``qat-int8`` from the QAT model of ``run_dir``)."""
    from converters.export import export_tflite
    from edge_deeplab.core.contract.semantics import VARIANTS

    paths = {}
    for v in VARIANTS:
        kw = {}
        if v in ("int8", "w8a16"):
            kw = dict(calibration_dataset="folder", data_dir=str(data_dir),
                      calibration_steps=CALIBRATION_STEPS)
        src = run_dir if v == "qat-int8" else model
        paths[v] = export_tflite(src, out_dir / f"trained_{v}.tflite", v, config=cfg, **kw)["path"]
    return paths


def build_trained(root: Path) -> dict:
    """Generates the data, trains, runs QAT and exports into ``root``; returns the manifest."""
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
    res = train(cfg, TrainConfig(data_dir=str(data), **TRAINED_RECIPE), run, verbose=0)
    qres = run_qat(run, steps=QAT_STEPS, lr=QAT_LR, evaluate=False, verbose=0)
    model, cfg, _ = load_model(run / "model.keras")
    paths = export_all(model, run, root / "exports", cfg, data)
    manifest = {"data": str(data), "run": str(run), "keras": str(run / "model.keras"),
                "float_val_miou": res["best_miou"], "qat_val_miou": qres.get("val_miou"),
                "train_seconds": res["train_seconds"], "qat_seconds": qres.get("qat_seconds"),
                "exports": {k: str(v) for k, v in paths.items()}}
    (root / "done.json").write_text(json.dumps(manifest, indent=1))
    return manifest


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


def trained_artifacts(config) -> dict:
    """The cached manifest (built on first use): ``data``, ``run``, ``keras``, ``exports``, mIoUs."""
    root = cache_dir(config, "edge_deeplab_trained")
    done = root / "done.json"
    with cache_lock(root):
        if done.is_file():
            manifest = json.loads(done.read_text())
            if all(Path(p).is_file() for p in manifest["exports"].values()) \
                    and Path(manifest["keras"]).is_file():
                return manifest
        return build_trained(root)
