#include "tokenizer/vocab.h"

#include <cstring>
#include <unordered_map>

#include "tokenizer/unicode_tables.h"
#include "tokenizer/utf8.h"

namespace pybert {
namespace {

inline uint64_t Mix(uint64_t x) {
  x ^= x >> 32;
  x *= 0xD6E8FEB86659FD93ULL;
  x ^= x >> 32;
  return x;
}

}  // namespace

uint64_t LoadPrefix(const char* p, size_t n) {
  // Overlapping fixed-size loads instead of a variable-length copy.
  if (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
  }
  if (n >= 4) {
    uint32_t a, b;
    std::memcpy(&a, p, 4);
    std::memcpy(&b, p + n - 4, 4);
    return static_cast<uint64_t>(a) | (static_cast<uint64_t>(b) << (8 * (n - 4)));
  }
  if (n == 0) return 0;
  const auto* u = reinterpret_cast<const uint8_t*>(p);
  return static_cast<uint64_t>(u[0]) | (static_cast<uint64_t>(u[n / 2]) << (8 * (n / 2))) |
         (static_cast<uint64_t>(u[n - 1]) << (8 * (n - 1)));
}

namespace {

// Hash for short byte strings: 8-byte words folded through a multiply-xorshift.
inline uint64_t HashBytes(const char* p, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ULL * (n + 1);
  while (n > 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    h = Mix(h ^ v) + 0x632BE59BD9B4E019ULL;
    p += 8;
    n -= 8;
  }
  return Mix(h ^ LoadPrefix(p, n) ^ 0xA0761D6478BD642FULL);
}

// Python's str.strip(): removes str.isspace() characters from both ends.
std::string_view StripPySpace(std::string_view line) {
  const auto* s = reinterpret_cast<const uint8_t*>(line.data());
  size_t begin = 0, end = line.size();
  while (begin < end) {
    char32_t cp;
    size_t len = DecodeUtf8(s + begin, end - begin, &cp);
    if (!(unicode::Lookup(cp).flags & unicode::kPySpace)) break;
    begin += len;
  }
  while (end > begin) {
    size_t k = end - 1;
    while (k > begin && IsContinuationByte(s[k])) --k;
    char32_t cp;
    DecodeUtf8(s + k, end - k, &cp);
    if (!(unicode::Lookup(cp).flags & unicode::kPySpace)) break;
    end = k;
  }
  return line.substr(begin, end - begin);
}

bool IsValidUtf8(std::string_view text, size_t* bad_offset) {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  size_t i = 0;
  while (i < text.size()) {
    char32_t cp;
    size_t len = DecodeUtf8(s + i, text.size() - i, &cp);
    bool replacement_in_input = (len == 3 && cp == kReplacementChar);
    if ((cp == kReplacementChar && !replacement_in_input) || (cp >= 0xD800 && cp <= 0xDFFF)) {
      *bad_offset = i;
      return false;
    }
    i += len;
  }
  return true;
}

}  // namespace

void StringTable::Build(const std::vector<std::pair<std::string_view, int32_t>>& entries) {
  size_t cap = 16;
  while (cap < entries.size() * 2) cap <<= 1;
  slots_.assign(cap, Slot{0, -1, 0});
  offsets_.assign(cap, 0);
  mask_ = cap - 1;
  pool_.clear();
  max_len_ = 0;
  for (const auto& [key, id] : entries) {
    uint64_t pos = HashBytes(key.data(), key.size()) & mask_;
    while (slots_[pos].id >= 0) pos = (pos + 1) & mask_;
    slots_[pos] = Slot{LoadPrefix(key.data(), key.size()), id, static_cast<uint32_t>(key.size())};
    offsets_[pos] = static_cast<uint32_t>(pool_.size());
    pool_.append(key.data(), key.size());
    if (key.size() > max_len_) max_len_ = key.size();
  }
}

uint64_t StringTable::Hash(const char* key, size_t len) { return HashBytes(key, len); }

int32_t StringTable::Find(const char* key, size_t len, uint64_t hash) const {
  if (slots_.empty()) return -1;
  const uint64_t prefix = LoadPrefix(key, len);
  uint64_t pos = hash & mask_;
  while (true) {
    const Slot& slot = slots_[pos];
    if (slot.id < 0) return -1;
    if (slot.prefix == prefix && slot.len == len &&
        (len <= 8 || std::memcmp(pool_.data() + offsets_[pos] + 8, key + 8, len - 8) == 0)) {
      return slot.id;
    }
    pos = (pos + 1) & mask_;
  }
}

Vocab Vocab::FromText(std::string_view text, const std::string& source) {
  Vocab v;
  v.source_ = source;
  std::unordered_map<std::string_view, size_t> first_line;
  size_t line_no = 0;
  size_t pos = 0;
  // Every '\n'-terminated line is a token; a last line without '\n' is one
  // too unless it is empty (the seed's readline loop behaves the same way).
  std::vector<std::string_view> lines;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    lines.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  v.tokens_.reserve(lines.size());
  for (std::string_view raw : lines) {
    ++line_no;
    size_t bad = 0;
    if (!IsValidUtf8(raw, &bad)) {
      throw VocabError(source + ":" + std::to_string(line_no) + ": invalid UTF-8 at byte " +
                       std::to_string(bad) + " of the line");
    }
    v.tokens_.emplace_back(StripPySpace(raw));
  }
  if (v.tokens_.empty()) throw VocabError(source + ": the vocabulary is empty");
  for (size_t i = 0; i < v.tokens_.size(); ++i) {
    std::string_view tok = v.tokens_[i];
    auto [it, inserted] = first_line.emplace(tok, i + 1);
    if (!inserted) {
      throw VocabError(source + ":" + std::to_string(i + 1) + ": duplicate token '" +
                       std::string(tok) + "' (first on line " + std::to_string(it->second) + ")");
    }
  }
  v.BuildTables();
  return v;
}

void Vocab::BuildTables() {
  std::vector<std::pair<std::string_view, int32_t>> head, cont;
  for (size_t i = 0; i < tokens_.size(); ++i) {
    std::string_view tok = tokens_[i];
    if (tok.empty()) continue;
    if (tok.size() > 2 && tok[0] == '#' && tok[1] == '#') {
      cont.emplace_back(tok.substr(2), static_cast<int32_t>(i));
    }
    head.emplace_back(tok, static_cast<int32_t>(i));
  }
  head_.Build(head);
  cont_.Build(cont);
}

int32_t Vocab::Find(std::string_view token) const { return head_.Find(token.data(), token.size()); }

}  // namespace pybert
