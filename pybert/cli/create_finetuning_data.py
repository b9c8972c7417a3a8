"""create_finetuning_data: GLUE, SQuAD, retrieval and tagging TFRecords and meta data, as the seed.

The seed's flags and outputs (official/nlp/data/create_finetuning_data.py):

  create_finetuning_data --fine_tuning_task_type=classification \\
    --input_data_dir=glue/MRPC --classification_task_name=MRPC --vocab_file=vocab.txt \\
    --train_data_output_path=mrpc_train.tf_record --eval_data_output_path=mrpc_eval.tf_record \\
    --meta_data_file_path=mrpc_meta_data --max_seq_length=128

  create_finetuning_data --fine_tuning_task_type=squad --squad_data_file=train-v1.1.json \\
    --vocab_file=vocab.txt --train_data_output_path=squad_train.tf_record \\
    --meta_data_file_path=squad_meta_data

  create_finetuning_data --fine_tuning_task_type=retrieval --retrieval_task_name=tatoeba \\
    --input_data_dir=xtreme/tatoeba --vocab_file=vocab.txt \\
    --test_data_output_path=tatoeba_out --meta_data_file_path=tatoeba_meta_data

  create_finetuning_data --fine_tuning_task_type=tagging --tagging_task_name=panx \\
    --input_data_dir=xtreme/panx --vocab_file=vocab.txt \\
    --train_data_output_path=panx_train.tf_record --eval_data_output_path=panx_eval.tf_record \\
    --test_data_output_path=panx_test_{}.tf_record --meta_data_file_path=panx_meta_data

Retrieval (XTREME BUCC, Tatoeba) writes one TFRecord per language and side
into the --eval_data_output_path / --test_data_output_path directories;
tagging (XTREME PAN-X, UDPOS) writes one test file per language ('{}' in
--test_data_output_path). Languages whose files are absent from
--input_data_dir are skipped with a warning.

Additions: --squad_predict_file with --eval_data_output_path featurizes a
SQuAD evaluation file once (TFRecord + <path>.features.npz, the arrays of
pybert.squad.postprocess_output, for prediction with your own loop through
the Python API; run_squad featurizes its --predict_file itself, in under a
second for the v1.1 dev set), and --num_threads. Classification regression tasks (STS-B) work
with either task type. Not supported: SentencePiece and TFDS input (a clear
error says so). Errors in the input name the file and line and exit with
status 1; the outputs appear only when all of them are complete (an error or
interruption replaces none of an earlier run's).
"""

from __future__ import annotations

import os

from absl import flags

from pybert.cli._runner import run_tool
from pybert.tokenization import MAX_SEQ_LENGTH

FLAGS = flags.FLAGS

flags.DEFINE_enum("fine_tuning_task_type", "classification",
                  ["classification", "regression", "squad", "retrieval", "tagging"],
                  "The fine-tuning task type to generate data for.")
flags.DEFINE_string("input_data_dir", None, "Directory with the task's input files.")
flags.DEFINE_enum("classification_task_name", "MNLI",
                  ["AX", "COLA", "MNLI", "MRPC", "PAWS-X", "QNLI", "QQP", "RTE", "SST-2", "STS-B",
                   "WNLI", "XNLI", "XTREME-XNLI", "XTREME-PAWS-X"],
                  "The GLUE/XTREME task (the seed's processors; any case, as the seed).",
                  case_sensitive=False)
flags.DEFINE_enum("mnli_type", "matched", ["matched", "mismatched"], "MNLI dev/test set.")
flags.DEFINE_string("xnli_language", "en", "XNLI training language, or 'all'.")
flags.DEFINE_string("pawsx_language", "en", "PAWS-X training language, or 'all'.")
flags.DEFINE_enum("retrieval_task_name", "bucc", ["bucc", "tatoeba"],
                  "The sentence retrieval task (XTREME) for --fine_tuning_task_type=retrieval.",
                  case_sensitive=False)
flags.DEFINE_enum("tagging_task_name", "panx", ["panx", "udpos"],
                  "The tagging (token classification) task for --fine_tuning_task_type=tagging.",
                  case_sensitive=False)
flags.DEFINE_string("squad_data_file", None, "SQuAD training JSON.")
flags.DEFINE_integer("doc_stride", 128, "Stride between passage windows (tokens).", lower_bound=1)
flags.DEFINE_integer("max_query_length", 64, "Questions are truncated to this many tokens.",
                     lower_bound=1)
