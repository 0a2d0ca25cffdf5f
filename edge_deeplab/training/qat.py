"""Quantization-aware training (QAT) of DeepLab v3+ / MobileNet-v2 with tensorflow-model-optimization.

The whole graph is quantized with tfmot's default 8-bit scheme (per-channel symmetric int8 weights,
per-tensor asymmetric int8 activations), plus two fixes that make the exported TFLite graph purely
int8 from input to output, with no re-quantization in the middle:

* **Same-scale layers** (``UpSampling2D`` bilinear, ``AveragePooling2D``): TFLite's int8 kernels for
  RESIZE_BILINEAR and AVERAGE_POOL_2D require output scale == input scale. tfmot puts a fake-quant
  on their outputs, which the converter then has to reconcile with a QUANTIZE (requantize) op. We
  give them :class:`SameScaleQuantizeConfig` (no quantizer at all: the output inherits the input's
  scale, which is exact because a bilinear/average output is a convex combination of inputs).
* **Concatenations**: TFLite's CONCATENATION needs every input at the output's scale. tfmot already
  drops the fake-quant of a concat's direct inputs and keeps one after the concat; but when an input
  reaches the concat *through* a same-scale layer (ASPP image pooling -> bilinear broadcast,
  ASPP projection -> decoder upsampling), the producer behind it must also lose its own fake-quant
  so the concat's scale propagates back to it. :class:`DeepLabQuantizeScheme` does that.

BatchNorm folds: Conv/DepthwiseConv + BN (+ ReLU) chains get tfmot's standard treatment (no
fake-quant between them), and the converter folds BN into the conv. Wrapping, range calibration and
fine-tuning run the stock layers, which every CPU and GPU kernel executes; only the exporter's trace
for conversion runs under :func:`edge_deeplab.model.layers.native_dilated_depthwise`, so atrous depthwise
convs become one dilated DEPTHWISE_CONV_2D (no SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND).

Example:
    >>> from edge_deeplab.model.config import ModelConfig
    >>> from edge_deeplab.model.deeplab import build_model
    >>> from edge_deeplab.training.qat import quantize_model, unquantized_layers
    >>> q = quantize_model(build_model(ModelConfig(input_size=64, num_classes=3, alpha=0.35)))
    >>> unquantized_layers(q)
    []
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Dict, List, Optional

import tensorflow_model_optimization as tfmot  # noqa: E402  (after _tf: needs TF_USE_LEGACY_KERAS)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # noqa: E402
    default_8bit_quantize_layout_transform as _layout,
)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_registry as _registry,
)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_scheme as _scheme,
)
from tensorflow_model_optimization.python.core.quantization.keras.quantize_layer import (  # noqa: E402
    QuantizeLayer as _QuantizeLayer,
)

from edge_deeplab.core._tf import keras, tf
from edge_deeplab.core.atomic_io import write_json_atomic
from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.core.progress import progress
from edge_deeplab.model.qat_io import (
    QAT_MODEL_NAME,
    SameScaleQuantizeConfig,
    freeze_batchnorm,
    qat_scope,
    save_qat_model,
)

#: Layers whose TFLite int8 kernel requires output scale == input scale and whose output range is
#: within the input's (so inheriting the input's scale loses nothing).
SAME_SCALE_LAYERS = (keras.layers.UpSampling2D, keras.layers.AveragePooling2D,
                     keras.layers.MaxPooling2D, keras.layers.GlobalAveragePooling2D)

#: Default fine-tuning recipe (relative to the float run's learning rate). See :func:`run_qat`.
DEFAULT_LR_FACTOR = 0.01
DEFAULT_STEPS = 300
DEFAULT_CHECKPOINT_EVERY = 100
def _inbound_layers(layer) -> list:
    nodes = getattr(layer, "_inbound_nodes", None) or []
    if not nodes:
        return []
    inbound = nodes[0].inbound_layers
    return list(inbound) if isinstance(inbound, (list, tuple)) else [inbound]


def _concat_scale_producers(model) -> Dict[str, str]:
    """Producers that reach a Concatenate only through same-scale layers.

    Returns ``{producer_name: concat_name}``. Their own output fake-quant must go so the concat's
    scale is the one TFLite assigns to them (and to the same-scale layers in between).
    """
    out = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Concatenate):
            continue
        for inp in _inbound_layers(layer):
            hops = 0
            while isinstance(inp, SAME_SCALE_LAYERS):
                parents = _inbound_layers(inp)
                if len(parents) != 1:
                    break
                inp, hops = parents[0], hops + 1
            if hops and not isinstance(inp, (keras.layers.InputLayer, keras.layers.Concatenate)):
                out[inp.name] = layer.name
    return out


class DeepLabQuantizeLayoutTransform(_layout.Default8BitQuantizeLayoutTransform):
    """tfmot's default 8-bit layout transforms, then the same-scale / concat fix-ups."""

    def apply(self, model, layer_quantize_map):
        order = concat_inputs(model)
        model, layer_quantize_map = super().apply(model, layer_quantize_map)
        model = restore_concat_order(model, order)
        registry = _registry.Default8BitQuantizeRegistry()
        by_name = {l.name: l for l in model.layers}
        for layer in model.layers:
            if isinstance(layer, SAME_SCALE_LAYERS) and layer.name in layer_quantize_map:
                layer_quantize_map[layer.name]["quantize_config"] = SameScaleQuantizeConfig()
        for name in _concat_scale_producers(model):
            if name not in layer_quantize_map:
                continue
            entry = layer_quantize_map[name]
            cfg = entry.get("quantize_config")
            if cfg is None:
                layer = by_name[name]
                if not registry.supports(layer):
                    continue
                cfg = registry.get_quantize_config(layer)
            if not hasattr(cfg, "quantize_output"):
                raise EdgeDeeplabError(
                    f"cannot share the concat scale with layer {name} "
                    f"({type(cfg).__name__} has no quantize_output)")
            # A fresh copy (configs may be shared objects), output quantizer off.
            cfg = type(cfg).from_config({**cfg.get_config(), "quantize_output": False})
            entry["quantize_config"] = cfg
        return model, layer_quantize_map


