"""The demo clip's frames as image files, for tests that feed the demo (or a runner) a folder.

Example:
    >>> paths = generate_images("/tmp/frames", num_images=2, width=80, height=60)  # doctest: +SKIP
    >>> [p.name for p in paths]                                                     # doctest: +SKIP
    ['frame_000.png', 'frame_001.png']
"""

from __future__ import annotations

from pathlib import Path

import cv2

from demos.clip import render_frame
from edge_deeplab.core.atomic_io import write_bytes_atomic


def generate_images(folder, num_images: int = 4, width: int = 320, height: int = 240,
                    seed: int = 0, with_masks: bool = False) -> list:
    """Writes ``num_images`` frames of the clip as PNGs (``frame_000.png`` ...) into ``folder``.

    With ``with_masks`` the ground-truth masks go to ``mask_000.png`` ... beside them. Returns the
    frame paths.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(num_images):
        frame, mask = render_frame(i, num_images, width, height, seed)
        p = folder / f"frame_{i:03d}.png"
        write_bytes_atomic(p, cv2.imencode(".png", frame)[1].tobytes())
        if with_masks:
            write_bytes_atomic(folder / f"mask_{i:03d}.png", cv2.imencode(".png", mask)[1].tobytes())
        out.append(p)
    return out
