"""The contract tester: every export variant x runtime x accelerator x consumer against Keras.

One small *trained* model (``trained`` fixture, :mod:`tests.support.trained`: 64x64, alpha 0.35,
5 synthetic classes, 600 Adam steps + 20 QAT steps, built once per session and cached by the code
that makes it) is exported as every row of the one table of variants,
:data:`edge_deeplab.core.contract.variants.TABLE`, and each export is consumed the four ways
users consume it:

* **predict**: :func:`edge_deeplab.runtime.open_runner` on the LiteRT CompiledModel (CPU, and GPU
  in fp16 and fp32 where the accelerator starts; GPU runs go to a TF-free child process
  automatically), the LiteRT Interpreter (CPU) and ``tflite_runtime`` (CPU; where this venv lacks
  it, as here, in the board venv of ``scripts/tflite_runtime_venv.sh``: tflite_runtime 2.14 on
  NumPy 1, no TensorFlow, no LiteRT, through :mod:`tests.support.tflite_runtime_predict`);
* **eval**: :func:`edge_deeplab.evaluation.evaluate_tflite` on the held-out split, against
  :func:`~edge_deeplab.evaluation.evaluate_keras` of the Keras model on the same split;
* **bench**: :func:`benchmarks.harness.run_benchmarks` with the same split: its mIoU must be the
  one ``eval`` measures, its GPU row must agree with its CPU row;
* **demo**: ``edge-deeplab demo --headless`` on a tiny clip (frames in a folder), whose person
  matte is compared with the matte computed from the Keras model's logits.

Bounds (measured on this model, 24 val images x 64x64; each row's ``bound`` and ``person_iou`` in
the table, the measured values beside it):

* float32: logits within 1e-4 of the logit range of Keras (every CPU runtime);
* every variant: argmax agreement with Keras and mIoU drop below its row's ``bound``;
* GPU vs CPU of the same export: >= 99.5% argmax agreement, enforced for every export the GPU
  runs, with the accelerator in fp32 (``gpu_precision="fp32"``). In its default fp16 the float
  exports hold 99.5% too; int8 / qat-int8 do not (:data:`GPU_FP16_INTEGER`): the GPU emulates
  their quantization in float, and fp16 rounding moves some activations into the neighbouring
  quantization step, which flips about 1% of pixels (measured 98.8-98.9% / 99.0-99.3%, held
  to 98.5%; 99.7% / 99.8% in fp32). w8a16 (int16 activations) is refused: the LiteRT GPU accelerator claimed a few of its
  ops, refused the rest, and that mix agreed with the CPU on only 86.6% of pixels, so
  ``open_runner`` refuses the GPU for the table's ``gpu=False`` rows with one line
  (:func:`edge_deeplab.runtime.opener.refuse_gpu_unsupported`), and every consumer checks that
  refusal instead of wrong numbers.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge_deeplab.core.contract import variants
from edge_deeplab.core.sysinfo import available_runtimes

#: Every variant of the table: each gets every test below.
VARIANTS = variants.names()
#: ``{variant: (min argmax agreement with Keras, max mIoU drop vs Keras)}``: the table's ``bound``.
BOUNDS = {v.name: v.bound for v in variants.TABLE}
#: The demo's person matte (>= 0.5) against the Keras model's, as IoU of the person pixels (3.4% of
#: the clip): the table's ``person_iou``, measured on the CPU (AMD EPYC, AVX-512).
PERSON_IOU = {v.name: v.person_iou for v in variants.TABLE}
GPU_AGREEMENT = 0.995
#: GPU vs CPU of int8 / qat-int8 with the accelerator in fp16 (see the module doc). Measured
#: (lavapipe; 24 val images x 64x64 = 98304 pixels, one pixel = 1e-5) on the trained model of
#: three machines/recipes: int8 0.98888 (AVX-512 Xeon), 0.98770 and 0.98846 (Zen 4 EPYC); qat-int8
#: 0.99278, 0.99347 and 0.99289. The model differs per CPU kind (tests/support/trained.py), so the
#: bound is the lowest measured figure rounded down to half a point; the README
#: quotes both. The bench rows' agreement (other images) measured qat-int8 0.98999. In fp32 they
#: reach :data:`GPU_AGREEMENT` like every export (measured 0.99714 / 0.99781 on the Zen 4 model).
GPU_FP16_INTEGER = {"int8": 0.985, "qat-int8": 0.985}
#: GPU vs CPU of the float exports on the val images, in fp16 and fp32: the README's ">= 99.9%".
#: Measured fp16 0.99931 / 0.99934, fp32 1.00000 / 1.00000 (dynamic: 0.99867 / 0.99880, held to
#: :data:`GPU_AGREEMENT`).
GPU_FLOAT_AGREEMENT = {"float32": 0.999, "float16": 0.999}


#: Variants the LiteRT GPU accelerator takes whole (the table's ``gpu``; it refuses every op of a
#: w8a16 graph: int16 activations; that export runs on the CPU fallback).
GPU_FULL = variants.where(gpu=True)


def path_variant(path):
    from edge_deeplab.core.contract import semantics
    from edge_deeplab.core.contract.metadata import read_tflite_metadata

    return semantics.variant(path, read_tflite_metadata(path))


def gpu_bound(variant, precision):
    """GPU vs CPU argmax agreement an export must reach with the accelerator in ``precision``."""
    return GPU_FP16_INTEGER.get(variant, GPU_AGREEMENT) if precision == "fp16" else GPU_AGREEMENT


#: The runtime x accelerator (x GPU precision) combinations: GPU runs on the CompiledModel (the
#: Interpreter and tflite_runtime take the GPU only through a user ``--delegate`` library).
PLACES = [("litert", "cpu", None), ("interpreter", "cpu", None),
          pytest.param("tflite_runtime", "cpu", None, marks=pytest.mark.board, id="tflite_runtime-cpu"),
          pytest.param("litert", "gpu", "fp16", marks=pytest.mark.gpu, id="litert-gpu-fp16"),
          pytest.param("litert", "gpu", "fp32", marks=pytest.mark.gpu, id="litert-gpu-fp32")]
GPU = [pytest.param("gpu", "fp16", marks=pytest.mark.gpu, id="gpu-fp16"),
       pytest.param("gpu", "fp32", marks=pytest.mark.gpu, id="gpu-fp32")]


def test_every_row_has_its_bounds():
    """Every row of the table carries bounds the tests below can hold an export to."""
    for v in variants.TABLE:
        agreement, drop = v.bound
        assert 0.9 <= agreement <= 1.0 and 0.0 < drop <= 0.05, v
        assert 0.5 <= v.person_iou <= 1.0, v


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_row_exports_as_its_row_says(trained, variant):
    """Each row of the table is exported (``trained``), names itself in the model's metadata, and
    has the types its row states: the default I/O type, and its activation type inside the graph
    (float16: its weights) read from the flatbuffer, not from the metadata."""
    from edge_deeplab.core.contract import semantics
    from edge_deeplab.core.contract.metadata import read_tflite_metadata

    row = variants.get(variant)
    path = trained["exports"][variant]
    assert path_variant(path) == variant
    meta_free = semantics.variant(path, None)  # the tensor-type classifier, without metadata
    assert meta_free == variant or (row.qat and meta_free == "int8"), meta_free
    ex = read_tflite_metadata(path)["export"]
    assert ex["input"]["dtype"] == row.default_io and ex["io_type"] == row.default_io
    dtypes = set(semantics.tensor_dtypes(path))
    assert (row.weights if row.weights == "float16" else row.activations) in dtypes, dtypes


def _in_board_venv(runtime) -> bool:
    """True when ``runtime`` must run in the board venv: tflite_runtime where this venv lacks it
    (it needs NumPy 1; this venv has NumPy 2). Any other runtime must be installed here."""
    if runtime in available_runtimes():
        return False
    assert runtime == "tflite_runtime", f"{runtime} is not installed in this venv"
    return True


@pytest.fixture(scope="module")
def reference(trained):
    """Keras logits on the val images and Keras eval on the val split."""
    from edge_deeplab.data import load_dataset
    from edge_deeplab.evaluation.evaluate import evaluate_keras
    from edge_deeplab.model.model_io import load_model
    from edge_deeplab.model.qat_io import load_qat_model

    model, cfg, _ = load_model(trained["keras"])
    ds = load_dataset("folder", trained["data"], "val")
    images = [img for _, img, _ in ds]
    assert all(i.shape[:2] == tuple(cfg.input_size) for i in images)
    x = np.stack(images).astype(np.float32) / 127.5 - 1.0
    logits = model.predict(x, batch_size=8, verbose=0)
    ev = evaluate_keras(model, ds)
    qat = load_qat_model(trained["run"])[0]
    return {"model": model, "config": cfg, "dataset": ds, "images": images, "logits": logits,
            "miou": ev["miou"], "qat_model": qat, "qat_logits": qat.predict(x, batch_size=8, verbose=0),
            "qat_miou": evaluate_keras(qat, ds)["miou"]}


def keras_of(reference, variant):
    """``(logits, mIoU)`` of the Keras model an export is compared with: the QAT Keras model for
    ``qat-int8`` (its export must compute the fake-quantized graph), the float model otherwise."""
    if variants.get(variant).qat:
        return reference["qat_logits"], reference["qat_miou"]
    return reference["logits"], reference["miou"]


def _predict_all(path, images, runtime, accelerator, precision=None, request=None, tmp_path=None):
    if _in_board_venv(runtime):
        from tests.support.board import board_predict

        return board_predict(request.getfixturevalue("board_python"), path, images, tmp_path)
    from edge_deeplab.runtime import open_runner

    with open_runner(path, accelerator=accelerator, runtime=runtime,
                     gpu_precision=precision or "fp16") as r:
        if accelerator == "gpu":
            assert r.fully_accelerated is (path_variant(path) in GPU_FULL), r.unsupported_ops
            assert r.gpu_precision == precision
        return np.stack([r.predict(i) for i in images])


def _gpu_refuses(path, variant, accelerator) -> bool:
    """For an export the GPU must refuse (w8a16 on GPU): check the one-line refusal; True if so."""
    if accelerator != "gpu" or variant in GPU_FULL:
        return False
    from edge_deeplab.core.errors import DelegateUnavailableError
    from edge_deeplab.runtime import open_runner

    dtype = variants.get(variant).activations
    with pytest.raises(DelegateUnavailableError, match=f"{dtype} activations"):
        open_runner(path, accelerator="gpu")
    return True


def test_analyze_says_the_gpu_does_not_take_w8a16(trained, capsys):
    """What ``analyze`` reports must match what the runtime does: no GPU for int16 activations
    (the quickstart's table showed w8a16 "fully on the GPU" from the static rules before)."""
    import json

    from edge_deeplab.app.cli import main

    assert main(["analyze", trained["exports"]["w8a16"], "--json"]) == 0
    gpu = json.loads(capsys.readouterr().out)["gpu"]
    assert gpu["fully_accelerated"] is False, gpu
    assert {"CONV_2D (int16)", "DEPTHWISE_CONV_2D (int16)"} <= set(gpu["unsupported_ops"]), gpu


def test_keras_reference_is_decisive(reference):
    """The trained model predicts several classes with clear margins: the bounds below mean something."""
    top2 = np.sort(reference["logits"], -1)[..., -2:]
    margin = top2[..., 1] - top2[..., 0]
    classes = np.unique(reference["logits"].argmax(-1))
    print(f"Keras val mIoU {reference['miou']:.4f}, classes {classes.tolist()}, "
          f"median top-2 margin {np.median(margin):.2f}")
    assert len(classes) >= 4 and np.median(margin) > 1.0
    assert reference["miou"] > 0.3


@pytest.mark.parametrize("runtime,accelerator,precision", PLACES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_predict(request, tmp_path, trained, reference, variant, runtime, accelerator, precision):
    path = trained["exports"][variant]
    if _gpu_refuses(path, variant, accelerator):
        return
    got = _predict_all(path, reference["images"], runtime, accelerator, precision, request, tmp_path)
    ref = keras_of(reference, variant)[0]
    assert got.shape == ref.shape
    agree = float((got.argmax(-1) == ref.argmax(-1)).mean())
    span = float(ref.max() - ref.min())
    diff = float(np.abs(got - ref).max())
    print(f"{variant} {runtime} {accelerator} {precision or ''}: argmax agreement with Keras {agree:.5f}, "
          f"max |logit diff| / range {diff / span:.3g}")
    if accelerator == "gpu":
        cpu = _predict_all(path, reference["images"], runtime, "cpu")
        gpu_cpu = float((got.argmax(-1) == cpu.argmax(-1)).mean())
        print(f"{variant}: GPU ({precision}) vs CPU argmax agreement {gpu_cpu:.5f}")
        assert gpu_cpu >= GPU_FLOAT_AGREEMENT.get(variant, gpu_bound(variant, precision))
        # the GPU computes in fp16: float32 is held to float16's bound against Keras
        assert agree >= BOUNDS["float16" if variant == "float32" else variant][0]
        return
    if variant == "float32":
        assert diff <= 1e-4 * span
    assert agree >= BOUNDS[variant][0]


def test_int16_activations_follow_keras_closer_than_int8(trained, reference):
    """w8a16 and int8 share the int8 weights; int16 activations must then leave the smaller error
    (measured: argmax agreement with Keras 0.99509 vs 0.98578; RMS logit error / logit std 0.012
    vs 0.033). This is what the global min/max calibration restored: with litert-quantizer's own
    moving-average merge of ranges w8a16 clipped, and agreed on 0.97133, below int8."""
    ref = reference["logits"]
    got = {v: _predict_all(trained["exports"][v], reference["images"], "litert", "cpu")
           for v in ("int8", "w8a16")}
    agree = {v: float((g.argmax(-1) == ref.argmax(-1)).mean()) for v, g in got.items()}
    rms = {v: float(np.sqrt(((g - ref) ** 2).mean()) / ref.std()) for v, g in got.items()}
    print(f"argmax agreement with Keras {agree}, RMS logit error / logit std {rms}")
    assert agree["w8a16"] >= agree["int8"] + 0.005
    assert rms["w8a16"] < 0.6 * rms["int8"]


# ---------------------------------------------------------------------------------------------
# eval: the mIoU of each export on the held-out split vs the Keras model's
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tflite_eval(trained, reference):
    """``{(variant, accelerator): eval result}``, filled by the eval tests (bench compares with it)."""
    return {}


@pytest.mark.parametrize("accelerator,precision", [("cpu", None), *GPU])
@pytest.mark.parametrize("variant", VARIANTS)
def test_eval(trained, reference, tflite_eval, variant, accelerator, precision):
    from edge_deeplab.evaluation.evaluate import evaluate_tflite

    if _gpu_refuses(trained["exports"][variant], variant, accelerator):
        return
    r = evaluate_tflite(trained["exports"][variant], reference["dataset"], accelerator=accelerator,
                        gpu_precision=precision or "fp16")
    tflite_eval[(variant, "gpu-fp32" if precision == "fp32" else accelerator)] = r
    keras_miou = keras_of(reference, variant)[1]
    drop = keras_miou - r["miou"]
    print(f"{variant} {accelerator} {precision or ''}: eval mIoU {r['miou']:.4f} (Keras {keras_miou:.4f}, "
          f"drop {drop:+.4f})")
    assert r["num_images"] == len(reference["images"]) and r["skipped"] == 0
    assert abs(drop) <= BOUNDS[variant][1]


# ---------------------------------------------------------------------------------------------
# bench: the benchmark harness scores the same mIoU as eval, and its GPU rows agree with its CPU rows
# ---------------------------------------------------------------------------------------------

def _bench(trained, accelerators):
    from benchmarks.harness import run_benchmarks

    rep = run_benchmarks([trained["exports"][v] for v in VARIANTS], accelerators=accelerators,
                         warmup=1, runs=2, rounds=1, e2e_runs=0, dataset="folder",
                         data_dir=trained["data"], split="val", timeout=600)
    from pathlib import Path

    problems = rep["errors"] + rep["skipped"]  # only the GPU's one-line refusal of w8a16
    assert sorted((Path(e["model"]).name, e["accelerator"]) for e in problems) == sorted(
        (Path(trained["exports"][v]).name, "gpu") for v in VARIANTS
        if v not in GPU_FULL and "gpu" in accelerators), problems
    assert all("int16 activations" in e["error"] for e in problems), problems
    return rep


def _eval_miou(trained, reference, tflite_eval, variant, accelerator):
    if (variant, accelerator) not in tflite_eval:  # run alone (-k): score it here
        from edge_deeplab.evaluation.evaluate import evaluate_tflite

        tflite_eval[(variant, accelerator)] = evaluate_tflite(
            trained["exports"][variant], reference["dataset"], accelerator=accelerator)
    return tflite_eval[(variant, accelerator)]["miou"]


def test_bench_cpu_rows_score_what_eval_scores(trained, reference, tflite_eval):
    rep = _bench(trained, "cpu")
    rows = {r["variant"]: r for r in rep["results"]}
    assert sorted(rows) == sorted(VARIANTS)
    for v in VARIANTS:
        row = rows[v]
        assert row["accelerator"] == "cpu", v
        assert row.get("unsupported_ops", []) == []
        assert row["latency_ms"]["p50"] > 0 and row["fps"] > 0
        ev = _eval_miou(trained, reference, tflite_eval, v, "cpu")
        print(f"{v}: bench mIoU {row['miou']:.6f}, eval mIoU {ev:.6f}")
        assert row["miou"] == pytest.approx(ev, abs=1e-6)


@pytest.mark.gpu
@pytest.mark.slow
def test_bench_gpu_rows_agree_with_cpu(trained, reference, tflite_eval):
    rep = _bench(trained, "cpu,gpu")
    for v in GPU_FULL:
        rows = {r["accelerator"]: r for r in rep["results"] if r["variant"] == v}
        gpu = rows["gpu"]
        assert gpu["fully_accelerated"] is (v in GPU_FULL)
        agree = gpu["agreement_vs_cpu"]["argmax_agree_pct"] / 100.0
        ev = _eval_miou(trained, reference, tflite_eval, v, "gpu")
        print(f"{v}: bench GPU vs CPU agreement {agree:.5f}, GPU mIoU {gpu['miou']:.5f} "
              f"(eval on GPU {ev:.5f})")
        assert agree >= gpu_bound(v, "fp16")
        assert gpu["miou"] == pytest.approx(ev, abs=1e-6)


@pytest.mark.gpu
def test_cli_gpu_precision_fp32(trained, reference, tflite_eval, tmp_path, capsys):
    """``bench``/``eval --gpu-precision fp32`` through the CLI: the GPU rows say which arithmetic
    ran, bench and eval score the same mIoU, and the int8 export's GPU argmax then follows the
    CPU's integer kernels (>= 99.5% of the held-out pixels, see :func:`test_predict`)."""
    import json

    from edge_deeplab.app.cli import main

    path = trained["exports"]["int8"]
    data = ["--dataset", "folder", "--data-dir", trained["data"], "--split", "val"]
    rc = main(["bench", path, "--accelerator", "cpu,gpu", "--gpu-precision", "fp32", "--runs", "2",
               "--warmup", "1", "--rounds", "1", "--e2e-runs", "0", *data,
               "--json", str(tmp_path / "b.json"), "--markdown", str(tmp_path / "b.md"), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert "| gpu (fp32) |" in (tmp_path / "b.md").read_text()
    rows = {r["accelerator"]: r for r in json.loads((tmp_path / "b.json").read_text())["results"]}
    assert rows["gpu"]["gpu_precision"] == "fp32" and rows["cpu"]["gpu_precision"] is None
    assert json.loads((tmp_path / "b.json").read_text())["settings"]["gpu_precision"] == "fp32"
    assert rows["gpu"]["fully_accelerated"] is True
    rc = main(["eval", path, "--accelerator", "gpu", "--gpu-precision", "fp32", *data,
               "--json", str(tmp_path / "e.json"), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    ev = json.loads((tmp_path / "e.json").read_text())["miou"]
    print(f"int8 GPU fp32: bench mIoU {rows['gpu']['miou']:.6f}, eval mIoU {ev:.6f}, "
          f"CPU {rows['cpu']['miou']:.6f}")
    assert rows["gpu"]["miou"] == pytest.approx(ev, abs=1e-6)
    assert abs(ev - rows["cpu"]["miou"]) <= 0.002


# ---------------------------------------------------------------------------------------------
# demo: the headless CLI demo's person matte on a tiny clip vs the matte from the Keras logits
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clip_frames(tmp_path_factory, reference):
    """Four frames of the demo's procedural clip, at the model's input size, as PNGs, and the
    person matte of the float and of the QAT Keras model (``{"float": ..., "qat": ...}``)."""
    import cv2

    from tests.support.clip_images import generate_images

    h, w = reference["config"].input_size
    folder = tmp_path_factory.mktemp("clip")
    paths = generate_images(folder, num_images=4, width=w, height=h)
    rgb = [cv2.imread(str(p))[..., ::-1] for p in paths]
    x = np.stack(rgb).astype(np.float32) / 127.5 - 1.0
    person = reference["config"].resolved_labels().index("person")
    mattes = {}
    for key, model in (("float", reference["model"]), ("qat", reference["qat_model"])):
        logits = model.predict(x, verbose=0)
        e = np.exp(logits - logits.max(-1, keepdims=True))
        p = e[..., person] / e.sum(-1)
        mattes[key] = np.clip((p - 0.1) / 0.8, 0.0, 1.0)  # the demo's matte levels (0.1, 0.9)
    return folder, paths, mattes


@pytest.mark.parametrize("accelerator", ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("variant", VARIANTS)
def test_demo(trained, clip_frames, variant, accelerator, tmp_path, capsys):
    import cv2

    from edge_deeplab.app.cli import main

    folder, paths, mattes = clip_frames
    matte = mattes["qat" if variants.get(variant).qat else "float"]  # as keras_of(): its own Keras model
    if _gpu_refuses(trained["exports"][variant], variant, accelerator):
        return
    out = tmp_path / "out"
    rc = main(["demo", "--model", trained["exports"][variant], "--source", str(folder), "--headless",
               "--output", str(out), "--effect", "mask", "--refine", "none", "--smoothing", "0",
               "--no-overlay", "--accelerator", accelerator])
    text = capsys.readouterr().out
    assert rc == 0 and "person = class 1" in text, text
    got = np.stack([cv2.imread(str(out / f"{p.stem}_portrait.png"))[..., 0] for p in paths]) / 255.0
    assert got.shape == matte.shape
    ours, keras_person = got >= 0.5, matte >= 0.5
    # person IoU, not pixel accuracy: with the person on a few % of the frame an all-background
    # matte is right on most pixels, but its IoU is 0
    iou = float((ours & keras_person).sum() / max(1, (ours | keras_person).sum()))
    diff = float(np.abs(got - matte).mean())
    print(f"{variant} {accelerator}: demo person IoU with Keras {iou:.5f}, "
          f"mean |matte diff| {diff:.4f}, Keras person pixels {keras_person.mean():.3f}")
    assert keras_person.mean() > 0.02  # the clip has a person the model finds
    assert iou >= PERSON_IOU[variant]
    if variant == "float32":
        assert diff <= 1.0 / 255
