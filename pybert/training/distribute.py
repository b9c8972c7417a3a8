"""tf.distribute strategies from the seed's --distribution_strategy / --num_gpus / --tpu flags.

  off                    the default strategy (no distribution)
  one_device             /gpu:0 when num_gpus > 0, else /cpu:0
  mirrored               all-reduce over num_gpus local GPUs (or the CPU)
  multi_worker_mirrored  several hosts, from the TF_CONFIG environment variable
  tpu                    TPUStrategy on --tpu (address or name)
"""

from __future__ import annotations

import logging

import tensorflow as tf

logger = logging.getLogger("pybert.training")

STRATEGIES = ("off", "one_device", "mirrored", "multi_worker_mirrored", "tpu")


def check_strategy(distribution_strategy: str, num_gpus: int) -> str:
    """The strategy's name, lower-cased; ValueError for one that cannot be built (checked in
    every mode of the tools, as the seed builds its strategy in every mode)."""
    name = (distribution_strategy or "off").lower()
    if name == "parameter_server":
        raise ValueError("--distribution_strategy=parameter_server is not supported: TensorFlow "
                         "2's ParameterServerStrategy needs a training loop driven by a "
                         "ClusterCoordinator, which pybert's loop is not; use "
                         "multi_worker_mirrored for several machines")
    if name not in STRATEGIES:
        raise ValueError(f"--distribution_strategy={distribution_strategy!r}: use one of "
                         f"{', '.join(STRATEGIES)}")
    if num_gpus < 0:
        raise ValueError(f"--num_gpus must be >= 0, got {num_gpus}")
    if name == "one_device" and num_gpus > 1:  # as the seed
        raise ValueError(f"--distribution_strategy=one_device cannot use --num_gpus={num_gpus} "
                         "(more than one device): use mirrored")
    return name


def get_distribution_strategy(distribution_strategy: str = "mirrored", num_gpus: int = 0,
                              tpu_address: str = "", all_reduce_alg: str | None = None):
    """all_reduce_alg: mirrored takes "nccl" or "hierarchical_copy", multi_worker_mirrored
    "ring" or "nccl"; None: TensorFlow's default."""
    name = check_strategy(distribution_strategy, num_gpus)
    allowed = {"mirrored": ("nccl", "hierarchical_copy"),
               "multi_worker_mirrored": ("ring", "nccl")}.get(name, ())
    if all_reduce_alg and all_reduce_alg not in allowed:
        if allowed:
            raise ValueError(f"--all_reduce_alg={all_reduce_alg} does not apply to "
                             f"--distribution_strategy={name} (use {' or '.join(allowed)})")
        logger.warning("--all_reduce_alg=%s: ignored by --distribution_strategy=%s (as in the "
                       "seed)", all_reduce_alg, name)
        all_reduce_alg = None
    available = len(tf.config.list_physical_devices("GPU"))
    if num_gpus > available:
        raise ValueError(f"--num_gpus={num_gpus} but this machine has {available} GPU(s)")
    if name == "off":
        return tf.distribute.get_strategy()
    if name in ("one_device", "mirrored") and num_gpus == 0:
        # One CPU device: the default strategy computes the same thing. OneDevice and
        # Mirrored strategies over the one CPU cost ~40% more time per step (per-variable
        # update calls in Keras 3's optimizer; measured for a 6-layer BERT on 2 vCPUs).
        logger.info("--distribution_strategy=%s on the CPU: using the default strategy", name)
        return tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0")
    if name == "mirrored":
        ops = {"nccl": tf.distribute.NcclAllReduce,
               "hierarchical_copy": tf.distribute.HierarchicalCopyAllReduce}
        return tf.distribute.MirroredStrategy(
            [f"/gpu:{i}" for i in range(num_gpus)],
            cross_device_ops=ops[all_reduce_alg]() if all_reduce_alg else None)
    if name == "multi_worker_mirrored":
        impl = tf.distribute.experimental.CommunicationImplementation
        options = tf.distribute.experimental.CommunicationOptions(
            implementation={"ring": impl.RING, "nccl": impl.NCCL}.get(all_reduce_alg, impl.AUTO))
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
