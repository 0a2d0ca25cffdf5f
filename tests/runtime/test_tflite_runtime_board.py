"""The tflite_runtime fallback for boards, for real: the CLI in a venv without TensorFlow or LiteRT.

``scripts/tflite_runtime_venv.sh`` makes the board venv (tflite-runtime 2.14 on NumPy 1, this
checkout editable, nothing else; the ``board_python`` fixture, :mod:`tests.support.board`). Its
``edge-deeplab`` runs ``eval``, ``bench`` and ``demo --headless`` on every export of the trained
model (``trained`` fixture), from a scratch directory, and is compared with this venv's LiteRT.

mIoU on the 24 held-out images, board vs this venv's :func:`evaluate_tflite` (LiteRT 2.3
CompiledModel), measured: float32, float16 and w8a16 identical (difference 0.0); dynamic 6.5e-4,
int8 1.6e-3, qat-int8 2.0e-3. The integer kernels are not the same code: tflite_runtime 2.14's
XNNPACK takes no int8 op (its int8 graphs run on TFLite 2.14's built-in kernels, which differ from
LiteRT 2.3's XNNPACK on 61% of int8 output values, by up to 9 steps; argmax agreement 98.9%), and
its dynamic-range kernels quantize activations differently. :data:`MIOU_BOUND` holds those
variants to a few times the measured gap; the exactly-equal ones to 1e-6. Within the board venv,
``bench`` scores exactly the mIoU ``eval`` scores.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edge_deeplab.core.contract.semantics import VARIANTS
from tests.support.board import VERSION
from tests.support.cli import assert_one_line_error

pytestmark = pytest.mark.board

#: ``{variant: max |board mIoU - LiteRT mIoU|}`` (measured values in the module doc).
#: w8a16: equal on the model trained on an AVX-512 Xeon; 6.5e-6 (one of 98,304 pixels) on the one
#: trained on a Zen 4 EPYC (tests/support/trained.py builds a different model per CPU kind).
MIOU_BOUND = {"float32": 1e-6, "float16": 1e-6, "w8a16": 5e-5,
              "dynamic": 0.003, "int8": 0.006, "qat-int8": 0.008}


def test_bounds_cover_the_vocabulary():
    assert set(MIOU_BOUND) == set(VARIANTS)


@pytest.fixture(scope="module")
def board(board_python):
    return board_python


def _env():
    """The caller's environment minus anything that could lead the board venv to this venv's
    packages."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def run_board(board: Path, args, cwd: Path, python: bool = False) -> subprocess.CompletedProcess:
    """``edge-deeplab ARGS`` (or ``python ARGS``) of the board venv, in ``cwd``."""
    exe = board if python else board.parent / "edge-deeplab"
    return subprocess.run([str(exe), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=_env())


@pytest.fixture(scope="module")
def litert_eval(trained):
    """This venv's mIoU of every export (LiteRT, the reference the board is compared with)."""
    from edge_deeplab.data import load_dataset
    from edge_deeplab.evaluation.evaluate import evaluate_tflite

    ds = load_dataset("folder", trained["data"], "val")
    return {v: evaluate_tflite(trained["exports"][v], ds) for v in VARIANTS}


@pytest.fixture(scope="module")
def board_eval(board, trained, tmp_path_factory):
    """``edge-deeplab eval X.tflite --runtime tflite_runtime --json`` in the board venv, per variant."""
    cwd = tmp_path_factory.mktemp("board_eval")
    out = {}
    for v in VARIANTS:
        js = cwd / f"{v}.json"
        p = run_board(board, ["eval", trained["exports"][v], "--runtime", "tflite_runtime",
                              "--dataset", "folder", "--data-dir", trained["data"], "--split", "val",
                              "--json", js.name, "--quiet"], cwd)
        assert p.returncode == 0, p.stderr
        out[v] = json.loads(js.read_text())
    return out


def test_board_venv_has_tflite_runtime_only(board, tmp_path):
    for module in ("tensorflow", "ai_edge_litert"):
        p = run_board(board, ["-c", f"import {module}"], tmp_path, python=True)
        assert p.returncode != 0 and f"No module named '{module}'" in p.stderr, (module, p.stderr)
    p = run_board(board, ["-c", "import numpy, tflite_runtime.interpreter, edge_deeplab; "
                                "from importlib.metadata import version; "
                                "from edge_deeplab.core.sysinfo import available_runtimes; "
                                "print(version('tflite-runtime'), numpy.__version__, "
                                "available_runtimes(), edge_deeplab.__file__)"],
                  tmp_path, python=True)
    assert p.returncode == 0, p.stderr
    version, numpy_version, runtimes, source = p.stdout.split(maxsplit=2)[0], \
        p.stdout.split()[1], p.stdout.split("{", 1)[1].split("}")[0], p.stdout.split()[-1]
    assert version == VERSION and numpy_version.startswith("1."), p.stdout
    assert runtimes == f"'tflite_runtime': '{VERSION}'", p.stdout
    # the venv runs this checkout's code (editable install), not a copy
    assert Path(source).resolve() == (Path(__file__).parents[2] / "edge_deeplab" /
                                      "__init__.py").resolve()


@pytest.mark.parametrize("variant", VARIANTS)
def test_eval_matches_litert(board_eval, litert_eval, variant):
    got, ref = board_eval[variant], litert_eval[variant]
    assert (got["runtime"], got["runtime_version"]) == ("tflite_runtime", VERSION)
    assert ref["runtime"] == "litert-compiled-model"
    assert got["num_images"] == ref["num_images"] == 24 and got["skipped"] == 0
    diff = abs(got["miou"] - ref["miou"])
    print(f"{variant}: board mIoU {got['miou']:.6f}, LiteRT {ref['miou']:.6f}, |diff| {diff:.2g}")
    assert diff <= MIOU_BOUND[variant]


def test_bench_rows_name_tflite_runtime_and_score_what_eval_scores(board, trained, board_eval,
                                                                   litert_eval, tmp_path):
    models = [trained["exports"][v] for v in VARIANTS]
    p = run_board(board, ["bench", *models, "--runtime", "tflite_runtime", "--json", "b.json",
                          "--dataset", "folder", "--data-dir", trained["data"], "--split", "val",
                          "--runs", "2", "--rounds", "1", "--warmup", "1", "--e2e-runs", "0",
                          "--quiet"], tmp_path)
    assert p.returncode == 0, p.stderr
    assert f"tflite_runtime {VERSION}" in p.stdout  # the printed table names it too
    rep = json.loads((tmp_path / "b.json").read_text())
    assert rep["errors"] == [] and rep["machine"]["runtimes"] == {"tflite_runtime": VERSION}
    rows = {r["variant"]: r for r in rep["results"]}
    assert sorted(rows) == sorted(VARIANTS)
    for v, row in rows.items():
        assert (row["runtime"], row["runtime_version"], row["accelerator"]) == \
            ("tflite_runtime", VERSION, "cpu"), v
        assert row["latency_ms"]["p50"] > 0 and row["fps"] > 0
        assert isinstance(row["fully_accelerated"], bool), v  # measured, never assumed
        assert row["miou"] == pytest.approx(board_eval[v]["miou"], abs=1e-6), v
        assert abs(row["miou"] - litert_eval[v]["miou"]) <= MIOU_BOUND[v], v
    # tflite_runtime 2.14's XNNPACK takes no int8 op, and bench says so
    assert rows["int8"]["fully_accelerated"] is False and rows["qat-int8"]["fully_accelerated"] is False


@pytest.fixture(scope="module")
def frames(trained, tmp_path_factory):
    from tests.support.clip_images import generate_images
    from tests.support.trained import TRAINED_MODEL

    h, w = TRAINED_MODEL["input_size"]
    folder = tmp_path_factory.mktemp("board_frames")
    return folder, generate_images(folder, num_images=3, width=w, height=h)


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_demo_headless_with_auto_runtime(board, trained, frames, variant, tmp_path, capsys):
    """``demo --headless`` with ``--runtime auto`` picks tflite_runtime there; its mattes match
    this venv's demo (LiteRT) within one grey level for float32 and on 97% of pixels for int8."""
    import cv2

    from edge_deeplab.app.cli import main

    folder, paths = frames
    flags = ["--source", folder, "--headless", "--effect", "mask", "--refine", "none",
             "--smoothing", "0", "--no-overlay", "--runtime", "auto"]
    p = run_board(board, ["demo", "--model", trained["exports"][variant], "--output", "out", *flags],
                  tmp_path)
    assert p.returncode == 0, p.stderr
    assert "; tflite_runtime on cpu" in p.stdout and "(cpu, tflite_runtime)" in p.stdout, p.stdout
    assert main(["demo", "--model", trained["exports"][variant], "--output",
                 str(tmp_path / "ref"), *map(str, flags)]) == 0
    assert "litert" in capsys.readouterr().out
    for frame in paths:
        name = f"{Path(frame).stem}_portrait.png"
        got = cv2.imread(str(tmp_path / "out" / name)).astype(int)
        ref = cv2.imread(str(tmp_path / "ref" / name)).astype(int)
        if variant == "float32":
            assert np.abs(got - ref).max() <= 1, name
        else:
            assert ((got[..., 0] >= 128) == (ref[..., 0] >= 128)).mean() >= 0.97, name


def test_auto_runtime_picks_tflite_runtime_for_eval_and_bench(board, trained, tmp_path):
    model, data = trained["exports"]["float16"], trained["data"]
    p = run_board(board, ["eval", model, "--dataset", "folder", "--data-dir", data,
                          "--json", "e.json", "--quiet"], tmp_path)
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "e.json").read_text())["runtime"] == "tflite_runtime"
    p = run_board(board, ["bench", model, "--json", "b.json", "--runs", "2", "--rounds", "1",
                          "--warmup", "1", "--e2e-runs", "0", "--quiet"], tmp_path)
    assert p.returncode == 0, p.stderr
    row = json.loads((tmp_path / "b.json").read_text())["results"][0]
    assert (row["runtime"], row["runtime_version"]) == ("tflite_runtime", VERSION)


