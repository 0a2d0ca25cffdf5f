"""Training DeepLab v3+ / MobileNet-v2 with a resumable custom loop on tf.distribute.

``train(model_config, train_config, out_dir)`` runs one training job into a *run directory*::

    RUN/model.keras (+ model.json)   the best model by validation mIoU (the last one without val)
    RUN/last.keras  (+ last.json)    the model after the last step
    RUN/checkpoints/                 tf.train.CheckpointManager: model + optimizer + step + best mIoU
    RUN/logs/                        TensorBoard scalars (loss, learning rate, val mIoU)
    RUN/train_config.json            model and training configs as used
    RUN/train_result.json            what :func:`train` returns

Recipe: sparse softmax cross-entropy from logits averaged over the pixels whose label is not 255,
plus L2 weight decay on conv kernels (not BatchNorm or biases), poly learning rate (power 0.9), SGD
with momentum or Adam. Training and validation run the stock Keras layers (dilated depthwise convs
through SpaceToBatchND), which every CPU and GPU kernel supports; only the exporter traces the
native dilated op (see :mod:`edge_deeplab.model.layers`). The loop runs under a ``tf.distribute``
strategy (default / mirrored / multiworker); a killed run continues from its last checkpoint with
``resume=True`` and stops at the same total step count.

Multi-worker (``multiworker``, one process per worker, ``TF_CONFIG`` naming the cluster): the global
batch is split over the workers' replicas; the chief (worker 0, or ``chief``) alone writes RUN, the
others write their share of each save into a scratch directory that is deleted at the end. RUN must
be on a file system every worker sees, as ``--resume`` restores the chief's checkpoint everywhere.
``mirrored`` without a GPU mirrors over every logical CPU device.

Example:
    >>> from edge_deeplab.model.presets import FAST_MODEL, FAST_TRAIN               # doctest: +SKIP
    >>> from edge_deeplab.training.train import train                          # doctest: +SKIP
    >>> result = train(FAST_MODEL, FAST_TRAIN, "runs/fast")                  # doctest: +SKIP
    >>> result["best_miou"]                                                   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Optional

from edge_deeplab.core.atomic_io import file_sha256, write_json_atomic
from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.core.progress import progress
from edge_deeplab.core.run_state import (
    clear_complete,
    mark_complete,
    read_complete,
    require_unlocked,
    run_lock,
    set_aside,
)
from edge_deeplab.model.config import OPTIMIZERS, STRATEGIES, ModelConfig, TrainConfig  # noqa: F401


# ------------------------------------------------------------------------------------- helpers
def make_strategy(name: str):
    """``default`` / ``mirrored`` / ``multiworker`` -> a ``tf.distribute.Strategy``."""
    from edge_deeplab.core._tf import tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        # All local GPUs; without one, every logical CPU device (one unless configured with
        # tf.config.set_logical_device_configuration), where MirroredStrategy alone takes CPU:0 only.
        if not tf.config.list_logical_devices("GPU"):
            cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
            if len(cpus) > 1:
                return tf.distribute.MirroredStrategy(cpus)
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" in os.environ:
            try:
                json.loads(os.environ["TF_CONFIG"])
            except ValueError:
                raise EdgeDeeplabError("TF_CONFIG is not valid JSON") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise EdgeDeeplabError(f"unknown strategy {name!r}; choose one of {STRATEGIES}")


def _is_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and int(resolver.task_id or 0) == 0
        and "chief" not in (resolver.cluster_spec().as_dict() or {}))


def masked_cross_entropy(labels, logits, ignore_label: int = 255):
    """Sum of per-pixel softmax cross-entropy over non-ignored pixels, and their count.

    Returns:
        ``(loss_sum, valid_count)`` as float32 scalars; the mean is ``loss_sum / valid_count``.
    """
    from edge_deeplab.core._tf import tf

    labels = tf.cast(labels, tf.int32)
    valid = tf.not_equal(labels, ignore_label)
    safe = tf.where(valid, labels, tf.zeros_like(labels))
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=tf.cast(logits, tf.float32))
    validf = tf.cast(valid, tf.float32)
    return tf.reduce_sum(ce * validf), tf.reduce_sum(validf)


def summary_scalar(name: str, value, step) -> None:
    """Writes a TensorBoard scalar to the default writer without needing the tensorboard package
    (``tf.summary.scalar`` imports it; tensorflow-cpu does not install it)."""
    from tensorflow.core.framework import summary_pb2

    from edge_deeplab.core._tf import tf

    meta = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    tf.summary.write(name, tf.constant(float(value), tf.float32), step=int(step),
                     metadata=meta.SerializeToString())


def decay_variables(model):
    """Conv / depthwise kernels (weight decay applies to these only, not BN or biases)."""
    return [v for v in model.trainable_variables if "kernel" in v.name.split("/")[-1]]


def recalibrate_batchnorm(model, batches) -> int:
    """Re-estimates every BatchNorm's moving mean/variance as the plain average over ``batches``.

    Short from-scratch runs move the weights faster than the moving averages follow (Keras'
    momentum 0.999 needs thousands of steps), so inference-mode accuracy lags far behind; this
    "precise BN" pass (forward only, no weight change) fixes the statistics before validation and
    before a model is saved. Returns the number of batches used.
    """
    from edge_deeplab.core._tf import keras

    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    saved = [l.momentum for l in bns]
    n = 0
    try:
        for k, images in enumerate(batches):
            for layer in bns:
                layer.momentum = k / (k + 1.0)  # cumulative average: first batch replaces
            model(images, training=True)
            n += 1
    finally:
        for layer, m in zip(bns, saved):
            layer.momentum = m
    return n


def evaluate_model(model, dataset, size, batch_size: int = 16, max_images: Optional[int] = None):
    """Validation mIoU of a Keras model on a ``SegmentationDataset`` via ``ConfusionMatrix``.

    Items are fitted to ``size`` with :func:`edge_deeplab.data.pipeline.make_eval_dataset` (padding
    ignored). Returns ``ConfusionMatrix.result()``'s dict (``miou``, ``per_class_iou`` ...).
    """
    from edge_deeplab.data.pipeline import make_eval_dataset
    from edge_deeplab.metrics import ConfusionMatrix

    if max_images is not None and max_images < len(dataset) and hasattr(dataset, "subset"):
        dataset = dataset.subset(max_images)
    cm = ConfusionMatrix(dataset.num_classes, labels=getattr(dataset, "labels", None))
    ds = make_eval_dataset(dataset, size=size, batch_size=batch_size)
    predict = make_predict_step(model)
    for x, y in ds:
        cm.update(predict(x).numpy(), y.numpy())
    return cm.result()


def make_predict_step(model):
    """The validation step: a ``tf.function`` from normalized images to int32 class maps.

    It runs the stock layers (no native dilated op), so it executes on every device.
    """
    from edge_deeplab.core._tf import tf

    @tf.function(reduce_retracing=True)
    def predict(x):
        return tf.argmax(model(x, training=False), axis=-1, output_type=tf.int32)

    return predict


def mean_masked_cross_entropy(logits, masks):
    """Mean cross-entropy over the labelled pixels of a batch (label 255 ignored): the default loss
    of :func:`make_train_step`."""
    from edge_deeplab.core._tf import tf

    loss_sum, count = masked_cross_entropy(masks, logits)
    return loss_sum / tf.maximum(count, 1.0)


def make_train_step(model, optimizer, strategy, step_var, weight_decay: float = 0.0, loss=None):
    """The distributed training step: ``step(iterator) -> summed loss`` (a ``tf.function``).

    One optimizer update per call on the next global batch of ``iterator`` (from
    ``strategy.experimental_distribute_dataset``; a batch is ``(images, *targets)``): ``loss`` plus
    ``weight_decay`` x L2 of the conv kernels, averaged over replicas. Increments ``step_var``.
    It runs the stock layers (no native dilated op), so it executes on every device.

    Args:
        model, optimizer, strategy, step_var: what :func:`build_training_state` returns.
        weight_decay: L2 factor on the conv kernels (:func:`decay_variables`).
        loss: ``loss(logits, *targets) -> scalar`` for one replica's batch; default
            :func:`mean_masked_cross_entropy` (targets: the masks). Distillation passes its
            soft-target loss (``training.distill.soft_target_loss``).

    Example:
        >>> step = make_train_step(model, optimizer, strategy, step_var, 4e-5)  # doctest: +SKIP
        >>> float(step(iter(strategy.experimental_distribute_dataset(batches))))  # doctest: +SKIP
    """
    from edge_deeplab.core._tf import tf

    loss = loss or mean_masked_cross_entropy
    n_rep = strategy.num_replicas_in_sync
    kernels = decay_variables(model)
    wd = float(weight_decay)

    def replica_step(images, *targets):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            data_loss = loss(logits, *targets)
            reg = wd * tf.add_n([tf.nn.l2_loss(k) for k in kernels]) if wd else 0.0
            total = (data_loss + reg) / n_rep
        grads = tape.gradient(total, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return data_loss / n_rep

    @tf.function
    def train_step(it):
        per = strategy.run(replica_step, args=tuple(next(it)))
        step_var.assign_add(1)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per, axis=None)

    return train_step


def build_training_state(model_config: ModelConfig, tc: TrainConfig, total: int, strategy):
    """The model, optimizer and counters of a run, made under ``strategy``'s scope, and the
    ``tf.train.Checkpoint`` that holds them all (what ``--resume`` restores).

    Args:
        model_config: the network to build (``tc.backbone_weights`` loaded into it).
        tc: the recipe: BatchNorm momentum, optimizer, poly LR (``lr``, ``poly_power``,
            ``warmup_steps``) over ``total`` steps.
        total: the run's number of optimizer steps.
        strategy: from :func:`make_strategy`.

    Returns:
        ``(model, optimizer, schedule, step_var, best_miou, best_step, checkpoint)``.

    Example:
        >>> model, opt, _, step, *_ = build_training_state(cfg, tc, 1000, make_strategy("default"))  # doctest: +SKIP
    """
    from edge_deeplab.core._tf import keras, tf
    from edge_deeplab.model.deeplab import build_model
    from edge_deeplab.training.schedules import PolyDecay

    with strategy.scope():
        model = build_model(model_config, backbone_weights=tc.backbone_weights)
        if tc.bn_momentum is not None:
            for layer in model.layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.momentum = float(tc.bn_momentum)
        schedule = PolyDecay(tc.lr, total, power=tc.poly_power, warmup_steps=tc.warmup_steps)
        if tc.optimizer == "adam":
            optimizer = keras.optimizers.Adam(schedule)
        else:
            optimizer = keras.optimizers.SGD(schedule, momentum=tc.momentum)
        step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="train_step")
        best_miou = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_miou")
        best_step = tf.Variable(-1, dtype=tf.int64, trainable=False, name="best_step")
        optimizer.build(model.trainable_variables)
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step_var,
                               best_miou=best_miou, best_step=best_step)
    return model, optimizer, schedule, step_var, best_miou, best_step, ckpt


def open_datasets(tc: TrainConfig):
    from edge_deeplab.data import load_dataset

    kw = dict(num_classes=tc.num_classes, binary=tc.binary, skip_bad=tc.skip_bad,
              classes=tc.classes)
    train_ds = load_dataset(tc.dataset, tc.data_dir, tc.split, **kw)
    train_ds.validate_all()
    val_ds = None
    if tc.val_split:
        try:
            val_ds = load_dataset(tc.dataset, tc.data_dir, tc.val_split, **kw)
        except EdgeDeeplabError as e:
            print(f"no validation split {tc.val_split!r} ({e}); the last model is kept",
                  file=sys.stderr)
        if val_ds is not None:
            val_ds.validate_all()
            if val_ds.num_classes != train_ds.num_classes:
                raise EdgeDeeplabError(
                    f"val split has {val_ds.num_classes} classes, train split {train_ds.num_classes}")
    return train_ds, val_ds


def total_steps_for(tc: TrainConfig, num_items: int) -> int:
    if tc.steps is not None:
        return int(tc.steps)
    epochs = tc.epochs if tc.epochs is not None else 1
    return int(epochs) * max(1, num_items // tc.batch_size)


def _write_model(model, path: Path, config: ModelConfig, scratch: Optional[Path], **extra):
    """Saves the model at ``path`` on the chief; elsewhere (``scratch`` given) into ``scratch``,
    which is thrown away.

    Every worker of a ``multiworker`` run must save: reading BatchNorm's moving statistics
    (sync-on-read variables) is an all-reduce over the workers, so a save on the chief alone
    waits for a collective the other workers never join (they fail with a shape mismatch).
    """
    from edge_deeplab.model.model_io import save_model

    save_model(model, path if scratch is None else scratch / path.name, config, **extra)



def checkpoint_prefixes(ckpt_dir) -> list:
    """Checkpoint prefixes (``DIR/ckpt-N``) that have an index file, newest (highest N) first.

    Read from the files themselves, not from the ``checkpoint`` state file (which may be damaged).
    """
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    found = {}
    for idx in d.glob("ckpt-*.index"):
        num = idx.name[len("ckpt-"):-len(".index")]
        if num.isdigit():
            found[int(num)] = d / idx.name[:-len(".index")]
    return [found[k] for k in sorted(found, reverse=True)]


def has_checkpoint_files(ckpt_dir) -> bool:
    """Whether ``ckpt_dir`` holds any checkpoint file (damaged or not): a fresh start must not
    overwrite it."""
    d = Path(ckpt_dir)
    return d.is_dir() and (any(d.glob("ckpt-*.index")) or any(d.glob("ckpt-*.data-*")))


def require_resumable(run_dir, ckpt_dir, what: str = "run") -> None:
    """For ``--resume``: the run directory and at least one checkpoint must exist (so a mistyped
    ``--out`` is an error, not a fresh run)."""
    run_dir, ckpt_dir = Path(run_dir), Path(ckpt_dir)
    if not run_dir.is_dir():
        raise EdgeDeeplabError(f"--resume: {what} directory {run_dir} does not exist")
    if not checkpoint_prefixes(ckpt_dir):
        raise EdgeDeeplabError(
            f"--resume: no checkpoints in {ckpt_dir} to continue from; check the path, or start "
            f"without --resume")


def _short_reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


def restore_newest_loadable(ckpt, ckpt_dir) -> str:
    """Restores ``ckpt`` from the newest checkpoint in ``ckpt_dir`` that loads and returns its
    prefix; damaged ones (truncated data, corrupt index, wrong variables) are skipped with a line on
    stderr naming them.

    Raises:
        EdgeDeeplabError: no checkpoint at all, or none loads (one line naming the files).
    """
    prefixes = checkpoint_prefixes(ckpt_dir)
    if not prefixes:
        raise EdgeDeeplabError(f"--resume: no checkpoints in {ckpt_dir}")
    failed = []
    for prefix in prefixes:
        try:
            ckpt.restore(str(prefix)).assert_existing_objects_matched()
        except Exception as e:  # noqa: BLE001 - IndexError (truncated data), DataLossError ...
            files = ", ".join(sorted(p.name for p in prefix.parent.glob(prefix.name + ".*")))
            failed.append(f"{prefix.name} ({files}: {_short_reason(e)})")
            continue
        if failed:
            print(f"warning: skipped damaged checkpoint(s) {'; '.join(failed)}; resuming from "
                  f"{prefix}", file=sys.stderr, flush=True)
        return str(prefix)
    raise EdgeDeeplabError(f"no checkpoint in {ckpt_dir} loads: {'; '.join(failed)}")


# ---------------------------------------------------------------------------------------- train
def train(model_config: ModelConfig, train_config: TrainConfig, out_dir, *,
          resume: bool = False, force: bool = False, verbose: int = 1) -> dict:
    """Trains a model into the run directory ``out_dir``.

    Args:
        model_config: the architecture; ``num_classes`` must match the dataset's. When it has no
            ``labels`` the dataset's class names are used.
        train_config: the recipe (:class:`TrainConfig`).
        out_dir: run directory (created).
        resume: continue from ``RUN/checkpoints`` at the saved step. Without it, a run directory
            that already has checkpoints or a model is an error (so nothing is overwritten by
            accident). On a complete run (``RUN/complete.json``) with the same step count it
            says so and returns the recorded result, touching nothing.
        force: retrain a finished run: its old contents are moved into ``RUN/previous-N/`` first.
        verbose: 1 for a Keras progress bar and one line per checkpoint, 0 for silence.

    Returns:
        A dict: ``total_steps``, ``start_step``, ``final_step``, ``best_miou``, ``best_step``,
        ``final_miou``, ``per_class_iou`` (of the last evaluation), ``train_seconds``, ``model_path``,
        ``last_path``, ``num_replicas``, ``resumed``. Also written to ``RUN/train_result.json``.

    Raises:
        EdgeDeeplabError: bad dataset, config mismatch, existing checkpoints without ``resume``.
    """
    from edge_deeplab.core._tf import keras

    tc = _with_absolute_data_dir(train_config)
    out = Path(out_dir)
    check_run_state(out, resume=resume, force=force, multiworker=tc.strategy == "multiworker")
    if resume and (out / "train_config.json").is_file():
        saved = json.loads((out / "train_config.json").read_text()).get("model") or {}
        # Labels may have been filled in from the dataset; compare the architecture only.
        if saved and dict(saved, labels=None) != dict(model_config.to_dict(), labels=None):
            raise EdgeDeeplabError(
                f"--resume with a different model config than {out / 'train_config.json'}")
    if resume and (out / "model.keras").is_file():  # an edited or foreign model.json
        from edge_deeplab.model.model_io import load_metadata

        n = ((load_metadata(out / "model.keras") or {}).get("config") or {}).get("num_classes")
        if n is not None and n != model_config.num_classes:
            raise EdgeDeeplabError(
                f"{out / 'model.json'} says {n} classes but this run trains "
                f"{model_config.num_classes}: the sidecar does not belong to the run")

    train_ds, val_ds = open_datasets(tc)
    if model_config.num_classes != train_ds.num_classes:
        raise EdgeDeeplabError(
            f"model has {model_config.num_classes} classes but the {tc.dataset} dataset has "
            f"{train_ds.num_classes}; pass --num-classes {train_ds.num_classes}")
    model_config = _with_labels(model_config, train_ds.labels)
    total = total_steps_for(tc, len(train_ds))
    done = read_complete(out) if resume else None
    if done is not None and done.get("total_steps") == total:
        print(f"{out} is already complete ({done.get('final_step')}/{total} steps); nothing to "
              f"do (nothing was changed)", file=sys.stderr, flush=True)
        saved = out / "train_result.json"
        return json.loads(saved.read_text()) if saved.is_file() else done

    keras.utils.set_random_seed(int(tc.seed))
    strategy = make_strategy(tc.strategy)
    chief = _is_chief(strategy)
    # The chief alone writes RUN; the other workers of a multiworker run save what every worker
    # must save (checkpoints, models: see _write_model) into a private scratch directory that is
    # deleted at the end. They read the chief's checkpoints on --resume (RUN on a shared file
    # system, as tf.distribute's multi-worker checkpointing assumes).
    scratch = None
    lock = contextlib.nullcontext()
    if chief:
        lock = run_lock(out, "train")
    else:
        import tempfile

        scratch = Path(tempfile.mkdtemp(prefix="edge_deeplab_worker_"))
    try:
        with lock:
            if chief:  # a writer that finished while this one opened its data
                check_run_state(out, resume=resume, force=force, announce=True)
                clear_complete(out)
            return _train_loop(model_config, tc, out, total, strategy, chief, scratch, train_ds,
                               val_ds, resume, verbose)
    finally:
        if scratch is not None:
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)


def _train_loop(model_config, tc, out, total, strategy, chief, scratch, train_ds, val_ds, resume,
                verbose) -> dict:
    from edge_deeplab.core._tf import tf
    from edge_deeplab.data.pipeline import make_train_dataset

    ckpt_dir = out / "checkpoints"
    n_rep = strategy.num_replicas_in_sync
    if tc.batch_size % n_rep:
        raise EdgeDeeplabError(
            f"batch size {tc.batch_size} is not divisible by the {n_rep} replicas")

    if chief:
        write_json_atomic(out / "train_config.json",
                          {"model": model_config.to_dict(), "train": tc.to_dict(),
                           "total_steps": total})

    model, optimizer, schedule, step_var, best_miou, best_step, ckpt = build_training_state(
        model_config, tc, total, strategy)
    ckpt_path = ckpt_dir if chief else scratch / "checkpoints"
    start = 0
    if resume:  # every worker restores the chief's newest loadable checkpoint (others' are scratch)
        used = restore_newest_loadable(ckpt, ckpt_dir)
        start = int(step_var.numpy())
        if verbose:
            print(f"resuming from {used} at step {start}/{total}", flush=True)
    manager = tf.train.CheckpointManager(ckpt, str(ckpt_path), max_to_keep=3)

    cache = tc.cache if tc.cache is not None else (tc.dataset == "synthetic")
    # A different seed stream after a resume, so the resumed part does not replay batches.
    data = make_train_dataset(
        train_ds, crop_size=model_config.input_size, batch_size=tc.batch_size,
        seed=int(tc.seed) + 1_000_003 * start, min_scale=tc.min_scale,
        max_scale=tc.max_scale, flip=tc.flip, cache=cache)
    opts = tf.data.Options()
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    data = data.with_options(opts)
    dist_data = iter(strategy.experimental_distribute_dataset(data))
    # A separate, undistributed stream for BatchNorm re-estimation at validation time.
    recal_data = make_train_dataset(
        train_ds, crop_size=model_config.input_size, batch_size=tc.batch_size,
        seed=int(tc.seed) + 7, min_scale=tc.min_scale, max_scale=tc.max_scale,
        flip=tc.flip, cache=False)
    train_step = make_train_step(model, optimizer, strategy, step_var, tc.weight_decay)

    writer = tf.summary.create_file_writer(str(out / "logs")) if chief else \
        tf.summary.create_noop_writer()
    progbar = progress(total, "train", stateful_metrics=["loss", "lr", "val_miou"]) if verbose else None
    if progbar is not None and start:
        progbar.update(start)
    t0 = time.time()
    last_eval_step = -1
    final_metrics = None
    loss_ema = None
    loss_history = []  # [step, loss] at the TensorBoard points, also in train_result.json
    step = start

    def validate(step_now):
        nonlocal final_metrics, last_eval_step
        if val_ds is None:
            return None
        if tc.recalibrate_batches:
            recalibrate_batchnorm(model, (x for x, _ in recal_data.take(tc.recalibrate_batches)))
        res = evaluate_model(model, val_ds, model_config.input_size,
                             batch_size=tc.eval_batch_size, max_images=tc.val_max_images)
        final_metrics, last_eval_step = res, step_now
        with writer.as_default():
            summary_scalar("val/miou", res["miou"], step_now)
        if res["miou"] > float(best_miou.numpy()):
            best_miou.assign(res["miou"])
            best_step.assign(step_now)
            _write_model(model, out / "model.keras", model_config, scratch,
                         val_miou=res["miou"], step=step_now)
        return res

    while step < total:
        loss = float(train_step(dist_data).numpy())
        step = int(step_var.numpy())
        if not math.isfinite(loss):
            raise EdgeDeeplabError(
                f"training diverged at step {step} (loss {loss}); lower --lr")
        loss_ema = loss if loss_ema is None else 0.95 * loss_ema + 0.05 * loss
        values = [("loss", loss_ema), ("lr", float(schedule(step)))]
        if step % tc.log_every == 0 or step == total:
            loss_history.append([step, loss])
            with writer.as_default():
                summary_scalar("train/loss", loss, step)
                summary_scalar("train/lr", float(schedule(step)), step)
        if step % tc.checkpoint_every == 0 or step == total:
            res = validate(step)
            if res is not None:
                values.append(("val_miou", res["miou"]))
            manager.save(checkpoint_number=step)
            if verbose:
                msg = f"step {step}/{total}: loss {loss_ema:.4f}"
                if res is not None:
                    msg += f", val mIoU {res['miou']:.4f} (best {float(best_miou.numpy()):.4f})"
                progbar.message(f"{msg}; checkpoint saved")  # its own line, bar or log
        if progbar is not None:
            progbar.update(step, values)
    writer.flush()
    train_seconds = time.time() - t0

    if val_ds is not None and last_eval_step != step:
        validate(step)
    _write_model(model, out / "last.keras", model_config, scratch, step=step)
    if val_ds is None or float(best_miou.numpy()) < 0 or not (out / "model.keras").is_file():
        _write_model(model, out / "model.keras", model_config, scratch, step=step)
    if float(best_miou.numpy()) >= 0:
        manager.save(checkpoint_number=step)  # persists best_miou for a later --resume

    best = float(best_miou.numpy())
    result = {
        "total_steps": total,
        "start_step": start,
        "final_step": step,
        "resumed": bool(start),
        "best_miou": best if best >= 0 else None,
        "best_step": int(best_step.numpy()) if best >= 0 else None,
        "final_miou": final_metrics["miou"] if final_metrics else None,
        "per_class_iou": final_metrics.get("per_class_iou") if final_metrics else None,
        "labels": list(model_config.resolved_labels()),
        "train_seconds": round(train_seconds, 2),
        "steps_per_second": round((step - start) / train_seconds, 3) if train_seconds > 0 else None,
        "num_replicas": n_rep,
        "final_loss": loss_history[-1][1] if loss_history else None,
        "loss_history": loss_history,
        "strategy": tc.strategy,
        "model_path": str(out / "model.keras"),
        "last_path": str(out / "last.keras"),
    }
    if chief:
        write_json_atomic(out / "train_result.json", result)
        mark_complete(out, {"command": "train", "total_steps": total, "final_step": step,
                            "best_miou": result["best_miou"],
                            "model_sha256": file_sha256(out / "model.keras")})
    return result


def finished_evidence(out) -> Optional[str]:
    """What makes ``out`` a run that a fresh ``train`` must not overwrite (one phrase), or None."""
    out = Path(out)
    if has_checkpoint_files(out / "checkpoints"):
        return "already has checkpoints"
    if read_complete(out) is not None:
        return "is a finished run"
    for name in ("model.keras", "last.keras"):
        if (out / name).is_file():
            return f"already has a trained model ({name})"
    return None


def check_run_state(out, *, resume: bool, force: bool, announce: bool = False,
                    multiworker: bool = False) -> None:
    """The run-folder transitions ``train`` allows (see :mod:`edge_deeplab.core.run_state`).

    Fresh training into a folder with checkpoints, a model or a ``complete`` marker is refused
    unless ``force`` (which moves the old contents into ``RUN/previous-N/`` when ``announce`` is
    set, i.e. under the lock); ``resume`` needs a checkpoint.

    Args:
        out: the run folder.
        resume: ``--resume``.
        force: ``--force``.
        announce: act (set the old run aside) rather than only check.
        multiworker: a ``multiworker`` run, whose chief holds the lock for every worker.

    Example:
        >>> import tempfile
        >>> check_run_state(tempfile.mkdtemp(), resume=False, force=False)  # an empty folder is fine
    """
    out = Path(out)
    if resume and force:
        raise EdgeDeeplabError("--resume continues a run and --force retrains it: give one")
    if not announce and not multiworker:  # (a multiworker chief holds it for its workers)
        require_unlocked(out)
    if resume:
        require_resumable(out, out / "checkpoints")
        return
    why = finished_evidence(out)
    if why is None:
        return
    if not force:
        raise EdgeDeeplabError(
            f"{out} {why}; pass --resume to continue it, --force to retrain (the old run is kept "
            f"in {out}/previous-N), or choose a new --out")
    if announce:
        aside = set_aside(out)
        print(f"note: --force: the previous run was moved to {aside}", file=sys.stderr, flush=True)


def _with_absolute_data_dir(tc: TrainConfig) -> TrainConfig:
    """``tc`` with ``data_dir`` absolute (the synthetic default spelled out), so the run directory
    records where its data is, whatever the directory QAT, eval or export run from later."""
    tc.validate()
    if tc.data_dir is not None:
        data_dir = Path(tc.data_dir).expanduser().resolve()
    elif tc.dataset == "synthetic":
        from edge_deeplab.data.synthetic import default_data_dir

        data_dir = default_data_dir().resolve()
    else:
        return tc
    return dataclasses.replace(tc, data_dir=str(data_dir))


def _with_labels(config: ModelConfig, labels) -> ModelConfig:
    if config.labels is not None or labels is None:
        return config
    if len(labels) != config.num_classes:
        return config
    return dataclasses.replace(config, labels=tuple(labels))


def model_config_for_dataset(config: ModelConfig, tc: TrainConfig) -> ModelConfig:
    """``config`` with the class count of ``tc``'s training split (labels kept when they fit)."""
    from edge_deeplab.data import load_dataset

    ds = load_dataset(tc.dataset, tc.data_dir, tc.split, binary=tc.binary, skip_bad=tc.skip_bad,
                      classes=tc.classes, num_classes=tc.num_classes)
    labels = config.labels if config.labels and len(config.labels) == ds.num_classes else None
    return dataclasses.replace(config, num_classes=ds.num_classes, labels=labels)
