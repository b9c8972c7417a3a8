"""Encoder forward throughput on CPU, BERT-Base shapes (12 layers, 768 hidden,
12 heads, random weights), seq 128, batch 32: pybert eager, tf.function and
tf.function + XLA, side by side with HuggingFace BertModel (PyTorch) on the
same shapes and thread count, in the same run.

  .venv/bin/pytest bench/bench_model.py --benchmark-json=bench/results/model.json
"""

import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from pybert.configs import BertConfig  # noqa: E402
from pybert.modeling import BertEncoder  # noqa: E402

BATCH, SEQ = int(os.environ.get("PYBERT_BENCH_BATCH", "32")), 128
THREADS = os.cpu_count() or 1
CONFIG = BertConfig(
    vocab_size=30522,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    hidden_act="gelu_exact",
    type_vocab_size=2,
)


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 30000, (BATCH, SEQ)).astype(np.int32)
    lengths = rng.integers(SEQ // 2, SEQ + 1, BATCH)
    mask = (np.arange(SEQ)[None, :] < lengths[:, None]).astype(np.int32)
    return {"input_word_ids": ids * mask, "input_mask": mask, "input_type_ids": np.zeros_like(ids)}


@pytest.fixture(scope="module")
def encoder():
    enc = BertEncoder(CONFIG)
    enc.build()
    return enc


def _info(benchmark, name, anchor=False):
    benchmark.group = f"encoder-forward-bert-base-b{BATCH}-s{SEQ}"
    benchmark.extra_info.update(items=BATCH, unit="sequences", name=name, anchor=anchor)


@pytest.mark.parametrize("mode", ["eager", "tf.function", "tf.function+XLA"])
def test_pybert(benchmark, encoder, inputs, mode):
    tensors = {k: tf.constant(v) for k, v in inputs.items()}
    if mode == "eager":
        fn = lambda: encoder(tensors)["sequence_output"]  # noqa: E731
    else:
        compiled = tf.function(
            lambda x: encoder(x)["sequence_output"], jit_compile=mode.endswith("XLA")
        )
        fn = lambda: compiled(tensors)  # noqa: E731
    _info(benchmark, f"pybert {mode}", anchor=mode == "tf.function")
    out = benchmark.pedantic(lambda: fn().numpy(), rounds=3, iterations=1, warmup_rounds=1)
    assert out.shape == (BATCH, SEQ, CONFIG.hidden_size)


def test_huggingface_pytorch(benchmark, inputs):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.set_num_threads(THREADS)
    # the same shapes as CONFIG; HF's "gelu" is CONFIG's gelu_exact
    shape = {k: v for k, v in CONFIG.to_dict().items() if k != "hidden_act"}
    hf_config = transformers.BertConfig(**shape, hidden_act="gelu")
    model = transformers.BertModel(hf_config).eval()
    ids = torch.tensor(inputs["input_word_ids"], dtype=torch.long)
    mask = torch.tensor(inputs["input_mask"], dtype=torch.long)
    types = torch.tensor(inputs["input_type_ids"], dtype=torch.long)

    def run():
        with torch.inference_mode():
            return model(input_ids=ids, attention_mask=mask, token_type_ids=types)[0].numpy()

    _info(benchmark, f"HF transformers BertModel (PyTorch {torch.__version__}, {THREADS} threads)")
    out = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    assert out.shape == (BATCH, SEQ, CONFIG.hidden_size)
