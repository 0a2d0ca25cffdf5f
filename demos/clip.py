"""A procedurally generated demo clip: a person-like figure walking over a textured background.

No video binaries live in the repository; this renders one on demand (deterministic for a seed),
together with its ground-truth person masks, for the quickstart, tests and trying the demo without
a camera.

Example:
    >>> import tempfile, os
    >>> info = generate_clip(os.path.join(tempfile.mkdtemp(), "clip.mp4"), num_frames=5,
    ...                      width=96, height=72)
    >>> (info.num_frames, info.width, info.height)
    (5, 96, 72)

Command line: ``python -m demos.clip OUT.mp4 [--frames N] [--size WxH] [--fps F]``. Ctrl-C exits 130
and SIGTERM 143, with one line; an earlier ``OUT.mp4`` stays as it was and no temporary file is left.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path
from typing import Tuple

import cv2
import numpy as np

from demos.outputs import VideoOutput
from edge_deeplab.core.errors import EdgeDeeplabError, Terminated, raise_on_sigterm


@dataclasses.dataclass
class ClipInfo:
    path: Path
    num_frames: int
    width: int
    height: int
    fps: float


def _background(width: int, height: int, seed: int) -> np.ndarray:
    """A textured, colourful background (gradient + stripes + checker + smoothed noise), BGR uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = xx / max(1, width - 1), yy / max(1, height - 1)
    b = 90 + 70 * u + 25 * np.sin(xx / 7.0)
    g = 110 + 60 * v + 25 * np.sin((xx + yy) / 11.0)
    r = 140 - 50 * u + 30 * np.cos(yy / 9.0)
    img = np.stack([b, g, r], -1)
    cell = max(4, min(width, height) // 12)
    checker = (((xx // cell) + (yy // cell)) % 2)[..., None] * 30.0 - 15.0
    noise = rng.normal(0, 25, (height // 4 + 1, width // 4 + 1, 3)).astype(np.float32)
    noise = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    img = img + checker + noise
    # a few "furniture" blocks so the background is not a pure texture
    for _ in range(4):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height // 2))
        w, h = int(rng.integers(width // 10, width // 4)), int(rng.integers(height // 6, height // 2))
        color = rng.integers(30, 220, 3).astype(np.float32)
        img[y0:y0 + h, x0:x0 + w] = 0.5 * img[y0:y0 + h, x0:x0 + w] + 0.5 * color
    return np.clip(img, 0, 255).astype(np.uint8)


def _figure_mask(width: int, height: int, t: float, cx: float) -> Tuple[np.ndarray, dict]:
    """Rasterises the figure (head, neck, torso, arms, legs) at phase ``t``; returns its mask and parts."""
    s = height / 240.0
    mask = np.zeros((height, width), np.uint8)
    cy = height * 0.30 + 4 * s * math.sin(2 * math.pi * t * 2)  # head bob
    head_r = int(round(22 * s))
    head = (int(round(cx)), int(round(cy)))
    torso_top = cy + head_r + 6 * s
    torso_h = 80 * s
    torso_w = 30 * s
    swing = math.sin(2 * math.pi * t * 2)
    parts = {}
    cv2.circle(mask, head, head_r, 255, -1, cv2.LINE_AA)
    cv2.rectangle(mask, (int(cx - 6 * s), int(cy + head_r - 4 * s)),
                  (int(cx + 6 * s), int(torso_top + 4 * s)), 255, -1)
    cv2.ellipse(mask, (int(cx), int(torso_top + torso_h / 2)), (int(torso_w), int(torso_h / 2)),
                0, 0, 360, 255, -1, cv2.LINE_AA)
    limb = max(2, int(round(12 * s)))
    shoulder_l = (int(cx - torso_w * 0.8), int(torso_top + 12 * s))
    shoulder_r = (int(cx + torso_w * 0.8), int(torso_top + 12 * s))
    hand_l = (int(shoulder_l[0] - 18 * s - 14 * s * swing), int(shoulder_l[1] + 60 * s))
    hand_r = (int(shoulder_r[0] + 18 * s + 14 * s * swing), int(shoulder_r[1] + 60 * s))
    hip = torso_top + torso_h - 6 * s
    foot_l = (int(cx - 14 * s - 20 * s * swing), int(min(height + limb, hip + 90 * s)))
    foot_r = (int(cx + 14 * s + 20 * s * swing), int(min(height + limb, hip + 90 * s)))
    for a, b in ((shoulder_l, hand_l), (shoulder_r, hand_r),
                 ((int(cx - 10 * s), int(hip)), foot_l), ((int(cx + 10 * s), int(hip)), foot_r)):
        cv2.line(mask, a, b, 255, limb, cv2.LINE_AA)
    parts.update(head=head, head_r=head_r, torso_top=torso_top, torso_h=torso_h, torso_w=torso_w)
    return mask, parts


def render_frame(index: int, num_frames: int, width: int = 320, height: int = 240,
                 seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Renders frame ``index`` of the clip.

    Args:
        index: frame index in ``[0, num_frames)``.
        num_frames: clip length (the figure crosses the frame and back once per clip).
        width, height: frame size.
        seed: background texture seed.

    Returns:
        ``(frame_bgr_uint8, person_mask_uint8)``; the mask is 0/255 (anti-aliased edge).
    """
    bg = _background(width, height, seed)
    t = index / max(1, num_frames)
    # walk left -> right -> left, with the background slowly panning (camera shake)
    cx = width * (0.25 + 0.5 * (0.5 - 0.5 * math.cos(2 * math.pi * t)))
    shift = int(round(3 * math.sin(2 * math.pi * t * 3)))
    bg = np.roll(bg, shift, axis=1)
    mask, parts = _figure_mask(width, height, t, cx)
    # clothing: shirt colour on the torso, skin on head/limbs, darker trousers below the hips
    fig = np.empty_like(bg)
    fig[:] = (60, 70, 180)  # shirt (BGR, reddish)
    yy = np.arange(height)[:, None]
    hip = parts["torso_top"] + parts["torso_h"] - 6 * height / 240.0
    fig[np.broadcast_to(yy > hip, (height, width))] = (90, 50, 40)  # trousers
    skin = np.zeros((height, width), np.uint8)
    hx, hy = parts["head"]
    cv2.circle(skin, (hx, hy), parts["head_r"], 255, -1)
    fig[skin > 0] = (120, 160, 215)
    cv2.circle(fig, (hx, hy - parts["head_r"] // 2), max(1, parts["head_r"] * 3 // 4),
               (30, 35, 45), -1)  # hair
    fig = cv2.GaussianBlur(fig, (3, 3), 0)
    a = (mask.astype(np.float32) / 255.0)[..., None]
    frame = (a * fig + (1 - a) * bg + 0.5).astype(np.uint8)
    return frame, mask


def generate_clip(path, num_frames: int = 60, width: int = 320, height: int = 240,
                  fps: float = 15.0, seed: int = 0) -> ClipInfo:
    """Writes the demo clip as a video (:class:`demos.outputs.VideoOutput`: MPEG-4, atomically).

    Args:
        path: output ``.mp4`` (or ``.avi``) path.
        num_frames: number of frames.
        width, height: frame size (even numbers are safest for codecs).
        fps: frame rate stored in the file.
        seed: background seed.

    Returns:
        :class:`ClipInfo` of what was written.
    """
    if num_frames < 1:
        raise EdgeDeeplabError(f"num_frames must be >= 1, got {num_frames}")
    if width < 16 or height < 16:
        raise EdgeDeeplabError(f"clip size must be at least 16x16, got {width}x{height}")
    path = Path(path)
    out = VideoOutput(path, float(fps), (int(width), int(height)))
    try:
        for i in range(num_frames):
            out.write(render_frame(i, num_frames, width, height, seed)[0])
        out.finish()
    except BaseException:
        out.abort()
        raise
    return ClipInfo(path, int(num_frames), int(width), int(height), float(fps))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m demos.clip", description=__doc__.splitlines()[0])
    ap.add_argument("output", help="output video (.mp4)")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--size", default="320x240", help="WxH")
    ap.add_argument("--fps", type=float, default=15.0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    restore_sigterm = raise_on_sigterm()
    try:
        try:
            w, h = (int(x) for x in a.size.lower().split("x"))
        except ValueError:
            raise EdgeDeeplabError(f"--size must be WxH (e.g. 320x240), got {a.size!r}") from None
        info = generate_clip(a.output, a.frames, w, h, a.fps, a.seed)
    except (EdgeDeeplabError, ValueError) as e:
        print(f"demos.clip: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: the earlier video is kept, no temporary file
        terminated = isinstance(e, Terminated)
        print(f"demos.clip: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return Terminated.exit_code if terminated else 130
    finally:
        restore_sigterm()
    print(f"wrote {info.path} ({info.num_frames} frames, {info.width}x{info.height} @ {info.fps:g} fps)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
