// Minimal UTF-8 helpers for the tokenizer core.
//
// Decoding policy: well-formed UTF-8 decodes as usual; encoded surrogates
// (ED A0..BF xx, what Python's "surrogatepass" writes for lone surrogates in
// a str) decode to their code point so that character offsets still count
// Python characters; any other ill-formed byte decodes to U+FFFD, consuming
// one byte. U+FFFD is then removed by text cleaning, exactly as the seed's
// bytes.decode("utf-8", "ignore") removes the bad bytes.
#ifndef PYBERT_TOKENIZER_UTF8_H_
#define PYBERT_TOKENIZER_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace pybert {

constexpr char32_t kReplacementChar = 0xFFFD;

// Decodes one code point from s[0..n), n >= 1. Returns bytes consumed (>= 1).
inline size_t DecodeUtf8(const uint8_t* s, size_t n, char32_t* cp) {
  const uint8_t b0 = s[0];
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  auto cont = [&](size_t k) { return k < n && (s[k] & 0xC0) == 0x80; };
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    if (cont(1)) {
      *cp = (static_cast<char32_t>(b0 & 0x1F) << 6) | (s[1] & 0x3F);
      return 2;
    }
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (cont(1) && cont(2)) {
      char32_t c = (static_cast<char32_t>(b0 & 0x0F) << 12) |
                   (static_cast<char32_t>(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
      if (c >= 0x800) {  // surrogates allowed on purpose (see above)
        *cp = c;
        return 3;
      }
    }
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (cont(1) && cont(2) && cont(3)) {
      char32_t c = (static_cast<char32_t>(b0 & 0x07) << 18) |
                   (static_cast<char32_t>(s[1] & 0x3F) << 12) |
                   (static_cast<char32_t>(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
      if (c >= 0x10000 && c <= 0x10FFFF) {
        *cp = c;
        return 4;
      }
    }
  }
  *cp = kReplacementChar;
  return 1;
}

// Appends the UTF-8 form of cp (surrogates encoded like "surrogatepass").
inline size_t AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
    return 1;
  }
  if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    return 2;
  }
  if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    return 3;
  }
  out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
  out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
  out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
  out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  return 4;
}

// Bytes in the UTF-8 form of cp.
inline size_t Utf8Length(char32_t cp) { return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4; }

// True for UTF-8 continuation bytes (10xxxxxx).
inline bool IsContinuationByte(uint8_t b) { return (b & 0xC0) == 0x80; }

}  // namespace pybert

#endif  // PYBERT_TOKENIZER_UTF8_H_
