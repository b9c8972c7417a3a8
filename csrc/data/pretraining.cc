#include "data/pretraining.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>
#include <utility>

#include "data/py_random.h"

namespace pybert {
namespace data {

double RoundHalfEven(double x) {
  const double f = std::floor(x);
  const double d = x - f;  // exact: below 2^52 the fraction is representable, above it is 0
  if (d > 0.5) return f + 1.0;
  if (d < 0.5) return f;
  return std::fmod(f, 2.0) == 0.0 ? f : f + 1.0;
}

namespace {

void Invalid(const std::string& message) { throw std::invalid_argument(message); }

void CheckOptions(const PretrainingOptions& o, const uint8_t* is_subword) {
  if (o.max_seq_length < 5) {
    // randint(2, max_seq_length - 3) must be a valid range, and [CLS] a [SEP] b [SEP] must fit.
    Invalid("max_seq_length must be >= 5, got " + std::to_string(o.max_seq_length));
  }
  // Upper bounds: the tokenizer's longest sequence (pybert.tokenization.MAX_SEQ_LENGTH); a
  // larger value is a mistake whose padded [instances, max_seq_length] arrays would not fit.
  constexpr int kMaxSeqLength = 1 << 16;
  if (o.max_seq_length > kMaxSeqLength) {
    Invalid("max_seq_length must be <= " + std::to_string(kMaxSeqLength) + ", got " +
            std::to_string(o.max_seq_length));
  }
  if (o.max_predictions_per_seq < 1 || o.max_predictions_per_seq > kMaxSeqLength) {
    Invalid("max_predictions_per_seq must be in [1, " + std::to_string(kMaxSeqLength) + "], got " +
            std::to_string(o.max_predictions_per_seq));
  }
  // Written so that NaN fails too.
  if (!(o.masked_lm_prob >= 0.0 && o.masked_lm_prob <= 1.0)) {
    Invalid("masked_lm_prob must be in [0, 1], got " + std::to_string(o.masked_lm_prob));
  }
  if (!(o.short_seq_prob >= 0.0 && o.short_seq_prob <= 1.0)) {
    Invalid("short_seq_prob must be in [0, 1], got " + std::to_string(o.short_seq_prob));
  }
  if (o.dupe_factor < 1) Invalid("dupe_factor must be >= 1, got " + std::to_string(o.dupe_factor));
  if (o.max_ngram_size < 0) {
    Invalid("max_ngram_size must be >= 0 (0 = no n-grams), got " + std::to_string(o.max_ngram_size));
  }
  if (o.max_ngram_size > 0 && !o.do_whole_word_mask) {
    // The seed: "cannot use ngram masking without whole word masking".
    Invalid("max_ngram_size > 0 requires do_whole_word_mask");
  }
  if (o.max_ngram_size > o.max_seq_length) {
    // No n-gram can be longer than a sequence; this bounds the per-size lists.
    Invalid("max_ngram_size must be <= max_seq_length, got " + std::to_string(o.max_ngram_size));
  }
  if (o.vocab_size < 1) Invalid("vocab_size must be >= 1, got " + std::to_string(o.vocab_size));
  const std::pair<const char*, int32_t> ids[] = {
      {"cls_id", o.cls_id}, {"sep_id", o.sep_id}, {"mask_id", o.mask_id}};
  for (const auto& [name, id] : ids) {
    if (id < 0 || id >= o.vocab_size) {
      Invalid(std::string(name) + " must be in [0, vocab_size=" + std::to_string(o.vocab_size) +
              "), got " + std::to_string(id));
    }
  }
  if (o.do_whole_word_mask && is_subword == nullptr) {
    Invalid("is_subword is required for do_whole_word_mask");
  }
}

void CheckDocuments(const Documents& d, int32_t vocab_size) {
  if (d.num_documents < 1) Invalid("documents: need at least one document");
  if (d.num_tokens < 0 || d.num_sentences < 0) Invalid("documents: negative sizes");
  if (d.sentence_splits == nullptr || d.document_splits == nullptr ||
      (d.token_ids == nullptr && d.num_tokens > 0)) {
    Invalid("documents: missing arrays");
  }
  if (d.sentence_splits[0] != 0 || d.sentence_splits[d.num_sentences] != d.num_tokens) {
    Invalid("sentence_splits must start at 0 and end at the number of tokens (" +
            std::to_string(d.num_tokens) + ")");
  }
  for (int64_t s = 0; s < d.num_sentences; ++s) {
    if (d.sentence_splits[s + 1] < d.sentence_splits[s]) Invalid("sentence_splits must be non-decreasing");
  }
  if (d.document_splits[0] != 0 || d.document_splits[d.num_documents] != d.num_sentences) {
    Invalid("document_splits must start at 0 and end at the number of sentences (" +
            std::to_string(d.num_sentences) + ")");
  }
  for (int64_t i = 0; i < d.num_documents; ++i) {
    if (d.document_splits[i + 1] <= d.document_splits[i]) {
      // The seed removes empty documents before anything else; so must the caller.
      Invalid("document_splits must be strictly increasing (document " + std::to_string(i) +
              " has no sentences)");
    }
  }
  for (int64_t t = 0; t < d.num_tokens; ++t) {
    if (d.token_ids[t] < 0 || d.token_ids[t] >= vocab_size) {
      Invalid("sentence_ids[" + std::to_string(t) + "] = " + std::to_string(d.token_ids[t]) +
              " is not in [0, vocab_size=" + std::to_string(vocab_size) + ")");
    }
  }
}

// A half-open span of token indices of one instance (the seed's _Gram).
struct Gram {
  int32_t begin;
  int32_t end;
};

// A half-open span of the flat token array.
struct Span {
  int64_t begin;
  int64_t end;
  int64_t size() const { return end - begin; }
};

// Instances in creation order, unpadded; the final shuffle only permutes rows
// when they are written out.
struct InstanceStore {
  std::vector<int32_t> tokens;            // after masking
  std::vector<int64_t> token_offsets{0};  // per instance
  std::vector<int32_t> num_segment_a;     // [CLS] A [SEP]: tokens with segment id 0
  std::vector<int32_t> positions;
  std::vector<int32_t> labels;
  std::vector<int64_t> mask_offsets{0};
  std::vector<uint8_t> random_next;
  int64_t size() const { return static_cast<int64_t>(random_next.size()); }
};

class InstanceMaker {
 public:
  InstanceMaker(const Documents& docs, const uint8_t* is_subword, uint64_t seed,
                const PretrainingOptions& o)
      : docs_(docs), is_subword_(is_subword), o_(o), rng_(seed) {
    const int n = std::max(o.max_ngram_size, 1);
    ngrams_.resize(n);
    // itertools.accumulate of 1/n, summed in the same order: the same doubles.
    double sum = 0.0;
    for (int i = 1; i <= n; ++i) {
      sum += 1.0 / i;
      cum_weights_.push_back(sum);
    }
  }

