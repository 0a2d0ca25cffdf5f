"""mIoU evaluation of Keras models, .tflite models and folders of predicted masks.

All three paths feed the same :class:`~edge_deeplab.metrics.ConfusionMatrix` (one matrix over the
whole split, ignore 255), and Keras and TFLite models share the same pre/post-processing:

1. the image is resized *preserving its aspect ratio* to fit the model input and padded
   bottom/right with 0-valued normalized pixels (``x / 127.5 - 1`` from the contract's ``NORM_MEAN`` /
   ``NORM_STD``, or the model's own metadata);
2. the model's output is cropped to the valid (un-padded) region, converted to probabilities
   (softmax of logits) and resized bilinearly back to the ORIGINAL mask size;
3. the argmax is compared with the full-resolution ground truth.

Multi-scale inference (``scales=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75)``) and left-right ``flip``
average the softmax probabilities over all scales/flips. Because models have a fixed input size,
a scale whose resized image exceeds the input is processed as overlapping input-sized tiles (stride
2/3 of the tile) whose probabilities are averaged, as the DeepLab reference does for large images.

``crf=True`` refines the averaged probabilities with a dense CRF. If the ``pydensecrf`` package is
importable it is used (the DeepLab v1/v2 settings); otherwise :func:`dense_crf` runs a built-in
mean-field approximation whose appearance kernel is a colour-guided filter (He et al.) and whose
smoothness kernel is a Gaussian blur (both normalized, like pydensecrf's default), with a Potts
compatibility. It is an approximation of the fully-connected CRF, not a bit-exact reimplementation.

Example:
    >>> from edge_deeplab.data import load_dataset                      # doctest: +SKIP
    >>> ds = load_dataset("voc", "/data/VOCdevkit", "val")              # doctest: +SKIP
    >>> r = evaluate_keras("runs/voc/model.keras", ds, scales=(0.75, 1.0, 1.25), flip=True)  # doctest: +SKIP
    >>> r["miou"]                                                       # doctest: +SKIP
    0.72...
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edge_deeplab.core.contract import semantics as contract
from edge_deeplab.core.contract.semantics import NORM_MEAN, NORM_STD
from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.core.imaging import GuidedFilter, parse_size
from edge_deeplab.metrics import ConfusionMatrix

PAPER_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
TILE_OVERLAP_STRIDE = 2.0 / 3.0

ProgressFn = Callable[[int, int], None]


# ---------------------------------------------------------------------------------------------
# Predictors: normalized float NHWC windows at the model input size -> per-pixel outputs


class Predictor:
    """A model behind a uniform interface (see :class:`KerasPredictor`, :class:`TFLitePredictor`).

    Attributes:
        input_hw: model input ``(h, w)``.
        num_classes: output channels (``None`` for a class-map output of unknown range).
        kind: ``"logits"``, ``"probabilities"`` or ``"classes"``.
        mean, std: per-channel normalization applied to 0..255 pixels.
        batch_size: windows per call.
    """

    input_hw: Tuple[int, int]
    num_classes: Optional[int]
    kind: str = "logits"
    mean = np.asarray(NORM_MEAN, np.float32)
    std = np.asarray(NORM_STD, np.float32)
    batch_size: int = 1

    def __call__(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict:
        return {}


class KerasPredictor(Predictor):
    """A tf_keras segmentation model (normalized ``(N, H, W, 3)`` -> logits ``(N, H, W, C)``)."""

    def __init__(self, model, input_size=None, batch_size: int = 4, metadata: Optional[dict] = None):
        self.model = model
        shape = tuple(model.input_shape)
        if len(shape) != 4 or shape[-1] != 3:
            raise EdgeDeeplabError(f"not an image model: input shape {shape}")
        if input_size is not None:
            ih, iw = parse_size(input_size)
            if shape[1] is not None and (shape[1], shape[2]) != (ih, iw):
                raise EdgeDeeplabError(
                    f"--input-size {ih}x{iw} does not match the model's fixed input {shape[1]}x{shape[2]}")
        elif shape[1] is None or shape[2] is None:
            raise EdgeDeeplabError("the model has a dynamic input size; pass input_size")
        else:
            ih, iw = shape[1], shape[2]
        self.input_hw = (int(ih), int(iw))
        out = tuple(model.output_shape)
        self.num_classes = int(out[-1]) if len(out) == 4 and out[-1] else None
        self.batch_size = max(1, int(batch_size))
        self.mean, self.std = contract.normalization(metadata)
        last = model.layers[-1]
        act = getattr(getattr(last, "activation", None), "__name__", "")
        self.kind = "probabilities" if act == "softmax" or type(last).__name__ == "Softmax" else "logits"

    def __call__(self, x):
        y = self.model.predict_on_batch(x)
        return np.asarray(y, dtype=np.float32)


class TFLitePredictor(Predictor):
    """A .tflite model through :func:`edge_deeplab.runtime.open_runner` (quantization handled)."""

    def __init__(self, runner):
        from edge_deeplab.runtime import dequantize, quantize

        self._q, self._dq = quantize, dequantize
        self.runner = runner
        runner.check_segmentation_io()
        s = runner.input.shape
        if s[-1] != 3:  # (a 1-channel model would fail deep in the runtime on RGB input)
            raise EdgeDeeplabError(
                f"{Path(runner.path).name} takes {s[-1]}-channel images (input shape {list(s)}); "
                f"eval scores RGB datasets, which need a 3-channel input")
        self.input_hw = (int(s[1]), int(s[2]))
        self._in_batch = int(s[0]) if s[0] and s[0] > 0 else 1
        self.batch_size = 1
        self.mean, self.std = (np.asarray(v, np.float32) for v in runner.normalization())
        o = runner.output
        kind = contract.output_kind(runner.metadata)
        integer_out = np.issubdtype(o.dtype, np.integer) and not o.quantized
        if integer_out or kind == "classmap":
            self.kind = "classes"
            self.num_classes = None
        else:
            self.kind = "probabilities" if kind == "probabilities" else "logits"
            self.num_classes = int(o.shape[-1]) if len(o.shape) == 4 else None

    def __call__(self, x):
        outs = []
        for i in range(x.shape[0]):
            xi = x[i:i + 1]
            if self._in_batch > 1:
                xi = np.concatenate([xi] * self._in_batch, axis=0)
            y = self._dq(self.runner.run(self._q(xi, self.runner.input)), self.runner.output)
            y = np.asarray(y)[0]
            if self.kind == "classes" and y.ndim == 3:
                y = y[..., 0]
            outs.append(y)
        return np.stack(outs)

    def describe(self) -> dict:
        r = self.runner
        return {"runtime": r.runtime_name, "runtime_version": r.runtime_version,
                "accelerator": r.accelerator, "fully_accelerated": r.fully_accelerated,
                "input_dtype": str(r.input.dtype)}


# ---------------------------------------------------------------------------------------------
# Geometry helpers


def _tile_starts(length: int, window: int) -> List[int]:
    if length <= window:
        return [0]
    stride = max(1, int(math.ceil(window * TILE_OVERLAP_STRIDE)))
    starts = list(range(0, length - window, stride))
    if not starts or starts[-1] != length - window:
        starts.append(length - window)
    return starts


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def _resize(a: np.ndarray, hw: Tuple[int, int], nearest: bool = False) -> np.ndarray:
    import cv2

    h, w = hw
    if a.shape[:2] == (h, w):
        return a
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    if a.ndim == 3 and a.shape[2] > 512:  # OpenCV's channel limit
        return np.concatenate([_resize(a[..., i:i + 512], hw, nearest)
                               for i in range(0, a.shape[2], 512)], axis=2)
    out = cv2.resize(a, (w, h), interpolation=interp)
    if a.ndim == 3 and out.ndim == 2:
        out = out[..., None]
    return out


class _Job:
    """One image's pending windows and accumulators."""

    def __init__(self, image: np.ndarray, predictor: Predictor, scales, flip: bool):
        import cv2

        self.hw = image.shape[:2]
        self.scales = []
        self.windows = []  # (scale_idx, y, x, flipped, array)
        H, W = self.hw
        ih, iw = predictor.input_hw
        f0 = min(ih / H, iw / W)
        for si, s in enumerate(scales):
            sh, sw = max(1, int(round(H * f0 * s))), max(1, int(round(W * f0 * s)))
            interp = cv2.INTER_AREA if sh < H and sw < W else cv2.INTER_LINEAR
            resized = image if (sh, sw) == (H, W) else cv2.resize(image, (sw, sh), interpolation=interp)
            norm = (resized.astype(np.float32) - predictor.mean) / predictor.std
            ph, pw = max(sh, ih), max(sw, iw)
            canvas = np.zeros((ph, pw, 3), np.float32)  # 0 == the normalized mean
            canvas[:sh, :sw] = norm
            self.scales.append({"size": (sh, sw), "padded": (ph, pw), "acc": None, "cnt": None})
            for y in _tile_starts(ph, ih):
                for x in _tile_starts(pw, iw):
                    win = canvas[y:y + ih, x:x + iw]
                    self.windows.append((si, y, x, False, win))
                    if flip:
                        self.windows.append((si, y, x, True, win[:, ::-1]))

    def add(self, window_meta, out: np.ndarray, predictor: Predictor):
        si, y, x, flipped, _ = window_meta
        ih, iw = predictor.input_hw
        st = self.scales[si]
        if predictor.kind == "classes":
            out = _resize(out.astype(np.int32), (ih, iw), nearest=True)
            if flipped:
                out = out[:, ::-1]
            st["acc"] = np.array(out)  # single window only (checked by the caller)
            return
        out = out.astype(np.float32, copy=False)
        out = _resize(out, (ih, iw))
        probs = out if predictor.kind == "probabilities" else softmax(out)
        if flipped:
            probs = probs[:, ::-1]
        if st["acc"] is None:
            ph, pw = st["padded"]
            st["acc"] = np.zeros((ph, pw, probs.shape[-1]), np.float32)
            st["cnt"] = np.zeros((ph, pw, 1), np.float32)
        st["acc"][y:y + ih, x:x + iw] += probs
        st["cnt"][y:y + ih, x:x + iw] += 1.0

    def finish(self, predictor: Predictor) -> Tuple[Optional[np.ndarray], np.ndarray]:
        """``(probs (H, W, C) or None, class map (H, W) int)``."""
        H, W = self.hw
        if predictor.kind == "classes":
            st = self.scales[0]
            sh, sw = st["size"]
            return None, _resize(st["acc"][:sh, :sw], (H, W), nearest=True)
        total = None
        for st in self.scales:
            sh, sw = st["size"]
            p = st["acc"][:sh, :sw] / st["cnt"][:sh, :sw]
            p = _resize(p, (H, W))
            total = p if total is None else total + p
        probs = total / len(self.scales)
        return probs, probs.argmax(-1)