class DeepLabQuantizeScheme(_scheme.Default8BitQuantizeScheme):
    """Default 8-bit scheme with :class:`DeepLabQuantizeLayoutTransform`."""

    def get_layout_transformer(self):
        return DeepLabQuantizeLayoutTransform()


def quantize_model(model, pool_as_mean: bool = True):
    """Wraps every layer of a float DeepLab model for quantization-aware training.

    Args:
        model: a float ``tf_keras`` functional model (e.g. from :func:`edge_deeplab.model.deeplab.build_model`
            or a trained ``RUN/model.keras``); its weights are copied, it is not modified.
        pool_as_mean: replace an ``AveragePooling2D`` that averages its whole input (ASPP image
            pooling) by the identical ``GlobalAveragePooling2D(keepdims=True)``, which exports as
            MEAN: XNNPACK has no int8 AVERAGE_POOL_2D (it would leave that op, and split the graph,
            on the reference CPU kernels), but runs int8 MEAN; the GPU runs both.

    Returns:
        A new ``tf_keras`` model whose layers are ``QuantizeWrapperV2`` (plus the input
        ``QuantizeLayer``), ready to ``compile``/``fit``; convert it with
        ``tf.lite.Optimize.DEFAULT`` (``converters.export``'s ``qat-int8`` variant).

    Example:
        >>> from edge_deeplab.model.config import ModelConfig
        >>> from edge_deeplab.model.deeplab import build_model
        >>> q = quantize_model(build_model(ModelConfig(input_size=64, num_classes=2, alpha=0.35)))
        >>> q.layers[1].__class__.__name__
        'QuantizeLayer'
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "_is_graph_network") \
            or not model._is_graph_network:
        raise EdgeDeeplabError("QAT needs a functional tf_keras model (built by edge_deeplab)")
    if pool_as_mean:
        model = _global_pools_as_mean(model)
    with qat_scope():
        annotated = tfmot.quantization.keras.quantize_annotate_model(model)
        q = tfmot.quantization.keras.quantize_apply(annotated, scheme=DeepLabQuantizeScheme())
    return q


def concat_inputs(model) -> Dict[str, List[str]]:
    """``{concat layer name: [input layer names, in order]}`` of every ``Concatenate`` in ``model``."""
    return {l.name: [i.name for i in _inbound_layers(l)] for l in model.layers
            if isinstance(l, keras.layers.Concatenate)}


def restore_concat_order(model, order: Dict[str, List[str]]):
    """Puts every concatenation's inputs of ``model`` back in the original ``order``.

    tfmot's graph rewriter (``ModelTransformer``, run by the default 8-bit layout transform inside
    ``quantize_apply``) rebuilds a matched ``Concatenate``'s inbound connections in the order its
    pattern matched them, which is not always the original order: in DeepLab's ASPP it moved the
    image-pooling branch from last to first. The channels then reached the 1x1 projection
    shuffled: the QAT model started far from the float model (its ASPP concat's SNR against float
    was -1 dB instead of about 20 dB, and a trained model's person class lost half its IoU before
    the first fine-tuning step), and a short fine-tune could not repair it.
    :class:`DeepLabQuantizeLayoutTransform` calls this right after tfmot's transforms, while the
    model still holds plain layers: it rebuilds the model from its config with the original
    order and copies each layer's weights; a model already in order is returned as it is.

    Args:
        model: the rewritten (not yet wrapped) model.
        order: :func:`concat_inputs` of the model before the rewrite.

    Returns:
        ``model`` or its rebuilt copy with the same layer names and weights.

    Raises:
        EdgeDeeplabError: a concat whose inputs are no longer the original ones.
    """
    config = model.get_config()
    changed = False
    for layer in config["layers"]:
        name = layer["config"]["name"]
        if name not in order or not layer["inbound_nodes"]:
            continue
        node = layer["inbound_nodes"][0]
        by_name = {conn[0]: conn for conn in node}
        if sorted(by_name) != sorted(order[name]) or len(by_name) != len(node):
            raise EdgeDeeplabError(f"QAT rewrote the inputs of {name}: {sorted(by_name)} instead "
                                   f"of {sorted(order[name])}")
        want = [by_name[n] for n in order[name]]
        if want != node:
            layer["inbound_nodes"][0] = want
            changed = True
    if not changed:
        return model
    rebuilt = model.__class__.from_config(config)
    for layer in rebuilt.layers:
        layer.set_weights(model.get_layer(layer.name).get_weights())
    return rebuilt


def _global_pools_as_mean(model):
    """Clone of ``model`` with whole-input AveragePooling2D layers as GlobalAveragePooling2D."""
    def is_global(layer):
        if not isinstance(layer, keras.layers.AveragePooling2D):
            return False
        shape = layer.input_shape
        return (layer.data_format in (None, "channels_last") and layer.padding == "valid"
                and shape is not None and None not in shape[1:3]
                and tuple(layer.pool_size) == tuple(shape[1:3]))

    if not any(is_global(l) for l in model.layers):
        return model

    def clone(layer):
        if is_global(layer):
            return keras.layers.GlobalAveragePooling2D(keepdims=True, name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    new = keras.models.clone_model(model, clone_function=clone)
    new.set_weights(model.get_weights())
    return new


def unquantized_layers(qat_model) -> List[str]:
    """Names of layers left outside tfmot's wrappers (should be empty but for the input)."""
    QW = tfmot.quantization.keras.QuantizeWrapperV2
    QL = _QuantizeLayer
    return [l.name for l in qat_model.layers
            if not isinstance(l, (QW, QL, keras.layers.InputLayer))]