  PretrainingInstances Run() {
    order_.resize(docs_.num_documents);
    std::iota(order_.begin(), order_.end(), int64_t{0});
    rng_.Shuffle(order_.data(), order_.size());
    for (int dupe = 0; dupe < o_.dupe_factor; ++dupe) {
      for (int64_t d = 0; d < docs_.num_documents; ++d) FromDocument(d);
    }
    std::vector<int64_t> rows(store_.size());
    std::iota(rows.begin(), rows.end(), int64_t{0});
    rng_.Shuffle(rows.data(), rows.size());
    return Write(rows);
  }

 private:
  // The document at shuffled position k (all_documents[k]): its first
  // sentence and sentence count; sentence s is tokens
  // [SentenceStart(s), SentenceStart(s + 1)).
  int64_t FirstSentence(int64_t k) const { return docs_.document_splits[order_[k]]; }
  int64_t NumSentences(int64_t k) const {
    return docs_.document_splits[order_[k] + 1] - docs_.document_splits[order_[k]];
  }
  int64_t SentenceStart(int64_t s) const { return docs_.sentence_splits[s]; }

  // The seed's create_instances_from_document for all_documents[k].
  void FromDocument(int64_t k) {
    const int64_t s0 = FirstSentence(k);
    const int64_t num_sentences = NumSentences(k);
    const int64_t max_num_tokens = o_.max_seq_length - 3;
    int64_t target_seq_length = max_num_tokens;
    if (rng_.Random() < o_.short_seq_prob) target_seq_length = rng_.RandInt(2, max_num_tokens);

    // The current chunk is always the sentences [chunk_start, i] of this document.
    int64_t chunk_start = 0;
    int64_t current_length = 0;
    for (int64_t i = 0; i < num_sentences; ++i) {
      current_length += SentenceStart(s0 + i + 1) - SentenceStart(s0 + i);
      if (i != num_sentences - 1 && current_length < target_seq_length) continue;
      const int64_t chunk_size = i - chunk_start + 1;
      int64_t a_end = 1;
      if (chunk_size >= 2) a_end = rng_.RandInt(1, chunk_size - 1);
      Span a{SentenceStart(s0 + chunk_start), SentenceStart(s0 + chunk_start + a_end)};
      Span b;
      bool is_random_next = false;
      if (chunk_size == 1 || rng_.Random() < 0.5) {
        is_random_next = true;
        const int64_t target_b_length = target_seq_length - a.size();
        // Ten tries for another document; the last draw stands either way.
        int64_t other = 0;
        for (int attempt = 0; attempt < 10; ++attempt) {
          other = rng_.RandInt(0, docs_.num_documents - 1);
          if (other != k) break;
        }
        const int64_t r0 = FirstSentence(other);
        const int64_t r_count = NumSentences(other);
        const int64_t random_start = rng_.RandInt(0, r_count - 1);
        b.begin = b.end = SentenceStart(r0 + random_start);
        for (int64_t j = random_start; j < r_count; ++j) {
          b.end = SentenceStart(r0 + j + 1);
          if (b.size() >= target_b_length) break;
        }
        // The chunk's B sentences were not used: they start the next chunk.
        i -= chunk_size - a_end;
      } else {
        b = Span{SentenceStart(s0 + chunk_start + a_end), SentenceStart(s0 + i + 1)};
      }
      TruncatePair(&a, &b, max_num_tokens);
      // The seed asserts both are non-empty; only empty sentences can break that.
      if (a.size() >= 1 && b.size() >= 1) Emit(a, b, is_random_next);
      chunk_start = i + 1;
      current_length = 0;
    }
  }

