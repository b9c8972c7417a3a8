// Table-driven unit tests of the tokenizer core (run by ctest).
// Usage: tokenizer_test VOCAB_FILE
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "tokenizer/encoding.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab.h"

#include "tests/expect.h"

namespace {

using pybert_test::Expect;

std::string Join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : " ") + x;
  return s;
}

struct Spec {
  const char* text;
  bool lower;
  const char* pieces;  // space-separated expected word pieces
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: tokenizer_test VOCAB_FILE\n";
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string vocab_text = buf.str();

  const Spec specs[] = {
      {"unaffable", true, "un ##aff ##able"},
      {"UNAFFABLE", true, "un ##aff ##able"},
      {"UNAFFABLE", false, "[UNK]"},
      {"Hello, World!", true, "hello , world !"},
      {"  hello\t\n\rworld  ", true, "hello world"},
      {"hel\x01lo", true, "hello"},                   // controls removed, not split
      {"hello\xc2\xa0world", true, "hello world"},    // NBSP is Zs: a space
      {"hello\xe2\x80\xa8world", true, "hello world"},  // U+2028: str.split() splits
      {"h\xc3\xa9llo", true, "hello"},                 // accent stripped (NFD + drop Mn)
      {"\xce\x91\xce\xa3.", true, "α ##ς ."},         // Final_Sigma: ΑΣ. -> ας .
      {"\xc4\xb0stanbul", true, "istanbul"},           // İ -> i + U+0307 (stripped)
      {"\xe4\xbd\xa0\xe5\xa5\xbd", true, "你 好"},     // CJK split into characters
      {"cafes", true, "cafe ##s"},
      {"", true, ""},
      {"\xff\xfe", true, ""},                          // invalid UTF-8 -> U+FFFD -> removed
      {"hello\xe2\x80\x8bworld", true, "[UNK]"},       // ZWSP is Cf: removed, joins words
  };
  pybert::BertTokenizer uncased(pybert::Vocab::FromText(vocab_text, argv[1]),
                                pybert::TokenizerOptions{true, true, 400, "[UNK]"});
  pybert::BertTokenizer cased(pybert::Vocab::FromText(vocab_text, argv[1]),
                              pybert::TokenizerOptions{false, true, 400, "[UNK]"});
  for (const Spec& spec : specs) {
    const auto& tok = spec.lower ? uncased : cased;
    std::vector<int32_t> ids, offsets;
    tok.Encode(spec.text, pybert::PieceSink{&ids, &offsets});
    std::vector<std::string> pieces;
    for (int32_t id : ids) pieces.push_back(tok.vocab().token(id));
    Expect(Join(pieces) == spec.pieces,
           std::string("Encode('") + spec.text + "') = '" + Join(pieces) + "', want '" + spec.pieces + "'");
    Expect(offsets.size() == 2 * ids.size(), "offsets size");
  }

