"""Prints the absl flags a tool module defines, as JSON {name: {short, default, kind}}.

    python tests/flag_dump.py pybert pybert.cli.run_classifier
    python tests/flag_dump.py seed official.nlp.bert.run_classifier

"seed" imports the seed's module from the oracle (seed_oracle.ORACLE_DIR, tf-models-official
2.4.0) with its flag code (absl, official.utils.flags, common_flags, ...) real and
everything else it imports (TensorFlow, its models, gin, TF Hub) replaced by mocks:
only the flag definitions run. Run in a subprocess (a module's flags are defined at
import, once per process).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import json
import sys
from unittest import mock

from seed_oracle import ORACLE_DIR

# The seed's modules that define flags or are imported by those that do: run for real.
_REAL = ("absl", "six", "official.utils.flags", "official.utils.hyperparams_flags",
         "official.nlp.bert.common_flags", "official.nlp.bert.run_squad_helper")
_PACKAGES = ("official", "official.utils", "official.nlp", "official.nlp.bert",
             "official.nlp.data")
_MOCKED = ("official", "tensorflow", "tensorflow_hub", "gin", "tensorflow_text",
           "sentencepiece", "tensorflow_datasets", "tf_keras")


class _MockFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def find_spec(self, name, path, target=None):
        if name == self.target or name in _PACKAGES or name.startswith(_REAL):
            return None
        if name.split(".")[0] in _MOCKED:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = mock.MagicMock(name=spec.name)
        module.__path__, module.__spec__, module.__name__ = [], spec, spec.name
        return module

    def exec_module(self, module):
        pass


def _import_seed(name: str):
    sys.path.insert(0, str(ORACLE_DIR))
    sys.meta_path.insert(0, _MockFinder(name))
    from absl import flags

    # The seed passes DEFINE_enum a comma-separated string in a few places (absl then
    # iterates its characters); read it as the list it means.
    define_enum = flags.DEFINE_enum

    def enum_from_string(name, default, enum_values, *args, **kwargs):
        if isinstance(enum_values, str):
            enum_values = [v.strip(" '") for v in enum_values.split(",")]
        return define_enum(name, default, list(enum_values), *args, **kwargs)

    flags.DEFINE_enum = enum_from_string
    return importlib.import_module(name)


def dump() -> dict:
    from absl import flags

    values = flags.FLAGS
    out = {}
    for name, flag in values._flags().items():
        module = values.find_module_defining_flag(name) or ""
        if name != flag.name or module.startswith("absl."):
            continue  # a short name's entry, or absl's own (--help, --flagfile, ...)
        out[name] = {"short": flag.short_name, "default": repr(flag.default),
                     "kind": flag.flag_type()}
    return out


if __name__ == "__main__":
    side, module_name = sys.argv[1:3]
    if side == "seed":
        _import_seed(module_name)
    else:
        importlib.import_module(module_name)
    json.dump(dump(), sys.stdout, sort_keys=True)
