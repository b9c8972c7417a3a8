"""Flags shared by run_classifier, run_squad and run_pretraining (the seed's common_flags).

Defines the seed's names and defaults, plus pybert's additions (--seed,
--save_checkpoint_steps, --num_accumulation_steps, --overwrite). Also turns
the performance flags into process settings (mixed precision policy,
deterministic ops) and checks contradictions before any work starts.
"""

from __future__ import annotations

import json
import logging
import os

from absl import flags

FLAGS = flags.FLAGS


def define_common_bert_flags() -> None:
    flags.DEFINE_string("bert_config_file", None, "bert_config.json of the encoder.")
    flags.DEFINE_string("model_export_path", None, "Where to export the trained model.")
    flags.DEFINE_string("tpu", "", "TPU address to connect to.")
    flags.DEFINE_string("init_checkpoint", None,
                        "Initial checkpoint (a pybert encoder checkpoint, e.g. from "
                        "pybert-convert-checkpoint).")
    flags.DEFINE_integer("num_train_epochs", 3, "Total number of training epochs.", lower_bound=1)
    flags.DEFINE_integer("steps_per_loop", None,
                         "Training steps per tf.function call (default: 50, capped by the "
                         "steps per epoch).", lower_bound=1)
    flags.DEFINE_float("learning_rate", 5e-5, "The initial learning rate.", lower_bound=0.0)
    flags.DEFINE_float("end_lr", 0.0, "The end learning rate of the decay.", lower_bound=0.0)
    flags.DEFINE_enum("optimizer_type", "adamw", ["adamw", "lamb"], "Optimizer.")
    flags.DEFINE_string("hub_module_url", None,
                        "A TF-Hub BERT encoder SavedModel whose weights initialize the "
                        "encoder, instead of --init_checkpoint: a local directory (the seed's "
                        "export_tfhub.py, TF-Hub's BERTs, or pybert-convert-checkpoint "
                        "--saved_model_dir), or a URL whose module the TF-Hub cache holds "
                        "($TFHUB_CACHE_DIR or <temp>/tfhub_modules). Nothing is downloaded.")
    flags.DEFINE_string("model_dir", None, "Checkpoints, summaries and results go here.",
                        short_name="md")
    flags.DEFINE_enum("distribution_strategy", "mirrored",
                      ["off", "one_device", "mirrored", "multi_worker_mirrored", "tpu",
                       "parameter_server"],
                      "tf.distribute strategy (parameter_server: refused, see the README).",
                      short_name="ds", case_sensitive=False)
    flags.DEFINE_integer("num_gpus", 0, "GPUs to use (one_device, mirrored).", lower_bound=0,
                         short_name="ng")
    flags.DEFINE_enum("dtype", "fp32", ["fp32", "fp16", "bf16"], "Compute dtype.", short_name="dt")
    flags.DEFINE_string("loss_scale", None,
                        "fp16 loss scaling: 'dynamic' (default) or a positive initial scale "
                        "(Keras 3 loss scaling is dynamic); ignored with a warning for other "
                        "dtypes.",
                        short_name="ls")
    flags.DEFINE_bool("enable_xla", False, "XLA-compile the training step (jit_compile).")
    flags.DEFINE_bool("trim_padding", True,
                      "run_classifier / run_pretraining: run each batch at its longest real "
                      "row instead of max_seq_length (same results up to float rounding; "
                      "off under --enable_xla, which needs static shapes).")
    flags.DEFINE_integer("log_steps", None, "Log every this many steps (default: each loop; "
                         "0: at the end only, as the seed's 0 turns its step log off).",
                         lower_bound=0)
    # pybert additions
    flags.DEFINE_integer("seed", 42, "Random seed (initialization, dropout, shuffling).")
    flags.DEFINE_integer("save_checkpoint_steps", None,
                         "Checkpoint every this many steps (default: every epoch).", lower_bound=1)
    flags.DEFINE_integer("num_accumulation_steps", 1,
                         "Accumulate gradients over this many batches per update.", lower_bound=1)
    flags.DEFINE_integer("keep_checkpoint_max", 0,
                         "Keep only the latest this many training checkpoints in model_dir (0: "
                         "keep every one, as the seed does).", lower_bound=0)
    flags.DEFINE_bool("overwrite", False, "Train again in a model_dir that holds a finished run.")
    flags.DEFINE_bool("deterministic", False, "Deterministic TensorFlow ops (slower).")
    flags.DEFINE_integer("shuffle_buffer", 1000,
                         "Training examples shuffle buffer (0: the files' order).", lower_bound=0)
    # The seed's other flags, so that its commands run unchanged.
    flags.DEFINE_bool("hub_module_trainable", True,
                      "With --hub_module_url: fine-tune the encoder too (false: train the head "
                      "only).")
    flags.DEFINE_string("sub_model_export_name", None,
                        "After training, also write the encoder as a pybert encoder checkpoint "
                        "in model_dir/<name>/ (usable as --init_checkpoint).")
    flags.DEFINE_bool("run_eagerly", False, "Run the training step eagerly (debugging; slow).")
    flags.DEFINE_list("worker_hosts", None,
                      "multi_worker_mirrored: comma-separated host:port of every worker (sets "
                      "TF_CONFIG; or set TF_CONFIG yourself).")
    flags.DEFINE_integer("task_index", -1, "multi_worker_mirrored: this worker's index in "
                         "--worker_hosts.")
    flags.DEFINE_enum("all_reduce_alg", None, ["nccl", "hierarchical_copy", "ring"],
                      "Gradient all-reduce: mirrored takes nccl or hierarchical_copy, "
                      "multi_worker_mirrored ring or nccl (default: TensorFlow's choice).",
                      short_name="ara")
    flags.DEFINE_enum("tf_gpu_thread_mode", None, ["global", "gpu_private", "gpu_shared"],
                      "TF_GPU_THREAD_MODE: threads that launch GPU kernels.", short_name="gt_mode")
    flags.DEFINE_integer("per_gpu_thread_count", 0,
                         "TF_GPU_THREAD_COUNT with --tf_gpu_thread_mode (0: 2 per GPU).",
                         lower_bound=0, short_name="pgtc")
    flags.DEFINE_integer("datasets_num_private_threads", None,
                         "A private thread pool of this size for the training input pipeline.",
                         lower_bound=1)
    flags.DEFINE_enum("fp16_implementation", "keras", ["keras", "graph_rewrite"],
                      "fp16: Keras mixed precision (graph_rewrite is gone from TensorFlow 2).")
    flags.DEFINE_bool("scale_loss", False,
                      "Accepted for the seed's commands. pybert always averages the loss over "
                      "the global batch, so replicas never scale the gradient.")
    flags.DEFINE_bool("use_keras_compile_fit", False,
                      "Accepted for the seed's commands and ignored: pybert always trains "
                      "with its own loop.")
    flags.DEFINE_bool("explicit_allreduce", False,
                      "Accepted for the seed's commands; tf.distribute all-reduces the "
                      "gradients inside the optimizer step. As in the seed, it also clips "
                      "LAMB's gradients to global norm 1.0 in run_pretraining and run_squad "
                      "(AdamW's always are).")
    flags.DEFINE_integer("allreduce_bytes_per_pack", 0,
                         "Accepted for the seed's commands (with --explicit_allreduce).")
    flags.DEFINE_multi_string("gin_file", None, "Refused: pybert has no gin configuration.")
    flags.DEFINE_multi_string("gin_param", None, "Refused: pybert has no gin configuration.")