def predict_images(predictor: Predictor, images: Sequence[np.ndarray], *, scales=(1.0,),
                   flip: bool = False) -> List[Tuple[Optional[np.ndarray], np.ndarray]]:
    """Runs ``images`` (uint8 RGB, any sizes) through ``predictor`` with letterboxing, tiling,
    multi-scale and flip averaging; windows of all images are batched together.

    Returns:
        one ``(probs (H, W, C) float32 or None, class map (H, W))`` per image, at the image's size.
    """
    scales = tuple(float(s) for s in scales)
    if not scales or any(s <= 0 for s in scales):
        raise EdgeDeeplabError(f"scales must be positive, got {scales}")
    if predictor.kind == "classes" and (scales != (1.0,) or flip):
        raise EdgeDeeplabError("this model outputs a class map: multi-scale/flip need logits")
    jobs = [_Job(im, predictor, scales, flip) for im in images]
    queue = [(j, w) for j in jobs for w in j.windows]
    bs = predictor.batch_size
    for k in range(0, len(queue), bs):
        chunk = queue[k:k + bs]
        x = np.stack([w[4] for _, w in chunk])
        y = predictor(x)
        for (job, w), out in zip(chunk, y):
            job.add(w, out, predictor)
    results = []
    for j in jobs:
        j.windows = None
        results.append(j.finish(predictor))
    return results


