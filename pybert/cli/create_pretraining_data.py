"""create_pretraining_data: masked-LM / next-sentence TFRecords from raw text (the seed's flags).

  create_pretraining_data --input_file=corpus/*.txt --output_file=out/train.tfrecord \\
    --vocab_file=vocab.txt --do_lower_case=True --max_seq_length=128 \\
    --max_predictions_per_seq=20 --masked_lm_prob=0.15 --random_seed=12345 --dupe_factor=5

Input: one sentence per line, blank lines between documents. --input_file
takes a comma-separated list of files or globs; --output_file a
comma-separated list (instances go round-robin). Additions: --num_workers
(default: all cores), --chunk_mb (documents are processed in chunks of about
this many MB; the random next segment comes from the same chunk; a corpus
within one chunk gives exactly the seed's output), a progress bar and a
closing summary. With no flags at all it runs on the bundled sample text and
vocab into a temporary directory (a smoke run).

Outputs are written under temporary names and renamed when complete. A run
that is killed (or fails) part way leaves <output>.incomplete files and
<first output>.incomplete.progress: the same command run again continues
after the last chunk written and ends with the files of an uninterrupted run
(with --gzip_compress, or with other input files, vocabulary or flags, it
starts over).
Bad input (missing file, invalid UTF-8, no text) exits with status 1 and a
message naming the file and line.
"""

from __future__ import annotations

import os
import tempfile

from absl import flags

from pybert.cli._runner import run_tool
from pybert.resources import resource_path
from pybert.tokenization import MAX_SEQ_LENGTH

FLAGS = flags.FLAGS

flags.DEFINE_string("input_file", None, "Input raw text file(s): comma-separated files or globs.")
flags.DEFINE_string("output_file", None, "Output TFRecord file(s), comma-separated.")
flags.DEFINE_string("vocab_file", None, "The vocabulary file that the BERT model was trained on.")
flags.DEFINE_bool("do_lower_case", True, "Lower-case the input (uncased models).")
flags.DEFINE_bool("do_whole_word_mask", False, "Mask whole words instead of word pieces.")
flags.DEFINE_integer("max_ngram_size", None,
                     "Mask n-grams of up to this many whole words (needs --do_whole_word_mask; "
                     "0 is as unset, as in the seed).",
                     lower_bound=0)
flags.DEFINE_bool("gzip_compress", False, "Write GZIP-compressed TFRecords.")
flags.DEFINE_bool("use_v2_feature_names", False,
                  "Feature names input_word_ids/input_type_ids instead of input_ids/segment_ids.")
flags.DEFINE_integer("max_seq_length", 128, "Maximum sequence length.",
                     lower_bound=3, upper_bound=MAX_SEQ_LENGTH)
flags.DEFINE_integer("max_predictions_per_seq", 20, "Maximum masked LM predictions per sequence.",
                     lower_bound=0)
flags.DEFINE_integer("random_seed", 12345, "Random seed for data generation.")
flags.DEFINE_integer("dupe_factor", 10, "Passes over the input, each with different masks.",
                     lower_bound=1)
flags.DEFINE_float("masked_lm_prob", 0.15, "Masked LM probability.",
                   lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_float("short_seq_prob", 0.1,
                   "Probability of sequences shorter than the maximum length.",
                   lower_bound=0.0, upper_bound=1.0)
# pybert additions
flags.DEFINE_integer("num_workers", 0, "Worker processes (0 = all cores).", lower_bound=0)
flags.DEFINE_float("chunk_mb", 8.0, "Documents are processed in chunks of about this many MB.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")


def run():
    from pybert.data.pretraining import PretrainingOptions, create_pretraining_data

    input_file, output_file, vocab_file = FLAGS.input_file, FLAGS.output_file, FLAGS.vocab_file
    if not (input_file or output_file or vocab_file):
        # Smoke run on embedded defaults.
        input_file = resource_path("sample_text.txt")
        vocab_file = resource_path("vocab_uncased.txt")
        output_file = os.path.join(tempfile.mkdtemp(prefix="pybert_pretraining_"),
                                   "sample.tfrecord")
        print(f"no flags given: bundled sample text -> {output_file}")
    for name, value in (("input_file", input_file), ("output_file", output_file),
                        ("vocab_file", vocab_file)):
        if not value:
            raise ValueError(f"--{name} is required")
    if not os.path.isfile(vocab_file):
        raise FileNotFoundError(f"--vocab_file {vocab_file}: file not found")
    opts = PretrainingOptions(
        max_seq_length=FLAGS.max_seq_length,
        max_predictions_per_seq=FLAGS.max_predictions_per_seq,
        masked_lm_prob=FLAGS.masked_lm_prob,
        short_seq_prob=FLAGS.short_seq_prob,
        dupe_factor=FLAGS.dupe_factor,
        random_seed=FLAGS.random_seed,
        do_lower_case=FLAGS.do_lower_case,
        do_whole_word_mask=FLAGS.do_whole_word_mask,
        max_ngram_size=FLAGS.max_ngram_size,
        use_v2_feature_names=FLAGS.use_v2_feature_names,
        gzip_compress=FLAGS.gzip_compress,
    )
    outputs = [p for p in output_file.split(",") if p]
    from pybert._outputs import check_distinct_outputs, check_output_file
    from pybert.data.pretraining import expand_input_files

    inputs = expand_input_files(input_file)
    for path in outputs:
        check_output_file(path, "--output_file", {"--input_file": inputs,
                                                  "--vocab_file": [vocab_file]})
    check_distinct_outputs([("--output_file", p) for p in outputs])
    stats = create_pretraining_data(input_file, outputs, vocab_file, opts,
                                    num_workers=FLAGS.num_workers or None,
                                    chunk_mb=FLAGS.chunk_mb, progress=FLAGS.progress)
    return stats


def main(argv=None):
    def report(stats, seconds):
        print(stats.summary())
        if stats.continued_after:
            print(f"  (continued an interrupted run after {stats.continued_after} instances)")
        for path, count in stats.per_file:
            print(f"  {path}: {count} instances")

    run_tool("create_pretraining_data", run, report, argv)


if __name__ == "__main__":
    main()
