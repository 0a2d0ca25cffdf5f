"""The bundled procedural segmentation dataset ("synthetic"), generated on first use.

Scenes are drawn with numpy/OpenCV, deterministic by seed, so the whole toolkit (train, QAT, export,
benchmark, demo) runs offline with no download. Each scene has a textured background with clutter
and a few objects of five classes, painted back to front so later objects occlude earlier ones:

====  ==========  ==============================================================================
id    name        look
====  ==========  ==============================================================================
0     background  smooth two-colour noise, stripes or checks, low saturation, with grey clutter
1     person      head + neck + shoulders/torso silhouette (skin-tone head, any clothes colour)
2     ball        ellipse with spherical shading, mostly red-orange-yellow
3     box         rotated rectangle with stripes, mostly blue-cyan-violet
4     cone        triangle with a checker or dotted texture, mostly yellow-green
====  ==========  ==============================================================================

Object sizes vary from ~8% to ~70% of the image side, colour bands overlap between classes (and
clothes take any colour), and textures are noisy, so a model must combine shape, texture and
colour.

On disk it uses the ``folder`` format every loader reads::

    ROOT/images/<stem>.png   RGB
    ROOT/masks/<stem>.png    palette PNG of class indices
    ROOT/train.txt, ROOT/val.txt   stems, one a line
    ROOT/labels.txt          class names, one a line

Example:
    >>> import numpy as np
    >>> img, mask = render_scene(np.random.default_rng(0), (64, 64))
    >>> img.shape, img.dtype, mask.shape, int(mask.max()) < len(SYNTHETIC_CLASSES)
    ((64, 64, 3), dtype('uint8'), (64, 64), True)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Tuple

import cv2
import numpy as np

from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.core.imaging import parse_size

SYNTHETIC_CLASSES = ("background", "person", "ball", "box", "cone")
PERSON_CLASS = 1
#: Bump when the generator's output changes, so caches regenerate.
SYNTHETIC_VERSION = "synthetic-v3"
DEFAULT_NUM_TRAIN = 1200
DEFAULT_NUM_VAL = 200
DEFAULT_SIZE = (128, 128)
_DONE_MARKER = "dataset.json"

# VOC-like palette so masks look sensible in an image viewer (indices are what counts).
_PALETTE = [0, 0, 0, 192, 128, 128, 128, 0, 0, 0, 128, 0, 128, 128, 0]
_PALETTE += [0] * (768 - len(_PALETTE))
_PALETTE[255 * 3: 255 * 3 + 3] = [224, 224, 192]


# --------------------------------------------------------------------------------------- textures
def _noise(rng, h, w, cells) -> np.ndarray:
    """Smooth value noise in [0, 1] of shape (h, w): random grid upsampled bicubically."""
    gh, gw = max(2, int(cells)), max(2, int(cells * w / h))
    g = rng.random((gh, gw), dtype=np.float32)
    n = cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(n, 0.0, 1.0)


def _coords(h, w):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return yy, xx


def _stripes(rng, h, w, period_range=(4, 12)) -> np.ndarray:
    yy, xx = _coords(h, w)
    theta = rng.uniform(0, np.pi)
    period = rng.uniform(*period_range)
    t = xx * np.cos(theta) + yy * np.sin(theta)
    return (0.5 + 0.5 * np.sin(2 * np.pi * t / period)).astype(np.float32)


def _checks(rng, h, w, period_range=(5, 14)) -> np.ndarray:
    yy, xx = _coords(h, w)
    theta = rng.uniform(0, np.pi / 2)
    p = rng.uniform(*period_range)
    u = xx * np.cos(theta) + yy * np.sin(theta)
    v = -xx * np.sin(theta) + yy * np.cos(theta)
    return ((np.floor(u / p) + np.floor(v / p)) % 2).astype(np.float32)


def _dots(rng, h, w, period_range=(5, 10)) -> np.ndarray:
    yy, xx = _coords(h, w)
    p = rng.uniform(*period_range)
    u = (xx % p) / p - 0.5
    v = (yy % p) / p - 0.5
    return (u * u + v * v < 0.09).astype(np.float32)


def _hsv_color(rng, h_range=(0, 180), s_range=(120, 255), v_range=(90, 255)) -> np.ndarray:
    hsv = np.array([[[rng.uniform(*h_range) % 180, rng.uniform(*s_range), rng.uniform(*v_range)]]],
                   dtype=np.float32)
    hsv = np.clip(hsv, 0, [179, 255, 255]).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _mix(t: np.ndarray, c0, c1) -> np.ndarray:
    return c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]


def _background(rng, h, w) -> np.ndarray:
    kind = rng.integers(3)
    if kind == 0:
        t = _noise(rng, h, w, rng.integers(3, 10))
    elif kind == 1:
        t = 0.6 * _stripes(rng, h, w, (6, 24)) + 0.4 * _noise(rng, h, w, 4)
    else:
        t = 0.5 * _checks(rng, h, w, (8, 32)) + 0.5 * _noise(rng, h, w, 5)
    c0 = _hsv_color(rng, s_range=(0, 110), v_range=(40, 230))
    c1 = _hsv_color(rng, s_range=(0, 110), v_range=(40, 230))
    img = _mix(t, c0, c1)
    # Linear illumination gradient.
    yy, xx = _coords(h, w)
    g = 1.0 + rng.uniform(-0.25, 0.25) * (xx / w - 0.5) + rng.uniform(-0.25, 0.25) * (yy / h - 0.5)
    img = img * g[..., None]
    # Clutter: grey-ish lines and blobs that are still background.
    for _ in range(rng.integers(1, 5)):
        col = tuple(float(x) for x in _hsv_color(rng, s_range=(0, 90), v_range=(30, 240)))
        if rng.random() < 0.5:
            p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.line(img, p1, p2, col, int(rng.integers(1, max(2, w // 32) + 1)), cv2.LINE_AA)
        else:
            c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            ax = (int(rng.integers(2, max(3, w // 10))), int(rng.integers(2, max(3, h // 10))))
            cv2.ellipse(img, c, ax, float(rng.uniform(0, 180)), 0, 360, col, -1, cv2.LINE_AA)
    return img


# ---------------------------------------------------------------------------------------- shapes
#: OpenCV hue bands (0-180) of each object class's main colour. They overlap at the edges and
#: the person's clothes take any hue, so colour alone does not decide the class.
_HUES = {2: (-15, 35), 3: (85, 140), 4: (30, 90)}

def _person_shape(rng, h, w, scale) -> Tuple[np.ndarray, np.ndarray]:
    """Returns (body mask, head mask) uint8 {0,1} of a head-and-torso silhouette."""
    side = min(h, w)
    head_r = max(2.0, scale * side * rng.uniform(0.13, 0.17))
    cx = rng.uniform(0.1, 0.9) * w
    # Portrait-like: the torso often runs off the bottom edge.
    cy_head = rng.uniform(0.15, 0.75) * h
    body = np.zeros((h, w), np.uint8)
    head = np.zeros((h, w), np.uint8)
    hr_y = head_r * rng.uniform(1.1, 1.3)
    cv2.ellipse(head, (int(cx), int(cy_head)), (int(round(head_r)), int(round(hr_y))),
                float(rng.uniform(-12, 12)), 0, 360, 1, -1, cv2.LINE_AA)
    neck_top = cy_head + hr_y * 0.8
    neck_w = head_r * 0.45
    shoulder_y = neck_top + head_r * 0.5
    shoulder_w = head_r * rng.uniform(2.2, 3.0)
    bottom = shoulder_y + head_r * rng.uniform(3.0, 5.0)
    hip_w = shoulder_w * rng.uniform(0.75, 0.95)
    pts = np.array([
        (cx - neck_w, neck_top), (cx + neck_w, neck_top),
        (cx + neck_w, shoulder_y - head_r * 0.25),
        (cx + shoulder_w * 0.85, shoulder_y), (cx + shoulder_w, shoulder_y + head_r * 0.6),
        (cx + hip_w, bottom), (cx - hip_w, bottom),
        (cx - shoulder_w, shoulder_y + head_r * 0.6), (cx - shoulder_w * 0.85, shoulder_y),
        (cx - neck_w, shoulder_y - head_r * 0.25),
    ], np.float32)
    cv2.fillPoly(body, [np.round(pts).astype(np.int32)], 1, cv2.LINE_AA)
    # Rounded shoulders.
    for sx in (-1, 1):
        cv2.circle(body, (int(cx + sx * shoulder_w * 0.8), int(shoulder_y + head_r * 0.45)),
                   int(head_r * 0.5), 1, -1, cv2.LINE_AA)
    return body, head


def _person(rng, h, w, scale):
    body, head = _person_shape(rng, h, w, scale)
    skin = _hsv_color(rng, h_range=(5, 22), s_range=(60, 170), v_range=(110, 250))
    hair = _hsv_color(rng, h_range=(0, 30), s_range=(20, 200), v_range=(15, 120))
    cloth0 = _hsv_color(rng, s_range=(60, 255), v_range=(50, 250))
    cloth1 = cloth0 * rng.uniform(0.5, 0.85)
    kind = rng.integers(3)
    t = _noise(rng, h, w, 8) if kind == 0 else (_stripes(rng, h, w) if kind == 1 else _checks(rng, h, w))
    img = _mix(t, cloth0, cloth1)
    face = _mix(_noise(rng, h, w, 6) * 0.3, skin, skin * 0.8)
    img = np.where(head[..., None] > 0, face, img)
    # Hair: the top part of the head.
    ys = np.nonzero(head.any(axis=1))[0]
    if ys.size:
        cut = ys[0] + (ys[-1] - ys[0]) * rng.uniform(0.2, 0.45)
        yy = np.arange(h, dtype=np.float32)[:, None]
        hair_m = (head > 0) & (yy < cut)
        img = np.where(hair_m[..., None], hair[None, None, :], img)
    return np.maximum(body, head), img


def _ball(rng, h, w, scale):
    side = min(h, w)
    r = max(3.0, scale * side * rng.uniform(0.12, 0.3))
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    ry = r * rng.uniform(0.75, 1.0)
    m = np.zeros((h, w), np.uint8)
    cv2.ellipse(m, (int(cx), int(cy)), (int(r), int(ry)), float(rng.uniform(0, 180)), 0, 360, 1,
                -1, cv2.LINE_AA)
    yy, xx = _coords(h, w)
    lx, ly = cx - 0.35 * r, cy - 0.35 * ry
    d = np.sqrt((xx - lx) ** 2 + (yy - ly) ** 2) / (1.6 * r)
    shade = np.clip(1.15 - d, 0.35, 1.15)
    c = _hsv_color(rng, h_range=_HUES[2])
    img = c[None, None, :] * shade[..., None]
    img = img * (0.85 + 0.3 * _noise(rng, h, w, 10))[..., None]
    return m, img


def _box(rng, h, w, scale):
    side = min(h, w)
    bw = max(4.0, scale * side * rng.uniform(0.18, 0.5))
    bh = bw * rng.uniform(0.5, 1.6)
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    rect = ((float(cx), float(cy)), (float(bw), float(bh)), float(rng.uniform(0, 90)))
    pts = cv2.boxPoints(rect)
    m = np.zeros((h, w), np.uint8)
    cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 1, cv2.LINE_AA)
    c0 = _hsv_color(rng, h_range=_HUES[3])
    c1 = c0 * rng.uniform(0.35, 0.7)
    img = _mix(_stripes(rng, h, w, (3, 8)), c0, c1)
    return m, img


def _cone(rng, h, w, scale):
    side = min(h, w)
    s = max(5.0, scale * side * rng.uniform(0.2, 0.5))
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    ang = rng.uniform(-0.5, 0.5)  # mostly upright
    base = s * rng.uniform(0.6, 1.1)
    local = np.array([(0, -s * 0.6), (-base / 2, s * 0.4), (base / 2, s * 0.4)], np.float32)
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]], np.float32)
    pts = local @ rot.T + np.array([cx, cy], np.float32)
    m = np.zeros((h, w), np.uint8)
    cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 1, cv2.LINE_AA)
    c0 = _hsv_color(rng, h_range=_HUES[4])
    c1 = _hsv_color(rng, s_range=(0, 80), v_range=(180, 255))
    t = _checks(rng, h, w, (3, 7)) if rng.random() < 0.5 else _dots(rng, h, w)
    return m, _mix(t, c0, c1)


_DRAW = {1: _person, 2: _ball, 3: _box, 4: _cone}


def render_scene(rng: np.random.Generator, size=DEFAULT_SIZE, *,
                 min_objects: int = 2, max_objects: int = 5,
                 person_prob: float = 0.6) -> Tuple[np.ndarray, np.ndarray]:
    """Draws one procedural scene in memory.

    Args:
        rng: ``numpy.random.Generator`` (the scene is a pure function of its state).
        size: ``(height, width)`` or one int.
        min_objects, max_objects: object count range (inclusive).
        person_prob: chance that the scene contains a person.

    Returns:
        ``(image, mask)``: ``uint8`` RGB ``(H, W, 3)`` and ``uint8`` class indices ``(H, W)`` in
        ``[0, len(SYNTHETIC_CLASSES))``.

    Example:
        >>> import numpy as np
        >>> a = render_scene(np.random.default_rng(3), 48)
        >>> b = render_scene(np.random.default_rng(3), 48)
        >>> bool((a[0] == b[0]).all() and (a[1] == b[1]).all())
        True
    """
    h, w = parse_size(size)
    img = _background(rng, h, w)
    mask = np.zeros((h, w), np.uint8)
    n = int(rng.integers(min_objects, max_objects + 1))
    classes = list(rng.integers(2, len(SYNTHETIC_CLASSES), size=n))
    if rng.random() < person_prob:
        # The person goes anywhere in the painting order, so it is occluded or occludes.
        classes[int(rng.integers(0, n))] = PERSON_CLASS
    for cls in classes:
        scale = float(np.exp(rng.uniform(np.log(0.7), np.log(1.6))))
        m, tex = _DRAW[int(cls)](rng, h, w, scale)
        sel = m > 0
        img[sel] = tex[sel]
        mask[sel] = cls
    # Sensor noise and a mild blur.
    img = img + rng.normal(0, rng.uniform(2, 6), img.shape).astype(np.float32)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (3, 3), 0)
    return np.clip(img, 0, 255).astype(np.uint8), mask


# ------------------------------------------------------------------------------------ on disk
def _save_mask(path: Path, mask: np.ndarray) -> None:
    from PIL import Image

    im = Image.fromarray(mask, mode="P")
    im.putpalette(_PALETTE)
    im.save(path, optimize=False, compress_level=1)


def generate_synthetic(root, *, num_train: int = DEFAULT_NUM_TRAIN, num_val: int = DEFAULT_NUM_VAL,
                       size=DEFAULT_SIZE, seed: int = 0) -> Path:
    """Writes the procedural dataset to ``root`` in the folder format (overwrites files there).

    Train and val scenes come from independent seed streams, so the val split is held out.

    Args:
        root: destination directory (created).
        num_train, num_val: number of scenes per split.
        size: image ``(height, width)`` or one int.
        seed: base seed; the same seed always gives byte-identical images and masks.

    Returns:
        ``Path(root)``.

    Example:
        >>> import tempfile
        >>> p = generate_synthetic(tempfile.mkdtemp(), num_train=2, num_val=1, size=32)
        >>> sorted(x.name for x in p.iterdir())
        ['dataset.json', 'images', 'labels.txt', 'masks', 'train.txt', 'val.txt']
    """
    root = Path(root)
    if num_train < 0 or num_val < 0:
        raise EdgeDeeplabError("num_train and num_val must be >= 0")
    h, w = parse_size(size)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, count, stream in (("train", num_train, 0), ("val", num_val, 1)):
        stems = []
        for i in range(count):
            rng = np.random.default_rng([int(seed), stream, i])
            img, mask = render_scene(rng, (h, w))
            stem = f"{split}_{i:05d}"
            if not cv2.imwrite(str(root / "images" / f"{stem}.png"),
                               cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1]):
                raise EdgeDeeplabError(f"cannot write {root / 'images' / (stem + '.png')}")
            _save_mask(root / "masks" / f"{stem}.png", mask)
            stems.append(stem)
        splits[split] = stems
        (root / f"{split}.txt").write_text("".join(s + "\n" for s in stems))
    (root / "labels.txt").write_text("".join(c + "\n" for c in SYNTHETIC_CLASSES))
    (root / _DONE_MARKER).write_text(json.dumps({
        "version": SYNTHETIC_VERSION, "seed": int(seed), "size": [h, w],
        "num_train": num_train, "num_val": num_val, "classes": list(SYNTHETIC_CLASSES),
    }, indent=2) + "\n")
    return root


def default_data_dir() -> Path:
    """``$EDGE_DEEPLAB_DATA`` or ``~/.cache/edge_deeplab/synthetic-v3``."""
    env = os.environ.get("EDGE_DEEPLAB_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "edge_deeplab" / SYNTHETIC_VERSION


def is_complete(root) -> bool:
    """Whether ``root`` holds a finished synthetic dataset (its marker file exists)."""
    return (Path(root) / _DONE_MARKER).is_file()


def ensure_synthetic(data_dir=None, *, num_train: int = DEFAULT_NUM_TRAIN,
                     num_val: int = DEFAULT_NUM_VAL, size=DEFAULT_SIZE, seed: int = 0) -> Path:
    """Returns the synthetic dataset directory, generating it first if it is not there.

    Generation is atomic: scenes are written into a temporary sibling directory that is renamed
    into place only when complete, so a killed generation never leaves a half dataset.

    Args:
        data_dir: where the dataset lives (default :func:`default_data_dir`).
        num_train, num_val, size, seed: used only when generating.

    Example:
        >>> import tempfile, os
        >>> d = os.path.join(tempfile.mkdtemp(), "syn")
        >>> p = ensure_synthetic(d, num_train=2, num_val=1, size=32)
        >>> is_complete(p), len((p / "train.txt").read_text().split())
        (True, 2)
    """
    root = Path(data_dir).expanduser() if data_dir else default_data_dir()
    if is_complete(root):
        return root
    if root.exists() and any(root.iterdir()):
        raise EdgeDeeplabError(
            f"{root} exists but is not a complete synthetic dataset; remove it or pick another "
            "--data-dir")
    root.parent.mkdir(parents=True, exist_ok=True)
    # Temporary directories of generations killed more than an hour ago are garbage.
    for stale in root.parent.glob(f".{root.name}.tmp-*"):
        try:
            if time.time() - stale.stat().st_mtime > 3600:
                shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            pass
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        generate_synthetic(tmp, num_train=num_train, num_val=num_val, size=size, seed=seed)
        if root.exists():  # an empty directory left by the user
            root.rmdir()
        try:
            os.rename(tmp, root)
        except OSError:
            if is_complete(root):  # another process finished first
                return root
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root
