"""Saving and loading Keras models together with their config.

A model file ``M.keras`` (tf_keras' zip format) is always accompanied by ``M.json`` holding the
:class:`~edge_deeplab.model.config.ModelConfig`, labels and input normalization, so later stages
(export, eval, demo) know what the model expects without guessing. Both are written atomically.

A *run directory* (``edge-deeplab train --out RUN``) holds ``RUN/model.keras`` (+ ``.json``), and
after QAT ``RUN/qat/model.h5`` (see :mod:`edge_deeplab.training.qat`); :func:`resolve_model_path` accepts either a file or a run dir.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Tuple

from edge_deeplab.core.atomic_io import atomic_path, write_json_atomic
from edge_deeplab.core.contract.semantics import normalization_dict, sidecar_path
from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.model.config import ModelConfig


def model_metadata(config: ModelConfig, **extra) -> dict:
    """The metadata that travels with a model (Keras sidecar, TFLite metadata)."""
    meta = {
        "format": "edge_deeplab/1",
        "config": config.to_dict(),
        "labels": list(config.resolved_labels()),
        "normalization": normalization_dict(),
        "ignore_label": 255,
    }
    meta.update(extra)
    return meta


def save_model(model, path, config: ModelConfig, **extra) -> Path:
    """Saves ``model`` to ``path`` (``.keras``) and its metadata sidecar, atomically.

    Example:
        >>> import tempfile, os
        >>> from edge_deeplab.model.deeplab import build_model
        >>> cfg = ModelConfig(input_size=32, num_classes=2, alpha=0.35)
        >>> p = save_model(build_model(cfg), os.path.join(tempfile.mkdtemp(), "m.keras"), cfg)
        >>> load_model(p)[1].num_classes
        2
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise EdgeDeeplabError(f"model path must end in .keras, got {path.name}")
    with atomic_path(path) as tmp:
        model.save(tmp)
    write_json_atomic(sidecar_path(path), model_metadata(config, **extra))
    return path


def resolve_model_path(path, prefer_qat: bool = False) -> Path:
    """Returns the ``.keras`` file for a file path or a run directory."""
    p = Path(path)
    if p.is_dir():
        # QAT models are saved as HDF5 (tfmot's quantize layers do not reload from .keras).
        candidates = ([p / "qat" / "model.h5", p / "qat" / "model.keras"] if prefer_qat else []) + [p / "model.keras"]
        for c in candidates:
            if c.is_file():
                return c
        raise EdgeDeeplabError(f"no model.keras in run directory {p}")
    if not p.exists():
        raise EdgeDeeplabError(f"model not found: {p}")
    if p.suffix not in (".keras", ".h5"):
        raise EdgeDeeplabError(f"not a Keras model file (.keras): {p}")
    return p


def load_metadata(path) -> Optional[dict]:
    sc = sidecar_path(path)
    if not sc.is_file():
        return None
    try:
        return json.loads(sc.read_text())
    except (OSError, ValueError) as e:
        raise EdgeDeeplabError(f"corrupt model metadata {sc}: {e}") from None


def load_model(path, compile: bool = False, custom_objects=None) -> Tuple[object, Optional[ModelConfig], dict]:
    """Loads a ``.keras`` model (or a run dir's) and its config.

    Returns:
        ``(model, config_or_None, metadata_dict)``. ``config`` is ``None`` for a foreign Keras
        model without our sidecar.
    """
    from edge_deeplab.core._tf import keras

    p = resolve_model_path(path)
    saved_by = _keras_version_of(p)
    if saved_by and not saved_by.startswith("2."):
        raise EdgeDeeplabError(
            f"{p} was saved by Keras {saved_by}; edge_deeplab reads tf_keras (Keras 2) models: "
            f"build/train it with edge_deeplab or re-save it with tf_keras")
    try:
        model = keras.models.load_model(p, compile=compile, custom_objects=custom_objects)
    except Exception as e:  # zip/h5 corruption, wrong format, unknown layers
        raise EdgeDeeplabError(f"cannot load Keras model {p}: {_load_error_line(e)}") from None
    meta = load_metadata(p) or {}
    cfg = ModelConfig.from_dict(meta["config"]) if "config" in meta else None
    if cfg is not None:
        check_sidecar(model, cfg, p)
    return model, cfg, meta


def check_sidecar(model, cfg: ModelConfig, path) -> None:
    """Refuses (one line) a config sidecar that does not describe ``model``: another class count,
    input size or number of labels (an edited or mismatched ``model.json``), which would
    otherwise surface late as a wrong label table or a failed export.

    Args:
        model: the loaded Keras model.
        cfg: the config its sidecar gives.
        path: the model file (named in the message).

    Example:
        >>> from types import SimpleNamespace as NS
        >>> m = NS(output_shape=(None, 64, 64, 3), input_shape=(None, 64, 64, 3))
        >>> check_sidecar(m, ModelConfig(input_size=(64, 64), num_classes=3), "m.keras")
    """
    out = model.output_shape
    out = out[0] if isinstance(out, list) else out
    inp = model.input_shape
    inp = inp[0] if isinstance(inp, list) else inp
    sc = sidecar_path(path)
    if out and out[-1] is not None and int(out[-1]) != cfg.num_classes:
        raise EdgeDeeplabError(
            f"{sc} says {cfg.num_classes} classes but the model {path} outputs {out[-1]}: the "
            f"sidecar does not belong to this model (restore it, or rebuild the model)")
    if inp and None not in tuple(inp[1:3]) and tuple(int(v) for v in inp[1:3]) != tuple(cfg.input_size):
        raise EdgeDeeplabError(
            f"{sc} says input {cfg.input_size[0]}x{cfg.input_size[1]} but the model {path} takes "
            f"{inp[1]}x{inp[2]}: the sidecar does not belong to this model")
    if cfg.labels is not None and len(cfg.labels) != cfg.num_classes:
        raise EdgeDeeplabError(f"{sc} gives {len(cfg.labels)} labels for {cfg.num_classes} classes")


def _keras_version_of(path) -> Optional[str]:
    """The ``keras_version`` a ``.keras`` zip records in its ``metadata.json`` (else ``None``)."""
    import zipfile

    try:
        if not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as z:
            return str(json.loads(z.read("metadata.json")).get("keras_version") or "") or None
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def _load_error_line(exc: BaseException, limit: int = 300) -> str:
    """One readable line of a Keras load error, without the layer config it may embed."""
    import re

    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    tail = re.search(r"Exception encountered: (.+)", text, re.S)
    line = (tail.group(1) if tail else text).strip().splitlines()[0]
    line = re.sub(r"config=\{.*\}", "config={...}", line)
    return line if len(line) <= limit else line[:limit] + "..."