def test_litert_and_tensorflow_commands_name_what_to_install(board, trained, tmp_path):
    for args, package in ((["analyze", trained["exports"]["int8"]], "pip install ai-edge-litert"),
                          (["quant-report", trained["exports"]["int8"], "--reference",
                            trained["exports"]["float32"]], "pip install ai-edge-litert"),
                          (["export", trained["keras"], "--variant", "float32", "--out", "x.tflite"],
                           "pip install tensorflow")):
        p = run_board(board, args, tmp_path)
        err = p.stderr.strip()
        assert p.returncode == 2 and len(err.splitlines()) == 1, (args, p.stderr)
        assert err.startswith(f"edge-deeplab {args[0]}: error: this needs") and package in err, err
        assert "Traceback" not in err and not (tmp_path / "x.tflite").exists()


def test_bench_plot_without_matplotlib_is_one_line_before_any_run(board, trained, tmp_path):
    """The board venv has no Matplotlib: ``bench --plot`` says so before benchmarking anything."""
    p = run_board(board, ["bench", trained["exports"]["int8"], "--runtime", "tflite_runtime",
                          "--json", "b.json", "--plot", "b.png"], tmp_path)
    assert_one_line_error(p, "--plot b.png needs Matplotlib", "pip install matplotlib", code=2)
    assert not (tmp_path / "b.json").exists() and "on cpu" not in p.stderr


def test_video_output_without_pyav_is_one_line_before_the_run(board, trained, tmp_path):
    """The board venv has OpenCV and tflite_runtime but not PyAV, the video writer's binding:
    ``demo --output x.mp4`` there says so in one line before the model runs, and writes nothing
    (an earlier x.mp4 is kept); images still work there (test above)."""
    import cv2

    clip = tmp_path / "in.avi"
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(3):
        w.write(np.full((48, 64, 3), 60 * i, np.uint8))
    w.release()
    (tmp_path / "x.mp4").write_bytes(b"earlier")
    p = run_board(board, ["demo", "--model", trained["exports"]["float32"], "--source", clip,
                          "--headless", "--output", "x.mp4", "--runtime", "auto"], tmp_path)
    assert_one_line_error(p, "PyAV", "pip install av")
    assert "frames from video" not in p.stdout and "output [" not in p.stdout  # no model opened
    assert (tmp_path / "x.mp4").read_bytes() == b"earlier"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["in.avi", "x.mp4"]