  // The seed's truncate_seq_pair: one token at a time off the longer side
  // (B on ties), from the front or the back by a coin flip.
  void TruncatePair(Span* a, Span* b, int64_t max_num_tokens) {
    while (a->size() + b->size() > max_num_tokens) {
      Span* longer = a->size() > b->size() ? a : b;
      if (rng_.Random() < 0.5) {
        ++longer->begin;
      } else {
        --longer->end;
      }
    }
  }

  void Emit(Span a, Span b, bool is_random_next) {
    const int32_t* ids = docs_.token_ids;
    tokens_.clear();
    tokens_.push_back(o_.cls_id);
    tokens_.insert(tokens_.end(), ids + a.begin, ids + a.end);
    tokens_.push_back(o_.sep_id);
    tokens_.insert(tokens_.end(), ids + b.begin, ids + b.end);
    tokens_.push_back(o_.sep_id);
    MaskTokens();
    store_.tokens.insert(store_.tokens.end(), tokens_.begin(), tokens_.end());
    store_.token_offsets.push_back(static_cast<int64_t>(store_.tokens.size()));
    store_.num_segment_a.push_back(static_cast<int32_t>(a.size() + 2));
    for (const auto& [position, label] : masked_lms_) {
      store_.positions.push_back(position);
      store_.labels.push_back(label);
    }
    store_.mask_offsets.push_back(static_cast<int64_t>(store_.positions.size()));
    store_.random_next.push_back(is_random_next ? 1 : 0);
  }

