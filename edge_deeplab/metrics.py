"""Segmentation metrics: one confusion matrix accumulated over a whole split.

mIoU is computed the way the PASCAL VOC / Cityscapes benchmarks do it: every labelled pixel of every
image is added to ONE ``num_classes x num_classes`` confusion matrix (rows = ground truth, columns =
prediction); IoU per class is ``TP / (TP + FP + FN)`` from that matrix, and mIoU is the mean over the
classes whose union (``TP + FP + FN``) is non-zero. It is *not* the mean of per-image mIoUs (that
over-weights small images and images where a class is nearly absent).

Ground-truth pixels equal to ``ignore_label`` (255) are skipped. Predictions outside
``[0, num_classes)`` count as wrong for their ground-truth class (they land in an extra "invalid"
column that is not a class), so a broken model can never look better than it is.

Example:
    >>> import numpy as np
    >>> cm = ConfusionMatrix(3)
    >>> cm.update(np.array([[0, 1], [2, 2]]), np.array([[0, 1], [2, 255]]))
    >>> cm.result()["miou"]
    1.0
    >>> cm.update(np.array([[1]]), np.array([[0]]))
    >>> round(cm.result()["per_class_iou"][0], 3), round(cm.result()["miou"], 3)
    (0.5, 0.667)
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from edge_deeplab.core.errors import EdgeDeeplabError


class ConfusionMatrix:
    """Accumulates a confusion matrix over many images.

    Args:
        num_classes: number of classes ``K``; labels are ``0..K-1``.
        ignore_label: ground-truth value that is not scored (255 by default; ``None`` for none).
        labels: optional class names (length ``K``), carried into :meth:`result`.

    Example:
        >>> import numpy as np
        >>> cm = ConfusionMatrix(2)
        >>> cm.update(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8))
        >>> cm.result()["per_class_iou"]
        [1.0, None]
    """

    def __init__(self, num_classes: int, ignore_label: Optional[int] = 255,
                 labels: Optional[Sequence[str]] = None):
        num_classes = int(num_classes)
        if num_classes < 1:
            raise EdgeDeeplabError(f"num_classes must be >= 1, got {num_classes}")
        if labels is not None and len(labels) != num_classes:
            raise EdgeDeeplabError(f"{len(labels)} labels given for {num_classes} classes")
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.labels = tuple(labels) if labels is not None else None
        # Extra column K collects predictions outside [0, K).
        self._m = np.zeros((num_classes, num_classes + 1), dtype=np.int64)
        self.num_images = 0
        self.invalid_predictions = 0

    @property
    def matrix(self) -> np.ndarray:
        """The ``K x K`` confusion matrix (rows ground truth, columns prediction), int64."""
        return self._m[:, : self.num_classes].copy()

    def update(self, pred, gt) -> int:
        """Adds one image (or a batch: any shape, ``pred`` and ``gt`` equal shapes).

        Args:
            pred: predicted class ids (integer array).
            gt: ground-truth class ids; ``ignore_label`` pixels are skipped. Values outside
                ``[0, K)`` other than ``ignore_label`` raise :class:`EdgeDeeplabError`.

        Returns:
            The number of scored pixels whose predicted id is outside ``[0, K)`` (counted as wrong
            and added to ``invalid_predictions``).
        """
        pred = np.asarray(pred)
        gt = np.asarray(gt)
        if pred.shape != gt.shape:
            raise EdgeDeeplabError(
                f"prediction shape {pred.shape} does not match ground truth shape {gt.shape}")
        if not (np.issubdtype(pred.dtype, np.integer) or pred.dtype == bool):
            raise EdgeDeeplabError(f"predictions must be integer class ids, got dtype {pred.dtype}")
        if not (np.issubdtype(gt.dtype, np.integer) or gt.dtype == bool):
            raise EdgeDeeplabError(f"ground truth must be integer class ids, got dtype {gt.dtype}")
        k = self.num_classes
        gt = gt.reshape(-1).astype(np.int64)
        pred = pred.reshape(-1).astype(np.int64)
        if self.ignore_label is not None:
            keep = gt != self.ignore_label
            gt, pred = gt[keep], pred[keep]
        n_invalid = 0
        if gt.size:
            bad = (gt < 0) | (gt >= k)
            if bad.any():
                vals = np.unique(gt[bad])[:5].tolist()
                raise EdgeDeeplabError(
                    f"ground truth has labels {vals} outside [0, {k}) (ignore label "
                    f"{self.ignore_label})")
            invalid = (pred < 0) | (pred >= k)
            n_invalid = int(invalid.sum())
            if n_invalid:
                pred = np.where(invalid, k, pred)
                self.invalid_predictions += n_invalid
            self._m += np.bincount(gt * (k + 1) + pred, minlength=k * (k + 1)).reshape(k, k + 1)
        self.num_images += 1
        return n_invalid

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Adds another matrix's counts into this one (returns ``self``)."""
        if other.num_classes != self.num_classes:
            raise EdgeDeeplabError(
                f"cannot merge confusion matrices of {other.num_classes} and {self.num_classes} classes")
        self._m += other._m
        self.num_images += other.num_images
        self.invalid_predictions += other.invalid_predictions
        return self

    def reset(self) -> None:
        self._m[:] = 0
        self.num_images = 0
        self.invalid_predictions = 0

    def result(self) -> Dict:
        """The metrics as a JSON-ready dict.

        Returns:
            ``miou`` (fraction 0-1, mean over classes with a non-zero union; ``None`` if no pixel was
            scored), ``per_class_iou`` (list, ``None`` for classes absent from both prediction and
            ground truth), ``pixel_accuracy``, ``mean_class_accuracy``, ``num_images``,
            ``num_pixels`` (scored pixels), ``num_classes``, ``labels``, ``class_pixels`` (ground
            truth pixels per class), ``invalid_predictions`` and ``confusion_matrix`` (list of lists).
        """
        k = self.num_classes
        full = self._m
        tp = np.diag(full[:, :k]).astype(np.float64)
        gt_count = full.sum(axis=1).astype(np.float64)           # TP + FN (incl. invalid preds)
        pred_count = full[:, :k].sum(axis=0).astype(np.float64)  # TP + FP
        union = gt_count + pred_count - tp
        total = float(full.sum())
        per_class = [float(tp[i] / union[i]) if union[i] > 0 else None for i in range(k)]
        valid = [v for v in per_class if v is not None]
        accs = [float(tp[i] / gt_count[i]) for i in range(k) if gt_count[i] > 0]
        return {
            "miou": float(np.mean(valid)) if valid else None,
            "per_class_iou": per_class,
            "pixel_accuracy": float(tp.sum() / total) if total > 0 else None,
            "mean_class_accuracy": float(np.mean(accs)) if accs else None,
            "num_images": int(self.num_images),
            "num_pixels": int(total),
            "num_classes": k,
            "labels": list(self.labels) if self.labels is not None else None,
            "class_pixels": [int(x) for x in gt_count],
            "invalid_predictions": int(self.invalid_predictions),
            "confusion_matrix": self.matrix.tolist(),
        }


