// Table-driven unit tests of the SQuAD core (run by ctest): the seed's
// get_final_text cases, a two-feature decode, and the top-k selection
// against a stable sort on random, tied and constant rows.
#include <algorithm>
#include <cstdint>
#include <iostream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "squad/postprocess.h"

#include "tests/expect.h"

namespace {

using pybert_test::Expect;

struct FinalTextSpec {
  const char* pred;
  const char* orig;
  bool lower;
  const char* want;
};

}  // namespace

int main() {
  const FinalTextSpec specs[] = {
      {"steve smith", "Steve Smith's", true, "Steve Smith"},  // the seed's own example
      {"smith", "Steve Smith's", true, "Smith"},
      {"hello", "H\xc3\xa9llo!", true, "H\xc3\xa9llo"},  // accents stripped in tok only
      {"x", "abc", true, "abc"},                      // not found: the whole span
      {"", "abc", true, "abc"},                       // empty: end cannot be mapped
      {"1 , 000", "1,000", true, "1,000"},
      {"denver broncos", "the Denver Broncos.", true, "Denver Broncos"},
  };
  for (const auto& s : specs) {
    std::vector<std::string> log;
    std::string got = pybert::squad::GetFinalText(s.pred, s.orig, s.lower, &log);
    Expect(got == s.want, std::string("GetFinalText('") + s.pred + "', '" + s.orig + "') = '" + got +
                              "', want '" + s.want + "'");
  }

  // One example, doc "The Denver Broncos won", one feature:
  // [CLS] who won [SEP] the denver broncos won [SEP]
  const std::string doc = "TheDenverBroncoswon";
  const int64_t doc_offsets[] = {0, 3, 9, 16, 19};
  const int64_t doc_splits[] = {0, 4};
  const int64_t feature_example[] = {0};
  const std::string toks = "[CLS]whowon[SEP]thedenverbroncoswon[SEP]";
  const int64_t tok_offsets[] = {0, 5, 8, 11, 16, 19, 25, 32, 35, 40};
  const int64_t tok_splits[] = {0, 9};
  const int32_t to_orig[] = {-1, -1, -1, -1, 0, 1, 2, 3, -1};
  const uint8_t max_ctx[] = {0, 0, 0, 0, 1, 1, 1, 1, 0};
  std::vector<double> start(9, 0.0), end(9, 0.0);
  start[5] = 5.0;  // "denver"
  end[6] = 5.0;    // "broncos"
  start[0] = end[0] = 1.0;
  pybert::squad::SquadInputs in;
  in.num_examples = 1;
  in.doc_tokens = {doc, doc_offsets};
  in.doc_splits = doc_splits;
  in.num_features = 1;
  in.feature_example = feature_example;
  in.tokens = {toks, tok_offsets};
  in.token_splits = tok_splits;
  in.token_to_orig = to_orig;
  in.max_context = max_ctx;
  in.start_logits = start.data();
  in.end_logits = end.data();
  in.seq_len = 9;
  pybert::squad::SquadOptions opt;
  opt.n_best_size = 20;
  auto results = pybert::squad::Postprocess(in, opt);
  Expect(results.size() == 1 && results[0].prediction == "Denver Broncos",
         "v1 prediction: " + (results.empty() ? std::string("none") : results[0].prediction));
  Expect(results[0].nbest.size() == 10, "n-best: the 10 spans inside the 4-token passage");
  double total = 0;
  for (const auto& e : results[0].nbest) total += e.probability;
  Expect(total > 0.999999 && total < 1.000001, "probabilities sum to 1");
  opt.version_2_with_negative = true;
  opt.null_score_diff_threshold = -20.0;  // null score 2 - best 10 = -8 > -20: answer ""
  results = pybert::squad::Postprocess(in, opt);
  Expect(results[0].prediction.empty() && results[0].has_score_diff && results[0].score_diff == -8.0,
         "v2 null prediction");

  // Top-k: the seed's order is a stable sort by value, descending.
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::uniform_int_distribution<int> small(-3, 3);
  int mismatches = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    const int64_t n = (trial % 7 == 0) ? 1 + trial % 40 : 384 - (trial % 5) * 37;
    const int k = 1 + trial % 25;
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) {
      switch (trial % 4) {
        case 0: x = normal(rng); break;
        case 1: x = static_cast<float>(small(rng)); break;  // many ties
        case 2: x = 1.5f; break;                            // all equal
        default: x = normal(rng) * 1e-30f + (trial % 3 == 0 ? 1e30f : -1e30f);
      }
    }
    std::vector<int32_t> want(static_cast<size_t>(n));
    std::iota(want.begin(), want.end(), 0);
    std::stable_sort(want.begin(), want.end(), [&](int32_t a, int32_t b) { return v[a] > v[b]; });
    want.resize(std::min<size_t>(want.size(), static_cast<size_t>(k)));
    mismatches += pybert::squad::TopIndexes(v.data(), n, k) != want;
  }
  Expect(mismatches == 0, "top-k equals the stable sort (" + std::to_string(mismatches) + " of 3000 differ)");
  return pybert_test::Finish("squad_test");
}
