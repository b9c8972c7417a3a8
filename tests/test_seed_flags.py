"""Every flag of the seed's tools works here: each pybert tool defines every flag the
seed's module of the same name defines (tf-models-official 2.4.0, read from the oracle
by importing it with its flag code real and the rest mocked, tests/flag_dump.py), with
the same short name, a compatible kind and the same default, but for the defaults
README's "Known differences from the seed" lists.
"""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
from pathlib import Path

import pytest
from seed_oracle import ORACLE_DIR

DUMP = Path(__file__).resolve().parent / "flag_dump.py"
# pybert tool: (the seed's module, how many flags it defines: all of them were read)
TOOLS = {
    "run_classifier": ("official.nlp.bert.run_classifier", 42),
    "run_squad": ("official.nlp.bert.run_squad", 45),
    "run_pretraining": ("official.nlp.bert.run_pretraining", 41),
    "export_tfhub": ("official.nlp.bert.export_tfhub", 5),
    "serving": ("official.nlp.bert.serving", 4),
    "tf2_encoder_checkpoint_converter": ("official.nlp.bert.tf2_encoder_checkpoint_converter", 5),
    "create_finetuning_data": ("official.nlp.data.create_finetuning_data", 22),
    "create_pretraining_data": ("official.nlp.data.create_pretraining_data", 14),
}
# Defaults changed on purpose (README, "Known differences from the seed" and "Training").
CHANGED_DEFAULTS = {
    "model_dir": "required here; the seed writes to /tmp by default",
    "num_gpus": "0: the seed's 1 fails on a machine without a GPU",
    "log_steps": "None: a line every loop (the seed's 100 steps is often no line at all)",
    "train_summary_interval": "an int (0): the seed defines it with DEFINE_bool but reads "
                              "a step interval",
}
# A flag may take the seed's values in a stricter or wider kind: a string that only has a
# few meaningful values became an enum (its values checked up front), a host list a list.
WIDER_KINDS = {("string", "string enum"), ("string", "comma separated list of strings")}
CHANGED_KINDS = {"train_summary_interval": ("bool", "int")}  # above

pytestmark = pytest.mark.skipif(
    not (ORACLE_DIR / "official/utils/flags/core.py").is_file(),
    reason="seed oracle (with official/utils) not unpacked (see tools/run_tests.sh)")


def _dump(side: str, module: str) -> dict:
    proc = subprocess.run([sys.executable, str(DUMP), side, module], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"{side} {module}: {proc.stderr[-2000:]}"
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def flags() -> dict:
    jobs = {(tool, side): (side, module)
            for tool, (seed_module, _) in TOOLS.items()
            for side, module in (("seed", seed_module), ("pybert", f"pybert.cli.{tool}"))}
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = {key: pool.submit(_dump, *args) for key, args in jobs.items()}
        return {key: fut.result() for key, fut in futures.items()}


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_tool_defines_every_seed_flag(flags, tool):
    seed, ours = flags[(tool, "seed")], flags[(tool, "pybert")]
    assert len(seed) == TOOLS[tool][1], sorted(seed)  # a mock swallowed no definitions
    missing = sorted(set(seed) - set(ours))
    assert not missing, f"pybert-{tool} lacks the seed's flags {missing}"
    for name, want in seed.items():
        got = ours[name]
        assert got["short"] == want["short"], (name, got, want)
        kinds = (want["kind"], got["kind"])
        assert (got["kind"] == want["kind"] or kinds in WIDER_KINDS
                or CHANGED_KINDS.get(name) == kinds), (name, got, want)
    changed = {name for name in seed if ours[name]["default"] != seed[name]["default"]}
    assert changed == set(CHANGED_DEFAULTS) & set(seed), {
        name: (ours[name]["default"], seed[name]["default"]) for name in changed}
