"""Loading and saving quantization-aware (tfmot-wrapped) DeepLab models.

A QAT model is saved as Keras HDF5 (``RUN/qat/model.h5``) with a JSON metadata sidecar, and loads
under :func:`qat_scope` (tfmot's quantize scope plus :class:`SameScaleQuantizeConfig`). Training
(:mod:`edge_deeplab.training.qat`) writes it; evaluation and the exporter read it.

Example:
    >>> model, cfg, meta = load_qat_model("runs/syn")             # doctest: +SKIP
    >>> is_qat_model(model)                                       # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
from pathlib import Path

# isort: off
from edge_deeplab.core._tf import keras  # first: it selects tf_keras before tfmot imports TensorFlow
import tensorflow_model_optimization as tfmot
# isort: on

from edge_deeplab.core.atomic_io import atomic_path, write_json_atomic
from edge_deeplab.core.contract.semantics import sidecar_path
from edge_deeplab.core.errors import EdgeDeeplabError, first_line

QuantizeConfig = tfmot.quantization.keras.QuantizeConfig

#: File name of the QAT model inside ``RUN/qat/`` (HDF5: see :func:`save_qat_model`).
QAT_MODEL_NAME = "model.h5"


class SameScaleQuantizeConfig(QuantizeConfig):
    """No weights, no activations, no output quantizer: the output keeps the input's scale.

    For ``UpSampling2D`` (nearest or bilinear) and ``AveragePooling2D`` / ``MaxPooling2D``, whose
    TFLite int8 kernels need identical input/output quantization. ``quantize_output`` exists (always
    ``False``) so tfmot's concat transform can treat this config like its own.
    """

    quantize_output = False

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {}


def custom_objects() -> dict:
    """Objects beyond tfmot's own that a saved QAT model needs to deserialize."""
    return {"SameScaleQuantizeConfig": SameScaleQuantizeConfig}


@contextlib.contextmanager
def qat_scope():
    """``tfmot.quantization.keras.quantize_scope`` + our quantize configs."""
    with tfmot.quantization.keras.quantize_scope(custom_objects()):
        yield


def freeze_batchnorm(qat_model, frozen: bool = True) -> int:
    """Puts every wrapped BatchNormalization in inference mode (``frozen``) or back in training mode.

    The converter folds BN (moving mean/variance) into the preceding conv, so fine-tuning with the
    statistics frozen trains exactly the arithmetic that is exported (gamma/beta still train:
    tfmot's wrapper keeps them in its own trainable list, and they fold too). Unfreeze before
    saving (:func:`save_qat_model` does): a frozen inner layer lists gamma/beta twice, which HDF5
    rejects. Returns the number of BN layers changed.
    """
    n = 0
    for layer in qat_model.layers:
        inner = getattr(layer, "layer", layer)
        if isinstance(inner, keras.layers.BatchNormalization):
            inner.trainable = not frozen
            n += 1
    return n


def is_qat_model(model) -> bool:
    """Whether ``model`` contains tfmot quantize wrappers."""
    QW = tfmot.quantization.keras.QuantizeWrapperV2
    return any(isinstance(l, QW) for l in getattr(model, "layers", []))


def _find_qat_file(path) -> Path:
    p = Path(path)
    if p.is_dir():
        cands = [p / "qat" / QAT_MODEL_NAME, p / QAT_MODEL_NAME]
        found = [c for c in cands if c.is_file()]
        if not found:
            raise EdgeDeeplabError(
                f"no QAT model ({'qat/' + QAT_MODEL_NAME}) in {p}; run `edge-deeplab qat {p}` first")
        return found[0]
    if not p.is_file():
        raise EdgeDeeplabError(f"QAT model not found: {p}")
    return p


def load_qat_model(path, compile: bool = False):
    """Loads a QAT model saved by :func:`edge_deeplab.training.qat.run_qat` / :func:`save_qat_model`.

    Args:
        path: ``RUN/qat/model.h5``, a run directory (its ``qat/model.h5``), or ``RUN/qat``.

    Returns:
        ``(model, config_or_None, metadata)`` like :func:`edge_deeplab.model.model_io.load_model`.

    Raises:
        EdgeDeeplabError: missing/corrupt file, or a model without quantize wrappers.
    """
    from edge_deeplab.model.config import ModelConfig
    from edge_deeplab.model.model_io import load_metadata

    p = _find_qat_file(path)
    try:
        with qat_scope():
            model = keras.models.load_model(p, compile=compile)
    except Exception as e:  # zip/h5 corruption, wrong format
        msg = first_line(e)
        raise EdgeDeeplabError(f"cannot load QAT model {p}: {msg}") from None
    if not is_qat_model(model):
        raise EdgeDeeplabError(f"{p} is not a quantization-aware model (no quantize wrappers)")
    meta = load_metadata(p) or {}
    cfg = ModelConfig.from_dict(meta["config"]) if "config" in meta else None
    return model, cfg, meta


def save_qat_model(model, path, config, **extra) -> Path:
    """Saves a QAT model and its metadata sidecar (``.json``) atomically.

    The format is Keras HDF5 (``.h5``): tfmot's quantize layer does not survive tf_keras' ``.keras``
    zip format (its variables are tracked twice and the loader rejects the file), while HDF5
    round-trips bit-exactly under :func:`qat_scope`. BatchNorm layers frozen by
    :func:`freeze_batchnorm` are unfrozen first (inference outputs do not change).
    """
    from edge_deeplab.model.model_io import model_metadata

    path = Path(path)
    if path.suffix != ".h5":
        raise EdgeDeeplabError(f"QAT model path must end in .h5, got {path.name}")
    import warnings

    freeze_batchnorm(model, frozen=False)
    with qat_scope(), atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(tmp)
    write_json_atomic(sidecar_path(path), model_metadata(config, quantization="qat-int8", **extra))
    return path
