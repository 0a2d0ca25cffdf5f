"""The one capability gate (tests/support/capability.py, used by tests/conftest.py): a missing
capability skips and names itself, except under CI=true for what this project installs itself
(lavapipe, the side venvs), where it fails; a broken probe fails everywhere; each probe runs once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import capability
from tests.support.capability import PROJECT_INSTALLED, Missing, verdict

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fresh(monkeypatch):
    """The gate with no remembered outcome for any capability (restored afterwards)."""
    saved = dict(capability._OUTCOMES)
    capability._OUTCOMES.clear()
    yield monkeypatch
    capability._OUTCOMES.clear()
    capability._OUTCOMES.update(saved)


def _missing():
    raise Missing("no such thing here")


def _outcome(name, probe) -> tuple[str, str]:
    """What the gate decides: ``("ok", value)``, ``("skip", reason)`` or ``("fail", message)``
    (``tests/conftest.py``'s ``require`` acts on it; the subprocess tests below see it acted on)."""
    return verdict(name, probe)


def test_the_project_installs_lavapipe_the_side_venvs_and_strace_but_not_npm():
    assert PROJECT_INSTALLED == {"gpu": True, "board": True, "mediapipe": True, "strace": True,
                                 "npm": False}


@pytest.mark.parametrize("name", ["gpu", "board", "mediapipe", "strace", "npm"])
def test_missing_capability_skips_outside_ci(fresh, name):
    fresh.delenv("CI", raising=False)
    assert _outcome(name, _missing) == ("skip", f"capability {name} missing: no such thing here")


@pytest.mark.parametrize("name", ["gpu", "board", "mediapipe", "strace"])
def test_missing_project_capability_fails_under_ci(fresh, name):
    fresh.setenv("CI", "true")
    kind, msg = _outcome(name, _missing)
    assert kind == "fail" and msg.startswith(f"capability {name} missing under CI=true"), msg
    assert msg.endswith("no such thing here")


def test_missing_npm_still_skips_under_ci(fresh):
    fresh.setenv("CI", "true")
    assert _outcome("npm", _missing) == ("skip", "capability npm missing: no such thing here")


def test_broken_probe_fails_everywhere_and_each_probe_runs_once(fresh):
    fresh.delenv("CI", raising=False)
    calls = []

    def crash():
        calls.append(1)
        raise RuntimeError("probe crashed (signal 11)")

    for _ in range(2):
        kind, msg = _outcome("gpu", crash)
        assert kind == "fail" and "capability gpu is broken" in msg and "signal 11" in msg, msg
    assert verdict("board", lambda: calls.append(2) or "py") == ("ok", "py")
    assert verdict("board", lambda: calls.append(3) or "other") == ("ok", "py")
    assert calls == [1, 2]


def _run_interop_test(tmp_path, ci: str | None):
    """One MediaPipe interop test in a fresh pytest, with a MediaPipe release that does not exist
    (pip cannot install it: the venv script's 'cannot create', exit 3)."""
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(MEDIAPIPE_VENV=str(tmp_path / "mp"), MEDIAPIPE_VERSION="0.0.0.0",
               TF_ENABLE_ONEDNN_OPTS="0", PYTHONPATH=str(ROOT))
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "0", "-q", "-p", "no:cacheprovider", "-rs",
         "tests/converters/test_mediapipe_interop.py::test_int8_input_is_refused_and_analyze_says_so"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_uninstallable_mediapipe_venv_skips_locally_and_fails_in_ci(tmp_path):
    local = _run_interop_test(tmp_path, None)
    assert local.returncode == 0 and "1 skipped" in local.stdout, local.stdout[-2000:]
    assert "capability mediapipe missing: cannot create the MediaPipe venv" in local.stdout
    ci = _run_interop_test(tmp_path, "true")
    assert ci.returncode == 1 and "1 error" in ci.stdout, ci.stdout[-2000:]
    assert "capability mediapipe missing under CI=true" in ci.stdout
    assert not (tmp_path / "mp").exists()  # nothing half-made is left to be taken for a venv


def test_broken_mediapipe_venv_script_is_an_error_not_a_skip(fresh, tmp_path):
    from tests.support.mediapipe_venv import mediapipe_python

    env = {**os.environ, "MEDIAPIPE_VENV": str(tmp_path / "not-a-dir" / "x" / "mp")}
    (tmp_path / "not-a-dir").write_text("a file where the venv's folder should be")
    with pytest.raises(RuntimeError, match=r"scripts/mediapipe_venv.sh failed \(exit 1\)"):
        mediapipe_python(env)
