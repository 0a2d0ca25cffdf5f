"""mIoU evaluation of Keras models, .tflite models and folders of predicted masks (the entry points).

All three paths feed the same :class:`~edge_deeplab.metrics.ConfusionMatrix` (one matrix over the
whole split, ignore 255). Keras and TFLite models (:mod:`~edge_deeplab.evaluation.predictors`) share
the same pre/post-processing (:mod:`~edge_deeplab.evaluation.tiling`):

1. the image becomes the model's input through the runtime's one image-to-input path;
2. the model's output is cropped to the valid (un-padded) region, converted to probabilities
   (softmax of logits) and resized bilinearly back to the ORIGINAL mask size;
3. the argmax is compared with the full-resolution ground truth.

``crf=True`` refines the averaged probabilities with a dense CRF (:mod:`~edge_deeplab.evaluation.crf`).

Example:
    >>> from edge_deeplab.data import load_dataset                      # doctest: +SKIP
    >>> ds = load_dataset("voc", "/data/VOCdevkit", "val")              # doctest: +SKIP
    >>> r = evaluate_keras("runs/voc/model.keras", ds, scales=(0.75, 1.0, 1.25), flip=True)  # doctest: +SKIP
    >>> r["miou"]                                                       # doctest: +SKIP
    0.72...
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np

from edge_deeplab.core import pixels
from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.evaluation.crf import dense_crf
from edge_deeplab.evaluation.predictors import KerasPredictor, Predictor, TFLitePredictor
from edge_deeplab.evaluation.tiling import predict_images
from edge_deeplab.metrics import ConfusionMatrix

ProgressFn = Callable[[int, int], None]


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
        from edge_deeplab.model.qat_io import load_qat_model

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
        from edge_deeplab.model.qat_io import load_qat_model  # QAT models are saved as HDF5

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
            :func:`edge_deeplab.model.qat_io.load_qat_model`); ``.h5`` files fall back to it automatically.

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
            pred = pixels.resize(pred, gt.shape, "nearest")
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