  bool IsSpecial(int32_t id) const { return id == o_.cls_id || id == o_.sep_id; }

  // The seed's create_masked_lm_predictions on tokens_, in place; the
  // (position, original id) pairs go to masked_lms_, sorted by position.
  void MaskTokens() {
    const int32_t n = static_cast<int32_t>(tokens_.size());
    // At most one gram per token: written by index, without push_back's checks.
    grams_.resize(n);
    Gram* grams = grams_.data();
    int32_t num_grams = 0;
    if (o_.do_whole_word_mask) {
      // _wordpieces_to_grams: a word is a token plus the "##" pieces after it.
      int32_t start = -1;
      for (int32_t i = 0; i < n; ++i) {
        const int32_t t = tokens_[i];
        if (start >= 0 && is_subword_[t]) continue;
        if (start >= 0) grams[num_grams++] = Gram{start, i};
        start = IsSpecial(t) ? -1 : i;
      }
      if (start >= 0) grams[num_grams++] = Gram{start, n};
    } else {
      for (int32_t i = 0; i < n; ++i) {
        if (!IsSpecial(tokens_[i])) grams[num_grams++] = Gram{i, i + 1};
      }
    }
    grams_.resize(num_grams);
    const int64_t rounded = static_cast<int64_t>(RoundHalfEven(n * o_.masked_lm_prob));
    const int32_t num_to_predict =
        static_cast<int32_t>(std::min<int64_t>(o_.max_predictions_per_seq, std::max<int64_t>(1, rounded)));
    masked_lms_.clear();
    if (grams_.empty()) return;  // the seed would fail here (iterating None)
    ChooseNgrams(num_to_predict);
    for (const Gram& g : chosen_) {
      // One draw decides the action for the whole gram; random words are drawn per token.
      int action;  // 0 = [MASK], 1 = keep, 2 = random word
      if (rng_.Random() < 0.8) {
        action = 0;
      } else {
        action = rng_.Random() < 0.5 ? 1 : 2;
      }
      for (int32_t idx = g.begin; idx < g.end; ++idx) {
        masked_lms_.emplace_back(idx, tokens_[idx]);  // grams never overlap: still the original
        if (action == 0) {
          tokens_[idx] = o_.mask_id;
        } else if (action == 2) {
          tokens_[idx] = static_cast<int32_t>(rng_.ChoiceIndex(static_cast<size_t>(o_.vocab_size)));
        }
      }
    }
    std::sort(masked_lms_.begin(), masked_lms_.end());  // positions are distinct
  }

  // The seed's _masking_ngrams(grams_, max(max_ngram_size, 1), max_masked) into chosen_.
  void ChooseNgrams(int32_t max_masked) {
    const int num_sizes = static_cast<int>(ngrams_.size());
    const int32_t num_grams = static_cast<int32_t>(grams_.size());
    // reach[q]: how many grams, from q on, touch each other; an n-gram may
    // start at q when reach[q] >= n.
    if (num_sizes > 1) {
      reach_.assign(num_grams, 1);
      for (int32_t q = num_grams - 2; q >= 0; --q) {
        if (grams_[q].end == grams_[q + 1].begin) reach_[q] = reach_[q + 1] + 1;
      }
    }
    int64_t remaining = 0;
    for (int size = 1; size <= num_sizes; ++size) {
      auto& list = ngrams_[size - 1];
      list.clear();
      for (int32_t q = 0; q + size <= num_grams; ++q) {
        if (size == 1 || reach_[q] >= size) list.push_back(Gram{grams_[q].begin, grams_[q + size - 1].end});
      }
      rng_.Shuffle(list.data(), list.size());
      remaining += static_cast<int64_t>(list.size());
    }
    masked_.assign(grams_.back().end, 0);
    chosen_.clear();
    int32_t num_masked = 0;
    const double total = cum_weights_.back();
    while (num_masked < max_masked && remaining > 0) {
      int size = 1;
      if (num_sizes > 1) {
        // random.choices(range(1, n + 1), cum_weights) from the seeded generator
        // (the seed's global generator is the documented deviation).
        const double x = rng_.Random() * total;
        size = static_cast<int>(std::upper_bound(cum_weights_.begin(), cum_weights_.end() - 1, x) -
                                cum_weights_.begin()) +
               1;
      }
      auto& list = ngrams_[size - 1];
      if (num_masked + size > max_masked) {
        // An n-gram has at least n tokens: none of this size can fit any more.
        remaining -= static_cast<int64_t>(list.size());
        list.clear();
        continue;
      }
      if (list.empty()) continue;
      const Gram g = list.back();
      list.pop_back();
      --remaining;
      if (num_masked + (g.end - g.begin) > max_masked) continue;
      bool overlaps = false;
      for (int32_t t = g.begin; t < g.end && !overlaps; ++t) overlaps = masked_[t] != 0;
      if (overlaps) continue;
      std::fill(masked_.begin() + g.begin, masked_.begin() + g.end, uint8_t{1});
      num_masked += g.end - g.begin;
      chosen_.push_back(g);
    }
  }

