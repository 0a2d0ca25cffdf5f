"""Teacher adapters: any segmentation model -> per-pixel probabilities over the student's classes.

A teacher is a ``.tflite`` (run with the project's runners) or a Keras model (``.keras``/``.h5``
with our sidecar). Its output is read by kind:

* one channel: a sigmoid foreground probability (MediaPipe's selfie segmenter), or a logit when the
  metadata says ``logits``; its classes are ``background`` and the foreground label (``person``
  when the model names none);
* C channels: probabilities (metadata ``probabilities``, or values that sum to one per pixel) or
  logits (softmax is applied);
* an integer class map: one-hot.

Normalization comes from the model's standard TFLite metadata or our metadata, else from the
``normalization`` argument (``--teacher-range 0,1``); a model that carries none and gets none is
refused, as a wrong guess would silently ruin every label. Teacher classes map to student classes by
label name (:func:`class_map`); teacher classes no student class names fold into ``background``.

Example:
    >>> class_map(["background", "person", "cat"], ["background", "person"])
    [[0, 2], [1]]
    >>> class_map(["background", "person"], ["background", "car"])
    Traceback (most recent call last):
    ...
    edge_deeplab.core.errors.EdgeDeeplabError: cannot map the teacher's classes [background, person] to the student classes [background, car]: no teacher class is named 'car'
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from edge_deeplab.core import pixels
from edge_deeplab.core.atomic_io import file_sha256
from edge_deeplab.core.contract import semantics as contract
from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.runtime.model_input import ModelInput, softmax
from edge_deeplab.runtime.tensors import TensorInfo

#: ``--teacher-range`` names -> (mean, std) over 0..255 pixels.
RANGES = {"0,1": (0.0, 255.0), "-1,1": (127.5, 127.5), "0,255": (0.0, 1.0)}
KEY_BACKGROUND = "background"


def class_map(teacher_labels: Sequence[str], classes: Sequence[str]) -> List[List[int]]:
    """For each student class, the teacher class indices summed into it (by label name).

    Names match case-insensitively. Teacher classes no student class names go to the student's
    ``background`` class; without one, they are an error.

    Raises:
        EdgeDeeplabError: a student class no teacher class names, or leftovers with no background;
            the line lists both label sets.
    """
    low_t = [str(t).strip().lower() for t in teacher_labels]
    low_s = [str(s).strip().lower() for s in classes]
    both = (f"the teacher's classes [{', '.join(teacher_labels)}] to the student classes "
            f"[{', '.join(classes)}]")
    if len(set(low_s)) != len(low_s):
        raise EdgeDeeplabError(f"cannot map {both}: a student class is named twice")
    out: List[List[int]] = []
    used = set()
    for name in low_s:
        idx = [i for i, t in enumerate(low_t) if t == name]
        if not idx and name != KEY_BACKGROUND:
            raise EdgeDeeplabError(f"cannot map {both}: no teacher class is named {name!r}")
        out.append(idx)
        used.update(idx)
    rest = [i for i in range(len(low_t)) if i not in used]
    if rest:
        if KEY_BACKGROUND not in low_s:
            raise EdgeDeeplabError(
                f"cannot map {both}: teacher classes [{', '.join(teacher_labels[i] for i in rest)}] "
                f"have no student class and there is no 'background' to fold them into")
        out[low_s.index(KEY_BACKGROUND)].extend(rest)
    if KEY_BACKGROUND in low_s and not out[low_s.index(KEY_BACKGROUND)]:
        raise EdgeDeeplabError(f"cannot map {both}: nothing is left for 'background'")
    return [sorted(i) for i in out]


def parse_range(text: Optional[str]) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """``--teacher-range`` (``0,1``, ``-1,1``, ``0,255``) -> ``(mean, std)`` over 0..255 pixels."""
    if text is None:
        return None
    key = text.replace(" ", "")
    if key not in RANGES:
        raise EdgeDeeplabError(f"unknown teacher input range {text!r}; choose one of {', '.join(RANGES)}")
    m, s = RANGES[key]
    return np.full(3, m, np.float32), np.full(3, s, np.float32)


class Teacher:
    """A loaded teacher: :meth:`probabilities` maps an RGB frame to its class probabilities.

    Use :func:`open_teacher`. Attributes: ``path``, ``sha256``, ``labels`` (the teacher's classes),
    ``kind`` (``sigmoid``, ``softmax``, ``probabilities`` or ``classmap``), ``input_size`` (h, w),
    ``model_input``: the runtime's one image-to-input path
    (:class:`~edge_deeplab.runtime.model_input.ModelInput`), stretching frames to the input as
    MediaPipe's segmenters are fed.
    """

    def __init__(self, path, labels, kind, model_input, predict):
        self.path = Path(path)
        self.sha256 = file_sha256(path)
        self.labels = list(labels)
        self.kind = kind
        self.model_input = model_input
        self._predict = predict

    @property
    def input_size(self) -> tuple:
        return tuple(self.model_input.input_hw)

    def describe(self) -> dict:
        return {"path": str(self.path), "sha256": self.sha256, "labels": self.labels,
                "kind": self.kind, "input_size": list(self.input_size),
                "mean": [float(v) for v in self.model_input.mean],
                "std": [float(v) for v in self.model_input.std]}

    def probabilities(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 RGB ``(H, W, 3)`` -> float32 ``(H, W, len(labels))`` probabilities at the frame's size."""
        x, _ = self.model_input(rgb)  # the runtime's one input path, stretched to the input
        y = np.asarray(self._predict(x), np.float32)
        if self.kind == "classmap":
            y = np.eye(len(self.labels), dtype=np.float32)[np.clip(y.astype(np.int64), 0, len(self.labels) - 1)]
        elif y.ndim == 2:
            y = y[..., None]
        if self.kind == "sigmoid":
            p = y[..., :1]
            p = np.concatenate([1.0 - p, p], axis=-1)
        elif self.kind == "sigmoid-logit":
            p = 1.0 / (1.0 + np.exp(-y[..., :1]))
            p = np.concatenate([1.0 - p, p], axis=-1)
        elif self.kind == "softmax":
            p = softmax(y)
        else:
            p = y
        p = pixels.resize(p, rgb.shape[:2], how="linear")
        return np.clip(p, 0.0, 1.0)


def _kind(channels: int, meta_kind: Optional[str], sample: Optional[np.ndarray]) -> str:
    if meta_kind == "classmap" or channels == 0:
        return "classmap"
    if channels == 1:
        if meta_kind == "logits" or (sample is not None and (sample.min() < -1e-3 or sample.max() > 1 + 1e-3)):
            return "sigmoid-logit"
        return "sigmoid"
    if meta_kind == "probabilities":
        return "probabilities"
    if meta_kind == "logits":
        return "softmax"
    if sample is not None and sample.min() >= -1e-3 and np.allclose(sample.sum(-1), 1.0, atol=1e-2):
        return "probabilities"
    return "softmax"


def _labels(path, meta_labels, given, channels) -> List[str]:
    if given:
        labels = [s.strip() for s in given]
        if channels == 1 and len(labels) == 1:
            labels = [KEY_BACKGROUND] + labels
    elif meta_labels:
        labels = list(meta_labels)
        if channels == 1 and len(labels) == 1:
            labels = [KEY_BACKGROUND] + labels
    elif channels == 1:  # MediaPipe's selfie segmenter and its kin: a person probability
        labels = [KEY_BACKGROUND, "person"]
    else:
        raise EdgeDeeplabError(
            f"teacher {Path(path).name} carries no labels for its {channels} classes; pass "
            f"--teacher-labels A,B,...")
    want = 2 if channels == 1 else channels
    if channels and len(labels) != want:
        raise EdgeDeeplabError(
            f"teacher {Path(path).name} has {want} classes but {len(labels)} labels "
            f"[{', '.join(labels)}]")
    return labels


def open_teacher(path, *, labels: Optional[Sequence[str]] = None,
                 normalization: Optional[Tuple[np.ndarray, np.ndarray]] = None,
                 threads: Optional[int] = None) -> Teacher:
    """Loads a segmentation teacher (``.tflite``, ``.keras`` or ``.h5``).

    Args:
        path: the model file.
        labels: the teacher's class names when it carries none (one name for a one-channel model
            names its foreground).
        normalization: ``(mean, std)`` over 0..255 pixels for a model whose metadata has none
            (:func:`parse_range`); the metadata wins when it has one.
        threads: CPU threads for a ``.tflite`` teacher.

    Raises:
        EdgeDeeplabError: missing or unreadable file, not a segmenter (e.g. a classifier's
            ``(1, 1001)`` output), no normalization, labels that do not fit.

    Example:
        >>> t = open_teacher("selfie_segmentation.tflite", normalization=parse_range("0,1"))  # doctest: +SKIP
        >>> t.labels, t.kind                                                              # doctest: +SKIP
        (['background', 'person'], 'sigmoid')
    """
    p = Path(path)
    if not p.is_file():
        raise EdgeDeeplabError(f"teacher not found: {p}")
    if p.suffix.lower() == ".tflite":
        return _open_tflite(p, labels, normalization, threads)
    if p.suffix.lower() in (".keras", ".h5"):
        return _open_keras(p, labels, normalization)
    raise EdgeDeeplabError(f"teacher {p.name}: expected a .tflite, .keras or .h5 model")


def _normalization_for(p, meta, normalization):
    if contract.has_normalization(meta):
        return contract.normalization(meta)
    if normalization is not None:
        return normalization
    raise EdgeDeeplabError(
        f"teacher {p.name} carries no input normalization; pass --teacher-range "
        f"({', '.join(RANGES)}: the pixel range the model expects)")


def _open_tflite(p, labels, normalization, threads) -> Teacher:
    from edge_deeplab.runtime.opener import open_runner

    runner = open_runner(p, "cpu", threads=threads)
    runner.check_segmentation_io()
    o = runner.output.shape
    channels = 0 if len(o) == 3 or np.issubdtype(np.dtype(runner.output.dtype), np.integer) \
        and not runner.output.quantized else int(o[-1])
    meta = runner.metadata
    mean, std = _normalization_for(p, meta, normalization)
    names = _labels(p, contract.labels(meta), labels, channels or None)
    h, w = runner.input.shape[1:3]

    model_input = ModelInput(runner.input, mean, std, geometry="stretch")

    def predict(x):
        from edge_deeplab.runtime.tensors import dequantize

        return dequantize(runner.run(x), runner.output)[0]

    sample = predict(model_input(np.full((h, w, 3), 128, np.uint8))[0]) if channels else None
    kind = _kind(channels, runner.output_kind(), sample)
    return Teacher(p, names, kind, model_input, predict)


def _open_keras(p, labels, normalization) -> Teacher:
    from edge_deeplab.model.model_io import load_metadata, load_model

    model, cfg, _ = load_model(p)
    meta = load_metadata(p) or {}
    if len(model.outputs) != 1 or len(model.outputs[0].shape) != 4:
        raise EdgeDeeplabError(
            f"{p.name} is not an image segmentation model: output shape "
            f"{list(model.outputs[0].shape)} (expected per-pixel logits or probabilities)")
    h, w = model.inputs[0].shape[1:3]
    channels = int(model.outputs[0].shape[-1])
    mean, std = _normalization_for(p, meta, normalization)
    names = _labels(p, contract.labels(meta), labels, channels)

    info = TensorInfo("input", (1, int(h), int(w), 3), np.dtype(np.float32))
    model_input = ModelInput(info, mean, std, geometry="stretch")

    def predict(x):
        return model(x, training=False).numpy()[0]

    kind = _kind(channels, contract.output_kind(meta) or "logits", None)
    return Teacher(p, names, kind, model_input, predict)
