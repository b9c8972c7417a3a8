#include "tokenizer/vocab.h"

#include <cstring>
#include <unordered_map>

#include "tokenizer/unicode_tables.h"
#include "tokenizer/utf8.h"

namespace pybert {
namespace {

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
  size_t filter_words = 1;
  while (filter_words * 64 < entries.size() * 16) filter_words <<= 1;
  filter_.assign(filter_words, 0);
  filter_mask_ = filter_words - 1;
  pool_.clear();
  max_len_ = 0;
  for (const auto& [key, id] : entries) {
    const uint64_t hash = Hash(key.data(), key.size());
    filter_[FilterWord(hash)] |= FilterBits(hash);
    uint64_t pos = hash & mask_;
    while (slots_[pos].id >= 0) pos = (pos + 1) & mask_;
    slots_[pos] = Slot{LoadPrefix(key.data(), key.size()), id, static_cast<uint32_t>(key.size())};
    offsets_[pos] = static_cast<uint32_t>(pool_.size());
    pool_.append(key.data(), key.size());
    if (key.size() > max_len_) max_len_ = key.size();
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
