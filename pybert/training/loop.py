"""The custom training loop: steps_per_loop steps per tf.function call, under any strategy.

    trainer = Trainer(strategy, model_fn, loss_fn, optimizer_fn, TrainerConfig(model_dir, ...))
    trainer.restore_or_initialize(init_checkpoint)      # resumes from model_dir when it can
    trainer.train(train_dataset_fn, eval_dataset_fn, metric_fns)

What it guarantees:
  * Checkpoints (model, optimizer, global step, dropout RNG state) every
    save_checkpoint_steps and at the end, with a tf.train.CheckpointManager in
    model_dir, named ctl_step-<step> (the seed's loop writes ctl_step_<step>.ckpt-1), all
    kept unless max_checkpoints says otherwise (the seed keeps all). A rerun of the same command
    resumes from the latest one: the input pipeline is skipped forward to the
    same batch, so a killed and resumed run ends with the weights an
    uninterrupted run reaches (bit for bit with deterministic ops).
  * A finished model_dir (training_summary.json) is not trained again: as in the
    seed's loop, a rerun restores its last checkpoint, skips the training (and
    evaluates once more), and the command goes on to what follows it (predict,
    export). overwrite=True clears it and trains from scratch.
  * Logs every loop: step, loss, learning rate, steps/s, examples/s, ETA; the
    same as TensorBoard scalars in model_dir/summaries/{train,eval}.
  * Per-replica loss is averaged over the global batch (divided by the number
    of replicas, gradients summed), so results do not depend on the replica count.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import keras
import tensorflow as tf

logger = logging.getLogger("pybert.training")

SUMMARY_FILE = "training_summary.json"


@dataclass
class TrainerConfig:
    model_dir: str
    steps_per_epoch: int
    epochs: int = 1
    steps_per_loop: int = 1
    global_batch_size: int = 32
    save_checkpoint_steps: int | None = None  # default: every epoch
    max_checkpoints: int | None = None  # keep the latest N; None: every one (as the seed)
    log_steps: int | None = None  # default: every loop; 0: at the end only
    train_summaries: bool = True  # TensorBoard loss / learning rate / speed at each log
    jit_compile: bool = False
    overwrite: bool = False

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def validate(self) -> None:
        for name in ("steps_per_epoch", "epochs", "steps_per_loop", "global_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.log_steps is not None and self.log_steps < 0:
            raise ValueError(f"log_steps must be >= 0, got {self.log_steps}")
        if self.max_checkpoints is not None and self.max_checkpoints < 1:
            raise ValueError(f"max_checkpoints must be >= 1 or None, got {self.max_checkpoints}")
        if self.save_checkpoint_steps is not None and self.save_checkpoint_steps < 1:
            raise ValueError(f"save_checkpoint_steps must be >= 1, got "
                             f"{self.save_checkpoint_steps}")


class Trainer:
    """Owns the model, optimizer, checkpoints and summaries of one model_dir.

    model_fn() -> keras.Model (built on first call); loss_fn(labels, outputs) -> scalar mean
    over the replica's batch; optimizer_fn(trainable_variables) -> keras optimizer.
    """

    def __init__(self, strategy, model_fn: Callable, loss_fn: Callable, optimizer_fn: Callable,
                 config: TrainerConfig):
        config.validate()
        self.strategy = strategy
        self.config = config
        self.loss_fn = loss_fn
        self.is_chief = is_chief(strategy)
        self.finished: dict | None = None  # the summary of a finished run in model_dir
        summary_path = os.path.join(config.model_dir, SUMMARY_FILE)
        if os.path.exists(summary_path):
            if config.overwrite:
                if self.is_chief:
                    shutil.rmtree(config.model_dir)
            else:
                try:
                    with open(summary_path, encoding="utf-8") as f:
                        self.finished = json.load(f)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{summary_path}: not a training summary ({e}); "
                                     "--overwrite trains again from scratch") from None
                if not isinstance(self.finished, dict):
                    raise ValueError(f"{summary_path}: not a training summary (a JSON "
                                     "object); --overwrite trains again from scratch")
        os.makedirs(config.model_dir, exist_ok=True)
        with strategy.scope():
            self.model = model_fn()
            if not self.model.built:
                self.model.build()
            self.optimizer = optimizer_fn(self.model.trainable_variables)
            self.optimizer.build(self.model.trainable_variables)
            self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
            self.train_loss = keras.metrics.Mean("loss", dtype="float32")
        # Dropout draws come from Keras seed generators whose states are not model
        # variables: checkpoint them too, or a resumed run would draw other masks.
        self.rng = tf.Module(name="rng")
        for i, gen in enumerate(seed_generators(self.model)):
            setattr(self.rng, f"generator_{i}", gen.state)
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer,
                                              global_step=self.global_step, rng=self.rng)
        # Multi-worker: every worker takes part in saving, only the chief writes to model_dir
        # (the others write to a private directory, as tf.distribute requires).
        save_dir = config.model_dir if self.is_chief else tempfile.mkdtemp(prefix="pybert_worker_")
        self._private_dir = None if self.is_chief else save_dir  # removed after training
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, save_dir,
            max_to_keep=config.max_checkpoints if self.is_chief else 1,
            checkpoint_name="ctl_step")
        self._restore_manager = tf.train.CheckpointManager(
            self.checkpoint, config.model_dir, max_to_keep=config.max_checkpoints,
            checkpoint_name="ctl_step")
        summaries = os.path.join(config.model_dir if self.is_chief else save_dir, "summaries")
        self._train_writer = tf.summary.create_file_writer(os.path.join(summaries, "train"))
        self._eval_writer = tf.summary.create_file_writer(os.path.join(summaries, "eval"))

    # -- state ----------------------------------------------------------------
    def restore_or_initialize(self, init_checkpoint: str | None = None,
                              source: str = "--init_checkpoint") -> int:
        """Restores the latest checkpoint of model_dir, else the encoder from init_checkpoint
        (`source`: the flag it came from, for error messages).

        Returns the global step training continues from.
        """
        latest = self._restore_manager.latest_checkpoint
        if self.finished is not None:
            again = "--overwrite trains again from scratch, or use another --model_dir"
            if not latest:
                raise ValueError(f"{self.config.model_dir} holds a finished run ({SUMMARY_FILE}) "
                                 f"but no checkpoint: {again}")
            self.checkpoint.restore(latest).assert_existing_objects_matched()
            step = int(self.global_step.numpy())
            if step != self.config.total_steps:
                raise ValueError(f"{self.config.model_dir} holds a finished run of {step} steps; "
                                 f"this command asks for {self.config.total_steps}: {again}")
            logger.info("%s holds a finished run (%s): training skipped, %s restored (%s)",
                        self.config.model_dir, SUMMARY_FILE, latest, again)
        elif latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
            logger.info("resuming from %s at step %d", latest, int(self.global_step.numpy()))
        elif init_checkpoint:
            restore_encoder(self.model.encoder, init_checkpoint, source)
            logger.info("encoder initialized from %s", init_checkpoint)
        return int(self.global_step.numpy())

    # -- training -------------------------------------------------------------
    def _step_fn(self, inputs):
        x, y = inputs
        with tf.GradientTape() as tape:
            outputs = self.model(x, training=True)
            loss = self.loss_fn(y, outputs)
            scaled = loss / self.strategy.num_replicas_in_sync
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                scaled = self.optimizer.scale_loss(scaled)
        variables = self.model.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(grads, variables, strict=True))
        self.train_loss.update_state(loss)

    def _make_train_fn(self):
        step_fn = self._step_fn
        if self.config.jit_compile:
            step_fn = tf.function(step_fn, jit_compile=True)

        @tf.function
        def train_steps(iterator, steps):
            for _ in tf.range(steps):
                self.strategy.run(step_fn, args=(next(iterator),))
                self.global_step.assign_add(1)

        return train_steps

    def learning_rate(self) -> float:
        opt = getattr(self.optimizer, "inner_optimizer", self.optimizer)
        lr = opt.learning_rate
        if callable(lr):
            return float(lr(self.global_step))
        return float(tf.convert_to_tensor(lr))

    def train(self, train_dataset_fn: Callable, eval_fn: Callable | None = None) -> dict:
        """Trains to total_steps; calls eval_fn(self) after each epoch and at the end.

        train_dataset_fn(batch_size, input_context) -> tf.data.Dataset of (x, y)
        batches that repeats forever; it is skipped forward when resuming.
        """
        cfg = self.config
        start = int(self.global_step.numpy())
        if self.finished is not None:  # restored at total_steps: evaluate once, as the seed
            if start != cfg.total_steps:
                raise RuntimeError("a finished model_dir: call restore_or_initialize() first")
            # this run's figures; training_summary.json keeps the run that trained
            summary = {**self.finished, "training_skipped": True, "steps_this_run": 0,
                       "resumed_from_step": start, "train_seconds_this_run": 0.0,
                       "examples_per_second": 0.0, "last_train_loss": None}
            summary.pop("eval_seconds_this_run", None)  # the training run's, not this one's
            if eval_fn is not None:
                t_eval = time.perf_counter()
                results = self._evaluate(eval_fn, start)
                summary.update(_eval_keys(results),
                               eval_seconds_this_run=round(time.perf_counter() - t_eval, 3))
            return summary
        if start >= cfg.total_steps:
            # killed after the last checkpoint, before the summary: only the evaluation is left
            logger.info("already at step %d of %d", start, cfg.total_steps)

        def dataset_fn(ctx):
            ds = train_dataset_fn(ctx.get_per_replica_batch_size(cfg.global_batch_size), ctx)
            # Each step takes one per-replica batch for every replica this pipeline feeds.
            per_step = max(1, ctx.num_replicas_in_sync // ctx.num_input_pipelines)
            return ds.skip(start * per_step) if start else ds

        dist = self.strategy.distribute_datasets_from_function(dataset_fn)
        iterator = iter(dist)
        train_steps = self._make_train_fn()
        save_every = cfg.save_checkpoint_steps or cfg.steps_per_epoch
        log_every = cfg.steps_per_loop if cfg.log_steps is None else (cfg.log_steps
                                                                      or cfg.total_steps)
        step = start
        eval_results: dict = {}
        t0 = time.perf_counter()
        eval_seconds = 0.0
        last_log_t, last_log_step = t0, step
        while step < cfg.total_steps:
            # A loop never crosses an epoch end or a checkpoint boundary.
            n = min(cfg.steps_per_loop, cfg.total_steps - step,
                    cfg.steps_per_epoch - step % cfg.steps_per_epoch,
                    save_every - step % save_every)
            self.train_loss.reset_state()
            train_steps(iterator, tf.constant(n, dtype=tf.int32))
            step += n
            loss = float(self.train_loss.result())
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss is {loss} at step {step}")
            now = time.perf_counter()
            if step - last_log_step >= log_every or step == cfg.total_steps:
                rate = (step - last_log_step) / max(now - last_log_t, 1e-9)
                eta = (cfg.total_steps - step) / max(rate, 1e-9)
                lr = self.learning_rate()
                logger.info("step %d/%d loss %.4f lr %.3g %.2f steps/s %.1f examples/s ETA %s",
                            step, cfg.total_steps, loss, lr, rate, rate * cfg.global_batch_size,
                            _hms(eta))
                if cfg.train_summaries:
                    with self._train_writer.as_default(step=step):
                        tf.summary.scalar("loss", loss)
                        tf.summary.scalar("learning_rate", lr)
                        tf.summary.scalar("examples_per_second", rate * cfg.global_batch_size)
                last_log_t, last_log_step = now, step
            if step % save_every == 0 or step == cfg.total_steps:
                self.manager.save(checkpoint_number=step)
            if eval_fn is not None and (step % cfg.steps_per_epoch == 0
                                        or step == cfg.total_steps):
                t_eval = time.perf_counter()
                eval_results = self._evaluate(eval_fn, step)
                eval_seconds += time.perf_counter() - t_eval
                last_log_t += time.perf_counter() - t_eval  # keep eval out of steps/s
        if start >= cfg.total_steps and eval_fn is not None:
            t_eval = time.perf_counter()
            eval_results = self._evaluate(eval_fn, start)
            eval_seconds += time.perf_counter() - t_eval
        self._train_writer.flush()
        self._eval_writer.flush()
        if self._private_dir:  # a non-chief worker's checkpoints: needed by no one now
            shutil.rmtree(self._private_dir, ignore_errors=True)
        seconds = time.perf_counter() - t0 - eval_seconds
        trained = step - start
        summary = {
            "total_training_steps": cfg.total_steps,
            "steps_this_run": trained,
            "resumed_from_step": start,
            "train_seconds_this_run": round(seconds, 3),  # evaluation excluded
            # evaluation inside the loop (none without eval_fn: no key)
            **({"eval_seconds_this_run": round(eval_seconds, 3)} if eval_fn is not None else {}),
            "examples_per_second": round(trained * cfg.global_batch_size / max(seconds, 1e-9), 2),
            "last_train_loss": float(self.train_loss.result()) if trained else None,
            **_eval_keys(eval_results),
        }
        return summary

    def _evaluate(self, eval_fn: Callable, step: int) -> dict:
        """eval_fn at `step`: logged and written to the eval summaries (a None value, an
        undefined metric, is logged only)."""
        results = eval_fn(self)
        logger.info("eval at step %d: %s", step, _fmt(results))
        with self._eval_writer.as_default(step=step):
            for k, v in results.items():
                if v is not None:
                    tf.summary.scalar(k, v)
        self._eval_writer.flush()
        return results

    def write_summary(self, summary: dict) -> None:
        """Marks model_dir as finished (written last, atomically; the chief only). A run
        that skipped a finished model_dir's training leaves its summary as it is."""
        if not self.is_chief or self.finished is not None:
            return
        path = os.path.join(self.config.model_dir, SUMMARY_FILE)
        tmp = path + ".incomplete"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
        os.replace(tmp, path)