# ------------------------------------------------------------------------------ range calibration
@contextlib.contextmanager
def _ema_decay(decay: float):
    """Traces tfmot's moving-average quantizers with ``ema_decay=decay`` (they hard-code 0.999)."""
    from tensorflow_model_optimization.python.core.quantization.keras import quant_ops

    orig = quant_ops.MovingAvgQuantize

    def patched(*args, **kwargs):
        kwargs["ema_decay"] = decay
        return orig(*args, **kwargs)

    quant_ops.MovingAvgQuantize = patched
    try:
        yield
    finally:
        quant_ops.MovingAvgQuantize = orig


def calibrate_ranges(qat_model, batches, decay: float = 0.5) -> int:
    """Initializes every activation range of ``qat_model`` from data (a few forward passes).

    tfmot starts each activation range at [-6, 6] and moves it with an EMA of decay 0.999, so a
    short fine-tune (hundreds of steps) would keep ranges far too wide (a ReLU's minimum stays
    around -4). Running the first batches with a fast EMA (``decay``; the first batch sets the
    range outright) starts QAT from calibrated ranges, as post-training quantization does.

    Args:
        qat_model: a model from :func:`quantize_model`.
        batches: an iterable of normalized image batches ``(N, H, W, 3)`` (or ``(images, masks)``).
        decay: EMA decay used during calibration.

    Returns:
        The number of batches used.
    """
    n = 0
    # tf.function traces on first call, so each call happens inside its own decay patch.
    first = tf.function(lambda x: qat_model(x, training=True))
    rest = tf.function(lambda x: qat_model(x, training=True))
    for b in batches:
        x = tf.convert_to_tensor(b[0] if isinstance(b, (tuple, list)) else b)
        with _ema_decay(0.0 if n == 0 else decay):
            (first if n == 0 else rest)(x)
        n += 1
    return n