def define_prediction_flags() -> None:
    """run_classifier and run_squad: prediction runs that continue after a kill."""
    flags.DEFINE_float(
        "predict_progress_seconds", 60.0,
        "While predicting, save the results computed so far every this many seconds (0: "
        "after every batch) in model_dir (test_results.partial, <prefix>predict.partial): "
        "a rerun of a killed run with the same input, checkpoint and flags continues after "
        "them.", lower_bound=0.0)


def checkpoint_identity(checkpoint: str) -> list:
    """Identity of a checkpoint prefix (its .index file) for a progress record."""
    from pybert._outputs import file_identity

    return file_identity(checkpoint + ".index")


def trim_padding() -> bool:
    return FLAGS.trim_padding and not FLAGS.enable_xla


def read_meta_data(path: str) -> dict:
    if not path:
        raise ValueError("--input_meta_data_path is required")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--input_meta_data_path {path}: file not found")
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"--input_meta_data_path {path}:{e.lineno}:{e.colno}: invalid JSON: "
                         f"{e.msg}") \
            from None
    if not isinstance(meta, dict):
        raise ValueError(f"--input_meta_data_path {path}: not meta data (a JSON object), got "
                         f"{type(meta).__name__}")
    for key in ("max_seq_length", "num_labels", "train_data_size", "eval_data_size",
                "doc_stride", "max_query_length", "max_predictions_per_seq"):
        value = meta.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < (0 if key.endswith("_size") else 1)):
            raise ValueError(f"--input_meta_data_path {path}: {key!r} is {value!r}, not a "
                             f"{'non-negative' if key.endswith('_size') else 'positive'} "
                             "integer")
    return meta


