"""The distillation report: a student against its teacher on held-out frames, per source.

Metrics, each per source and over all held-out frames (at the student's input size):

* ``person_iou``: IoU of the student's person pixels with the teacher's (argmax masks); ``miou``:
  the mean IoU over the mapped classes;
* ``boundary_f``: the boundary F-score: precision and recall of the student's mask edge within a
  band of ``band`` pixels around the teacher's edge and back (edges as 1-pixel contours);
* ``flicker`` (videos): the mean share of pixels whose class changes between consecutive held-out
  frames, for the student and, as the reference, for the teacher.

:func:`write_report` writes ``RUN/distill_report.json`` and ``.md`` and a PNG grid (frame, teacher
mask, student mask) of a few held-out frames.

Example:
    >>> import numpy as np
    >>> a = np.zeros((16, 16), np.uint8); a[4:12, 4:12] = 1
    >>> boundary_f(a, a, band=1), round(boundary_f(a, np.roll(a, 3, axis=1), band=1), 2)
    (1.0, 0.5)
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from edge_deeplab.core.atomic_io import atomic_path, write_json_atomic, write_text_atomic
from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.data.soft_labels import SoftLabelStore

#: Half-width in pixels of the band around the teacher's edge (at the student's input size).
BAND = 2


def _edges(mask: np.ndarray) -> np.ndarray:
    import cv2

    m = mask.astype(np.uint8)
    inner = cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
    return (m > 0) & (inner == 0)


def boundary_f(teacher_fg: np.ndarray, student_fg: np.ndarray, band: int = BAND) -> float:
    """Boundary F-score of two binary masks (1.0 when neither has an edge)."""
    import cv2

    te, se = _edges(teacher_fg > 0), _edges(student_fg > 0)
    if not te.any() and not se.any():
        return 1.0
    if not te.any() or not se.any():
        return 0.0
    k = np.ones((2 * band + 1, 2 * band + 1), np.uint8)
    near_t = cv2.dilate(te.astype(np.uint8), k) > 0
    near_s = cv2.dilate(se.astype(np.uint8), k) > 0
    precision = float((se & near_t).sum()) / float(se.sum())
    recall = float((te & near_s).sum()) / float(te.sum())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _iou(a: np.ndarray, b: np.ndarray) -> Optional[float]:
    union = np.logical_or(a, b).sum()
    return None if union == 0 else float(np.logical_and(a, b).sum()) / float(union)


def score_frames(teacher: np.ndarray, student: np.ndarray, num_classes: int, person: Optional[int],
                 video: bool, band: int = BAND) -> dict:
    """Metrics of one source's held-out frames: ``(N, h, w)`` class maps of teacher and student."""
    ious = []
    for c in range(num_classes):
        v = _iou(teacher == c, student == c)
        if v is not None:
            ious.append(v)
    out = {"frames": int(len(teacher)), "miou": float(np.mean(ious)) if ious else None}
    fg = person if person is not None else 1
    out["person_iou"] = _iou(teacher == fg, student == fg)
    out["boundary_f"] = float(np.mean([boundary_f(t == fg, s == fg, band)
                                       for t, s in zip(teacher, student)])) if len(teacher) else None
    if video and len(teacher) > 1:
        out["flicker_student"] = float(np.mean(student[1:] != student[:-1]))
        out["flicker_teacher"] = float(np.mean(teacher[1:] != teacher[:-1]))
    return out


def keras_predictor(model_path) -> Callable[[np.ndarray], np.ndarray]:
    """A ``uint8 (N, h, w, 3) -> int (N, h, w)`` class-map function of a Keras model or run."""
    from edge_deeplab.core._tf import tf
    from edge_deeplab.data.pipeline import normalize
    from edge_deeplab.model.model_io import load_model, resolve_model_path

    model, _, _ = load_model(resolve_model_path(model_path))

    @tf.function(reduce_retracing=True)
    def run(x):
        return tf.argmax(model(normalize(x), training=False), -1, output_type=tf.int32)

    return lambda images: np.concatenate([run(images[i:i + 16]).numpy()
                                          for i in range(0, len(images), 16)])


def tflite_predictor(path) -> Callable[[np.ndarray], np.ndarray]:
    """The same for a ``.tflite`` student (CPU, as :func:`keras_predictor`)."""
    import cv2

    from edge_deeplab.runtime.opener import open_runner

    runner = open_runner(path, "cpu")
    runner.check_segmentation_io()

    def run(images):
        out = []
        for im in images:
            y = runner.predict(im)
            m = y if y.ndim == 2 else np.argmax(y, -1)
            out.append(cv2.resize(m.astype(np.uint8), (im.shape[1], im.shape[0]),
                                  interpolation=cv2.INTER_NEAREST))
        return np.stack(out)

    return run


