// Character property tables for the BERT normalizer, generated from Python's
// unicodedata by gen_unicode_tables.py (see that script for what each field
// means). Lookup is a two-stage table: kStage1[cp / 128] selects a block of
// kStage2, whose entry indexes kRecords.
#ifndef PYBERT_TOKENIZER_UNICODE_TABLES_H_
#define PYBERT_TOKENIZER_UNICODE_TABLES_H_

#include <cstdint>

namespace pybert {
namespace unicode {

enum CharFlags : uint16_t {
  kDrop = 1 << 0,           // removed by _clean_text (NUL, U+FFFD, Cc/Cf but \t\n\r)
  kSpace = 1 << 1,          // mapped to ' ' by _clean_text (\t\n\r, ' ', Zs)
  kPySpace = 1 << 2,        // str.isspace(): separates tokens in str.split()
  kPunct = 1 << 3,          // _is_punctuation
  kCjk = 1 << 4,            // _is_chinese_char
  kMn = 1 << 5,             // category Mn, removed by accent stripping
  kCased = 1 << 6,          // Unicode Cased, as CPython's Final_Sigma uses it
  kCaseIgnorable = 1 << 7,  // Unicode Case_Ignorable, likewise
  kDecomposes = 1 << 8,     // NFD(c) != c (Hangul syllables excluded: algorithmic)
  kSpecialLower = 1 << 9,   // str.lower(c) is not a single code point
};

struct CharRecord {
  uint16_t flags;       // CharFlags
  uint8_t ccc;          // canonical combining class
  int32_t lower_delta;  // str.lower(c) - c when kSpecialLower is not set
};

struct Decomposition {
  char32_t cp;      // the decomposable character (sorted ascending)
  uint32_t offset;  // start of its full NFD in kDecompositionPool
  uint32_t length;  // number of code points
};

struct SpecialLower {
  char32_t cp;        // character whose lower() has several code points
  uint32_t length;    // how many
  char32_t out[3];    // the code points
};

extern const char kUnicodeVersion[];
extern const CharRecord kRecords[];
extern const uint16_t kStage1[];
extern const uint16_t kStage2[];
extern const Decomposition kDecompositions[];
extern const int kNumDecompositions;
extern const char32_t kDecompositionPool[];
extern const SpecialLower kSpecialLowers[];
extern const int kNumSpecialLowers;

constexpr char32_t kMaxCodePoint = 0x10FFFF;

// Properties of `cp`; `cp` must be <= kMaxCodePoint.
inline const CharRecord& Lookup(char32_t cp) {
  return kRecords[kStage2[static_cast<uint32_t>(kStage1[cp >> 7]) * 128 + (cp & 127)]];
}

}  // namespace unicode
}  // namespace pybert

#endif  // PYBERT_TOKENIZER_UNICODE_TABLES_H_
