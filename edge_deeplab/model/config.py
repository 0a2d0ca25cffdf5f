"""Configuration dataclasses: the single source of truth each stage reads.

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
import json
from typing import Optional, Sequence, Tuple

from edge_deeplab.errors import EdgeDeeplabError

VALID_ALPHAS = (0.35, 0.5, 0.75, 1.0)
VALID_OUTPUT_STRIDES = (8, 16, 32)

#: MobileNet-v2 preprocessing (``x / 127.5 - 1``) expressed as mean/std, as TFLite metadata does.
NORM_MEAN = (127.5, 127.5, 127.5)
NORM_STD = (127.5, 127.5, 127.5)

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)


def _pair(v) -> Tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(x) for x in v)
    if len(v) != 2:
        raise EdgeDeeplabError(f"input size must be N or (H, W), got {v}")
    return v


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
        self.input_size = _pair(self.input_size)
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

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def dataclass_from_dict(cls, d: dict, what: str):
    """``cls(**d)`` for a config dataclass, refusing unknown keys with a one-line error."""
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise EdgeDeeplabError(f"unknown {what} keys: {sorted(unknown)}")
    return cls(**d)


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