  // Rows in the shuffled order, padded as write_instance_to_example_files does.
  PretrainingInstances Write(const std::vector<int64_t>& rows) const {
    PretrainingInstances out;
    const int64_t n = static_cast<int64_t>(rows.size());
    const int64_t L = o_.max_seq_length, P = o_.max_predictions_per_seq;
    out.num_instances = n;
    out.max_seq_length = o_.max_seq_length;
    out.max_predictions_per_seq = o_.max_predictions_per_seq;
    out.input_ids.assign(n * L, 0);
    out.input_mask.assign(n * L, 0);
    out.segment_ids.assign(n * L, 0);
    out.masked_lm_positions.assign(n * P, 0);
    out.masked_lm_ids.assign(n * P, 0);
    out.masked_lm_weights.assign(n * P, 0.0f);
    out.next_sentence_labels.assign(n, 0);
    for (int64_t r = 0; r < n; ++r) {
      const int64_t src = rows[r];
      const int64_t t0 = store_.token_offsets[src], len = store_.token_offsets[src + 1] - t0;
      std::copy_n(store_.tokens.data() + t0, len, out.input_ids.data() + r * L);
      std::fill_n(out.input_mask.data() + r * L, len, 1);
      const int64_t a = store_.num_segment_a[src];
      std::fill_n(out.segment_ids.data() + r * L + a, len - a, 1);
      const int64_t m0 = store_.mask_offsets[src], m = store_.mask_offsets[src + 1] - m0;
      std::copy_n(store_.positions.data() + m0, m, out.masked_lm_positions.data() + r * P);
      std::copy_n(store_.labels.data() + m0, m, out.masked_lm_ids.data() + r * P);
      std::fill_n(out.masked_lm_weights.data() + r * P, m, 1.0f);
      out.next_sentence_labels[r] = store_.random_next[src];
    }
    return out;
  }

  const Documents& docs_;
  const uint8_t* is_subword_;
  const PretrainingOptions& o_;
  PyRandom rng_;
  std::vector<int64_t> order_;  // all_documents after the seed's shuffle, as document indexes
  InstanceStore store_;
  // Per-instance scratch, reused.
  std::vector<int32_t> tokens_;
  std::vector<Gram> grams_;
  std::vector<int32_t> reach_;
  std::vector<std::vector<Gram>> ngrams_;  // [size - 1]
  std::vector<double> cum_weights_;
  std::vector<uint8_t> masked_;
  std::vector<Gram> chosen_;
  std::vector<std::pair<int32_t, int32_t>> masked_lms_;
};

}  // namespace

PretrainingInstances CreatePretrainingInstances(const Documents& docs, const uint8_t* is_subword,
                                                uint64_t seed, const PretrainingOptions& options) {
  CheckOptions(options, is_subword);
  CheckDocuments(docs, options.vocab_size);
  InstanceMaker maker(docs, is_subword, seed, options);
  return maker.Run();
}

}  // namespace data
}  // namespace pybert
