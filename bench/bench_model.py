"""Encoder forward throughput on CPU, BERT-Base shapes (12 layers, 768 hidden,
12 heads, random weights), seq 128, batch 32: pybert eager, tf.function and
tf.function + XLA, side by side with HuggingFace BertModel (PyTorch, eager and
torch.compile) holding the same weights, the same thread count, in the same run.

The sides take turns (conftest.interleave): one untimed run of each (the
warm-up, which also traces and compiles tf.function, XLA and torch.compile),
whose outputs are checked, then ROUNDS rounds (default 3; PYBERT_BENCH_ROUNDS)
in which each runs once; every row reports its best round
(extra_info["interleaved_s"]). Checks: every side's sequence output on the real
(unmasked) tokens is HuggingFace eager's within 1e-4 (without PyTorch, when
missing competitors are allowed: pybert eager's). A missing competitor fails
its rows (see conftest.py).

  .venv/bin/pytest bench/bench_model.py --benchmark-json=bench/results/model.json
"""

import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from conftest import interleave, missing, report_interleaved, rounds  # noqa: E402

from pybert.configs import BertConfig  # noqa: E402
from pybert.modeling import BertEncoder  # noqa: E402

BATCH, SEQ = int(os.environ.get("PYBERT_BENCH_BATCH", "32")), 128
THREADS = os.cpu_count() or 1
ROUNDS = rounds("3")  # about 2-4 s a round per side on a 2-core host
ATOL = 1e-4
CONFIG = BertConfig(
    vocab_size=30522,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    hidden_act="gelu_exact",
    type_vocab_size=2,
)
ANCHOR = "pybert tf.function"
PYBERT = ["pybert eager", ANCHOR, "pybert tf.function+XLA"]
HF = ["HF transformers BertModel eager", "HF transformers BertModel torch.compile"]
NAMES = PYBERT + HF


def _inputs():
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 30000, (BATCH, SEQ)).astype(np.int32)
    lengths = rng.integers(SEQ // 2, SEQ + 1, BATCH)
    mask = (np.arange(SEQ)[None, :] < lengths[:, None]).astype(np.int32)
    return {"input_word_ids": ids * mask, "input_mask": mask, "input_type_ids": np.zeros_like(ids)}


def _huggingface(encoder, inputs):
    """name -> function for HuggingFace BertModel (PyTorch) with the pybert encoder's
    weights, eager and torch.compile; name -> why a side cannot run; torch's version."""
    try:
        import torch
        import transformers
    except ImportError as e:
        return {}, {name: f"PyTorch / transformers not installed ({e})" for name in HF}, None
    from pybert.checkpoints.huggingface import encoder_weights_to_huggingface

    torch.set_num_threads(THREADS)
    # the same shapes as CONFIG; HF's "gelu" is CONFIG's gelu_exact
    shape = {k: v for k, v in CONFIG.to_dict().items() if k != "hidden_act"}
    model = transformers.BertModel(transformers.BertConfig(**shape, hidden_act="gelu")).eval()
    state = {name: torch.from_numpy(value)
             for name, value in encoder_weights_to_huggingface(encoder).items()}
    missing_keys, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all("position_ids" in m for m in missing_keys), (
        missing_keys, unexpected)
    feeds = {"input_ids": torch.tensor(inputs["input_word_ids"], dtype=torch.long),
             "attention_mask": torch.tensor(inputs["input_mask"], dtype=torch.long),
             "token_type_ids": torch.tensor(inputs["input_type_ids"], dtype=torch.long)}
    def run(m):
        with torch.inference_mode():
            return m(**feeds)[0].numpy()

    impls, absent = {HF[0]: lambda: run(model)}, {}
    compiled = torch.compile(model)
    try:  # compiled here (the untimed round runs it again): a failing inductor is its row's
        run(compiled)
        impls[HF[1]] = lambda: run(compiled)
    except Exception as e:  # noqa: BLE001 - any compiler failure (no C++ compiler, ...)
        absent[HF[1]] = f"torch.compile failed ({type(e).__name__}: {str(e)[:300]})"
    return impls, absent, torch.__version__


@pytest.fixture(scope="module")
def timings():
    inputs = _inputs()
    encoder = BertEncoder(CONFIG)
    encoder.build()
    tensors = {k: tf.constant(v) for k, v in inputs.items()}
    impls = {PYBERT[0]: lambda: encoder(tensors)["sequence_output"].numpy()}
    for name, xla in ((PYBERT[1], False), (PYBERT[2], True)):
        compiled = tf.function(lambda x: encoder(x)["sequence_output"], jit_compile=xla)
        impls[name] = lambda compiled=compiled: compiled(tensors).numpy()
    hf, absent, torch_version = _huggingface(encoder, inputs)
    impls.update(hf)
    real = inputs["input_mask"].astype(bool)
    checked = {}

    def check(outputs):
        ref = HF[0] if HF[0] in outputs else PYBERT[0]
        for name, out in outputs.items():
            if out.shape != (BATCH, SEQ, CONFIG.hidden_size):
                checked[name] = (f"{name}: output shape {out.shape}", "the output shape")
                continue
            if name == ref:
                checked[name] = (None, "the reference of the output checks")
                continue
            err = float(np.abs(out[real] - outputs[ref][real]).max())
            problem = None if err <= ATOL else (
                f"{name}: sequence output differs from {ref}'s by up to {err:.3g} "
                f"(real tokens; at most {ATOL} allowed)")
            checked[name] = (problem, f"sequence output within {ATOL} of {ref}'s on the real "
                             f"tokens (largest difference {err:.2g})")

    times = interleave(impls, ROUNDS, check)
    return {name: (times[name], fn, checked[name]) for name, fn in impls.items()}, absent, \
        torch_version


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("name", NAMES)
def test_encoder_forward(request, timings, name):
    group, absent, torch_version = timings
    if name not in group:
        missing(f"{name}: {absent[name]}")
    times, fn, (problem, checked) = group[name]
    assert problem is None, problem
    info = {"name": name}
    if name in HF:
        info["name"] = f"{name} (PyTorch {torch_version}, {THREADS} threads)"
    report_interleaved(request, f"encoder-forward-bert-base-b{BATCH}-s{SEQ}", fn, times,
                       items=BATCH, unit="sequences", anchor=name == ANCHOR, checked=checked,
                       **info)
