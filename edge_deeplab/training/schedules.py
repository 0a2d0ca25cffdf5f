"""Learning-rate schedules.

DeepLab's "poly" policy: ``lr(step) = (base - end) * (1 - step / total) ** power + end`` with
``power = 0.9``, optionally after a linear warm-up, held at ``end`` past ``total``.

Example:
    >>> s = PolyDecay(0.01, total_steps=100)
    >>> round(float(s(0)), 6), round(float(s(50)), 6), float(s(100)), float(s(1000))
    (0.01, 0.005359, 0.0, 0.0)
"""

from __future__ import annotations

from edge_deeplab.core._tf import keras, tf


@keras.utils.register_keras_serializable(package="edge_deeplab")
class PolyDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Poly learning-rate decay with optional linear warm-up.

    Args:
        initial_learning_rate: the learning rate at the end of warm-up (and at step 0 without).
        total_steps: steps after which the rate reaches ``end_learning_rate``.
        power: the poly exponent (DeepLab: 0.9).
        end_learning_rate: the floor.
        warmup_steps: linear warm-up from ``initial / 10`` over this many steps (0 for none).
    """

    def __init__(self, initial_learning_rate: float, total_steps: int, power: float = 0.9,
                 end_learning_rate: float = 0.0, warmup_steps: int = 0, name: str = "PolyDecay"):
        super().__init__()
        self.initial_learning_rate = float(initial_learning_rate)
        self.total_steps = max(1, int(total_steps))
        self.power = float(power)
        self.end_learning_rate = float(end_learning_rate)
        self.warmup_steps = max(0, int(warmup_steps))
        self.name = name

    def __call__(self, step):
        with tf.name_scope(self.name):
            step = tf.cast(step, tf.float32)
            frac = tf.clip_by_value(step / float(self.total_steps), 0.0, 1.0)
            lr = ((self.initial_learning_rate - self.end_learning_rate) * (1.0 - frac) ** self.power
                  + self.end_learning_rate)
            if self.warmup_steps:
                w = tf.minimum(step / float(self.warmup_steps), 1.0)
                lr = lr * (0.1 + 0.9 * w)
            return lr

    def get_config(self):
        return dict(initial_learning_rate=self.initial_learning_rate, total_steps=self.total_steps,
                    power=self.power, end_learning_rate=self.end_learning_rate,
                    warmup_steps=self.warmup_steps, name=self.name)
