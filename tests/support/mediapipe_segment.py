"""Runs a .tflite through MediaPipe Tasks ``ImageSegmenter``; meant for the MediaPipe venv only.

No TensorFlow, no edge_deeplab imports: this runs with ``scripts/mediapipe_venv.sh``'s python::

    .venv-mediapipe/bin/python tests/support/mediapipe_segment.py [--confidence] MODEL.tflite OUT_DIR A.npy B.png

Images are uint8 RGB ``(H, W, 3)`` (``.npy``) or image files (``.png``/``.jpg``). Prints one JSON
line: ``{"ok": true, "mediapipe": VERSION, "labels": [...], "masks": [OUT_DIR/mask_0.npy, ...]}``
(category masks, uint8 ``(H, W)``; with ``--confidence``, the first confidence mask instead,
float32 ``(H, W)`` at the image's size, as MediaPipe resizes it), or ``{"ok": false, "stage": "load"|"segment", "error": "..."}``
when MediaPipe refuses the model or fails on an image.
"""

import json
import sys
from pathlib import Path

import numpy as np


def _image(path: str):
    import mediapipe as mp

    if path.endswith(".npy"):
        arr = np.load(path)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"{path}: expected uint8 (H, W, 3), got {arr.dtype} {arr.shape}")
        return mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(arr))
    return mp.Image.create_from_file(path)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def main(argv) -> int:
    if len(argv) < 3:
        print("usage: mediapipe_segment.py [--confidence] MODEL.tflite OUT_DIR IMAGE...", file=sys.stderr)
        return 2
    import mediapipe as mp
    from mediapipe.tasks import python as mp_python
    from mediapipe.tasks.python import vision

    confidence = argv[0] == "--confidence"
    if confidence:
        argv = argv[1:]
    model, out_dir, images = argv[0], Path(argv[1]), argv[2:]
    out_dir.mkdir(parents=True, exist_ok=True)
    options = vision.ImageSegmenterOptions(
        base_options=mp_python.BaseOptions(model_asset_path=model),
        running_mode=vision.RunningMode.IMAGE,
        output_category_mask=not confidence, output_confidence_masks=confidence)
    try:
        segmenter = vision.ImageSegmenter.create_from_options(options)
    except Exception as e:  # noqa: BLE001 - MediaPipe raises RuntimeError/ValueError
        print(json.dumps({"ok": False, "stage": "load", "error": _first_line(e)}))
        return 0
    masks = []
    try:
        with segmenter:
            labels = list(segmenter.labels)
            for i, path in enumerate(images):
                result = segmenter.segment(_image(path))
                if confidence:
                    mask = np.array(result.confidence_masks[0].numpy_view(), copy=True)
                else:
                    mask = np.array(result.category_mask.numpy_view(), copy=True)
                if mask.ndim == 3:
                    mask = mask[..., 0]
                dest = out_dir / f"mask_{i}.npy"
                np.save(dest, mask.astype(np.float32 if confidence else np.uint8))
                masks.append(str(dest))
    except Exception as e:  # noqa: BLE001
        print(json.dumps({"ok": False, "stage": "segment", "error": _first_line(e)}))
        return 0
    print(json.dumps({"ok": True, "mediapipe": mp.__version__, "labels": labels, "masks": masks}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
