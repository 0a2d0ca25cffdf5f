"""Reading and writing index masks, dataset label tables (images are read with
:func:`edge_deeplab.core.imaging.read_image_rgb`).

Masks are always read as *indices* with PIL: a palette ("P" mode) PNG such as VOC's
``SegmentationClass`` gives its palette indices, never its colours (``tf.io.decode_png`` would
expand the palette to RGB, which is why masks are not decoded with TensorFlow).

Example:
    >>> import numpy as np, tempfile, os
    >>> from edge_deeplab.core.imaging import voc_palette
    >>> p = os.path.join(tempfile.mkdtemp(), "m.png")
    >>> _ = write_index_png(p, np.array([[0, 1], [15, 255]], np.uint8), palette=voc_palette())
    >>> read_mask(p).tolist()
    [[0, 1], [15, 255]]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

from edge_deeplab.core.errors import EdgeDeeplabError, first_line

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".gif")
MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".gif", ".pgm", ".ppm")

#: The 19 Cityscapes train classes, in train-id order.
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
    "bicycle",
)

#: Official Cityscapes ``labelId -> trainId`` table (cityscapesScripts ``labels.py``); 255 = ignore.
CITYSCAPES_ID_TO_TRAINID = {
    0: 255, 1: 255, 2: 255, 3: 255, 4: 255, 5: 255, 6: 255, 7: 0, 8: 1, 9: 255, 10: 255, 11: 2,
    12: 3, 13: 4, 14: 255, 15: 255, 16: 255, 17: 5, 18: 255, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
    24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 29: 255, 30: 255, 31: 16, 32: 17, 33: 18,
}


def _short(path) -> str:
    return str(path)


def read_mask(path) -> np.ndarray:
    """Reads an index mask as ``uint8`` ``(H, W)`` raw values (palette indices for "P" PNGs).

    Accepts palette, 8-bit grayscale, 1-bit, 16-bit (values must fit 0..255) and RGB images whose
    three channels are equal (grayscale saved as RGB). A *colour* RGB mask is rejected: its colours
    are not class ids.

    Raises:
        EdgeDeeplabError: missing, unreadable or corrupt file, or a colour mask (message names it).
    """
    from PIL import Image

    p = Path(path)
    if not p.is_file():
        raise EdgeDeeplabError(f"mask not found: {_short(p)}")
    try:
        with Image.open(p) as im:
            im.load()
            mode = im.mode
            if mode in ("P", "L"):
                arr = np.asarray(im)
            elif mode == "1":
                arr = np.asarray(im).astype(np.uint8)
            elif mode in ("LA", "PA"):
                arr = np.asarray(im)[..., 0]
            elif mode.startswith("I"):
                arr = np.asarray(im)
                if arr.size and (arr.min() < 0 or arr.max() > 255):
                    raise EdgeDeeplabError(
                        f"mask {_short(p)} is 16/32-bit with values up to {int(arr.max())}; "
                        f"class ids must be 0..255")
            elif mode in ("RGB", "RGBA"):
                arr = np.asarray(im)[..., :3]
                if not (np.array_equal(arr[..., 0], arr[..., 1])
                        and np.array_equal(arr[..., 0], arr[..., 2])):
                    raise EdgeDeeplabError(
                        f"mask {_short(p)} is a colour (RGB) image, not an index mask; save class "
                        f"ids as a palette or grayscale PNG")
                arr = arr[..., 0]
            else:
                raise EdgeDeeplabError(f"mask {_short(p)} has unsupported image mode {mode}")
    except EdgeDeeplabError:
        raise
    except Exception as e:
        raise EdgeDeeplabError(f"cannot read mask {_short(p)}: {first_line(e)}") from None
    if arr.ndim != 2 or arr.size == 0:
        raise EdgeDeeplabError(f"cannot read mask {_short(p)}: unexpected shape {arr.shape}")
    return np.ascontiguousarray(arr.astype(np.uint8, copy=False))


def write_index_png(path, mask: np.ndarray, palette: Optional[list] = None) -> Path:
    """Writes ``mask`` (``uint8`` ``(H, W)`` class ids) as a PNG, atomically.

    Args:
        path: destination ``.png``.
        mask: class ids 0..255.
        palette: flat RGB list (e.g. :func:`voc_palette`) to write a palette PNG; ``None`` writes
            8-bit grayscale.
    """
    from PIL import Image

    from edge_deeplab.core.atomic_io import atomic_path

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise EdgeDeeplabError(f"mask must be 2-D, got shape {mask.shape}")
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        raise EdgeDeeplabError("mask values must be 0..255 to be saved as a PNG")
    im = Image.fromarray(mask.astype(np.uint8), mode="L")
    if palette is not None:
        im = im.convert("P")
        im.putpalette(list(palette)[: 768])
    with atomic_path(path, suffix=".png") as tmp:
        im.save(tmp, format="PNG")
    return Path(path)


def find_with_extensions(directory, stem: str, extensions) -> Optional[Path]:
    """The first ``directory/stem<ext>`` that exists, trying ``extensions`` (both cases)."""
    for ext in extensions:
        for e in (ext, ext.upper()):
            p = os.path.join(directory, stem + e)
            if os.path.isfile(p):
                return Path(p)
    return None
