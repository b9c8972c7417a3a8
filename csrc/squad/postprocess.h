// SQuAD n-best span decoding and final-text projection, following the seed's
// squad_lib.postprocess_output / get_final_text rules exactly:
//
//   per feature: top n_best start and end indexes (ties: lower index first);
//   keep (start, end) when both are inside the passage (token_to_orig_map),
//   the start token has max context, end >= start, end - start + 1 <=
//   max_answer_length; v2.0 adds the minimum null score over the features;
//   candidates of all features of an example are sorted by start + end logit
//   (stable), de-duplicated by final text until n_best; softmax over them.
//
//   final text: "steve smith" predicted inside "Steve Smith's" -> "Steve Smith"
//   (characters aligned after basic tokenization; on failure the whole
//   original span is returned, with a verbose log message).
//
// All inputs are flat arrays; the caller (pybert/squad) validates them.
#ifndef PYBERT_SQUAD_POSTPROCESS_H_
#define PYBERT_SQUAD_POSTPROCESS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace pybert {
namespace squad {

// A list of strings stored as one UTF-8 buffer: item i is
// data[offsets[i], offsets[i + 1]).
struct StringList {
  std::string_view data;
  const int64_t* offsets = nullptr;  // [count + 1]
  std::string_view at(int64_t i) const {
    return data.substr(static_cast<size_t>(offsets[i]), static_cast<size_t>(offsets[i + 1] - offsets[i]));
  }
};

struct SquadInputs {
  int64_t num_examples = 0;
  StringList doc_tokens;                 // every example's whitespace tokens, concatenated
  const int64_t* doc_splits = nullptr;   // [num_examples + 1]: example e owns doc tokens [doc_splits[e], doc_splits[e+1])
  int64_t num_features = 0;
  const int64_t* feature_example = nullptr;  // [num_features] example index, features grouped in example order
  StringList tokens;                         // every feature's word pieces, concatenated
  const int64_t* token_splits = nullptr;     // [num_features + 1]
  const int32_t* token_to_orig = nullptr;    // per token: doc token index within its example, -1 if none
  const uint8_t* max_context = nullptr;      // per token: token_is_max_context
  // [num_features, seq_len] logits: float64, or float32 (start_logits_f32 /
  // end_logits_f32 set instead; each value is widened to double exactly, as
  // the seed's Python floats are).
  const double* start_logits = nullptr;
  const double* end_logits = nullptr;
  const float* start_logits_f32 = nullptr;
  const float* end_logits_f32 = nullptr;
  int64_t seq_len = 0;
};

struct SquadOptions {
  int n_best_size = 20;
  int max_answer_length = 30;
  bool do_lower_case = true;
  bool version_2_with_negative = false;
  double null_score_diff_threshold = 0.0;
  bool verbose = false;  // collect get_final_text's log messages
  int num_threads = 1;
};

struct NbestEntry {
  std::string text;
  double probability;
  double start_logit;
  double end_logit;
};

struct ExampleResult {
  std::string prediction;
  std::vector<NbestEntry> nbest;
  bool has_score_diff = false;  // v2.0 only
  double score_diff = 0.0;      // null score - best non-null score (or the null score)
  std::vector<std::string> log;  // verbose messages, in order
};

// Decodes examples one at a time (one thread; `in` must outlive it). Decode
// reuses *out's buffers, so decoding every example into the same
// ExampleResult allocates nothing once they are large enough.
class Decoder {
 public:
  Decoder(const SquadInputs& in, const SquadOptions& options);
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;
  void Decode(int64_t example, ExampleResult* out);

 private:
  struct State;
  const SquadInputs& in_;
  SquadOptions options_;
  std::vector<int64_t> first_;
  std::unique_ptr<State> state_;
};

// Every example, in parallel over options.num_threads threads; results are
// indexed by example.
std::vector<ExampleResult> Postprocess(const SquadInputs& in, const SquadOptions& options);

// The k largest of values[0, n) (finite), best first, ties to the lower
// index: the order of the seed's sorted(enumerate(...), reverse by value)
// head. What decoding uses per feature, exposed for tests.
std::vector<int32_t> TopIndexes(const float* values, int64_t n, int k);

// The seed's get_final_text; `log` (optional) receives verbose messages.
std::string GetFinalText(std::string_view pred_text, std::string_view orig_text, bool do_lower_case,
                         std::vector<std::string>* log);

// The same with the basic tokenization of orig_text, joined by spaces, given.
std::string FinalTextGivenTokens(std::string_view pred_text, std::string_view orig_text,
                                 std::string_view orig_tokens, std::vector<std::string>* log);

// FinalTextGivenTokens when orig_text and orig_tokens are ASCII, with their
// counts of characters other than ' ' given; found: orig_tokens.find(pred_text)
// (std::string::npos: search here). The text is assigned to *out.
void FinalTextAscii(std::string_view pred_text, std::string_view orig_text, std::string_view orig_tokens,
                    size_t tok_ns, size_t orig_ns, size_t found, std::vector<std::string>* log,
                    std::string* out);

}  // namespace squad
}  // namespace pybert

#endif  // PYBERT_SQUAD_POSTPROCESS_H_
