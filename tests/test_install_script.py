"""scripts/install.sh takes bookworm-backports from the machine's own apt configuration
(scripts/apt_backports_source.sh, through apt's own parser), never from a fixed mirror, and
installs python3-venv where ``python3 -m venv`` cannot work (a Debian machine, as install.sh is)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.cli import assert_one_line_error

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "apt_backports_source.sh"


def _source(tmp_path, files: dict, codename="bookworm"):
    """The script on an apt configuration made of ``files`` only (``{name: text}`` in sources.list.d)."""
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    for name, text in files.items():
        (parts / name).write_text(text)
    return subprocess.run([str(SCRIPT), codename, "-o", "Dir::Etc::SourceList=/dev/null",
                           "-o", f"Dir::Etc::SourceParts={parts}"],
                          capture_output=True, text=True, timeout=60)


def test_backports_come_from_the_configured_deb822_mirror(tmp_path):
    p = _source(tmp_path, {"debian.sources": "Types: deb\nURIs: http://mirror.example/debian\n"
                                             "Suites: bookworm bookworm-updates\nComponents: main\n"})
    assert p.returncode == 0 and p.stdout == "deb http://mirror.example/debian/ bookworm-backports main\n"


def test_backports_come_from_a_one_line_proxy_source(tmp_path):
    p = _source(tmp_path, {"local.list": "deb http://apt-cache.local:3142/debian bookworm main\n"})
    assert p.returncode == 0
    assert p.stdout == "deb http://apt-cache.local:3142/debian/ bookworm-backports main\n"


def test_configured_backports_are_left_alone(tmp_path):
    p = _source(tmp_path, {"a.list": "deb http://m.example/debian bookworm main\n",
                           "b.list": "deb http://m.example/debian bookworm-backports main\n"})
    assert p.returncode == 0 and p.stdout == ""


def test_no_source_for_the_release_is_one_line(tmp_path):
    p = _source(tmp_path, {"a.list": "deb http://m.example/debian trixie main\n"})
    assert_one_line_error(p, "no apt source for bookworm", rc=p.returncode)


def test_install_sh_names_no_mirror_and_installs_python3_venv():
    text = (ROOT / "scripts" / "install.sh").read_text()
    assert "http://" not in text and "https://" not in text
    assert "scripts/apt_backports_source.sh bookworm" in text
    assert "apt-get install -y -qq python3-venv" in text and "import ensurepip, venv" in text