# ---------------------------------------------------------------------------------------------
# Dense CRF


def _have_pydensecrf() -> bool:
    try:
        import pydensecrf.densecrf  # noqa: F401
    except ImportError:
        return False
    return True


def dense_crf(image: np.ndarray, probs: np.ndarray, *, iterations: int = 5,
              appearance_weight: float = 4.0, smoothness_weight: float = 3.0,
              appearance_radius: Optional[int] = None, color_eps: float = (13.0 / 255.0) ** 2,
              smoothness_sigma: float = 3.0, backend: str = "auto") -> np.ndarray:
    """Refines per-pixel class probabilities with a fully-connected (dense) CRF.

    Args:
        image: uint8 RGB ``(H, W, 3)``, the guide.
        probs: float ``(H, W, C)`` probabilities (unary = ``-log p``).
        iterations: mean-field iterations.
        appearance_weight, smoothness_weight: kernel weights (DeepLab: 4 and 3).
        appearance_radius: guided-filter radius (default ~ 1/16 of the short side, >= 2), the
            built-in stand-in for the bilateral kernel's spatial extent.
        color_eps: guided-filter regularizer (squared colour scale, DeepLab's sigma_rgb = 13).
        smoothness_sigma: Gaussian kernel sigma in pixels.
        backend: ``"auto"`` (pydensecrf when importable, else built-in), ``"pydensecrf"`` or
            ``"builtin"``.

    Returns:
        float32 ``(H, W, C)`` refined probabilities.

    Example:
        >>> import numpy as np
        >>> img = np.zeros((32, 32, 3), np.uint8); img[:, 16:] = 255
        >>> p = np.full((32, 32, 2), 0.5, np.float32); p[:, :16, 0] += 0.1; p[:, 16:, 1] += 0.1
        >>> p[5, 5] = (0.4, 0.6)  # an isolated wrong pixel
        >>> q = dense_crf(img, p / p.sum(-1, keepdims=True), backend="builtin")
        >>> int(q[5, 5].argmax()), int(q[5, 25].argmax())
        (0, 1)
    """
    H, W, C = probs.shape
    if image.shape[:2] != (H, W):
        raise EdgeDeeplabError(f"CRF: image {image.shape[:2]} and probabilities {probs.shape[:2]} differ")
    p = np.clip(probs.astype(np.float32), 1e-6, 1.0)
    if backend not in ("auto", "pydensecrf", "builtin"):
        raise EdgeDeeplabError(f"unknown CRF backend {backend!r}")
    if backend == "pydensecrf" or (backend == "auto" and _have_pydensecrf()):
        try:
            import pydensecrf.densecrf as dcrf
            from pydensecrf.utils import unary_from_softmax
        except ImportError:
            raise EdgeDeeplabError("CRF backend pydensecrf is not installed "
                                   "(pip install pydensecrf, or use the built-in one)") from None
        d = dcrf.DenseCRF2D(W, H, C)
        d.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(p.transpose(2, 0, 1))))
        d.addPairwiseGaussian(sxy=smoothness_sigma, compat=smoothness_weight)
        d.addPairwiseBilateral(sxy=80, srgb=13, rgbim=np.ascontiguousarray(image), compat=appearance_weight)
        q = np.array(d.inference(iterations), np.float32).reshape(C, H, W).transpose(1, 2, 0)
        return q
    import cv2

    r = appearance_radius or max(2, min(H, W) // 16)
    gf = GuidedFilter(image, r, color_eps)
    unary = -np.log(p)
    q = p / p.sum(-1, keepdims=True)
    for _ in range(max(0, int(iterations))):
        msg = appearance_weight * gf(q)
        msg += smoothness_weight * cv2.GaussianBlur(q, (0, 0), smoothness_sigma,
                                                    borderType=cv2.BORDER_REFLECT).reshape(q.shape)
        # Potts compatibility: agreeing neighbours lower a label's energy.
        q = softmax(-unary + msg)
    return q.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Evaluation loops


def print_progress(done: int, total: int, _last=[0]) -> None:  # noqa: B006 - call state
    """Prints ``eval: done/total images`` about every 10% to stderr."""
    step = max(1, total // 10)
    if done < _last[0]:
        _last[0] = 0
    if done == total or done // step > _last[0] // step:
        print(f"eval: {done}/{total} images", file=sys.stderr, flush=True)
    _last[0] = done


def _save_prediction(save_dir, stem: str, pred: np.ndarray) -> None:
    from edge_deeplab.core.imaging import voc_palette
    from edge_deeplab.data.masks import write_index_png

    write_index_png(Path(save_dir) / f"{stem}.png", pred.astype(np.uint8), palette=voc_palette())


def _finish(cm: ConfusionMatrix, dataset, t0: float, **extra) -> Dict:
    r = cm.result()
    r.update({"dataset": dataset.name, "split": dataset.split, "data_dir": str(dataset.root),
              "labels": list(dataset.labels), "skipped": len(dataset.skipped),
              "seconds": round(time.time() - t0, 3)})
    r.update(extra)
    return r


class _InvalidIds:
    """Counts predictions outside ``[0, K)`` per file; an error unless accepted."""

    def __init__(self, num_classes: int, allow: bool):
        self.k, self.allow = num_classes, allow
        self.pixels = self.files = 0
        self.first = None

    def add(self, n: int, where) -> None:
        if n:
            self.pixels += n
            self.files += 1
            self.first = self.first or str(where)

    def check(self, total_files: int) -> None:
        if self.pixels and not self.allow:
            raise EdgeDeeplabError(
                f"{self.pixels} predicted pixels in {self.files} of {total_files} images have class "
                f"ids outside [0, {self.k}) (first: {self.first}); pass "
                f"--allow-invalid-predictions to score them as wrong")

    def record(self, r: Dict) -> Dict:
        r["invalid_prediction_files"] = self.files
        r["first_invalid_prediction"] = self.first
        return r


def evaluate_predictor(predictor: Predictor, dataset, *, scales=(1.0,), flip: bool = False,
                       crf: bool = False, crf_backend: str = "auto", save_dir=None,
                       progress: Optional[ProgressFn] = None, validate: bool = True,
                       images_per_step: Optional[int] = None,
                       allow_invalid: bool = False) -> Dict:
    """Scores any :class:`Predictor` on ``dataset`` (the shared loop of Keras/TFLite eval).

    Predicted ids outside ``[0, K)`` (a class-map model with more classes) are an error unless
    ``allow_invalid``, which scores them as wrong and counts them (``invalid_predictions``).
    """
    if validate:
        dataset.validate_all()
    k = dataset.num_classes
    if predictor.num_classes == 1:  # --classes cannot help: name what the model is
        raise EdgeDeeplabError(
            f"the model outputs a single channel (a sigmoid mask, e.g. a selfie segmenter), not "
            f"one channel per class: eval scores per-class logits, probabilities or a class map, "
            f"so it cannot score it against the {k} classes of {dataset.name}")
    if predictor.num_classes is not None and predictor.num_classes != k:
        raise EdgeDeeplabError(
            f"the model predicts {predictor.num_classes} classes but the {dataset.name} split has "
            f"{k} ({', '.join(dataset.labels[:6])}{'...' if k > 6 else ''}); use --classes/--binary "
            f"or a matching model")
    if crf and predictor.kind == "classes":
        raise EdgeDeeplabError("--crf needs a model that outputs logits or probabilities")
    cm = ConfusionMatrix(k, dataset.ignore_label, labels=dataset.labels)
    invalid = _InvalidIds(k, allow_invalid)
    t0 = time.time()
    n = len(dataset)
    step = images_per_step or max(1, predictor.batch_size)
    done = 0
    it = iter(dataset)
    while True:
        batch = []
        for _ in range(step):
            try:
                batch.append(next(it))
            except StopIteration:
                break
        if not batch:
            break
        outs = predict_images(predictor, [im for _, im, _ in batch], scales=scales, flip=flip)
        for (stem, image, mask), (probs, pred) in zip(batch, outs):
            if crf:
                pred = dense_crf(image, probs, backend=crf_backend).argmax(-1)
            invalid.add(cm.update(pred, mask), stem)
            if save_dir is not None:
                _save_prediction(save_dir, stem, pred)
        done += len(batch)
        if progress:
            progress(done, n)
    invalid.check(n)
    return invalid.record(_finish(cm, dataset, t0, input_size=list(predictor.input_hw),
                                  scales=list(scales), flip=bool(flip), crf=bool(crf),
                                  **predictor.describe()))


def _load_keras(path, qat: bool = False):
    """``(model, resolved_path_str, metadata)`` for a .keras/.h5 file or run directory."""
    from edge_deeplab.model.model_io import load_model, resolve_model_path

    if qat:
        from edge_deeplab.training.qat import load_qat_model

        model, _cfg, meta = load_qat_model(path)
        # Name the file scored (RUN/qat/model.h5), not the run directory it was found in.
        p = Path(path)
        named = resolve_model_path(p, prefer_qat=True) if p.is_dir() else p
        return model, str(named), meta
    p = resolve_model_path(path)
    try:
        model, _cfg, meta = load_model(p)
    except EdgeDeeplabError:
        if p.suffix != ".h5":
            raise
        from edge_deeplab.training.qat import load_qat_model  # QAT models are saved as HDF5

        model, _cfg, meta = load_qat_model(p)
    return model, str(p), meta


def evaluate_keras(model, dataset, *, input_size=None, scales=(1.0,), flip: bool = False,
                   crf: bool = False, batch_size: int = 4, save_dir=None,
                   progress: Optional[ProgressFn] = None, crf_backend: str = "auto",
                   qat: bool = False, allow_invalid: bool = False) -> Dict:
    """Scores a Keras segmentation model on a dataset split.

    Args:
        model: a tf_keras model (normalized images -> logits) or a ``.keras`` path / run directory
            (loaded with :func:`edge_deeplab.model.model_io.load_model`).
        dataset: a :class:`~edge_deeplab.data.SegmentationDataset`.
        input_size: model input ``(h, w)``; default the model's fixed input.
        scales: inference scales relative to fitting the image into the input, e.g.
            :data:`PAPER_SCALES`; probabilities are averaged.
        flip: also average the left-right flipped prediction.
        crf: refine with :func:`dense_crf`.
        batch_size: windows per forward pass.
        save_dir: write predicted index PNGs (palette) named by stem here.
        progress: ``fn(done, total)``.
        qat: ``model`` is a run directory / ``.h5`` of a quantization-aware model (loaded with
            :func:`edge_deeplab.training.qat.load_qat_model`); ``.h5`` files fall back to it automatically.

    Returns:
        :meth:`ConfusionMatrix.result` plus ``dataset``, ``split``, ``scales``, ``flip``, ``crf``,
        ``input_size``, ``seconds``.

    Example:
        >>> r = evaluate_keras("runs/syn", load_dataset("synthetic", split="val"))  # doctest: +SKIP
    """
    meta = {}
    name = getattr(model, "name", "keras")
    if isinstance(model, (str, os.PathLike)):
        model, name, meta = _load_keras(model, qat)
    # The stock layers (no native dilated op): runs on every CPU and GPU.
    pred = KerasPredictor(model, input_size=input_size, batch_size=batch_size, metadata=meta)
    r = evaluate_predictor(pred, dataset, scales=scales, flip=flip, crf=crf, save_dir=save_dir,
                           progress=progress, crf_backend=crf_backend, allow_invalid=allow_invalid)
    r["model"] = name
    r["format"] = "keras"
    return r


def evaluate_tflite(path, dataset, *, accelerator: str = "cpu", threads: Optional[int] = None,
                    runtime: str = "auto", scales=(1.0,), flip: bool = False, crf: bool = False,
                    save_dir=None, progress: Optional[ProgressFn] = None,
                    crf_backend: str = "auto", allow_invalid: bool = False,
                    gpu_precision: str = "fp16") -> Dict:
    """Scores a ``.tflite`` model through :func:`edge_deeplab.runtime.open_runner`.

    Same letterbox/resize/argmax path and metric as :func:`evaluate_keras`; input quantization
    (int8/uint8 models) and output dequantization use the model's tensor parameters. Models that
    output a class map (argmax in the graph) are resized with nearest neighbour.

    Args:
        path: the ``.tflite`` file.
        dataset: a :class:`~edge_deeplab.data.SegmentationDataset`.
        accelerator: ``cpu``, ``gpu`` or ``npu``.
        threads: CPU threads.
        runtime, gpu_precision: see :func:`~edge_deeplab.runtime.open_runner`.
        scales, flip, crf, save_dir, progress: as in :func:`evaluate_keras`.
    """
    from edge_deeplab.runtime import open_runner

    runner = open_runner(path, accelerator=accelerator, threads=threads, runtime=runtime,
                         gpu_precision=gpu_precision)
    try:
        pred = TFLitePredictor(runner)
        r = evaluate_predictor(pred, dataset, scales=scales, flip=flip, crf=crf, save_dir=save_dir,
                               progress=progress, crf_backend=crf_backend,
                               allow_invalid=allow_invalid)
    finally:
        runner.close()
    r["model"] = str(path)
    r["format"] = "tflite"
    r["runtime"], r["runtime_version"] = runner.runtime_name, runner.runtime_version
    return r


_PRED_SUFFIXES = ("", "_leftImg8bit", "_pred", "_prediction", "_mask")


def _index_predictions(pred_dir: Path) -> Dict[str, Path]:
    from edge_deeplab.data.masks import MASK_EXTENSIONS

    out: Dict[str, Path] = {}
    for root, _dirs, files in os.walk(pred_dir):
        for f in sorted(files):
            p = Path(root) / f
            if p.suffix.lower() in MASK_EXTENSIONS and not f.startswith("."):
                out.setdefault(p.stem, p)
    return out


def evaluate_predictions(pred_dir, dataset, *, resize: bool = False,
                         progress: Optional[ProgressFn] = None,
                         allow_invalid: bool = False) -> Dict:
    """Scores a folder of predicted index masks (e.g. pulled from a phone) against ``dataset``.

    Args:
        pred_dir: folder (searched recursively) of ``<stem>.png`` (also ``<stem>_leftImg8bit``,
            ``_pred``, ``_prediction``, ``_mask`` suffixes) palette or grayscale PNGs holding class
            ids ``0..K-1`` (for ``binary`` datasets 0/255 or 0/1). Values outside ``[0, K)`` are
            an error (one line: their count and the first file) unless ``allow_invalid``, which
            scores them as wrong (counted in ``invalid_predictions``).
        dataset: the ground truth split; every stem must have a prediction.
        resize: nearest-resize predictions whose size differs from the mask (else an error).

    Example:
        >>> r = evaluate_predictions("phone_out/", load_dataset("voc", "VOCdevkit", "val"))  # doctest: +SKIP
    """
    from edge_deeplab.data.masks import read_mask

    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise EdgeDeeplabError(f"predictions folder not found: {pred_dir}")
    index = _index_predictions(pred_dir)
    if not index:
        raise EdgeDeeplabError(f"no prediction masks (.png) in {pred_dir}")
    dataset.validate_all()
    cm = ConfusionMatrix(dataset.num_classes, dataset.ignore_label, labels=dataset.labels)
    invalid = _InvalidIds(dataset.num_classes, allow_invalid)
    t0 = time.time()
    n = len(dataset)
    missing = []
    for i, stem in enumerate(dataset.stems):
        p = next((index[stem + s] for s in _PRED_SUFFIXES if stem + s in index), None)
        if p is None:
            missing.append(stem)
            continue
        gt = dataset.read_mask(i)
        pred = read_mask(p)
        if dataset.binary:
            pred = np.where(pred == 255, 1, pred)
        if pred.shape != gt.shape:
            if not resize:
                raise EdgeDeeplabError(
                    f"prediction {p} is {pred.shape[1]}x{pred.shape[0]} but its mask is "
                    f"{gt.shape[1]}x{gt.shape[0]} (use --resize-predictions to resize it)")
            pred = _resize(pred, gt.shape, nearest=True)
        invalid.add(cm.update(pred, gt), p)
        if progress:
            progress(i + 1, n)
    if missing:
        raise EdgeDeeplabError(
            f"{len(missing)} of {n} images have no prediction in {pred_dir} (first: {missing[0]}.png)")
    invalid.check(n)
    r = invalid.record(_finish(cm, dataset, t0))
    r["model"] = None
    r["predictions"] = str(pred_dir)
    r["format"] = "predictions"
    return r


def evaluate(model, dataset, *, predictions: bool = False, input_size=None, qat: bool = False,
             batch_size: int = 4, accelerator: str = "cpu", threads: Optional[int] = None,
             runtime: str = "auto", resize_predictions: bool = False, gpu_precision: str = "fp16",
             **kw) -> Dict:
    """Scores ``model`` on ``dataset`` by what it is: a folder of predicted masks
    (``predictions=True``), a ``.tflite`` (:func:`evaluate_tflite`) or a Keras model / run
    directory (:func:`evaluate_keras`). ``kw``: ``scales``, ``flip``, ``crf``, ``crf_backend``,
    ``save_dir``, ``progress``, ``allow_invalid``."""
    if predictions:
        return evaluate_predictions(model, dataset, resize=resize_predictions,
                                    progress=kw.get("progress"),
                                    allow_invalid=kw.get("allow_invalid", False))
    if Path(model).suffix.lower() == ".tflite":
        if input_size:
            raise EdgeDeeplabError("--input-size applies to Keras models; a .tflite has a fixed input")
        return evaluate_tflite(Path(model), dataset, accelerator=accelerator, threads=threads,
                               runtime=runtime, gpu_precision=gpu_precision, **kw)
    return evaluate_keras(Path(model), dataset, qat=qat, input_size=input_size,
                          batch_size=batch_size, **kw)
