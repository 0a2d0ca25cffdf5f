"""The console command itself: every subcommand is reachable, errors are one line."""

import subprocess
import sys
from pathlib import Path

import pytest

from edge_deeplab.app.cli import COMMANDS, main
from tests.support.cli import assert_one_line_error


def test_every_command_is_registered_with_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_help_does_not_import_tensorflow():
    """Building every subcommand's arguments (what ``--help`` does) imports no TensorFlow, Keras,
    LiteRT or OpenCV: the choices the CLI imports live in light modules."""
    code = ("import sys\nfrom edge_deeplab.app.cli import build_parser\nbuild_parser()\n"
            "print(sorted(m for m in ('tensorflow', 'tf_keras', 'ai_edge_litert', 'cv2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert out.strip() == "[]"


def test_choices_are_imported_from_their_homes():
    """The CLI's choice lists are the tuples of the modules that own them, not copies."""
    from demos.refinement import REFINE_METHODS
    from edge_deeplab.app.cli import build_parser
    from edge_deeplab.core.contract.variants import EXPORT_OUTPUTS, IO_TYPES
    from edge_deeplab.data.datasets import DATASET_NAMES
    from edge_deeplab.runtime.runners import ACCELERATORS, GPU_PRECISIONS, RUNTIMES

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    homes = {("bench", "runtime"): RUNTIMES, ("bench", "gpu_precision"): GPU_PRECISIONS,
             ("eval", "runtime"): RUNTIMES, ("eval", "gpu_precision"): GPU_PRECISIONS,
             ("eval", "accelerator"): ACCELERATORS, ("eval", "dataset"): DATASET_NAMES,
             ("train", "dataset"): DATASET_NAMES, ("demo", "runtime"): RUNTIMES,
             ("demo", "refine"): REFINE_METHODS, ("export", "io_type"): IO_TYPES,
             ("export", "output"): EXPORT_OUTPUTS}
    for (command, dest), home in homes.items():
        action = next(a for a in commands.choices[command]._actions if a.dest == dest)
        assert action.choices is home, (command, dest)


def test_console_script_one_line_error():
    exe = Path(sys.executable).parent / "edge-deeplab"  # the installed console script
    p = subprocess.run([str(exe), "analyze", "/nonexistent/model.tflite"], capture_output=True,
                       text=True, timeout=300)
    line = assert_one_line_error(p, code=2)  # EdgeDeeplabError's exit code
    assert line == "edge-deeplab analyze: error: TFLite model not found: /nonexistent/model.tflite"


def test_missing_file_error_comes_before_tensorflow_loads():
    """The one-line error for a missing model is instant: it is raised before TensorFlow is imported."""
    code = ("import sys\nfrom edge_deeplab.app.cli import main\n"
            "rc = main(['analyze', '/nonexistent/model.tflite'])\nprint(rc, 'tensorflow' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.stdout.split() == ["2", "False"], p.stderr[-2000:]


def test_unexpected_exception_is_one_line(monkeypatch, capsys):
    import edge_deeplab.app.commands.summary as summary

    def boom(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(summary, "run", boom)
    from edge_deeplab.app import cli

    parser = cli.build_parser()
    args = parser.parse_args(["summary"])
    assert args._run is boom
    rc = cli.main(["summary"])
    assert_one_line_error(capsys.readouterr().err, "ZeroDivisionError", "--debug", rc=rc, code=1)


# ------------------------------------------------------------------- issue 12: numeric flags
@pytest.mark.parametrize("argv", [
    ["analyze", "m.tflite", "--gpu-timeout", "-1"],
    ["analyze", "m.tflite", "--gpu-timeout", "nan"],
    ["train", "--out", "r", "--steps", "0"],
    ["train", "--out", "r", "--epochs", "-1"],
    ["train", "--out", "r", "--batch-size", "-2"],
    ["train", "--out", "r", "--lr", "0"],
    ["train", "--out", "r", "--seed", "-1"],
    ["train", "--out", "r", "--bn-momentum", "1.5"],
    ["train", "--out", "r", "--checkpoint-every", "0"],
    ["train", "--out", "r", "--warmup-steps", "-1"],
    ["train", "--out", "r", "--num-classes", "0"],
    ["qat", "r", "--steps", "0"],
    ["qat", "r", "--lr", "-0.1"],
    ["qat", "r", "--calibration-batches", "-1"],
    ["eval", "m.keras", "--max-images", "0"],
    ["eval", "m.keras", "--scales", "nan"],
    ["export", "m.keras", "--out", "x.tflite", "--calibration-steps", "0"],
])
def test_nonsense_numeric_flags_fail_at_parse_time_with_one_line(argv, capsys, tmp_path,
                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert_one_line_error(capsys.readouterr().err, argv[-2], f"edge-deeplab {argv[0]}: error:",
                          rc=e.value.code, code=2)


def test_numeric_helpers_accept_valid_values():
    from edge_deeplab.app.commands.common import (
        non_negative_float,
        non_negative_int,
        positive_float,
        positive_int,
        unit_interval,
    )

    assert positive_int("3") == 3 and non_negative_int("0") == 0
    assert positive_float("0.5") == 0.5 and non_negative_float("0") == 0.0
    assert unit_interval("0.99") == 0.99


# ------------------------------------------------------------------- issue 12: closed pipes
def test_closed_stdout_pipe_exits_quietly(tmp_path):
    """`edge-deeplab analyze m.tflite | head`: the reader leaves early; no BrokenPipeError."""
    import numpy as np

    from edge_deeplab.core._tf import tf

    k = tf.constant(np.ones((3, 3, 3, 4), np.float32))
    f = tf.function(lambda x: tf.nn.conv2d(x, k, 1, "SAME"),
                    input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()])
    model = tmp_path / "m.tflite"
    model.write_bytes(conv.convert())
    exe = Path(sys.executable).parent / "edge-deeplab"
    p = subprocess.Popen([str(exe), "analyze", str(model), "--no-gpu", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # like `| head` exiting before the report is written
    err = p.stderr.read().decode()
    rc = p.wait(timeout=300)
    assert "BrokenPipeError" not in err and "Traceback" not in err and "error" not in err, err
    assert rc == 141


# ------------------------------------------------------- issue 12: Keras 3 files, one line
def _keras_zip(path, keras_version, n_layers=12):
    """A .keras zip in Keras 3's layout (metadata.json, config.json, weights), ~3 KB of config."""
    import json
    import zipfile

    layers = [{"module": "keras.layers", "class_name": "InputLayer", "name": "input_layer",
               "config": {"batch_shape": [None, 64, 64, 3], "dtype": "float32",
                          "sparse": False, "name": "input_layer"}, "inbound_nodes": []}]
    for i in range(n_layers):
        layers.append({"module": "keras.layers", "class_name": "Conv2D", "name": f"conv_{i}",
                       "config": {"name": f"conv_{i}", "trainable": True, "filters": 8,
                                  "kernel_size": [3, 3], "padding": "same",
                                  "dtype": {"module": "keras", "class_name": "DTypePolicy",
                                            "config": {"name": "float32"}}},
                       "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__"}]}]})
    config = {"module": "keras", "class_name": "Functional", "registered_name": "Functional",
              "config": {"name": "functional", "layers": layers}}
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": keras_version}))
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", b"")
    return path


@pytest.mark.parametrize("command", ["export", "eval"])
def test_keras3_file_is_one_short_line(command, tmp_path, capsys):
    model = _keras_zip(tmp_path / "k3.keras", "3.5.0")
    argv = [command, str(model)] + (["--out", str(tmp_path / "k3.tflite")] if command == "export"
                                    else ["--dataset", "folder", "--data-dir", str(tmp_path), "--quiet"])
    if command == "eval":  # a minimal folder dataset so the model is what fails
        import numpy as np

        from tests.support.data_trees import make_folder_tree

        make_folder_tree(tmp_path, np.random.default_rng(0), n=1, num_classes=2, exts=(".png",),
                         sizes=((8, 8),), n_train=0, labels=("bg", "fg"))
    rc = main(argv)
    line = assert_one_line_error(capsys.readouterr().err, "Keras 3.5.0", rc=rc, code=2)
    assert "config=" not in line and len(line) < 300, line


def test_undeserializable_keras_file_error_has_no_config_dump(tmp_path, capsys):
    model = _keras_zip(tmp_path / "odd.keras", "2.15.0")
    rc = main(["export", str(model), "--out", str(tmp_path / "o.tflite")])
    line = assert_one_line_error(capsys.readouterr().err, "cannot load Keras model", rc=rc, code=2)
    assert "'filters': 8" not in line and len(line) < 500, line


_HANGS_AFTER_CTRL_C = r"""
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # not an ignored SIGINT a background shell passed on
import edge_deeplab.app.cli as cli
cli.INTERRUPT_GRACE_S = 1.0
undo = cli._exit_promptly_on_interrupt("train")
try:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(30)
except KeyboardInterrupt:
    time.sleep(30)  # clean-up stuck in a native call: the watchdog ends the process
print("not reached")
"""


def test_ctrl_c_ends_the_command_even_when_clean_up_hangs():
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-c", _HANGS_AFTER_CTRL_C], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 130, p.stderr[-2000:]
    assert p.stderr.strip().splitlines()[-1] == "edge-deeplab train: interrupted"
    assert "not reached" not in p.stdout