flags.DEFINE_bool("version_2_with_negative", False, "SQuAD v2.0: questions may have no answer.")
flags.DEFINE_string("vocab_file", None, "The WordPiece vocabulary of the model.")
flags.DEFINE_string("train_data_output_path", None, "Output TFRecord for training data.")
flags.DEFINE_string("eval_data_output_path", None,
                    "Output TFRecord for evaluation data (retrieval: a directory).")
flags.DEFINE_string("test_data_output_path", None,
                    "Output TFRecord for test data ('{}' = language for per-language tests; "
                    "retrieval: a directory).")
flags.DEFINE_string("meta_data_file_path", None, "Output meta data JSON.")
flags.DEFINE_bool("do_lower_case", True, "Lower-case the input (uncased models).")
flags.DEFINE_integer("max_seq_length", 128, "Maximum sequence length after WordPiece.",
                     lower_bound=3, upper_bound=MAX_SEQ_LENGTH)
flags.DEFINE_string("sp_model_file", "", "Not supported here (SentencePiece).")
flags.DEFINE_enum("tokenization", "WordPiece", ["WordPiece", "SentencePiece"],
                  "Only WordPiece is supported.")
flags.DEFINE_string("tfds_params", "", "Not supported here (TFDS input).")
# pybert additions
flags.DEFINE_string("squad_predict_file", None,
                    "SQuAD JSON to featurize for evaluation into --eval_data_output_path "
                    "(+ <path>.features.npz: the span-decoding arrays for the Python API, "
                    "pybert.squad.postprocess_output; run_squad featurizes its "
                    "--predict_file itself).")
flags.DEFINE_integer("num_threads", 0, "Tokenizer threads (0 = all cores).", lower_bound=0)

def run() -> dict:
    """Reads FLAGS, writes the outputs, returns the meta data."""
    from pybert.data.records import staged_outputs, write_json_atomic
    from pybert.tokenization import FullTokenizer

    if FLAGS.tokenization != "WordPiece" or FLAGS.sp_model_file:
        raise ValueError("SentencePiece tokenization is not supported by pybert")
    if FLAGS.tfds_params:
        raise ValueError("--tfds_params (TFDS input) is not supported by pybert")
    task_type = FLAGS.fine_tuning_task_type
    if not FLAGS.vocab_file:
        raise ValueError("--vocab_file is required")
    if not FLAGS.meta_data_file_path:
        raise ValueError("--meta_data_file_path is required")
    _check_distinct_outputs(task_type)
    tokenizer = FullTokenizer(FLAGS.vocab_file, do_lower_case=FLAGS.do_lower_case)
    # All outputs are replaced together when the last (the meta data) is complete, or none.
    with staged_outputs():
        meta = _write(task_type, tokenizer, FLAGS.num_threads or None)
        write_json_atomic(FLAGS.meta_data_file_path, meta)
    return meta


def _check_distinct_outputs(task_type: str) -> None:
    """Two outputs on one path would overwrite each other: an error naming both flags (and
    one naming the flag of an output path that is a directory)."""
    from pybert._outputs import check_distinct_outputs, check_output_file
    from pybert.data.squad import features_path

    outputs = [("--train_data_output_path", FLAGS.train_data_output_path),
               ("--eval_data_output_path", FLAGS.eval_data_output_path),
               ("--meta_data_file_path", FLAGS.meta_data_file_path)]
    if task_type == "retrieval":  # eval/test are directories, checked by the writer
        outputs = [("--meta_data_file_path", FLAGS.meta_data_file_path)]
    elif task_type != "squad":
        outputs.append(("--test_data_output_path", FLAGS.test_data_output_path))
    elif FLAGS.squad_predict_file and FLAGS.eval_data_output_path:
        outputs.append(("the .features.npz of --eval_data_output_path",
                        features_path(FLAGS.eval_data_output_path)))
    for name, path in outputs:
        if path:
            check_output_file(path, name)
    check_distinct_outputs(outputs)