def check_sequence_length(seq_length: int, config, source: str | None = None,
                          config_file: str | None = None) -> None:
    """max_seq_length (from `source`, default the meta data file) must fit the config's
    position embeddings (of `config_file`, default --bert_config_file)."""
    if seq_length > config.max_position_embeddings:
        where = source or f"{FLAGS.input_meta_data_path}: max_seq_length"
        raise ValueError(f"{where}={seq_length} exceeds max_position_embeddings="
                         f"{config.max_position_embeddings} of "
                         f"{config_file or FLAGS.bert_config_file}")


def require_file(flag: str, path: str | None) -> str:
    if not path:
        raise ValueError(f"--{flag} is required")
    if not os.path.exists(path) and not any(c in path for c in "*?["):
        raise FileNotFoundError(f"--{flag} {path}: file not found")
    return path


def tfhub_cache_path(url: str) -> str:
    """Where tensorflow_hub keeps the module it downloaded from `url`: sha1(url) under
    $TFHUB_CACHE_DIR, or under <temp dir>/tfhub_modules when that is not set."""
    import hashlib
    import tempfile

    cache = os.environ.get("TFHUB_CACHE_DIR") or os.path.join(tempfile.gettempdir(),
                                                              "tfhub_modules")
    return os.path.join(cache, hashlib.sha1(url.encode("utf8")).hexdigest())


def encoder_checkpoint() -> str | None:
    """Where the encoder's initial weights come from: --init_checkpoint, or the variables
    of the encoder SavedModel at --hub_module_url (a SavedModel's variables are a
    checkpoint whose root holds the encoder, as pybert's encoder checkpoints do)."""
    hub = FLAGS.hub_module_url
    if not hub:
        return FLAGS.init_checkpoint
    if FLAGS.init_checkpoint:
        raise ValueError("--hub_module_url and --init_checkpoint both given: the encoder's "
                         "weights come from one of them")
    if "://" in hub and not hub.lower().startswith(("http://", "https://")):
        raise ValueError(f"--hub_module_url {hub}: only local directories and http(s) URLs "
                         "that the TF-Hub cache holds are read; copy the SavedModel here")
    if "://" in hub:
        cached = tfhub_cache_path(hub)
        if not os.path.isfile(os.path.join(cached, "saved_model.pb")):
            raise ValueError(f"--hub_module_url {hub}: nothing is downloaded; a URL is read "
                             f"from the TF-Hub cache only, where it is not ({cached}): give "
                             "the local SavedModel directory instead")
        logging.getLogger(__name__).info("--hub_module_url %s: the TF-Hub cache's copy, %s",
                                         hub, cached)
        hub = cached
    if not os.path.isfile(os.path.join(hub, "saved_model.pb")):
        raise FileNotFoundError(f"--hub_module_url {hub}: no SavedModel there (saved_model.pb "
                                "not found); write one with pybert-convert-checkpoint "
                                "--saved_model_dir")
    variables = os.path.join(hub, "variables", "variables")
    if not os.path.isfile(variables + ".index"):
        raise FileNotFoundError(f"--hub_module_url {hub}: the SavedModel has no variables "
                                f"({variables}.index not found)")
    return variables


def encoder_source() -> str:
    """The flag encoder_checkpoint() took the weights from (for error messages)."""
    return "--hub_module_url" if FLAGS.hub_module_url else "--init_checkpoint"


def setup_runtime() -> None:
    """Seeds, determinism and the mixed precision policy from the flags."""
    import keras
    import tensorflow as tf

    from pybert.training.distribute import check_strategy

    encoder_checkpoint()  # --hub_module_url / --init_checkpoint checked before anything runs
    check_strategy(FLAGS.distribution_strategy, FLAGS.num_gpus)  # in every mode, as the seed
    _seed_runtime_flags()
    if FLAGS.loss_scale is not None:
        _initial_loss_scale()  # a bad value is an error whatever the dtype (the seed's
        # check too; this one also refuses inf and nan)
        if FLAGS.dtype != "fp16":  # the seed ignores it too
            logging.getLogger(__name__).warning(
                "--loss_scale=%s ignored: loss scaling applies to --dtype=fp16 only (got "
                "--dtype=%s)", FLAGS.loss_scale, FLAGS.dtype)
    keras.utils.set_random_seed(FLAGS.seed)
    if FLAGS.deterministic:
        tf.config.experimental.enable_op_determinism()
    policy = {"fp32": "float32", "fp16": "mixed_float16", "bf16": "mixed_bfloat16"}[FLAGS.dtype]
    keras.mixed_precision.set_dtype_policy(policy)


