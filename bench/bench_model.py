"""Encoder forward throughput on CPU, BERT-Base shapes (12 layers, 768 hidden,
12 heads, random weights), seq 128, batch 32: pybert eager, tf.function and
tf.function + XLA, side by side with HuggingFace BertModel (PyTorch, eager and
torch.compile) holding the same weights (its output checked equal to pybert's
on the real tokens first), the same thread count, in the same run.

  .venv/bin/pytest bench/bench_model.py --benchmark-json=bench/results/model.json
"""

import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from conftest import need  # noqa: E402

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


@pytest.fixture(scope="module")
def hf_model(encoder, inputs):
    """HuggingFace BertModel (PyTorch) with the pybert encoder's weights, checked to give
    the same sequence output on the real tokens before anything is timed."""
    torch = need("torch")
    transformers = need("transformers")
    from pybert.checkpoints.huggingface import encoder_weights_to_huggingface

    torch.set_num_threads(THREADS)
    # the same shapes as CONFIG; HF's "gelu" is CONFIG's gelu_exact
    shape = {k: v for k, v in CONFIG.to_dict().items() if k != "hidden_act"}
    model = transformers.BertModel(transformers.BertConfig(**shape, hidden_act="gelu")).eval()
    state = {name: torch.from_numpy(value)
             for name, value in encoder_weights_to_huggingface(encoder).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all("position_ids" in m for m in missing), (missing, unexpected)
    feeds = {"input_ids": torch.tensor(inputs["input_word_ids"], dtype=torch.long),
             "attention_mask": torch.tensor(inputs["input_mask"], dtype=torch.long),
             "token_type_ids": torch.tensor(inputs["input_type_ids"], dtype=torch.long)}
    with torch.inference_mode():
        got = model(**feeds)[0].numpy()
    want = encoder({k: tf.constant(v) for k, v in inputs.items()})["sequence_output"].numpy()
    real = inputs["input_mask"].astype(bool)
    np.testing.assert_allclose(got[real], want[real], atol=5e-4)
    return torch, model, feeds


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("mode", ["eager", "torch.compile"])
def test_huggingface_pytorch(benchmark, hf_model, mode):
    torch, model, feeds = hf_model
    run_model = model if mode == "eager" else torch.compile(model)

    def run():
        with torch.inference_mode():
            return run_model(**feeds)[0].numpy()

    _info(benchmark, f"HF transformers BertModel {mode} (PyTorch {torch.__version__}, "
                     f"{THREADS} threads)")
    out = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    assert out.shape == (BATCH, SEQ, CONFIG.hidden_size)