def _check_squad_outputs() -> None:
    """Each SQuAD input has its output and each output its input, before any work: an
    output flag without its input would silently stay unwritten."""
    if not FLAGS.squad_data_file and not FLAGS.squad_predict_file:
        raise ValueError("--squad_data_file (training) or --squad_predict_file is required")
    pairs = (("--squad_data_file", FLAGS.squad_data_file, "--train_data_output_path",
              FLAGS.train_data_output_path, "training"),
             ("--squad_predict_file", FLAGS.squad_predict_file, "--eval_data_output_path",
              FLAGS.eval_data_output_path, "evaluation"))
    for in_flag, given, out_flag, path, what in pairs:
        if given and not path:
            raise ValueError(f"{out_flag} is required with {in_flag}")
        if path and not given:
            raise ValueError(f"{out_flag} needs {in_flag} (the SQuAD JSON to featurize for "
                             f"{what}); without it nothing would be written there")
    if FLAGS.test_data_output_path:
        raise ValueError("--test_data_output_path is not used for SQuAD (its evaluation "
                         "data: --squad_predict_file and --eval_data_output_path)")


def _write(task_type: str, tokenizer, threads) -> dict:
    """Writes the TFRecords (and SQuAD's .features.npz); returns the meta data."""
    from pybert._outputs import same_path
    from pybert.data import classification, retrieval, squad, tagging

    if task_type in ("retrieval", "tagging"):
        if not FLAGS.input_data_dir:
            raise ValueError(f"--input_data_dir is required for {task_type}")
        if not os.path.isdir(FLAGS.input_data_dir):
            raise ValueError(f"--input_data_dir {FLAGS.input_data_dir}: not a directory")
    if task_type == "retrieval":
        for flag, path in (("--eval_data_output_path", FLAGS.eval_data_output_path),
                           ("--test_data_output_path", FLAGS.test_data_output_path)):
            if path and same_path(path, FLAGS.meta_data_file_path):
                raise ValueError(f"{flag} and --meta_data_file_path are the same path ({path})")
        meta = retrieval.generate_retrieval_tf_record(
            FLAGS.retrieval_task_name, FLAGS.input_data_dir, tokenizer,
            FLAGS.eval_data_output_path, FLAGS.test_data_output_path, FLAGS.max_seq_length,
            threads)
    elif task_type == "tagging":
        meta = tagging.generate_tagging_tf_record(
            FLAGS.tagging_task_name, FLAGS.input_data_dir, tokenizer, FLAGS.max_seq_length,
            FLAGS.train_data_output_path, FLAGS.eval_data_output_path,
            FLAGS.test_data_output_path, threads)
    elif task_type == "squad":
        _check_squad_outputs()
        meta = {}
        if FLAGS.squad_data_file:
            meta = squad.generate_tf_record_from_json_file(
                FLAGS.squad_data_file, tokenizer, FLAGS.train_data_output_path,
                FLAGS.max_seq_length, FLAGS.max_query_length, FLAGS.doc_stride,
                FLAGS.version_2_with_negative, threads)
        if FLAGS.squad_predict_file:
            data = squad.read_squad(FLAGS.squad_predict_file, False,
                                    FLAGS.version_2_with_negative)
            feats = squad.featurize(data, tokenizer, FLAGS.max_seq_length, FLAGS.doc_stride,
                                    FLAGS.max_query_length, False, threads)
            squad.write_features(FLAGS.eval_data_output_path, feats, is_training=False)
            meta.setdefault("task_type", "bert_squad")
            meta.update({
                "max_seq_length": FLAGS.max_seq_length,
                "max_query_length": FLAGS.max_query_length,
                "doc_stride": FLAGS.doc_stride,
                "version_2_with_negative": FLAGS.version_2_with_negative,
                "eval_data_size": len(feats),
                "eval_examples": feats.num_examples,
            })
    else:
        if not FLAGS.input_data_dir:
            raise ValueError("--input_data_dir is required for classification/regression")
        if not FLAGS.train_data_output_path:
            raise ValueError("--train_data_output_path is required")
        spec = classification.get_task(FLAGS.classification_task_name, FLAGS.mnli_type,
                                       FLAGS.xnli_language, FLAGS.pawsx_language)
        if task_type == "regression" and not spec.is_regression:
            raise ValueError(f"--fine_tuning_task_type=regression but {spec.name} is a "
                             f"classification task")
        meta = classification.generate_tf_record_from_data_file(
            spec, FLAGS.input_data_dir, tokenizer, FLAGS.train_data_output_path,
            FLAGS.eval_data_output_path, FLAGS.test_data_output_path, FLAGS.max_seq_length,
            threads)
    return meta


def main(argv=None):
    def report(meta, seconds):
        print(f"wrote {FLAGS.meta_data_file_path} in {seconds:.1f} s: "
              + ", ".join(f"{k}={v}" for k, v in meta.items()))

    run_tool("create_finetuning_data", run, report, argv)


if __name__ == "__main__":
    main()