def _seed_runtime_flags() -> None:
    """The seed's runtime flags: checked, then applied (environment, eager mode)."""
    import logging

    import tensorflow as tf

    if FLAGS.gin_file or FLAGS.gin_param:
        raise ValueError("--gin_file / --gin_param: pybert has no gin configuration; give the "
                         "hyperparameters as flags")
    if FLAGS.fp16_implementation == "graph_rewrite":
        raise ValueError("--fp16_implementation=graph_rewrite: TensorFlow 2 has no mixed "
                         "precision graph rewrite any more; use the default (keras)")
    if not FLAGS.hub_module_trainable and not FLAGS.hub_module_url:
        logging.getLogger("pybert.training").warning(
            "--hub_module_trainable=false applies with --hub_module_url only (as in the seed): "
            "the encoder is fine-tuned")
    if FLAGS.tf_gpu_thread_mode:  # read when TensorFlow creates its GPU devices
        os.environ["TF_GPU_THREAD_MODE"] = FLAGS.tf_gpu_thread_mode
        os.environ["TF_GPU_THREAD_COUNT"] = str(FLAGS.per_gpu_thread_count or 2)
    if FLAGS.worker_hosts and not os.environ.get("TF_CONFIG"):  # as the seed: TF_CONFIG wins
        hosts = FLAGS.worker_hosts
        index = 0 if len(hosts) == 1 else FLAGS.task_index
        if not 0 <= index < len(hosts):
            raise ValueError(f"--task_index={FLAGS.task_index} is not the index of one of the "
                             f"{len(hosts)} --worker_hosts")
        os.environ["TF_CONFIG"] = json.dumps({
            "cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})
    check_sub_model_dir()
    if FLAGS.run_eagerly:
        tf.config.run_functions_eagerly(True)


def trainer_options() -> dict:
    """The TrainerConfig fields that every training tool takes from the common flags."""
    return dict(save_checkpoint_steps=FLAGS.save_checkpoint_steps, log_steps=FLAGS.log_steps,
                max_checkpoints=FLAGS.keep_checkpoint_max or None,
                jit_compile=FLAGS.enable_xla, overwrite=FLAGS.overwrite)


def distribution_strategy():
    """The tf.distribute strategy of --distribution_strategy, --num_gpus, --tpu and
    --all_reduce_alg."""
    from pybert.training.distribute import get_distribution_strategy

    return get_distribution_strategy(FLAGS.distribution_strategy, FLAGS.num_gpus, FLAGS.tpu,
                                     all_reduce_alg=FLAGS.all_reduce_alg)


def fine_tuning_model(model):
    """--hub_module_url with --hub_module_trainable=false: the encoder's weights stay as
    loaded (only the head trains), as the seed's non-trainable hub.KerasLayer."""
    if FLAGS.hub_module_url and not FLAGS.hub_module_trainable:
        model.build()
        model.encoder.trainable = False  # the models then run it without dropout too
    return model


def input_options(dataset):
    """The training dataset with --datasets_num_private_threads applied."""
    import tensorflow as tf

    if not FLAGS.datasets_num_private_threads:
        return dataset
    options = tf.data.Options()
    options.threading.private_threadpool_size = FLAGS.datasets_num_private_threads
    return dataset.with_options(options)


def check_sub_model_dir() -> None:
    """Refuses, before training, a --sub_model_export_name directory that holds other files."""
    if FLAGS.sub_model_export_name:
        from pybert._outputs import check_replaceable
        from pybert.checkpoints.huggingface import ENCODER_CHECKPOINT_FILES

        check_replaceable(os.path.join(FLAGS.model_dir, FLAGS.sub_model_export_name),
                          ENCODER_CHECKPOINT_FILES, "pybert encoder checkpoint")


def export_sub_model(encoder, config) -> str | None:
    """--sub_model_export_name: the trained encoder as a pybert encoder checkpoint in
    model_dir/<name>/; returns its path."""
    if not FLAGS.sub_model_export_name:
        return None
    from pybert.checkpoints.huggingface import save_encoder_checkpoint

    return save_encoder_checkpoint(encoder, config,
                                   os.path.join(FLAGS.model_dir, FLAGS.sub_model_export_name))


def make_optimizer_fn(num_train_steps: int, warmup_steps: int,
                      clip_lamb_with_explicit_allreduce: bool = False):
    """The optimizer of --optimizer_type. The seed clips gradients to global norm 1.0 inside
    its AdamWeightDecay; its LAMB (TensorFlow Addons') does not clip, except where its
    training loop adds a clipping callback with --explicit_allreduce (run_pretraining and
    run_squad: clip_lamb_with_explicit_allreduce; its run_classifier never clips LAMB)."""
    from pybert.training.optimization import create_optimizer

    clip = (1.0 if FLAGS.optimizer_type == "adamw"
            or (clip_lamb_with_explicit_allreduce and FLAGS.explicit_allreduce) else None)
    logging.getLogger(__name__).info(
        "optimizer %s: %s", FLAGS.optimizer_type,
        "gradients clipped to global norm 1.0" if clip else "gradients not clipped")

    def fn(variables):
        opt = create_optimizer(FLAGS.learning_rate, num_train_steps, warmup_steps, FLAGS.end_lr,
                               FLAGS.optimizer_type, global_clipnorm=clip,
                               num_accumulation_steps=FLAGS.num_accumulation_steps,
                               use_loss_scale=False, variables=variables)
        if FLAGS.dtype == "fp16":
            import keras

            opt = keras.optimizers.LossScaleOptimizer(opt, initial_scale=_initial_loss_scale())
        return opt

    return fn


def _initial_loss_scale() -> float:
    """--loss_scale: 'dynamic' (the default; starts at 2^15) or a positive number, the
    initial scale (Keras 3 loss scaling is always dynamic)."""
    import math

    scale = "dynamic" if FLAGS.loss_scale is None else FLAGS.loss_scale
    if scale == "dynamic":
        return 32768.0
    try:
        value = float(scale)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"--loss_scale={scale}: expected 'dynamic' or a positive number")
    return value


def steps_per_loop(steps_per_epoch: int) -> int:
    n = FLAGS.steps_per_loop or 50
    return min(n, steps_per_epoch)


def ignore_missing_gradients(*layers: str) -> None:
    """Silences Keras' warning (at every trace) that these layers' kernel and bias get no
    gradient: heads the loss does not read, kept for the checkpoints."""
    import warnings

    names = "|".join(layers)
    warnings.filterwarnings(
        "ignore", category=UserWarning,
        message=rf"Gradients do not exist for variables \[('(?:[^']*/)?(?:{names})/"
                rf"(?:kernel|bias)'(?:, )?)+\]")


def restore_model(model, checkpoint: str | None = None,
                  flag: str = "--predict_checkpoint_path") -> str:
    """Builds `model` and restores it from `checkpoint` (given by `flag`) or the latest one
    in --model_dir; a checkpoint that is missing or does not fit the model is a ValueError
    or FileNotFoundError naming it."""
    import tensorflow as tf

    if not model.built:
        model.build()
    if checkpoint and not tf.io.gfile.exists(checkpoint + ".index"):
        raise FileNotFoundError(f"{flag} {checkpoint}: no such checkpoint "
                                f"({checkpoint}.index not found)")
    ckpt = checkpoint or tf.train.latest_checkpoint(FLAGS.model_dir)
    if not ckpt:
        raise FileNotFoundError(f"--model_dir {FLAGS.model_dir}: no checkpoint")
    status = tf.train.Checkpoint(model=model).read(ckpt).expect_partial()
    try:  # fails for any weight of `model` without a value in the checkpoint
        status.assert_existing_objects_matched()
    except AssertionError as e:
        raise ValueError(f"checkpoint {ckpt} does not fit a {type(model).__name__} built from "
                         f"--bert_config_file (a checkpoint of another model, or an encoder "
                         f"checkpoint: use --init_checkpoint to train from one): "
                         f"{str(e)[:300]}") from None
    return ckpt


def export_only(model_fn) -> str:
    """--mode=export_only: the latest checkpoint of --model_dir as a SavedModel."""
    from pybert.export.savedmodel import export_model_savedmodel

    if not FLAGS.model_export_path:
        raise ValueError("--model_export_path is required for --mode=export_only")
    model = model_fn()
    restore_model(model)
    return export_model_savedmodel(model, FLAGS.model_export_path)
