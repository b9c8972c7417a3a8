"""Reference for run_classifier: HuggingFace transformers (PyTorch, CPU) fine-tuning the same
checkpoint on MRPC with the same recipe, on the same features.

Test/bench environments only (transformers and torch are never pybert dependencies).
The features are pybert's create_finetuning_data TFRecords (identical to the seed's),
so both sides see the same token ids. Recipe (the seed's): AdamW lr 2e-5, weight decay
0.01 except bias/LayerNorm, epsilon 1e-6, linear warm-up over 10% of the steps then linear
decay to 0, global-norm clipping 1.0, batch 32, 3 epochs of int(3668 / 32) = 114 steps,
dropout 0.1, seq 128.

  python bench/mrpc_reference_hf.py --model_dir=<HF dir> --train=train.tfr --eval=eval.tfr \\
      --seed=1 --out=hf_seed1.json [--adam=seed|torch] [--trim_padding]

--adam: where epsilon goes. The seed's AdamWeightDecay (tf.keras Adam) and Keras 3's AdamW,
which pybert uses, compute lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps): epsilon is
added before the bias correction, so at step t it acts like eps / sqrt(1 - b2^t) on the
corrected sqrt(v_hat) (3.2e-5 at step 1, 1.2e-6 at step 342 for eps 1e-6). PyTorch's AdamW adds
eps to sqrt(v_hat). "seed" (the default) is the seed's rule written for PyTorch below
(SeedAdamW), with the seed's learning-rate schedule (warm-up, then linear decay measured
from step 0; transformers' get_linear_schedule_with_warmup decays from the end of the
warm-up instead); "torch" is torch.optim.AdamW with transformers' schedule. With dropout off,
the same initial weights and the same batches, pybert's run_classifier steps and this
script's --adam=seed steps give the same losses to ~1e-7 over 30 steps; --adam=torch
drifts from the first steps (1e-3 by step 25).
--trim_padding cuts each batch to its longest real row (outputs unchanged up to float rounding,
as pybert's --trim_padding): faster, for accuracy runs; speed comparisons leave it off.
"""

import argparse
import json
import os
import time

import numpy as np


def read_features(path, seq):
    import tensorflow as tf

    spec = {"input_ids": tf.io.FixedLenFeature([seq], tf.int64),
            "input_mask": tf.io.FixedLenFeature([seq], tf.int64),
            "segment_ids": tf.io.FixedLenFeature([seq], tf.int64),
            "label_ids": tf.io.FixedLenFeature([], tf.int64)}
    ds = tf.data.TFRecordDataset(path).batch(100000).map(lambda r: tf.io.parse_example(r, spec))
    batch = next(iter(ds))
    return {k: v.numpy() for k, v in batch.items()}


def seed_adamw(params, lr, eps):
    """The seed's AdamWeightDecay update rule as a torch optimizer (see the module doc)."""
    import torch

    class SeedAdamW(torch.optim.Optimizer):
        def __init__(self, groups):
            super().__init__(groups, dict(lr=lr, weight_decay=0.0, betas=(0.9, 0.999), eps=eps))

        @torch.no_grad()
        def step(self):
            for g in self.param_groups:
                b1, b2 = g["betas"]
                for p in g["params"]:
                    if p.grad is None:
                        continue
                    st = self.state[p]
                    if not st:
                        st["step"] = 0
                        st["m"] = torch.zeros_like(p)
                        st["v"] = torch.zeros_like(p)
                    st["step"] += 1
                    t = st["step"]
                    if g["weight_decay"]:
                        p.sub_(p * (g["weight_decay"] * g["lr"]))  # decoupled, before the update
                    st["m"].mul_(b1).add_(p.grad, alpha=1 - b1)
                    st["v"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                    alpha = g["lr"] * (1 - b2 ** t) ** 0.5 / (1 - b1 ** t)
                    p.sub_(st["m"] / (st["v"].sqrt() + g["eps"]) * alpha)

    return SeedAdamW(params)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model_dir", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--eval", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", required=True)
    ap.add_argument("--max_steps", type=int, default=0,
                    help="stop after this many steps (speed only; 0: the full 3 epochs)")
    ap.add_argument("--adam", choices=("seed", "torch"), default="seed",
                    help="seed: the seed's (and Keras') epsilon rule and schedule; "
                         "torch: torch.optim.AdamW and transformers' linear schedule")
    ap.add_argument("--trim_padding", action="store_true",
                    help="run each batch at its longest real row")
    args = ap.parse_args()
    train = read_features(args.train, 128)
    dev = read_features(args.eval, 128)

    import torch
    from transformers import AutoModelForSequenceClassification, get_linear_schedule_with_warmup

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    model = AutoModelForSequenceClassification.from_pretrained(args.model_dir, num_labels=2)
    no_decay = ("bias", "LayerNorm.weight", "LayerNorm.bias")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)],
         "weight_decay": 0.01},
        {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)],
         "weight_decay": 0.0},
    ]
    if args.adam == "torch":
        opt = torch.optim.AdamW(groups, lr=2e-5, betas=(0.9, 0.999), eps=1e-6)
    else:
        opt = seed_adamw(groups, lr=2e-5, eps=1e-6)
    n = len(train["label_ids"])
    batch, epochs = 32, 3
    steps_per_epoch = n // batch
    total = steps_per_epoch * epochs
    schedule_total = total
    if args.max_steps:
        total = min(total, args.max_steps)
    warmup = int(0.1 * schedule_total)
    if args.adam == "torch":
        sched = get_linear_schedule_with_warmup(opt, warmup, schedule_total)
    else:
        # The seed's schedule: linear warm-up to lr, then lr * (1 - step / total), the decay
        # measured from step 0 (so 0.9 lr right after a 10% warm-up), as pybert's.
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: s / warmup if s < warmup else max(0.0, 1.0 - s / schedule_total))
    rng = np.random.default_rng(args.seed)
    t = {k: torch.from_numpy(v) for k, v in train.items()}
    model.train()
    start = time.perf_counter()
    done = 0
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(n))
        for s in range(steps_per_epoch):
            if done == total:
                break
            done += 1
            idx = order[s * batch:(s + 1) * batch]
            width = int(t["input_mask"][idx].sum(1).max()) if args.trim_padding else 128
            out = model(input_ids=t["input_ids"][idx, :width],
                        attention_mask=t["input_mask"][idx, :width],
                        token_type_ids=t["segment_ids"][idx, :width], labels=t["label_ids"][idx])
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
    train_seconds = time.perf_counter() - start
    model.eval()
    correct = 0
    with torch.no_grad():
        d = {k: torch.from_numpy(v) for k, v in dev.items()}
        for s in range(0, len(dev["label_ids"]), 64):
            logits = model(input_ids=d["input_ids"][s:s + 64],
                           attention_mask=d["input_mask"][s:s + 64],
                           token_type_ids=d["segment_ids"][s:s + 64]).logits
            correct += int((logits.argmax(-1) == d["label_ids"][s:s + 64]).sum())
    result = {"seed": args.seed, "dev_accuracy": correct / len(dev["label_ids"]),
              "train_seconds": round(train_seconds, 1), "steps": total,
              "examples_per_second": round(total * batch / train_seconds, 2),
              "torch": torch.__version__, "threads": args.threads, "adam": args.adam,
              "trim_padding": args.trim_padding}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(result)


if __name__ == "__main__":
    main()
