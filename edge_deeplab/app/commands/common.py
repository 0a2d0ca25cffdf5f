"""Argument groups shared by several subcommands."""

from __future__ import annotations

import argparse

from edge_deeplab.core.imaging import parse_size
from edge_deeplab.model.config import ModelConfig, parse_int_list


def _int(text) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def positive_int(text) -> int:
    """argparse ``type``: an integer >= 1 (``must be an integer >= 1, got -5``)."""
    v = _int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {v}")
    return v


def non_negative_int(text) -> int:
    """argparse ``type``: an integer >= 0 (``must be an integer >= 0, got -1``)."""
    v = _int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {v}")
    return v


def positive_float(text) -> float:
    """argparse ``type``: a finite number > 0 (``must be a number > 0, got 0``)."""
    import math

    try:
        v = float(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return v


def add_model_arguments(p: argparse.ArgumentParser, defaults: ModelConfig | None = None) -> None:
    """Adds the flags that define a :class:`ModelConfig`."""
    d = defaults or ModelConfig()
    g = p.add_argument_group("model")
    g.add_argument("--input-size", default=f"{d.input_size[0]}",
                   help="input size N or HxW; a multiple of the output stride")
    g.add_argument("--output-stride", type=int, default=d.output_stride, choices=(8, 16, 32))
    g.add_argument("--alpha", type=float, default=d.alpha, choices=(0.35, 0.5, 0.75, 1.0),
                   help="MobileNet-v2 width multiplier")
    g.add_argument("--num-classes", type=positive_int, default=d.num_classes)
    g.add_argument("--no-decoder", action="store_true", help="DeepLab v3 (ASPP head only)")
    g.add_argument("--aspp-rates", default=None,
                   help="comma-separated atrous rates (default: from the output stride)")
    g.add_argument("--multi-grid", default=None, help="e.g. 1,2,4 for the last backbone stage")
    g.add_argument("--labels", default=None, help="comma-separated class names")


def model_config_from_args(args) -> ModelConfig:
    labels = None
    if args.labels:
        from edge_deeplab.data.labels import check_label_names

        labels = check_label_names(args.labels.split(","), f"--labels {args.labels!r}")
    return ModelConfig(
        input_size=parse_size(args.input_size),
        num_classes=args.num_classes,
        output_stride=args.output_stride,
        alpha=args.alpha,
        decoder=not args.no_decoder,
        aspp_rates=parse_int_list(args.aspp_rates),
        multi_grid=parse_int_list(args.multi_grid),
        labels=labels,
    )


# --------------------------------------------------------------------------- numeric flag types
def _number(text, kind, what):
    try:
        v = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if kind is float and v != v:  # NaN passes every comparison below
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return v


def non_negative_float(text) -> float:
    """argparse ``type=``: a finite number >= 0."""
    v = _number(text, float, "a number >= 0")
    if not (0 <= v < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return v


def unit_interval(text) -> float:
    """argparse ``type=``: a number in [0, 1) (momentum-like values)."""
    v = _number(text, float, "a number in [0, 1)")
    if not (0 <= v < 1):
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text}")
    return v


# --------------------------------------------------------------------------- inputs and outputs
def dataset_input(dataset: str | None, data_dir):
    """The :class:`~edge_deeplab.core.outputs.Input` of a ``--dataset``/``--data-dir`` pair (the
    synthetic dataset's default cache folder when no ``--data-dir`` is given).

    Example:
        >>> dataset_input("folder", "ds").what
        'dataset'
    """
    from edge_deeplab.core.outputs import Input

    if data_dir is None and dataset == "synthetic":
        from edge_deeplab.data.synthetic import default_data_dir

        data_dir = default_data_dir()
    return Input(data_dir, "dataset")


def model_inputs(path) -> list:
    """The :class:`~edge_deeplab.core.outputs.Input` s of a model argument: the file (or run
    folder) and, for a file, its ``.json`` sidecar, which an output must not replace either.

    Example:
        >>> [i.what for i in model_inputs("m.tflite")]
        ['model', "model's sidecar"]
    """
    from pathlib import Path

    from edge_deeplab.core.outputs import Input

    if path is None:
        return []
    p = Path(path)
    out = [Input(p, "model")]
    if not p.is_dir():
        out.append(Input(p.with_suffix(".json"), "model's sidecar"))
    return out


def require_current_qat(model) -> None:
    """Refuses (one line) a run's QAT model built from float weights that changed since.

    ``model`` is a run folder or a file in its ``qat/`` folder; QAT records the float model it
    started from (``RUN/qat/origin.json``, see :mod:`edge_deeplab.core.run_state`).

    Example:
        >>> import tempfile
        >>> require_current_qat(tempfile.mkdtemp())  # no QAT there: nothing to check
    """
    from pathlib import Path

    from edge_deeplab.core.errors import EdgeDeeplabError
    from edge_deeplab.core.run_state import stale_origin

    p = Path(model)
    run = p if p.is_dir() else p.parent.parent if p.parent.name == "qat" else None
    if run is None or not (run / "qat").is_dir():
        return
    why = stale_origin(run / "qat", run / "model.keras")
    if why:
        raise EdgeDeeplabError(f"the QAT model in {run / 'qat'} is stale: {why}; redo it with "
                               f"`edge-deeplab qat {run}`")


def floats_1_or_3(text, *, nonzero=False):
    """argparse ``type`` of ``--mean``/``--std``: one number or three comma-separated numbers."""
    import math

    try:
        vals = [float(x) for x in str(text).replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or comma-separated numbers, got {text!r}") from None
    if len(vals) not in (1, 3):
        raise argparse.ArgumentTypeError(f"expected 1 or 3 values, got {text!r}")
    if not all(math.isfinite(v) for v in vals) or (nonzero and any(v == 0 for v in vals)):
        raise argparse.ArgumentTypeError(
            f"expected {'non-zero ' if nonzero else ''}finite numbers, got {text!r}")
    return vals[0] if len(vals) == 1 else vals


def std_floats(text):
    """argparse ``type`` of ``--std``: like :func:`floats_1_or_3`, none of them zero."""
    return floats_1_or_3(text, nonzero=True)


def add_normalization_arguments(p: argparse.ArgumentParser) -> None:
    """``--mean``/``--std``: the input normalization of a model whose metadata does not give one."""
    p.add_argument("--mean", type=floats_1_or_3, default=None,
                   help="input mean (one or 3 values, on 0..255 pixels) when the model has no metadata")
    p.add_argument("--std", type=std_floats, default=None,
                   help="input std (one or 3 values) when the model has no metadata; e.g. --mean 0 "
                        "--std 255 for a model that takes [0, 1] pixels")
