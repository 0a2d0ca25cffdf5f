"""Distillation: train a student DeepLab on a teacher's cached soft labels.

``distill_train(model_config, train_config, run_dir)`` trains into a run directory laid out like
:func:`edge_deeplab.training.train.train`'s (``model.keras`` best by held-out mIoU against the
teacher, ``last.keras``, ``checkpoints/``, ``logs/``, ``train_config.json``,
``train_result.json``), so ``qat RUN``, ``export`` and ``eval`` take it as they take a ``train``
run. The data is the soft-label store ``RUN/labels`` (:mod:`edge_deeplab.data.soft_labels`), which
``train_config.json`` records as a ``folder`` dataset (QAT fine-tunes on the teacher's hard labels).

Loss, per pixel, averaged over the pixels that came from a frame (padding is ignored):

* the soft-target cross-entropy ``-T^2 sum_c q_c log softmax(z / T)_c`` with the teacher's
  probabilities ``q`` sharpened or softened by the temperature ``T`` (``q_c^(1/T)``, renormalized):
  for a sigmoid teacher mapped to two classes this is exactly the binary cross-entropy of the
  student's person logit ``z_1 - z_0`` against the teacher's probability (``T`` = 1); for a softmax
  teacher it is the KL divergence with temperature plus the teacher's (constant) entropy;
* plus ``hard_weight`` x the cross-entropy against the teacher's argmax (0 by default);
* plus L2 weight decay on the conv kernels.

Augmentation made for portraits (:func:`augment_batch`): random scale, crop and flip; colour,
contrast, saturation and exposure jitter; blur and noise; and copy-paste compositing: the teacher's
person (its soft mask as alpha) from another frame pasted onto a frame, the target composited the
same way, so one clip yields many scenes.

The loop reuses ``train.py``'s strategy, checkpoint, resume and BatchNorm re-estimation machinery;
``--resume`` continues from the newest loadable checkpoint and never restarts silently.

Example:
    >>> from edge_deeplab.model.config import ModelConfig, TrainConfig                      # doctest: +SKIP
    >>> mc = ModelConfig(input_size=128, num_classes=2, alpha=0.35,
    ...                  labels=("background", "person"))                                 # doctest: +SKIP
    >>> tc = TrainConfig(dataset="folder", data_dir="run/labels", steps=800)               # doctest: +SKIP
    >>> distill_train(mc, tc, "run")["best_miou"]                                           # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Optional

import numpy as np

from edge_deeplab.core.atomic_io import write_json_atomic
from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.data.soft_labels import SoftLabelStore
from edge_deeplab.model.config import ModelConfig, TrainConfig


@dataclasses.dataclass(frozen=True)
class DistillOptions:
    """What distillation adds to :class:`TrainConfig`.

    Args:
        temperature: softens (> 1) or sharpens (< 1) the teacher's probabilities.
        hard_weight: weight of the cross-entropy against the teacher's argmax (0: soft only).
        copy_paste: probability that a training example gets another frame's person pasted in.
        jitter: strength of colour/exposure jitter, blur and noise (0: off).
    """

    temperature: float = 1.0
    hard_weight: float = 0.0
    copy_paste: float = 0.5
    jitter: float = 1.0

    def validate(self) -> None:
        if not self.temperature > 0:
            raise EdgeDeeplabError(f"temperature must be > 0, got {self.temperature}")
        for name in ("hard_weight", "copy_paste"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise EdgeDeeplabError(f"{name.replace('_', '-')} must be in [0, 1], got {v}")
        if self.jitter < 0:
            raise EdgeDeeplabError(f"jitter must be >= 0, got {self.jitter}")


#: Frames are stretched to the student's input (:func:`load_split`); the saved model's metadata says
#: so (``input_geometry``), so its exports get stretched frames everywhere (eval, bench, demo).
GEOMETRY = "stretch"


def load_split(store: SoftLabelStore, split: str, size) -> tuple:
    """``(images uint8 (N, h, w, 3), soft uint8 (N, h, w, C), stems)`` of ``split`` at ``size``."""
    import cv2

    h, w = size
    stems = store.stems(split)
    images = np.zeros((len(stems), h, w, 3), np.uint8)
    soft = None
    for i, stem in enumerate(stems):
        images[i] = cv2.resize(store.read_image(stem), (w, h), interpolation=cv2.INTER_AREA)
        s = cv2.resize(store.read_soft(stem), (w, h), interpolation=cv2.INTER_LINEAR)
        s = s.reshape(h, w, -1)
        if soft is None:
            soft = np.zeros((len(stems), h, w, s.shape[-1]), np.uint8)
        soft[i] = s
    return images, soft, stems


def augment_example(image, soft, seed, *, size, min_scale, max_scale, flip, jitter):
    """One example: uint8 image and soft labels -> float [0, 1] image, float targets, pixel weight.

    Random scale (then pad and crop back to ``size``), flip; colour/contrast/saturation/exposure
    jitter, blur and noise scaled by ``jitter``. Padding gets weight 0.
    """
    from edge_deeplab.core._tf import tf

    h, w = size
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 12)
    img = tf.cast(image, tf.float32) / 255.0
    tgt = tf.cast(soft, tf.float32) / 255.0
    wgt = tf.ones((h, w, 1), tf.float32)
    s = tf.random.stateless_uniform((), seeds[0], minval=min_scale, maxval=max_scale)
    nh = tf.maximum(1, tf.cast(tf.round(h * s), tf.int32))
    nw = tf.maximum(1, tf.cast(tf.round(w * s), tf.int32))
    stack = tf.image.resize(tf.concat([img, tgt, wgt], -1), (nh, nw), method="bilinear")
    ph, pw = tf.maximum(h - nh, 0), tf.maximum(w - nw, 0)
    oy0 = tf.random.stateless_uniform((), seeds[1], 0, ph + 1, dtype=tf.int32)
    ox0 = tf.random.stateless_uniform((), seeds[2], 0, pw + 1, dtype=tf.int32)
    stack = tf.pad(stack, [[oy0, ph - oy0], [ox0, pw - ox0], [0, 0]])
    hh, ww = nh + ph, nw + pw
    oy = tf.random.stateless_uniform((), seeds[3], 0, hh - h + 1, dtype=tf.int32)
    ox = tf.random.stateless_uniform((), seeds[4], 0, ww - w + 1, dtype=tf.int32)
    stack = stack[oy:oy + h, ox:ox + w]
    if flip:
        stack = tf.cond(tf.random.stateless_uniform((), seeds[5]) < 0.5,
                        lambda: tf.reverse(stack, [1]), lambda: stack)
    c = int(soft.shape[-1])
    img, tgt, wgt = stack[..., :3], stack[..., 3:3 + c], stack[..., 3 + c:]
    if jitter:
        j = float(jitter)
        img = tf.image.stateless_random_brightness(img, 0.15 * j, seeds[6])
        img = tf.image.stateless_random_contrast(img, 1 - 0.3 * j, 1 + 0.3 * j, seeds[7])
        img = tf.image.stateless_random_saturation(img, max(0.0, 1 - 0.4 * j), 1 + 0.4 * j, seeds[8])
        gamma = tf.exp(tf.random.stateless_uniform((), seeds[9], -0.3 * j, 0.3 * j))
        img = tf.clip_by_value(img, 0.0, 1.0) ** gamma
        blurred = tf.nn.avg_pool2d(img[None], 3, 1, "SAME")[0]
        img = tf.cond(tf.random.stateless_uniform((), seeds[10]) < 0.2 * min(j, 1.0),
                      lambda: blurred, lambda: img)
        sigma = tf.random.stateless_uniform((), seeds[11], 0.0, 0.03 * j)
        img = img + sigma * tf.random.stateless_normal(tf.shape(img), seeds[11] + 1)
    img = tf.clip_by_value(img, 0.0, 1.0)
    tgt = tgt / tf.maximum(tf.reduce_sum(tgt, -1, keepdims=True), 1e-6)
    img.set_shape((h, w, 3))
    tgt.set_shape((h, w, c))
    wgt.set_shape((h, w, 1))
    return img, tgt, wgt


def copy_paste(img, tgt, wgt, seed, *, person: int, rate: float):
    """Pastes each batch item's neighbour's person (teacher soft mask as alpha) onto it with
    probability ``rate``; targets are composited with the same alpha."""
    from edge_deeplab.core._tf import tf

    if rate <= 0:
        return img, tgt, wgt
    src_img, src_tgt, src_w = (tf.roll(t, 1, axis=0) for t in (img, tgt, wgt))
    alpha = src_tgt[..., person:person + 1] * src_w
    n = tf.shape(img)[0]
    on = tf.cast(tf.random.stateless_uniform((n, 1, 1, 1), seed) < rate, tf.float32)
    alpha = alpha * on
    onehot = tf.one_hot(person, tgt.shape[-1], dtype=tf.float32)
    img = alpha * src_img + (1 - alpha) * img
    tgt = alpha * onehot + (1 - alpha) * tgt
    wgt = tf.maximum(wgt, alpha)
    return img, tgt, wgt


def make_distill_dataset(images, soft, *, size, batch_size, seed, min_scale, max_scale, flip,
                         jitter, person: Optional[int], copy_rate: float):
    """The infinite training stream: ``(normalized images, targets, weights)`` batches."""
    from edge_deeplab.core._tf import tf
    from edge_deeplab.data.pipeline import normalize

    n = len(images)
    ds = tf.data.Dataset.from_tensor_slices((images, soft)).repeat().shuffle(
        min(n, 1024), seed=seed)
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    ds = tf.data.Dataset.zip((ds, seeds)).map(
        lambda item, s: augment_example(item[0], item[1], s, size=size, min_scale=min_scale,
                                        max_scale=max_scale, flip=flip, jitter=jitter),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=True)
    bseeds = tf.data.Dataset.random(seed=seed + 1).batch(2)

    def finish(batch, s):
        img, tgt, wgt = batch
        if person is not None:
            img, tgt, wgt = copy_paste(img, tgt, wgt, s, person=person, rate=copy_rate)
        return normalize(img * 255.0), tgt, wgt

    return tf.data.Dataset.zip((ds, bseeds)).map(finish).prefetch(2)


def soft_target_loss(logits, targets, weights, temperature: float = 1.0, hard_weight: float = 0.0):
    """Mean per-pixel distillation loss over weighted pixels (see the module docstring).

    Example:
        >>> from edge_deeplab.core._tf import tf
        >>> z = tf.constant([[[[0.0, 0.0]]]]); q = tf.constant([[[[0.5, 0.5]]]])
        >>> round(float(soft_target_loss(z, q, tf.ones((1, 1, 1, 1)))), 4)  # ln 2
        0.6931
    """
    from edge_deeplab.core._tf import tf

    t = float(temperature)
    z = tf.cast(logits, tf.float32)
    q = targets
    if t != 1.0:
        q = tf.nn.softmax(tf.math.log(tf.maximum(q, 1e-6)) / t, axis=-1)
    logp = tf.nn.log_softmax(z / t, axis=-1)
    per = -tf.reduce_sum(q * logp, -1) * (t * t)
    if hard_weight:
        hard = tf.argmax(targets, -1)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=hard, logits=z)
        per = (1 - hard_weight) * per + hard_weight * ce
    w = weights[..., 0]
    return tf.reduce_sum(per * w) / tf.maximum(tf.reduce_sum(w), 1.0)


def score_against_teacher(predict, images, soft, num_classes, labels, batch_size: int = 16) -> dict:
    """``ConfusionMatrix.result()`` of the student's argmax against the teacher's argmax."""
    from edge_deeplab.data.pipeline import normalize
    from edge_deeplab.metrics import ConfusionMatrix

    cm = ConfusionMatrix(num_classes, labels=labels)
    for i in range(0, len(images), batch_size):
        pred = predict(normalize(images[i:i + batch_size])).numpy()
        cm.update(pred, np.argmax(soft[i:i + batch_size], -1))
    return cm.result()


def distill_train(model_config: ModelConfig, train_config: TrainConfig, out_dir, *,
                  options: DistillOptions = DistillOptions(), resume: bool = False,
                  verbose: int = 1, extra_config: Optional[dict] = None) -> dict:
    """Trains a student on ``RUN/labels`` into the run directory ``out_dir``.

    Args:
        model_config: the student (its ``labels`` are the store's classes).
        train_config: the recipe; ``data_dir`` must be the soft-label store.
        out_dir: the run directory.
        options: :class:`DistillOptions`.
        resume: continue from ``RUN/checkpoints``; without it, existing checkpoints are an error.
        verbose: 1 for progress lines.
        extra_config: more to record under ``distill`` in ``train_config.json`` (teacher, sources).

    Returns:
        The ``train_result.json`` dict (``best_miou``, ``best_person_iou``, ``final_step`` ...).
    """
    from edge_deeplab.core._tf import keras, tf
    from edge_deeplab.model.model_io import save_model
    from edge_deeplab.training.train import (
        build_training_state,
        has_checkpoint_files,
        make_predict_step,
        make_strategy,
        make_train_step,
        recalibrate_batchnorm,
        require_resumable,
        restore_newest_loadable,
        summary_scalar,
    )

    options.validate()
    tc = train_config
    tc.validate()
    out = Path(out_dir)
    ckpt_dir = out / "checkpoints"
    if resume:
        require_resumable(out, ckpt_dir)
    elif has_checkpoint_files(ckpt_dir):
        raise EdgeDeeplabError(
            f"{out} already has checkpoints; pass --resume to continue or choose a new --out")
    store = SoftLabelStore(tc.data_dir)
    if store.load() is None or not store.complete:
        raise EdgeDeeplabError(f"no complete soft labels in {tc.data_dir}; run the labelling pass first")
    classes = list(store.manifest["classes"])
    if model_config.num_classes != len(classes):
        raise EdgeDeeplabError(f"student has {model_config.num_classes} classes, labels {len(classes)}")
    model_config = dataclasses.replace(model_config, labels=tuple(classes))
    size = model_config.input_size
    images, soft, _ = load_split(store, "train", size)
    if len(images) < tc.batch_size:
        raise EdgeDeeplabError(
            f"{len(images)} training frame(s) are fewer than a batch ({tc.batch_size}); add frames "
            f"or lower --batch-size")
    val_images, val_soft, _ = load_split(store, "val", size)
    person = next((i for i, c in enumerate(classes) if c.lower() == "person"), None)
    total = int(tc.steps)

    keras.utils.set_random_seed(int(tc.seed))
    strategy = make_strategy(tc.strategy)
    if tc.batch_size % strategy.num_replicas_in_sync:
        raise EdgeDeeplabError(f"batch size {tc.batch_size} is not divisible by the "
                               f"{strategy.num_replicas_in_sync} replicas")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "train_config.json", {
        "model": model_config.to_dict(), "train": tc.to_dict(), "total_steps": total,
        "distill": {**dataclasses.asdict(options), **(extra_config or {})}})

    model, optimizer, _, step_var, best_miou, best_step, ckpt = build_training_state(
        model_config, tc, total, strategy)
    start = 0
    if resume:
        used = restore_newest_loadable(ckpt, ckpt_dir)
        start = int(step_var.numpy())
        if verbose:
            print(f"resuming from {used} at step {start}/{total}", flush=True)
    manager = tf.train.CheckpointManager(ckpt, str(ckpt_dir), max_to_keep=3)

    def stream(seed):
        return make_distill_dataset(
            images, soft, size=size, batch_size=tc.batch_size, seed=seed,
            min_scale=tc.min_scale, max_scale=tc.max_scale, flip=tc.flip, jitter=options.jitter,
            person=person, copy_rate=options.copy_paste)

    data = iter(strategy.experimental_distribute_dataset(stream(int(tc.seed) + 1_000_003 * start)))
    recal = stream(int(tc.seed) + 7)
    train_step = make_train_step(
        model, optimizer, strategy, step_var, tc.weight_decay,
        loss=lambda logits, q, w: soft_target_loss(logits, q, w, options.temperature,
                                                   options.hard_weight))
    predict = make_predict_step(model)
    writer = tf.summary.create_file_writer(str(out / "logs"))
    final = None
    history = []

    def validate(step_now):
        nonlocal final
        if not len(val_images):
            return None
        if tc.recalibrate_batches:
            recalibrate_batchnorm(model, (x for x, _, _ in recal.take(tc.recalibrate_batches)))
        res = score_against_teacher(predict, val_images, val_soft, len(classes), classes,
                                    batch_size=tc.eval_batch_size)
        final = res
        with writer.as_default():
            summary_scalar("val/miou", res["miou"], step_now)
        if res["miou"] > float(best_miou.numpy()):
            best_miou.assign(res["miou"])
            best_step.assign(step_now)
            save_model(model, out / "model.keras", model_config, val_miou=res["miou"], step=step_now,
                       input_geometry=GEOMETRY)
        return res

    t0 = time.time()
    step = start
    last_eval = -1
    while step < total:
        loss = float(train_step(data).numpy())
        step = int(step_var.numpy())
        if not math.isfinite(loss):
            raise EdgeDeeplabError(f"distillation diverged at step {step} (loss {loss}); lower --lr")
        if step % tc.log_every == 0 or step == total:
            history.append([step, loss])
            with writer.as_default():
                summary_scalar("train/loss", loss, step)
        if step % tc.checkpoint_every == 0 or step == total:
            res = validate(step)
            last_eval = step
            manager.save(checkpoint_number=step)
            if verbose:
                msg = f"step {step}/{total}: loss {loss:.4f}"
                if res is not None:
                    msg += f", held-out mIoU vs teacher {res['miou']:.4f}"
                print(msg, flush=True)
    writer.flush()
    seconds = time.time() - t0
    if last_eval != step:
        validate(step)
    save_model(model, out / "last.keras", model_config, step=step, input_geometry=GEOMETRY)
    if float(best_miou.numpy()) < 0 or not (out / "model.keras").is_file():
        save_model(model, out / "model.keras", model_config, step=step, input_geometry=GEOMETRY)
    manager.save(checkpoint_number=step)
    best = float(best_miou.numpy())
    per_class = (final or {}).get("per_class_iou")
    result = {
        "total_steps": total, "start_step": start, "final_step": step, "resumed": bool(start),
        "best_miou": best if best >= 0 else None,
        "best_step": int(best_step.numpy()) if best >= 0 else None,
        "final_miou": final["miou"] if final else None, "per_class_iou": per_class,
        "labels": classes, "train_frames": int(len(images)), "val_frames": int(len(val_images)),
        "train_seconds": round(seconds, 2), "final_loss": history[-1][1] if history else None,
        "loss_history": history, "model_path": str(out / "model.keras"),
        "last_path": str(out / "last.keras"),
    }
    write_json_atomic(out / "train_result.json", result)
    return result


def read_distill_config(run_dir) -> Optional[dict]:
    """The ``distill`` record of ``RUN/train_config.json``, or None (not a distill run)."""
    p = Path(run_dir) / "train_config.json"
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text()).get("distill")
    except ValueError:
        return None


def check_run_dir(run_dir, resume: bool = False) -> str:
    """Checks ``--out`` before any long work; returns ``new``, ``labelled`` or ``trained``.

    A directory that holds something other than a distill run (a ``train`` run, other files) is
    refused; so is a distill run with checkpoints without ``resume`` (nothing finished is
    overwritten) and ``resume`` of a run that does not exist.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> check_run_dir(d / "new")
        'new'
        >>> _ = (d / "notes.txt").write_text("mine")
        >>> check_run_dir(d)
        Traceback (most recent call last):
        ...
        edge_deeplab.core.errors.EdgeDeeplabError: --out ... holds files that are not a distill run (notes.txt); choose a new --out
    """
    from edge_deeplab.training.train import has_checkpoint_files

    out = Path(run_dir)
    contents = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if out.exists() and not out.is_dir():
        raise EdgeDeeplabError(f"--out {out} is a file, not a run directory")
    if not contents:
        if resume:
            raise EdgeDeeplabError(f"--resume: run directory {out} does not exist or is empty; "
                                   f"start without --resume")
        return "new"
    labelled = (out / "labels" / "manifest.json").is_file()
    if not labelled and read_distill_config(out) is None:
        shown = ", ".join(contents[:4]) + (" ..." if len(contents) > 4 else "")
        raise EdgeDeeplabError(f"--out {out} holds files that are not a distill run ({shown}); "
                               f"choose a new --out")
    trained = has_checkpoint_files(out / "checkpoints")
    if trained and not resume:
        raise EdgeDeeplabError(
            f"{out} already has checkpoints; pass --resume to continue or choose a new --out")
    return "trained" if trained else "labelled"