def format_table(result: Dict, labels: Optional[Sequence[str]] = None) -> str:
    """A readable per-class IoU table for a :meth:`ConfusionMatrix.result` dict.

    Example:
        >>> import numpy as np
        >>> cm = ConfusionMatrix(2, labels=("bg", "fg"))
        >>> cm.update(np.array([0, 1, 1]), np.array([0, 1, 0]))
        >>> print(format_table(cm.result()))  # doctest: +NORMALIZE_WHITESPACE
        class    IoU     GT pixels
        bg       50.00%  2
        fg       50.00%  1
        mIoU     50.00%  (2 classes, 1 images)
        pixel acc 66.67%
    """
    per = result["per_class_iou"]
    names = list(labels or result.get("labels") or [f"class_{i}" for i in range(len(per))])
    counts = result.get("class_pixels") or [0] * len(per)
    w = max([len(n) for n in names] + [8])
    lines = [f"{'class':<{w}} {'IoU':>7}  GT pixels"]
    for name, iou, c in zip(names, per, counts):
        s = "    n/a" if iou is None else f"{iou * 100:6.2f}%"
        lines.append(f"{name:<{w}} {s}  {c}")
    n_valid = sum(1 for v in per if v is not None)
    miou = result.get("miou")
    ms = "    n/a" if miou is None else f"{miou * 100:6.2f}%"
    lines.append(f"{'mIoU':<{w}} {ms}  ({n_valid} classes, {result.get('num_images', 0)} images)")
    pa = result.get("pixel_accuracy")
    lines.append(f"pixel acc {'n/a' if pa is None else f'{pa * 100:.2f}%'}")
    return "\n".join(lines)
