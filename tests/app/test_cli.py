"""The console command itself: every subcommand is reachable, errors are one line."""

import subprocess
import sys
import time
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
    t = time.time()
    exe = Path(sys.executable).parent / "edge-deeplab"  # the installed console script
    p = subprocess.run([str(exe), "analyze", "/nonexistent/model.tflite"], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "not found" in lines[0] and "Traceback" not in p.stderr
    assert time.time() - t < 300


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
