#include "tokenizer/encoding.h"

#include "common/parallel.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>

namespace pybert {
namespace {

// Rows per work item: big enough to amortize scheduling, small enough to
// balance two or more threads on uneven text lengths.
constexpr size_t kMinBytesPerChunk = 1 << 16;

// The seed's _truncate_seq_pair: pop from the longer list, the second on ties.
void TruncatePair(size_t* len_a, size_t* len_b, size_t max_total) {
  while (*len_a + *len_b > max_total) {
    if (*len_a > *len_b) {
      --*len_a;
    } else {
      --*len_b;
    }
  }
}

}  // namespace

Encoder::Encoder(const BertTokenizer& tokenizer, EncodeOptions options, bool pairs)
    : tokenizer_(tokenizer), options_(options), pairs_(pairs) {
  if (options_.add_special_tokens) {
    cls_id_ = tokenizer_.vocab().Find("[CLS]");
    sep_id_ = tokenizer_.vocab().Find("[SEP]");
    if (cls_id_ < 0 || sep_id_ < 0) {
      throw VocabError(tokenizer_.vocab().source() + ": the vocabulary has no " +
                       (cls_id_ < 0 ? "[CLS]" : "[SEP]") +
                       " token, which add_special_tokens=True needs");
    }
  }
  if (options_.max_seq_length >= 0) {
    int32_t specials = options_.add_special_tokens ? (pairs_ ? 3 : 2) : 0;
    // The seed's rule (empty_pair_as_single with longest_first) takes pair lengths without
    // room for both texts (3 or 4 with special tokens): its pair truncation may empty the
    // second text, which makes the row a single text (see EncodeRow). only_first and
    // only_second cannot fit a row there: refused here, once.
    const bool seed_pairs = pairs_ && options_.empty_pair_as_single &&
                            options_.add_special_tokens &&
                            options_.truncation == Truncation::kLongestFirst;
    const int32_t min_text = seed_pairs ? 0 : (pairs_ ? 2 : 1);
    if (options_.max_seq_length < specials + min_text) {
      throw std::invalid_argument("max_seq_length=" + std::to_string(options_.max_seq_length) +
                                  " leaves no room for text after " + std::to_string(specials) +
                                  " special tokens");
    }
  }
}

void Encoder::EncodeRow(std::string_view a, std::string_view b, size_t index, EncodedRows* out,
                        Workspace& ws) const {
  std::vector<int32_t>&ids_a = ws.ids_a, &off_a = ws.off_a, &ids_b = ws.ids_b, &off_b = ws.off_b;
  ids_a.clear();
  off_a.clear();
  ids_b.clear();
  off_b.clear();
  const bool want_offsets = options_.offsets;
  tokenizer_.Encode(a, PieceSink{&ids_a, want_offsets ? &off_a : nullptr}, &ws.tokenizer);
  if (pairs_) tokenizer_.Encode(b, PieceSink{&ids_b, want_offsets ? &off_b : nullptr}, &ws.tokenizer);
  bool pair = pairs_ && !(options_.empty_pair_as_single && ids_b.empty());
  size_t len_a = ids_a.size(), len_b = ids_b.size();
  if (options_.max_seq_length >= 0) {
    const size_t specials = options_.add_special_tokens ? (pair ? 3 : 2) : 0;
    const size_t room = static_cast<size_t>(options_.max_seq_length) - specials;
    if (!pair) {
      len_a = std::min(len_a, room);
    } else if (options_.truncation == Truncation::kLongestFirst) {
      TruncatePair(&len_a, &len_b, room);
    } else if (options_.truncation == Truncation::kOnlyFirst) {
      if (len_b >= room && len_a + len_b > room) {
        throw EncodeError("input " + std::to_string(index) + ": truncation='only_first' cannot fit " +
                          "max_seq_length=" + std::to_string(options_.max_seq_length) +
                          ": the second sequence alone has " + std::to_string(len_b) + " tokens");
      }
      len_a = std::min(len_a, room - len_b);
    } else {
      if (len_a >= room && len_a + len_b > room) {
        throw EncodeError("input " + std::to_string(index) + ": truncation='only_second' cannot fit " +
                          "max_seq_length=" + std::to_string(options_.max_seq_length) +
                          ": the first sequence alone has " + std::to_string(len_a) + " tokens");
      }
      len_b = std::min(len_b, room - len_a);
    }
    // The seed tests `if tokens_b:` after _truncate_seq_pair: a second text truncated to
    // nothing (only when max_seq_length leaves no room for both, 3 or 4) leaves a single
    // text, whose first text keeps its pair truncation.
    if (pair && options_.empty_pair_as_single && len_b == 0) pair = false;
  }
  auto push_special = [&](int32_t id, int32_t type) {
    out->ids.push_back(id);
    out->type_ids.push_back(type);
    if (want_offsets) {
      out->offsets.push_back(0);
      out->offsets.push_back(0);
    }
  };
  auto push_seq = [&](const std::vector<int32_t>& ids, const std::vector<int32_t>& offs, size_t len,
                      int32_t type) {
    out->ids.insert(out->ids.end(), ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(len));
    out->type_ids.insert(out->type_ids.end(), len, type);
    if (want_offsets) {
      out->offsets.insert(out->offsets.end(), offs.begin(),
                          offs.begin() + static_cast<std::ptrdiff_t>(2 * len));
    }
  };
  if (out->row_splits.empty()) out->row_splits.push_back(0);
  if (options_.add_special_tokens) push_special(cls_id_, 0);
  push_seq(ids_a, off_a, len_a, 0);
  if (options_.add_special_tokens) push_special(sep_id_, 0);
  if (pair) {
    push_seq(ids_b, off_b, len_b, 1);
    if (options_.add_special_tokens) push_special(sep_id_, 1);
  }
  out->row_splits.push_back(static_cast<int64_t>(out->ids.size()));
}

std::vector<EncodedRows> EncodeBatch(const BertTokenizer& tokenizer,
                                     const std::vector<std::string_view>& texts,
                                     const std::vector<std::string_view>* pairs,
                                     const EncodeOptions& options, int num_threads) {
  Encoder encoder(tokenizer, options, pairs != nullptr);
  const size_t n = texts.size();
  // Split rows into work items of about kMinBytesPerChunk input bytes.
  std::vector<size_t> bounds{0};
  size_t acc = 0;
  for (size_t i = 0; i < n; ++i) {
    acc += texts[i].size() + (pairs ? (*pairs)[i].size() : 0) + 16;
    if (acc >= kMinBytesPerChunk) {
      bounds.push_back(i + 1);
      acc = 0;
    }
  }
  if (bounds.back() != n) bounds.push_back(n);
  const size_t num_chunks = bounds.size() - 1;
  std::vector<EncodedRows> chunks(std::max<size_t>(num_chunks, 1));
  if (n == 0) {
    chunks[0].row_splits.push_back(0);
    return chunks;
  }
  std::atomic<size_t> next{0};
  std::mutex error_mu;
  size_t error_row = n;
  std::exception_ptr error;
  auto work = [&]() {
    // Per thread, kept across calls (the calling thread's lookup memo stays warm).
    thread_local Encoder::Workspace workspace;
    Encoder::Workspace& ws = workspace;
    while (true) {
      const size_t c = next.fetch_add(1);
      if (c >= num_chunks) return;
      EncodedRows& rows = chunks[c];
      const size_t est = (bounds[c + 1] - bounds[c]) * 32;
      rows.ids.reserve(est);
      rows.type_ids.reserve(est);
      if (options.offsets) rows.offsets.reserve(2 * est);
      rows.row_splits.reserve(bounds[c + 1] - bounds[c] + 1);
      for (size_t i = bounds[c]; i < bounds[c + 1]; ++i) {
        try {
          encoder.EncodeRow(texts[i], pairs ? (*pairs)[i] : std::string_view(), i, &rows, ws);
        } catch (...) {
          std::lock_guard<std::mutex> lock(error_mu);
          if (i < error_row) {
            error_row = i;
            error = std::current_exception();
          }
          return;
        }
      }
    }
  };
  const int threads = static_cast<int>(std::min<size_t>(std::max(num_threads, 1), num_chunks));
  run_workers(threads, work);  // rows' errors: below; anything else (bad_alloc) rethrown there
  if (error) std::rethrow_exception(error);
  return chunks;
}

}  // namespace pybert