def distill_report(predict, store_root, size, split: str = "val", band: int = BAND) -> dict:
    """Scores ``predict`` against the teacher on ``split`` of the store, per source and overall.

    Args:
        predict: ``uint8 (N, h, w, 3) -> (N, h, w)`` class maps (:func:`keras_predictor`).
        store_root: the soft-label store (``RUN/labels``).
        size: ``(h, w)`` frames are scored at (the student's input size).
        split: ``val`` (held out) or ``train``.
        band: boundary band half-width in pixels.

    Returns:
        ``{"classes", "split", "band", "overall": metrics, "sources": {path: metrics}}``.
    """
    import cv2

    store = SoftLabelStore(store_root)
    if store.load() is None:
        raise EdgeDeeplabError(f"no soft labels in {store_root}")
    classes = list(store.manifest["classes"])
    person = next((i for i, c in enumerate(classes) if c.lower() == "person"), None)
    by_source: Dict[str, List[str]] = {}
    for stem in store.stems(split):
        by_source.setdefault(store.entry(stem)["source"], []).append(stem)
    if not by_source:
        raise EdgeDeeplabError(f"no {split} frames in {store_root} to report on")
    h, w = size
    sources, all_t, all_s = {}, [], []
    for src, stems in by_source.items():
        stems = sorted(stems, key=lambda s: store.entry(s)["frame"])
        images = np.stack([cv2.resize(store.read_image(s), (w, h), interpolation=cv2.INTER_AREA)
                           for s in stems])
        teacher = np.stack([np.argmax(cv2.resize(store.read_soft(s), (w, h)).reshape(h, w, -1), -1)
                            for s in stems])
        student = np.asarray(predict(images))
        sources[src] = score_frames(teacher, student, len(classes), person, _is_video(src), band)
        all_t.append(teacher)
        all_s.append(student)
    overall = score_frames(np.concatenate(all_t), np.concatenate(all_s), len(classes), person,
                           False, band)
    return {"classes": classes, "split": split, "band": band, "size": [h, w],
            "overall": overall, "sources": sources}


def _is_video(path: str) -> bool:
    from edge_deeplab.data.frame_sources import VIDEO_EXTENSIONS

    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def report_markdown(report: dict, title: str = "Distillation report") -> str:
    """The Markdown table of :func:`distill_report`'s result."""
    lines = [f"# {title}", "",
             f"Student vs teacher on the {report['split']} frames at {report['size'][0]}x"
             f"{report['size'][1]} (classes: {', '.join(report['classes'])}; boundary band "
             f"{report['band']} px).", "",
             "| source | frames | person IoU | mIoU | boundary F | flicker student | flicker teacher |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    rows = list(report["sources"].items()) + [("**all**", report["overall"])]
    for name, m in rows:
        lines.append(f"| {Path(name).name if name != '**all**' else name} | {m['frames']} | "
                     f"{_fmt(m['person_iou'])} | {_fmt(m['miou'])} | {_fmt(m['boundary_f'])} | "
                     f"{_fmt(m.get('flicker_student'))} | {_fmt(m.get('flicker_teacher'))} |")
    return "\n".join(lines) + "\n"


def write_grid(predict, store_root, size, path, split: str = "val", max_frames: int = 6) -> Path:
    """A PNG grid, one row per frame: the frame, the teacher's mask, the student's mask."""
    import cv2

    store = SoftLabelStore(store_root)
    store.load()
    stems = store.stems(split)
    if not stems:
        raise EdgeDeeplabError(f"no {split} frames in {store_root} for the grid")
    pick = [stems[int(i)] for i in np.linspace(0, len(stems) - 1, min(max_frames, len(stems)))]
    h, w = size
    images = np.stack([cv2.resize(store.read_image(s), (w, h), interpolation=cv2.INTER_AREA)
                       for s in pick])
    teacher = [np.argmax(cv2.resize(store.read_soft(s), (w, h)).reshape(h, w, -1), -1) for s in pick]
    student = np.asarray(predict(images))
    rows = []
    for im, t, s in zip(images, teacher, student):
        cells = [im] + [np.where((m > 0)[..., None], (0.5 * im + [0, 127, 0]).astype(np.uint8),
                                 (0.5 * im).astype(np.uint8)) for m in (t, s)]
        rows.append(np.concatenate(cells, axis=1))
    grid = np.concatenate(rows, axis=0)
    path = Path(path)
    with atomic_path(path) as tmp:
        ok, buf = cv2.imencode(".png", grid[..., ::-1])
        Path(tmp).write_bytes(buf.tobytes())
    return path


def write_report(predict, store_root, size, out_dir, name: str = "distill_report",
                 extra: Optional[dict] = None) -> dict:
    """Writes ``OUT/NAME.json``, ``OUT/NAME.md`` and ``OUT/NAME.png``; returns the report dict."""
    out = Path(out_dir)
    report = distill_report(predict, store_root, size)
    report.update(extra or {})
    report["grid"] = str(write_grid(predict, store_root, size, out / f"{name}.png"))
    write_json_atomic(out / f"{name}.json", report)
    write_text_atomic(out / f"{name}.md", report_markdown(report) + f"\n![teacher vs student]({name}.png)\n")
    return report
