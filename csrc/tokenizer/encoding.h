// Model inputs from word pieces: special tokens, segment ids, truncation, and
// multi-threaded batches.
//
//   text "hello world", pair "hi", add_special_tokens:
//     ids      [CLS] hello world [SEP] hi [SEP]
//     type_ids   0     0     0     0   1    1
//
// Truncation follows the seed: for pairs, "longest_first" removes tokens from
// the end of the longer sequence one at a time (the second one on ties), to
// fit max_seq_length - 3; a single text keeps its first max_seq_length - 2.
#ifndef PYBERT_TOKENIZER_ENCODING_H_
#define PYBERT_TOKENIZER_ENCODING_H_

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace pybert {

enum class Truncation { kLongestFirst, kOnlyFirst, kOnlySecond };

struct EncodeOptions {
  int32_t max_seq_length = -1;  // -1: no limit (no truncation)
  Truncation truncation = Truncation::kLongestFirst;
  bool add_special_tokens = true;  // [CLS] a [SEP] (b [SEP])
  bool offsets = true;             // compute character offsets
  // A pair whose second text has no word pieces is encoded as a single text
  // ([CLS] a [SEP], truncated to max_seq_length - 2), as the seed's
  // convert_single_example does (its `if tokens_b:`); so is a pair whose second
  // text the longest_first truncation empties (max_seq_length 3 or 4, which this
  // option with longest_first accepts for pairs, as the seed does).
  bool empty_pair_as_single = false;
};

// Raised when an input cannot be encoded as asked (e.g. only_first cannot fit).
class EncodeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Ragged output of a batch (or of one chunk of it): row r spans
// [row_splits[r], row_splits[r + 1]) in ids / type_ids, and twice that in offsets.
struct EncodedRows {
  std::vector<int32_t> ids;
  std::vector<int32_t> type_ids;
  std::vector<int32_t> offsets;     // (begin, end) pairs; (0, 0) for special tokens
  std::vector<int64_t> row_splits;  // starts with 0
};

class Encoder {
 public:
  // Throws VocabError when add_special_tokens needs [CLS]/[SEP] and the vocab
  // lacks them; std::invalid_argument for a max_seq_length that leaves no room.
  Encoder(const BertTokenizer& tokenizer, EncodeOptions options, bool pairs);

  // Working memory for one thread, reusable across rows and calls.
  struct Workspace {
    BertTokenizer::Workspace tokenizer;
    std::vector<int32_t> ids_a, off_a, ids_b, off_b;
  };

  // Appends one row. `b` is ignored unless the encoder was made for pairs.
  // Throws EncodeError (message names `index`) when truncation cannot fit.
  void EncodeRow(std::string_view a, std::string_view b, size_t index, EncodedRows* out,
                 Workspace& workspace) const;

 private:
  const BertTokenizer& tokenizer_;
  EncodeOptions options_;
  bool pairs_;
  int32_t cls_id_ = -1;
  int32_t sep_id_ = -1;
};

// Encodes texts[i] (with pairs[i] when `pairs` is non-null) on `num_threads`
// threads. Returns chunks of consecutive rows in order; their concatenation
// is the batch. Errors from any row are rethrown (the first by row index).
std::vector<EncodedRows> EncodeBatch(const BertTokenizer& tokenizer,
                                     const std::vector<std::string_view>& texts,
                                     const std::vector<std::string_view>* pairs,
                                     const EncodeOptions& options, int num_threads);

}  // namespace pybert

#endif  // PYBERT_TOKENIZER_ENCODING_H_
