// BERT pre-training instances (masked LM + next sentence prediction) from
// tokenized documents, reproducing the seed's create_pretraining_data.py
// create_training_instances draw for draw: given the same documents (as ids),
// vocabulary size and seed, the instances are the ones random.Random(seed)
// makes the seed produce, in the same order.
//
// The draws, in order (all from one PyRandom, see py_random.h):
//   shuffle(documents); then dupe_factor passes over the documents, each
//   document cut into instances:
//     random() < short_seq_prob ? randint(2, max_seq_length - 3) : full target;
//     sentences packed into a chunk until the target or the document's end;
//     a_end = randint(1, chunk - 1) for chunks of >= 2 sentences;
//     random next when the chunk has 1 sentence or random() < 0.5: up to 10
//       randint(0, D - 1) for a document other than this one, randint for the
//       first sentence there; the chunk's unused sentences are put back;
//     truncate the longer side, front or back by random() < 0.5, per token;
//     [CLS] A [SEP] B [SEP]; masked LM predictions (below);
//   shuffle(instances).
//   Masking: candidate grams are single tokens (or whole words: a token plus
//   the "##" pieces after it), never [CLS]/[SEP]; num_to_predict =
//   min(P, max(1, round_half_even(len * masked_lm_prob))); for each n-gram
//   size 1..max_ngram_size the contiguous n-grams are listed and shuffled;
//   n-grams are popped from the end of their list under the seed's skip rules;
//   per chosen gram random() < 0.8 -> [MASK], else random() < 0.5 -> keep,
//   else a random vocabulary id (randbelow(vocab_size)) per token.
//
// Deviations from the seed, both where the seed cannot run or is not
// reproducible:
//   * n-gram size (max_ngram_size > 1 only): the seed draws it with the
//     module-level random.choices, i.e. Python's global, unseeded generator,
//     so its output is not reproducible at all. Here it is drawn from the
//     seeded generator with random.choices' rule (bisect_right of
//     random() * total over the cumulative 1/n weights, hi = n - 1). With
//     max_ngram_size 0 or 1 the size is always 1 and, as in the seed, the
//     seeded generator is not touched: those outputs are bit-exact.
//   * An instance whose A or B segment is empty (only possible with empty
//     sentences, which the caller normally removes) is skipped after its
//     truncation draws, where the seed fails an assert. An instance with no
//     maskable token (its tokens are all [CLS]/[SEP] ids) gets no
//     predictions, where the seed raises a TypeError.
#ifndef PYBERT_DATA_PRETRAINING_H_
#define PYBERT_DATA_PRETRAINING_H_

#include <cstdint>
#include <vector>

namespace pybert {
namespace data {

struct PretrainingOptions {
  int max_seq_length = 128;          // L, >= 5: [CLS] a [SEP] b [SEP]
  int max_predictions_per_seq = 20;  // P, >= 1
  double masked_lm_prob = 0.15;
  double short_seq_prob = 0.1;
  int dupe_factor = 10;
  bool do_whole_word_mask = false;
  // 0 = none (plain token or whole-word masking); > 0 needs do_whole_word_mask
  // (as in the seed) and must be <= max_seq_length.
  int max_ngram_size = 0;
  int32_t cls_id = 101;
  int32_t sep_id = 102;
  int32_t mask_id = 103;
  // The seed's len(tokenizer.vocab): random words are drawn as ids below it
  // (id = vocab line, as long as the vocab file has no duplicate lines).
  int32_t vocab_size = 0;
};

// Tokenized documents as ragged arrays. Sentence s is
// token_ids[sentence_splits[s], sentence_splits[s + 1]); document d is
// sentences [document_splits[d], document_splits[d + 1]). Documents must be
// non-empty (the seed drops empty ones before shuffling).
struct Documents {
  const int32_t* token_ids = nullptr;
  int64_t num_tokens = 0;
  const int64_t* sentence_splits = nullptr;  // [num_sentences + 1]
  int64_t num_sentences = 0;
  const int64_t* document_splits = nullptr;  // [num_documents + 1]
  int64_t num_documents = 0;
};

// N instances as the seed's write_instance_to_example_files pads them, rows
// in the final (shuffled) order.
struct PretrainingInstances {
  int64_t num_instances = 0;
  int max_seq_length = 0;
  int max_predictions_per_seq = 0;
  std::vector<int32_t> input_ids;            // [N * L], 0-padded
  std::vector<int32_t> input_mask;           // [N * L]
  std::vector<int32_t> segment_ids;          // [N * L]
  std::vector<int32_t> masked_lm_positions;  // [N * P], 0-padded, increasing
  std::vector<int32_t> masked_lm_ids;        // [N * P], the original token ids
  std::vector<float> masked_lm_weights;      // [N * P], 1 real / 0 padding
  std::vector<int32_t> next_sentence_labels;  // [N], 1 = B is a random next
};

// Throws std::invalid_argument (message naming the argument) for bad options,
// splits or ids. is_subword[v] is 1 when vocabulary token v starts with "##"
// (read only with do_whole_word_mask).
PretrainingInstances CreatePretrainingInstances(const Documents& docs, const uint8_t* is_subword,
                                                uint64_t seed, const PretrainingOptions& options);

// Python's round(x) for a finite double: nearest integer, ties to even.
double RoundHalfEven(double x);

}  // namespace data
}  // namespace pybert

#endif  // PYBERT_DATA_PRETRAINING_H_