# ------------------------------------------------------------------------------------- QAT run
def _read_run(run_dir: Path):
    from edge_deeplab.training.train import TrainConfig

    tc_path = run_dir / "train_config.json"
    if not (run_dir / "model.keras").is_file():
        raise EdgeDeeplabError(f"no trained float model {run_dir / 'model.keras'}; run "
                               f"`edge-deeplab train --out {run_dir}` first")
    if not tc_path.is_file():
        raise EdgeDeeplabError(f"no {tc_path}: not a training run directory")
    try:
        d = json.loads(tc_path.read_text())
        tc = TrainConfig.from_dict(d["train"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise EdgeDeeplabError(f"corrupt {tc_path}: {e}") from None
    if tc.data_dir is not None and not Path(tc.data_dir).expanduser().is_dir():
        # Never regenerate or look up data anywhere but where the run recorded it; only the
        # synthetic dataset's own cache directory may be (re)generated in place.
        from edge_deeplab.data.synthetic import default_data_dir

        d = Path(tc.data_dir).expanduser()
        if not (tc.dataset == "synthetic" and d.is_absolute()
                and d.resolve() == default_data_dir().resolve()):
            hint = "" if d.is_absolute() else \
                " (a relative path: run from the directory the run was trained in)"
            raise EdgeDeeplabError(f"the {tc.dataset} dataset folder {tc.data_dir} recorded in "
                                   f"{tc_path} is missing{hint}")
    return tc


def make_qat_train_step(qmodel, optimizer, step_var):
    """The QAT fine-tuning step: ``step(images, masks) -> loss`` (a ``tf.function``).

    Masked cross-entropy (label 255 ignored), one optimizer update, ``step_var`` incremented. It
    runs the stock layers (no native dilated op), so it executes on every device.
    """
    from edge_deeplab.training.train import masked_cross_entropy

    @tf.function
    def train_step(images, masks):
        with tf.GradientTape() as tape:
            logits = qmodel(images, training=True)
            loss_sum, count = masked_cross_entropy(masks, logits)
            loss = loss_sum / tf.maximum(count, 1.0)
        grads = tape.gradient(loss, qmodel.trainable_variables)
        optimizer.apply_gradients(zip(grads, qmodel.trainable_variables))
        step_var.assign_add(1)
        return loss

    return train_step


def run_qat(run_dir, *, steps: Optional[int] = None, lr: Optional[float] = None,
            batch_size: Optional[int] = None, resume: bool = False,
            checkpoint_every: Optional[int] = None, freeze_bn: bool = True,
            calibration_batches: int = 8, evaluate: bool = True, verbose: int = 1) -> dict:
    """Quantization-aware fine-tuning of a trained run: ``RUN/model.keras`` -> ``RUN/qat/model.h5``.

    Recipe (the anchors' default): start from the trained float model, initialize activation
    ranges on a few training batches (:func:`calibrate_ranges`), then fine-tune the whole
    quantized graph at ``lr = float lr / 100`` with a poly decay, no warm-up, BatchNorm statistics
    frozen (:func:`freeze_batchnorm`), on the run's own training data and augmentation
    (``RUN/train_config.json``).

    Args:
        run_dir: a directory written by ``edge-deeplab train`` (``model.keras``,
            ``train_config.json``).
        steps: fine-tuning steps (default :data:`DEFAULT_STEPS`).
        lr: base learning rate (default: the float run's ``lr`` x :data:`DEFAULT_LR_FACTOR`).
        batch_size: default: the float run's.
        resume: continue from ``RUN/qat/checkpoints``. Without it, existing QAT checkpoints are an
            error (nothing is overwritten by accident).
        checkpoint_every: steps between checkpoints (default :data:`DEFAULT_CHECKPOINT_EVERY`).
        freeze_bn: fine-tune with BatchNorm in inference mode (recommended).
        calibration_batches: batches for the initial range calibration (0: tfmot's [-6, 6]).
        evaluate: score the QAT Keras model on the run's validation split at the end.
        verbose: 1 prints progress, 0 is silent.

    Returns:
        A dict (also ``RUN/qat/qat_result.json``): ``model_path``, ``steps``, ``start_step``,
        ``lr``, ``batch_size``, ``freeze_bn``, ``qat_seconds``, ``resumed``, ``labels``;
        with ``evaluate``: ``val_miou`` and ``per_class_iou`` of the QAT model, ``float_val_miou``
        and ``float_per_class_iou`` of the float model on the same split, and
        ``collapsed_classes`` (:func:`collapsed_classes`, also warned about on stderr); without
        it those are ``None`` (``float_val_miou``: the float run's recorded value) and ``[]``.

    Example:
        >>> run_qat("runs/quickstart", steps=300)  # doctest: +SKIP
        {'model_path': 'runs/quickstart/qat/model.h5', 'val_miou': 0.83, ...}
    """
    from edge_deeplab.data.pipeline import make_train_dataset
    from edge_deeplab.model.model_io import load_model
    from edge_deeplab.training.qat_state import prepare_qat_dir
    from edge_deeplab.training.schedules import PolyDecay
    from edge_deeplab.training.train import (
        evaluate_model,
        open_datasets,
        require_resumable,
        restore_newest_loadable,
    )

    run = Path(run_dir)
    if not run.is_dir():
        raise EdgeDeeplabError(f"run directory not found: {run}")
    tc = _read_run(run)
    steps = int(steps if steps is not None else DEFAULT_STEPS)
    if steps < 1:
        raise EdgeDeeplabError(f"QAT steps must be >= 1, got {steps}")
    lr = float(lr if lr is not None else tc.lr * DEFAULT_LR_FACTOR)
    if not lr > 0:
        raise EdgeDeeplabError(f"learning rate must be > 0, got {lr}")
    batch_size = int(batch_size if batch_size is not None else tc.batch_size)
    if batch_size < 1:
        raise EdgeDeeplabError(f"batch size must be >= 1, got {batch_size}")
    checkpoint_every = int(checkpoint_every or DEFAULT_CHECKPOINT_EVERY)
    if checkpoint_every < 1:
        raise EdgeDeeplabError(f"checkpoint_every must be >= 1, got {checkpoint_every}")

    qdir = run / "qat"
    ckpt_dir = qdir / "checkpoints"
    if resume:
        require_resumable(qdir, ckpt_dir, what="QAT")
    prepare_qat_dir(run, resume=resume)  # origin of the float weights; a stale QAT is redone

    float_model, cfg, meta = load_model(run / "model.keras")
    if cfg is None:
        raise EdgeDeeplabError(f"{run / 'model.keras'} has no config sidecar (model.json)")
    train_ds, val_ds = open_datasets(tc)
    if train_ds.num_classes != cfg.num_classes:
        raise EdgeDeeplabError(f"model has {cfg.num_classes} classes, dataset {train_ds.num_classes}")

    keras.utils.set_random_seed(int(tc.seed) + 7)
    float_eval = None
    if evaluate and val_ds is not None:  # float's score on the same split, for the comparison
        float_eval = evaluate_model(float_model, val_ds, cfg.input_size,
                                    batch_size=tc.eval_batch_size)
    qmodel = quantize_model(float_model)
    del float_model
    if freeze_bn:
        freeze_batchnorm(qmodel)
    qdir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(qdir / "qat_config.json", {
        "steps": steps, "lr": lr, "batch_size": batch_size, "freeze_bn": freeze_bn,
        "checkpoint_every": checkpoint_every, "calibration_batches": calibration_batches,
        "schedule": "poly 0.9, no warm-up", "source": str(run / "model.keras")})

    schedule = PolyDecay(lr, steps, power=0.9, warmup_steps=0)
    optimizer = keras.optimizers.Adam(schedule)
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="qat_step")
    optimizer.build(qmodel.trainable_variables)
    ckpt = tf.train.Checkpoint(model=qmodel, optimizer=optimizer, step=step_var)
    start = 0
    restored = restore_newest_loadable(ckpt, ckpt_dir) if resume else None
    manager = tf.train.CheckpointManager(ckpt, str(ckpt_dir), max_to_keep=2)
    cache = tc.cache if tc.cache is not None else (tc.dataset == "synthetic")

    def data_from(step0):
        return iter(make_train_dataset(
            train_ds, crop_size=cfg.input_size, batch_size=batch_size,
            seed=int(tc.seed) + 17 + 1_000_003 * step0, min_scale=tc.min_scale,
            max_scale=tc.max_scale, flip=tc.flip, cache=cache))

    t0 = time.time()
    if restored:
        start = int(step_var.numpy())
        if verbose:
            print(f"resuming QAT from {restored} at step {start}/{steps}", flush=True)
    elif calibration_batches > 0:
        it = data_from(-1)
        calibrate_ranges(qmodel, (next(it)[0] for _ in range(int(calibration_batches))))

    data = data_from(start)
    train_step = make_qat_train_step(qmodel, optimizer, step_var)
    progbar = progress(steps, "qat", stateful_metrics=["loss"]) if verbose else None
    if progbar is not None and start:
        progbar.update(start)
    step = start
    loss_ema = None
    while step < steps:
        images, masks = next(data)
        loss = float(train_step(images, masks).numpy())
        step = int(step_var.numpy())
        if not math.isfinite(loss):
            raise EdgeDeeplabError(f"QAT diverged at step {step} (loss {loss}); lower --lr")
        loss_ema = loss if loss_ema is None else 0.9 * loss_ema + 0.1 * loss
        if step % checkpoint_every == 0 or step == steps:
            manager.save(checkpoint_number=step)
        if progbar is not None:
            progbar.update(step, [("loss", loss_ema)])
    qat_seconds = time.time() - t0

    qat_eval = None
    if float_eval is not None:
        qat_eval = evaluate_model(qmodel, val_ds, cfg.input_size, batch_size=tc.eval_batch_size)
    val_miou = None if qat_eval is None else float(qat_eval["miou"])
    # the float model's input geometry (a distilled student stretches its frames) goes with it
    carried = {k: meta[k] for k in ("input_geometry",) if meta.get(k)}
    model_path = save_qat_model(qmodel, qdir / QAT_MODEL_NAME, cfg, qat_steps=step,
                                val_miou=val_miou, **carried)
    labels = list(cfg.resolved_labels())
    collapsed = [] if qat_eval is None else collapsed_classes(
        float_eval["per_class_iou"], qat_eval["per_class_iou"], labels)
    result = {
        "model_path": str(model_path), "steps": steps, "start_step": start, "final_step": step,
        "resumed": bool(start), "lr": lr, "batch_size": batch_size, "freeze_bn": freeze_bn,
        "calibration_batches": calibration_batches, "qat_seconds": round(qat_seconds, 2),
        "val_miou": val_miou,
        # float's mIoU on the same split now (the float run's own record is its best checkpoint's)
        "float_val_miou": float(float_eval["miou"]) if float_eval else meta.get("val_miou"),
        "labels": labels,
        "per_class_iou": qat_eval["per_class_iou"] if qat_eval else None,
        "float_per_class_iou": float_eval["per_class_iou"] if float_eval else None,
        "collapsed_classes": collapsed,
    }
    write_json_atomic(qdir / "qat_result.json", result)
    if verbose:
        msg = f"QAT done: {step} steps in {qat_seconds:.0f}s"
        if val_miou is not None:
            msg += f", val mIoU {val_miou:.4f} (float {result['float_val_miou']:.4f})"
        print(f"{msg}; wrote {model_path}", flush=True)
        if qat_eval is not None:
            print(per_class_table(labels, float_eval["per_class_iou"], qat_eval["per_class_iou"]),
                  flush=True)
    for c in collapsed:
        import sys

        print(f"warning: QAT lost class {c['label']}: IoU {c['float_iou']:.3f} (float) -> "
              f"{c['qat_iou']:.3f} (QAT); fine-tune longer (--steps) or at another --lr",
              file=sys.stderr, flush=True)
    return result


#: A class "collapses" in QAT when its IoU falls below this fraction of float's...
COLLAPSE_RATIO = 0.5
#: ...and float had at least this IoU for it (a class float never found cannot collapse).
COLLAPSE_MIN_FLOAT_IOU = 0.1


def collapsed_classes(float_iou, qat_iou, labels) -> List[dict]:
    """Classes whose QAT IoU fell below :data:`COLLAPSE_RATIO` x float's.

    Args:
        float_iou: per-class IoU of the float model (``None`` for classes absent from the split).
        qat_iou: per-class IoU of the QAT model on the same split.
        labels: class names.

    Returns:
        ``[{"class": i, "label": name, "float_iou": f, "qat_iou": q}, ...]``.

    Example:
        >>> collapsed_classes([0.9, 0.42], [0.9, 0.05], ["background", "person"])
        [{'class': 1, 'label': 'person', 'float_iou': 0.42, 'qat_iou': 0.05}]
    """
    out = []
    for i, (f, q) in enumerate(zip(float_iou, qat_iou)):
        if f is None or f < COLLAPSE_MIN_FLOAT_IOU:
            continue
        q = 0.0 if q is None else q
        if q < COLLAPSE_RATIO * f:
            out.append({"class": i, "label": labels[i], "float_iou": f, "qat_iou": q})
    return out


def per_class_table(labels, float_iou, qat_iou) -> str:
    """Per-class IoU of float and QAT side by side (``-`` for a class absent from the split).

    Example:
        >>> print(per_class_table(["bg", "a"], [0.9, None], [0.85, None]))
        class        float     QAT
        bg          90.00%  85.00%
        a                -       -
    """
    def pct(v):
        return "-" if v is None else f"{100 * v:.2f}%"

    width = max(10, *(len(n) for n in labels))
    rows = [f"{'class':<{width}} {'float':>7} {'QAT':>7}"]
    rows += [f"{n:<{width}} {pct(f):>7} {pct(q):>7}" for n, f, q in zip(labels, float_iou, qat_iou)]
    return "\n".join(rows)
