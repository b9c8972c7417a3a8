// libFuzzer harness for the tokenizer core: arbitrary bytes as text (any
// UTF-8, valid or not) through Encode, BasicTokenize and EncodeBatch with
// truncation, for cased and uncased rules, plus arbitrary bytes as a vocab.
// Build and run (ASan + UBSan), see README "Fuzzing":
//   CC=clang CXX=clang++ cmake -S . -B build-fuzz -DPYBERT_BUILD_FUZZERS=ON -DPYBERT_SANITIZE=ON
//   cmake --build build-fuzz --target fuzz_tokenizer && build-fuzz/csrc/fuzz_tokenizer -max_total_time=600
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/encoding.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab.h"

namespace {

const char kVocab[] =
    "[PAD]\n[UNK]\n[CLS]\n[SEP]\nun\n##aff\n##able\nhello\nworld\n,\n!\n.\nα\n##ς\ni\n##stan\n"
    "##bul\n你\n好\ncafe\n##s\na\n##a\n##\xc3\xa9\n\xc3\xa9\n";

const pybert::BertTokenizer& Tok(bool lower) {
  static const pybert::BertTokenizer* uncased = new pybert::BertTokenizer(
      pybert::Vocab::FromText(kVocab, "fuzz"), pybert::TokenizerOptions{true, true, 7, "[UNK]"});
  static const pybert::BertTokenizer* cased = new pybert::BertTokenizer(
      pybert::Vocab::FromText(kVocab, "fuzz"), pybert::TokenizerOptions{false, true, 400, "[UNK]"});
  return lower ? *uncased : *cased;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  if (mode == 0xFF) {
    try {
      pybert::Vocab v = pybert::Vocab::FromText(text, "fuzz-vocab");
      pybert::BertTokenizer t(std::move(v), pybert::TokenizerOptions{});
      std::vector<int32_t> ids;
      t.Encode("hello world", pybert::PieceSink{&ids, nullptr});
    } catch (const std::exception&) {
    }
    return 0;
  }
  const auto& tok = Tok(mode & 1);
  std::vector<int32_t> ids, offsets;
  tok.Encode(text, pybert::PieceSink{&ids, &offsets});
  if (offsets.size() != 2 * ids.size()) __builtin_trap();
  for (size_t i = 0; i < offsets.size(); i += 2) {
    if (offsets[i] < 0 || offsets[i] >= offsets[i + 1] || static_cast<size_t>(offsets[i + 1]) > text.size()) {
      __builtin_trap();
    }
  }
  (void)tok.BasicTokenize(text);
  size_t half = text.size() / 2;
  std::vector<std::string_view> a{text.substr(0, half), text};
  std::vector<std::string_view> b{text.substr(half), std::string_view()};
  pybert::EncodeOptions opts;
  opts.max_seq_length = 3 + (mode >> 2) % 16 + 2;
  opts.truncation = pybert::Truncation::kLongestFirst;
  auto rows = pybert::EncodeBatch(tok, a, &b, opts, 1 + (mode >> 1) % 2);
  size_t total = 0;
  for (const auto& r : rows) total += r.row_splits.size() - 1;
  if (total != a.size()) __builtin_trap();
  for (const auto& r : rows) {
    for (size_t k = 0; k + 1 < r.row_splits.size(); ++k) {
      if (r.row_splits[k + 1] - r.row_splits[k] > opts.max_seq_length) __builtin_trap();
    }
  }
  return 0;
}