  // Offsets count characters, not bytes.
  {
    std::vector<int32_t> ids, offsets;
    uncased.Encode("h\xc3\xa9llo world", pybert::PieceSink{&ids, &offsets});
    Expect(offsets == std::vector<int32_t>({0, 5, 6, 11}), "offsets in characters");
  }
  // max_input_chars_per_word.
  {
    pybert::BertTokenizer short_words(pybert::Vocab::FromText(vocab_text, "v"),
                                      pybert::TokenizerOptions{true, true, 4, "[UNK]"});
    std::vector<int32_t> ids;
    short_words.Encode("hello un", pybert::PieceSink{&ids, nullptr});
    Expect(ids.size() == 2 && short_words.vocab().token(ids[0]) == "[UNK]", "long word -> [UNK]");
  }
  // Vocab errors name the source and line.
  auto vocab_error = [](const std::string& text) -> std::string {
    try {
      pybert::Vocab::FromText(text, "v.txt");
    } catch (const pybert::VocabError& e) {
      return e.what();
    }
    return "";
  };
  Expect(vocab_error("a\nb\na\n").find("v.txt:3: duplicate token 'a' (first on line 1)") == 0,
         "duplicate token error: " + vocab_error("a\nb\na\n"));
  Expect(vocab_error("a\n\xff\n").find("v.txt:2: invalid UTF-8") == 0, "invalid UTF-8 error");
  Expect(vocab_error("").find("empty") != std::string::npos, "empty vocab error");
  try {
    pybert::BertTokenizer t(pybert::Vocab::FromText("a\nb\n", "v.txt"), pybert::TokenizerOptions{});
    Expect(false, "missing [UNK] must throw");
  } catch (const pybert::VocabError& e) {
    Expect(std::string(e.what()).find("[UNK]") != std::string::npos, "missing [UNK] message");
  }
  // The string table on 60,000 keys of 2-45 bytes: every key is found with
  // its id; keys not in it are not, and its filter answers most of those
  // (1.4% get through to the slots; 10% is the limit here).
  {
    std::vector<std::string> keys;
    uint64_t x = 12345;
    auto next = [&x]() {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      return x;
    };
    for (int i = 0; i < 120000; ++i) {
      std::string k(1 + next() % 40, ' ');
      for (char& c : k) c = static_cast<char>('a' + next() % 26);
      keys.push_back(k + std::to_string(i));  // distinct
    }
    std::vector<std::pair<std::string_view, int32_t>> entries;
    for (int i = 0; i < 60000; ++i) entries.emplace_back(keys[i], i);
    pybert::StringTable table;
    table.Build(entries);
    int found = 0, absent = 0, through = 0;
    for (int i = 0; i < 120000; ++i) {
      const std::string& k = keys[i];
      const int32_t id = table.Find(k.data(), k.size());
      if (i < 60000) {
        found += id == i;
      } else {
        absent += id == -1;
        through += table.MayContain(pybert::StringTable::Hash(k.data(), k.size()));
      }
    }
    Expect(found == 60000, "string table: keys found: " + std::to_string(found));
    Expect(absent == 60000, "string table: absent keys not found: " + std::to_string(absent));
    Expect(through < 6000, "string table filter: " + std::to_string(through) +
                               " of 60000 absent keys passed it");
  }
  // Pair encoding and the seed's truncation.
  {
    std::vector<std::string_view> a{"hello world hello world"}, b{"un"};
    pybert::EncodeOptions opts;
    opts.max_seq_length = 6;
    auto rows = pybert::EncodeBatch(uncased, a, &b, opts, 1);
    std::vector<std::string> pieces;
    for (int32_t id : rows[0].ids) pieces.push_back(uncased.vocab().token(id));
    Expect(Join(pieces) == "[CLS] hello world [SEP] un [SEP]", "pair truncation: " + Join(pieces));
    Expect(rows[0].type_ids == std::vector<int32_t>({0, 0, 0, 0, 1, 1}), "type ids");
  }
  // empty_pair_as_single: a second text without word pieces gives a single text,
  // truncated to max_seq_length - 2 (the seed's `if tokens_b:`); off, [CLS] a [SEP] [SEP].
  {
    std::vector<std::string_view> a{"hello world hello world", "hello world hello world"},
        b{" \t", "un"};
    pybert::EncodeOptions opts;
    opts.max_seq_length = 6;
    opts.offsets = false;
    for (bool single : {true, false}) {
      opts.empty_pair_as_single = single;
      auto rows = pybert::EncodeBatch(uncased, a, &b, opts, 1);
      std::vector<std::vector<std::string>> got(2);
      for (int r = 0; r < 2; ++r) {
        for (int64_t i = rows[0].row_splits[r]; i < rows[0].row_splits[r + 1]; ++i) {
          got[r].push_back(uncased.vocab().token(rows[0].ids[static_cast<size_t>(i)]));
        }
      }
      const std::string want = single ? "[CLS] hello world hello world [SEP]"
                                      : "[CLS] hello world hello [SEP] [SEP]";
      Expect(Join(got[0]) == want, "empty pair (single=" + std::to_string(single) + "): " +
                                       Join(got[0]));
      Expect(Join(got[1]) == "[CLS] hello world [SEP] un [SEP]",
             "non-empty pair unchanged: " + Join(got[1]));
    }
  }
  // empty_pair_as_single at max_seq_length 3 and 4 (the seed's): the pair truncation
  // (ties shorten the second text) may empty the second text: then a single text whose
  // first text keeps its pair truncation. Without the option these lengths are refused.
  {
    std::vector<std::string_view> a{"hello world", "", "hello"}, b{"un", "un", "world"};
    pybert::EncodeOptions opts;
    opts.offsets = false;
    opts.empty_pair_as_single = true;
    const std::vector<std::vector<std::string>> want = {
        {"[CLS] [SEP]", "[CLS] [SEP]", "[CLS] [SEP]"},                          // 3
        {"[CLS] hello [SEP]", "[CLS] [SEP] un [SEP]", "[CLS] hello [SEP]"}};  // 4
    for (int32_t max_len : {3, 4}) {
      opts.max_seq_length = max_len;
      auto rows = pybert::EncodeBatch(uncased, a, &b, opts, 1);
      for (int r = 0; r < 3; ++r) {
        std::vector<std::string> got;
        for (int64_t i = rows[0].row_splits[r]; i < rows[0].row_splits[r + 1]; ++i) {
          got.push_back(uncased.vocab().token(rows[0].ids[static_cast<size_t>(i)]));
        }
        Expect(Join(got) == want[max_len - 3][r], "seed pair at max_seq_length " +
                                                      std::to_string(max_len) + ": " + Join(got));
      }
    }
    // refused up front: without the option, and with only_first / only_second
    opts.max_seq_length = 4;
    for (int setting = 0; setting < 3; ++setting) {
      opts.empty_pair_as_single = setting != 0;
      opts.truncation = setting == 2 ? pybert::Truncation::kOnlyFirst
                        : setting == 1 ? pybert::Truncation::kOnlySecond
                                       : pybert::Truncation::kLongestFirst;
      bool refused = false;
      try {
        pybert::EncodeBatch(uncased, a, &b, opts, 1);
      } catch (const std::invalid_argument&) {
        refused = true;
      }
      Expect(refused, "pairs at max_seq_length 4 refused, setting " + std::to_string(setting));
    }
  }
  return pybert_test::Finish("tokenizer_test");
}
