"""Optimizers and learning-rate schedules with the seed's recipe (official/nlp/optimization.py).

Learning rate: linear warm-up from 0 to init_lr over num_warmup_steps, then
polynomial (power 1: linear) decay from init_lr to end_lr at num_train_steps,
the decay measured from step 0 as in the seed. Example with init_lr=1e-4,
10 warm-up steps, 100 steps: step 5 -> 5e-5, step 10 -> 9e-5, step 100 -> end_lr.

Optimizers (Keras 3): AdamW (beta 0.9/0.999, epsilon 1e-6, decoupled weight
decay 0.01) or LAMB, weight decay skipped for LayerNorm and bias variables,
AdamW's gradients clipped to a global norm of 1.0 (global_clipnorm). The seed's
AdamWeightDecay is Adam with bias correction plus lr * 0.01 * w decay: Keras 3's
AdamW is the same update. The seed's LAMB is TensorFlow Addons' (SeedLamb
below), which Keras 3's Lamb is not. For fp16, wrap with
keras.optimizers.LossScaleOptimizer (dynamic).
"""

from __future__ import annotations

import re

import keras
import tensorflow as tf

EXCLUDE_FROM_WEIGHT_DECAY = ("LayerNorm", "layer_norm", "bias")


@keras.saving.register_keras_serializable(package="pybert")
class WarmUpPolynomialDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to init_lr, then polynomial decay to end_lr at decay_steps."""

    def __init__(self, init_lr: float, decay_steps: int, warmup_steps: int = 0,
                 end_lr: float = 0.0, power: float = 1.0):
        if decay_steps < 1:
            raise ValueError(f"decay_steps (num_train_steps) must be >= 1, got {decay_steps}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.init_lr = float(init_lr)
        self.decay_steps = int(decay_steps)
        self.warmup_steps = int(warmup_steps)
        self.end_lr = float(end_lr)
        self.power = float(power)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        frac = 1.0 - tf.minimum(step, float(self.decay_steps)) / float(self.decay_steps)
        decayed = (self.init_lr - self.end_lr) * tf.pow(frac, self.power) + self.end_lr
        if self.warmup_steps == 0:
            return decayed
        warm = self.init_lr * step / float(self.warmup_steps)
        return tf.where(step < float(self.warmup_steps), warm, decayed)

    def get_config(self):
        return {"init_lr": self.init_lr, "decay_steps": self.decay_steps,
                "warmup_steps": self.warmup_steps, "end_lr": self.end_lr, "power": self.power}


@keras.saving.register_keras_serializable(package="pybert")
class SeedLamb(keras.optimizers.Lamb):
    """LAMB as the seed runs it (TensorFlow Addons' LAMB with
    exclude_from_weight_decay=["LayerNorm", "layer_norm", "bias"]), on Keras 3's Lamb:

        update = m_hat / (sqrt(v_hat) + epsilon) + weight_decay * w   (decayed variables)
        w -= lr * ratio * update,  ratio = ||w|| / ||update||        (1 if either is 0)

    The weight decay is part of the update and so of the trust ratio's norm, and the
    variables excluded from weight decay (LayerNorm, bias) also get ratio 1 (Addons'
    exclude_from_layer_adaptation defaults to the weight-decay exclusions). An
    embedding's sparse gradient is summed per row first. Keras 3's Lamb instead decays
    the variables not excluded by lr * weight_decay * w outside the update, applies the
    trust ratio to every variable and updates sparse rows one use at a time. The slots
    (momentum, velocity) are Keras 3's, so checkpoints of either class load into the
    other.
    """

    def _apply_weight_decay(self, variables):
        return  # inside update_step

    def update_step(self, gradient, variable, learning_rate):
        from keras import ops

        if isinstance(gradient, tf.IndexedSlices):
            # an embedding's gradient lists a row once per use: summed first, as TensorFlow
            # does for Addons' LAMB (whose sparse path also decays m and v in every row)
            gradient = tf.convert_to_tensor(gradient)
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        step = ops.cast(self.iterations + 1, variable.dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        m_hat = ops.divide(m, 1.0 - ops.power(ops.cast(self.beta_1, variable.dtype), step))
        v_hat = ops.divide(v, 1.0 - ops.power(ops.cast(self.beta_2, variable.dtype), step))
        update = ops.divide(m_hat, ops.add(ops.sqrt(v_hat), self.epsilon))
        adapt = self._use_weight_decay(variable)  # the exclusions hold for both
        if adapt and self.weight_decay:
            update = ops.add(update, ops.multiply(
                ops.cast(self.weight_decay, variable.dtype), variable))
        if adapt:
            w_norm = ops.sqrt(ops.sum(ops.square(variable)))
            u_norm = ops.sqrt(ops.sum(ops.square(update)))
            ratio = ops.where(ops.greater(w_norm, 0),
                              ops.where(ops.greater(u_norm, 0), w_norm / u_norm, 1.0), 1.0)
            update = ops.multiply(ratio, update)
        self.assign_sub(variable, ops.multiply(lr, update))


def create_optimizer(
    init_lr: float,
    num_train_steps: int,
    num_warmup_steps: int,
    end_lr: float = 0.0,
    optimizer_type: str = "adamw",
    weight_decay: float = 0.01,
    global_clipnorm: float | None | str = "auto",
    num_accumulation_steps: int = 1,
    use_loss_scale: bool = False,
    variables=None,
) -> keras.optimizers.Optimizer:
    """The seed's create_optimizer on Keras 3 (optimizer_type "adamw" or "lamb").

    variables: the model's trainable variables. Weight decay is skipped for those whose
    path matches LayerNorm / layer_norm / bias (Keras matches `var_names` against the
    short name only, "gamma", so the exclusion is done by variable here).
    global_clipnorm "auto": as the seed's optimizers, 1.0 for AdamW (its AdamWeightDecay
    clips) and none for LAMB (Addons' does not).
    """
    if global_clipnorm == "auto":
        global_clipnorm = 1.0 if optimizer_type == "adamw" else None
    schedule = WarmUpPolynomialDecay(init_lr, num_train_steps, num_warmup_steps, end_lr)
    common = dict(
        learning_rate=schedule, beta_1=0.9, beta_2=0.999, epsilon=1e-6,
        weight_decay=weight_decay, global_clipnorm=global_clipnorm,
        gradient_accumulation_steps=num_accumulation_steps if num_accumulation_steps > 1 else None,
    )
    if optimizer_type == "adamw":
        opt = keras.optimizers.AdamW(**common)
    elif optimizer_type == "lamb":
        opt = SeedLamb(**common)
    else:
        raise ValueError(f"optimizer_type must be 'adamw' or 'lamb', got {optimizer_type!r}")
    if variables is not None:
        pattern = re.compile("|".join(EXCLUDE_FROM_WEIGHT_DECAY))
        excluded = [v for v in variables if pattern.search(v.path)]
        opt.exclude_from_weight_decay(var_list=excluded)
    else:
        opt.exclude_from_weight_decay(var_names=list(EXCLUDE_FROM_WEIGHT_DECAY))
    if use_loss_scale:
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt
