"""Training: optimizers and schedules, distribution strategies, the custom training loop.

optimization  AdamW / LAMB with the seed's warm-up + polynomial decay, global-norm clipping
distribute    tf.distribute strategy from the seed's --distribution_strategy flag
loop          Trainer: steps_per_loop steps per tf.function call, checkpoints + resume,
              TensorBoard summaries, evaluation
"""