def is_chief(strategy) -> bool:
    """False only for the non-chief workers of a multi-worker strategy."""
    extended = strategy.extended
    if not getattr(extended, "_in_multi_worker_mode", lambda: False)():
        return True
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


def seed_generators(model) -> list:
    """The model's Keras seed generators (dropout RNGs), in a fixed traversal order."""
    out = []
    for layer in model._flatten_layers(include_self=True):
        out.extend(getattr(layer, "_seed_generators", ()))
    return out


def restore_encoder(encoder, init_checkpoint: str, source: str = "--init_checkpoint") -> None:
    """Loads an encoder checkpoint into `encoder`: pybert's (tf.train.Checkpoint(encoder=...)),
    the seed's TF2 checkpoints (Model Garden BertEncoder under any root: what the seed's
    --init_checkpoint takes), the variables of the seed's TF-Hub SavedModels (what its
    --hub_module_url takes) and google-research TF1 checkpoints, told apart by their keys.

    A checkpoint whose variables do not fit the config (shapes, layer count) is an
    error naming the checkpoint and `source` (the flag that gave it).
    """
    if not tf.io.gfile.exists(init_checkpoint + ".index") and not tf.io.gfile.isdir(
            init_checkpoint):
        raise FileNotFoundError(f"{source} {init_checkpoint}: no such checkpoint "
                                f"({init_checkpoint}.index not found)")
    if tf.io.gfile.exists(os.path.join(init_checkpoint, "saved_model.pb")):
        init_checkpoint = os.path.join(init_checkpoint, "variables", "variables")  # a SavedModel
    elif tf.io.gfile.isdir(init_checkpoint):
        found = tf.train.latest_checkpoint(init_checkpoint)
        if not found:
            raise FileNotFoundError(f"{source} {init_checkpoint}: no checkpoint inside")
        init_checkpoint = found
    from pybert.checkpoints import checkpoint_format

    fmt = checkpoint_format(init_checkpoint)
    if fmt not in ("pybert", "unknown"):  # the seed's TF2 / TF-Hub or a TF1 checkpoint, as is
        from pybert.checkpoints import hub_savedmodel_dir
        from pybert.checkpoints.huggingface import assign_encoder_weights

        kind = {"tf1": "TF1 checkpoint", "model_garden": "Model Garden TF2 checkpoint",
                "model_garden_hub": "TF-Hub SavedModel of a Model Garden encoder"}[fmt]
        if fmt == "tf1":
            from pybert.checkpoints import encoder_weights_from_tf1 as read
        elif fmt == "model_garden_hub":
            from pybert.checkpoints import encoder_weights_from_hub_savedmodel as read

            init_checkpoint = hub_savedmodel_dir(init_checkpoint)  # the directory
        else:
            from pybert.checkpoints import encoder_weights_from_model_garden as read
        try:
            assign_encoder_weights(encoder, read(init_checkpoint, encoder.config))
        except ValueError as e:
            raise ValueError(f"{source} {init_checkpoint} ({kind}) does not fit the "
                             f"model built from bert_config: {e}") from None
        logger.info("%s %s: read as a %s", source, init_checkpoint, kind)
        return
    def mismatch(what):
        names = [n for n, _ in tf.train.list_variables(init_checkpoint)]
        layers = {int(m[1]) for n in names
                  if (m := re.match(r"encoder/transformer_layer_(\d+)/", n))}
        count = (f"; it has {max(layers) + 1} transformer layers, bert_config "
                 f"{encoder.config.num_hidden_layers}"
                 if layers and max(layers) + 1 != encoder.config.num_hidden_layers else "")
        return ValueError(f"{source} {init_checkpoint} does not fit the model built from "
                          f"bert_config: {what}{count} (pybert reads its own encoder "
                          "checkpoints, the seed's TF2 checkpoints and TF-Hub SavedModels, and "
                          "TF1 ones; for other kinds see pybert-convert-checkpoint)")

    from pybert.checkpoints import saved_values_below

    try:
        status = tf.train.Checkpoint(encoder=encoder).read(init_checkpoint)
    except ValueError as e:
        raise mismatch(str(e)[:300]) from None
    # Both ways: every encoder variable restored, and every checkpoint value used (a
    # checkpoint with more layers than bert_config was silently cut to its first ones).
    try:
        status.assert_existing_objects_matched()
    except AssertionError as e:
        status.expect_partial()  # no warning per variable when it is collected
        found = re.search(r"Found (\d+) Python objects", str(e))
        raise mismatch(f"{found[1] if found else 'some'} of the model's variables are not "
                       "in it") from None
    status.expect_partial()  # a SavedModel's variables hold more than the encoder
    saved, ours = saved_values_below(init_checkpoint), len({id(w) for w in encoder.weights})
    if saved > ours:
        raise mismatch(f"its encoder holds {saved} values, the model has {ours} variables")


def load_encoder(config, checkpoint: str, source: str):
    """A built BertEncoder of `config` with the weights of `checkpoint`, in any format
    restore_encoder reads (`source`: the flag it came from, for error messages)."""
    from pybert.modeling import BertEncoder

    encoder = BertEncoder(config)
    encoder.build()
    restore_encoder(encoder, checkpoint, source)
    return encoder


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _eval_keys(results: dict) -> dict:
    return {f"eval_{k}": None if v is None else float(v) for k, v in results.items()}


def _fmt(results: dict) -> str:
    return ", ".join(f"{k} {float(v):.4f}" if v is not None else f"{k} undefined"
                     for k, v in results.items())
