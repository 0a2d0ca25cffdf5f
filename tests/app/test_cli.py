"""The console command itself: every subcommand is reachable, errors are one line."""

import subprocess
import sys
from pathlib import Path

import pytest

from edge_deeplab.app.cli import COMMANDS, main


def test_every_command_is_registered_with_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_help_does_not_import_tensorflow():
    code = "import sys\nfrom edge_deeplab.app.cli import build_parser\nbuild_parser()\nprint('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert out.strip() == "False"


def test_console_script_one_line_error():
    exe = Path(sys.executable).parent / "edge-deeplab"  # the installed console script
    p = subprocess.run([str(exe), "analyze", "/nonexistent/model.tflite"], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 2  # EdgeDeeplabError's exit code
    lines = p.stderr.strip().splitlines()
    assert lines == ["edge-deeplab analyze: error: TFLite model not found: /nonexistent/model.tflite"]
    assert "Traceback" not in p.stderr


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
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "ZeroDivisionError" in err[0] and "--debug" in err[0]
