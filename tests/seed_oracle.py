"""Loads the seed's own modules (tf-models-official==2.4.0) from the test-only
oracle folder that tools/run_tests.sh unpacks, for tests and benchmarks.

Modules are loaded from their files with light stubs: tensorflow (only
tf.io.gfile.GFile is used by the loaded code paths: it is the real one), sentencepiece
and six. The input pipeline and the XTREME data libraries get the real TensorFlow (they
build tf.data pipelines and write TFRecords).
"""

import functools
import importlib.util
import os
import sys
import types
from pathlib import Path

ORACLE_DIR = Path(os.environ.get("PYBERT_ORACLE_DIR", Path(__file__).resolve().parent / "_oracle"))


def required(loaded):
    """`loaded` (what a load_seed_* function returned), or skips the calling test or
    benchmark when the oracle is absent (None, or a tuple of Nones)."""
    if (loaded[0] if isinstance(loaded, tuple) else loaded) is None:
        import pytest

        pytest.skip("seed oracle not unpacked (see tools/run_tests.sh)")
    return loaded


def _gfile(path, mode="r"):
    """The real tf.io.gfile.GFile: its line reader ends lines at "\\n" only and drops every
    "\\r", which the seed's TSV and text readers inherit."""
    import tensorflow as tf

    return tf.io.gfile.GFile(path, mode)


def _stubs(extra=None):
    six = types.SimpleNamespace(PY2=False, PY3=True, iteritems=lambda d: iter(d.items()))
    stubs = {
        "tensorflow": types.SimpleNamespace(
            io=types.SimpleNamespace(
                gfile=types.SimpleNamespace(GFile=_gfile)
            )
        ),
        "sentencepiece": types.ModuleType("sentencepiece"),
        "six": six,
    }
    stubs.update(extra or {})
    return stubs


def _load(rel_path, name, extra_stubs=None):
    path = ORACLE_DIR / rel_path
    if not path.exists():
        return None
    stubs = _stubs(extra_stubs)
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return module


def load_seed_tokenization():
    """The seed's official/nlp/bert/tokenization.py, or None when the oracle is absent."""
    return _load("official/nlp/bert/tokenization.py", "seed_tokenization")


def load_seed_squad_lib():
    """The seed's official/nlp/data/squad_lib.py (read, featurize, post-process)."""
    stubs = _official_stubs()
    if stubs is None:
        return None
    return _load("official/nlp/data/squad_lib.py", "seed_squad_lib", stubs)


def _official_stubs():
    tokenization = load_seed_tokenization()
    if tokenization is None:
        return None
    official = types.ModuleType("official")
    nlp = types.ModuleType("official.nlp")
    bert = types.ModuleType("official.nlp.bert")
    bert.tokenization = tokenization
    official.nlp = nlp
    nlp.bert = bert
    return {
        "official": official,
        "official.nlp": nlp,
        "official.nlp.bert": bert,
        "official.nlp.bert.tokenization": tokenization,
        "tensorflow_datasets": types.ModuleType("tensorflow_datasets"),
    }


def load_seed_classifier_data_lib():
    """The seed's official/nlp/data/classifier_data_lib.py (GLUE processors, features).

    Only the readers and convert_single_example are usable (TF is stubbed).
    """
    stubs = _official_stubs()
    if stubs is None:
        return None
    return _load("official/nlp/data/classifier_data_lib.py", "seed_classifier_data_lib", stubs)


def load_seed_xtreme_libs():
    """The seed's sentence_retrieval_lib and tagging_data_lib (XTREME retrieval and tagging
    data), with the real TensorFlow so that their TFRecord writers run; (None, None) when
    the oracle is absent."""
    import tensorflow as tf

    stubs = _official_stubs()
    if stubs is None:
        return None, None
    stubs["tensorflow"] = tf
    classifier = _load("official/nlp/data/classifier_data_lib.py",
                       "seed_classifier_data_lib_tf", stubs)
    data = types.ModuleType("official.nlp.data")
    data.classifier_data_lib = classifier
    stubs["official"].nlp.data = data
    stubs.update({"official.nlp.data": data,
                  "official.nlp.data.classifier_data_lib": classifier})
    retrieval = _load("official/nlp/data/sentence_retrieval_lib.py",
                      "seed_sentence_retrieval_lib", stubs)
    tagging = _load("official/nlp/data/tagging_data_lib.py", "seed_tagging_data_lib", stubs)
    return retrieval, tagging


def load_seed_input_pipeline():
    """The seed's official/nlp/bert/input_pipeline.py with the real TensorFlow (its tf.data
    readers), or None when the oracle is absent."""
    path = ORACLE_DIR / "official/nlp/bert/input_pipeline.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("seed_input_pipeline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_seed_squad_evaluate(version):
    """The seed's official/nlp/bert/squad_evaluate_v1_1.py or _v2_0.py."""
    name = "squad_evaluate_v1_1" if version == "1.1" else "squad_evaluate_v2_0"
    return _load(f"official/nlp/bert/{name}.py", f"seed_{name}")


def load_seed_pretraining():
    """The seed's official/nlp/data/create_pretraining_data.py, or None without the oracle.

    Stubs: tensorflow (GFile only: the readers), absl (its flags are defined
    on a private FlagValues so they cannot clash with this process's flags),
    official.nlp.bert.tokenization (the seed's own).
    """
    official_stubs = _official_stubs()
    if official_stubs is None:
        return None
    from absl import flags as absl_flags

    own_flags = absl_flags.FlagValues()
    defines = ("DEFINE_string", "DEFINE_bool", "DEFINE_integer", "DEFINE_float")
    flags = types.SimpleNamespace(
        FLAGS=own_flags,
        **{d: functools.partial(getattr(absl_flags, d), flag_values=own_flags) for d in defines},
    )
    absl = types.ModuleType("absl")
    absl.app = types.SimpleNamespace()
    absl.flags = flags
    absl.logging = types.SimpleNamespace(info=lambda *args, **kwargs: None)
    tf = types.SimpleNamespace(
        io=types.SimpleNamespace(
            gfile=types.SimpleNamespace(GFile=_gfile)
        )
    )
    return _load(
        "official/nlp/data/create_pretraining_data.py",
        "seed_create_pretraining_data",
        {**official_stubs, "absl": absl, "tensorflow": tf},
    )


def assert_same_squad_output(ours, theirs):
    """(predictions, nbest, null odds) equal the seed's postprocess_output: the same
    answers, n-best texts and logits in the same order, probabilities within 1e-6."""
    import numpy as np

    preds, nbest, odds = ours
    s_preds, s_nbest, s_odds = theirs
    assert list(preds) == list(s_preds)
    assert preds == dict(s_preds)
    assert list(nbest) == list(s_nbest)
    for qid, entries in s_nbest.items():
        mine = nbest[qid]
        assert [e["text"] for e in mine] == [e["text"] for e in entries], qid
        assert [e["start_logit"] for e in mine] == [e["start_logit"] for e in entries], qid
        assert [e["end_logit"] for e in mine] == [e["end_logit"] for e in entries], qid
        np.testing.assert_allclose(
            [e["probability"] for e in mine], [e["probability"] for e in entries], rtol=0, atol=1e-6
        )
    assert list(odds) == list(s_odds)
    np.testing.assert_allclose(list(odds.values()), list(s_odds.values()), rtol=1e-12)
