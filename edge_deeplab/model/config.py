"""Configuration dataclasses: the single source of truth each stage reads (:class:`ModelConfig`,
:class:`TrainConfig`; named presets of both are data in :mod:`edge_deeplab.model.presets`).

One setting drives the geometry everywhere: ``output_stride``. It decides where MobileNet-v2 stops
striding and starts dilating, which ASPP rates are used (6/12/18 at 16, 12/24/36 at 8), and how far
the decoder upsamples.

Example:
    >>> cfg = ModelConfig(input_size=(256, 256), output_stride=8)
    >>> cfg.resolved_aspp_rates()
    (12, 24, 36)
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Tuple

from edge_deeplab.core.contract.semantics import NORM_MEAN, NORM_STD, VOC_CLASSES  # noqa: F401
from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.core.imaging import parse_size

VALID_ALPHAS = (0.35, 0.5, 0.75, 1.0)
VALID_OUTPUT_STRIDES = (8, 16, 32)

@dataclasses.dataclass
class ModelConfig:
    """DeepLab v3+ / MobileNet-v2 architecture.

    Args:
        input_size: ``(height, width)`` (or one int for square); each must be a multiple of
            ``output_stride`` (and of 4 for the decoder's low-level branch).
        num_classes: number of output classes (logits channels).
        output_stride: 8, 16 or 32; after this stride the backbone dilates instead of striding.
        alpha: MobileNet-v2 width multiplier (0.35, 0.5, 0.75, 1.0).
        decoder: ``True`` for DeepLab v3+, ``False`` for DeepLab v3 (ASPP head only).
        aspp_rates: atrous rates of the separable ASPP branches; ``None`` derives them from the
            output stride (6/12/18 at 16, 12/24/36 at 8, 3/6/9 at 32).
        multi_grid: per-unit rate multipliers of the last backbone stage (160-channel blocks 14-16),
            e.g. ``(1, 2, 4)``; ``None`` for none.
        aspp_filters: channels of every ASPP branch and of the fused ASPP output.
        low_level_filters: channels the low-level (stride 4) features are projected to.
        decoder_filters: channels of the decoder's two separable 3x3 convs.
        labels: class names (``len == num_classes``); ``None`` gives ``class_0 …``.
    """

    input_size: Tuple[int, int] = (512, 512)
    num_classes: int = 21
    output_stride: int = 16
    alpha: float = 1.0
    decoder: bool = True
    aspp_rates: Optional[Tuple[int, ...]] = None
    multi_grid: Optional[Tuple[int, ...]] = None
    aspp_filters: int = 256
    low_level_filters: int = 48
    decoder_filters: int = 256
    labels: Optional[Tuple[str, ...]] = None

    def __post_init__(self):
        self.input_size = parse_size(self.input_size)
        if self.aspp_rates is not None:
            self.aspp_rates = tuple(int(r) for r in self.aspp_rates)
        if self.multi_grid is not None:
            self.multi_grid = tuple(int(r) for r in self.multi_grid)
        if self.labels is not None:
            self.labels = tuple(str(x) for x in self.labels)
        self.validate()

    def validate(self) -> None:
        """Raises :class:`EdgeDeeplabError` with a one-line reason if the config is invalid."""
        if self.output_stride not in VALID_OUTPUT_STRIDES:
            raise EdgeDeeplabError(
                f"output stride must be one of {VALID_OUTPUT_STRIDES}, got {self.output_stride}")
        if float(self.alpha) not in VALID_ALPHAS:
            raise EdgeDeeplabError(f"alpha must be one of {VALID_ALPHAS}, got {self.alpha}")
        if self.num_classes < 1:
            raise EdgeDeeplabError(f"num_classes must be >= 1, got {self.num_classes}")
        h, w = self.input_size
        # The decoder concatenates stride-4 features with the upsampled ASPP output, so the
        # size must also divide by 4 (always true for OS >= 8 multiples).
        for name, v in (("height", h), ("width", w)):
            if v <= 0 or v % self.output_stride:
                raise EdgeDeeplabError(
                    f"input {name} {v} is not a multiple of the output stride {self.output_stride}; "
                    f"use e.g. {max(self.output_stride, round(v / self.output_stride) * self.output_stride)}")
        if self.aspp_rates is not None and any(r < 1 for r in self.aspp_rates):
            raise EdgeDeeplabError(f"ASPP rates must be >= 1, got {self.aspp_rates}")
        if self.multi_grid is not None and (len(self.multi_grid) == 0 or any(r < 1 for r in self.multi_grid)):
            raise EdgeDeeplabError(f"multi-grid rates must be >= 1, got {self.multi_grid}")
        if self.labels is not None and len(self.labels) != self.num_classes:
            raise EdgeDeeplabError(
                f"{len(self.labels)} labels given for {self.num_classes} classes")

    def resolved_aspp_rates(self) -> Tuple[int, ...]:
        """ASPP atrous rates: explicit, else derived from the output stride."""
        if self.aspp_rates is not None:
            return self.aspp_rates
        return {8: (12, 24, 36), 16: (6, 12, 18), 32: (3, 6, 9)}[self.output_stride]

    def resolved_labels(self) -> Tuple[str, ...]:
        if self.labels is not None:
            return self.labels
        if self.num_classes == 21:
            return VOC_CLASSES
        return tuple(f"class_{i}" for i in range(self.num_classes))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["input_size"] = list(self.input_size)
        for k in ("aspp_rates", "multi_grid", "labels"):
            if d[k] is not None:
                d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return dataclass_from_dict(cls, d, "model config")

def dataclass_from_dict(cls, d: dict, what: str):
    """``cls(**d)`` for a config dataclass, refusing unknown keys with a one-line error."""
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise EdgeDeeplabError(f"unknown {what} keys: {sorted(unknown)}")
    return cls(**d)


OPTIMIZERS = ("adam", "sgd")
STRATEGIES = ("default", "mirrored", "multiworker")


@dataclasses.dataclass
class TrainConfig:
    """How to train.

    Args:
        dataset: ``synthetic``, ``voc``, ``cityscapes`` or ``folder``.
        data_dir: dataset root (``None``: the synthetic dataset's cache directory).
        split: training split; ``val_split``: held-out split scored at checkpoints (``None`` or a
            missing split: no validation, the last model is the best).
        steps: optimizer steps; or ``epochs`` (passes over the training split). One of them.
        batch_size: global batch size (split across replicas by the strategy).
        lr: base learning rate; ``optimizer``: ``adam`` or ``sgd`` (with ``momentum``).
        weight_decay: L2 coefficient on conv kernels (``wd * sum(k**2) / 2`` added to the loss).
        poly_power: poly decay exponent; ``warmup_steps``: linear warm-up.
        min_scale, max_scale: random scale augmentation range; ``flip``: random left/right flips.
        checkpoint_every: steps between checkpoints (each also scores the val split).
        seed: seeds weights, shuffling and augmentation.
        strategy: ``default``, ``mirrored`` or ``multiworker`` (reads ``TF_CONFIG``).
        classes, binary, skip_bad, num_classes: passed to :func:`edge_deeplab.data.load_dataset`.
        backbone_weights: ``None``, ``"imagenet"`` or a MobileNetV2 ``.h5`` path.
        cache: keep decoded training images in memory (``None``: only for ``synthetic``).
        val_max_images: score at most this many val images at checkpoints (``None``: all).
        eval_batch_size: batch size of validation.
        log_every: steps between TensorBoard points.
        bn_momentum: overrides the BatchNorm moving-average momentum (the model's 0.999 needs
            thousands of steps to settle; short runs want ~0.99), ``None`` keeps it.
        recalibrate_batches: before each validation (and so before saving the best model),
            re-estimate BatchNorm statistics over this many training batches (0: off).
    """

    dataset: str = "synthetic"
    data_dir: Optional[str] = None
    split: str = "train"
    val_split: Optional[str] = "val"
    steps: Optional[int] = None
    epochs: Optional[int] = None
    batch_size: int = 16
    lr: float = 2e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 4e-5
    poly_power: float = 0.9
    warmup_steps: int = 0
    min_scale: float = 0.5
    max_scale: float = 2.0
    flip: bool = True
    checkpoint_every: int = 200
    seed: int = 0
    strategy: str = "default"
    classes: Optional[Tuple[str, ...]] = None
    binary: bool = False
    skip_bad: bool = False
    num_classes: Optional[int] = None
    backbone_weights: Optional[str] = None
    cache: Optional[bool] = None
    val_max_images: Optional[int] = None
    eval_batch_size: int = 16
    log_every: int = 10
    bn_momentum: Optional[float] = None
    recalibrate_batches: int = 0

    def __post_init__(self):
        if self.classes is not None:
            if isinstance(self.classes, str):
                self.classes = tuple(c.strip() for c in self.classes.split(",") if c.strip())
            else:
                self.classes = tuple(self.classes)
        self.validate()

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise EdgeDeeplabError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.strategy not in STRATEGIES:
            raise EdgeDeeplabError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.steps is not None and self.epochs is not None:
            raise EdgeDeeplabError("give --steps or --epochs, not both")
        if self.steps is not None and self.steps < 1:
            raise EdgeDeeplabError(f"steps must be >= 1, got {self.steps}")
        if self.epochs is not None and self.epochs < 1:
            raise EdgeDeeplabError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise EdgeDeeplabError(f"batch size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise EdgeDeeplabError(f"learning rate must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise EdgeDeeplabError(f"weight decay must be >= 0, got {self.weight_decay}")
        if self.checkpoint_every < 1:
            raise EdgeDeeplabError(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        if self.log_every < 1:
            raise EdgeDeeplabError(f"log_every must be >= 1, got {self.log_every}")
        if self.bn_momentum is not None and not (0 <= self.bn_momentum < 1):
            raise EdgeDeeplabError(f"bn_momentum must be in [0, 1), got {self.bn_momentum}")
        if not (0 < self.min_scale <= self.max_scale):
            raise EdgeDeeplabError(
                f"need 0 < min_scale <= max_scale, got {self.min_scale}, {self.max_scale}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if d["classes"] is not None:
            d["classes"] = list(d["classes"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return dataclass_from_dict(cls, d, "train config")



def parse_int_list(text: Optional[str | Sequence[int]]) -> Optional[Tuple[int, ...]]:
    """Parses ``"6,12,18"`` into ``(6, 12, 18)``; ``None``/empty stays ``None``."""
    if text is None or text == "":
        return None
    if not isinstance(text, str):
        return tuple(int(x) for x in text)
    try:
        return tuple(int(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        raise EdgeDeeplabError(f"expected comma-separated integers, got {text!r}") from None
