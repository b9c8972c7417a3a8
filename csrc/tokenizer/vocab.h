// WordPiece vocabulary: one token per line, id = line number (0-based), as the
// seed's load_vocab reads it (each line stripped of Python str.isspace() chars).
// Lookups go through two open-addressing hash tables: one for word-initial
// pieces ("un") and one for continuation pieces stored without their "##"
// prefix ("##able" is found as "able"), so the greedy matcher never builds
// "##"-prefixed strings.
#ifndef PYBERT_TOKENIZER_VOCAB_H_
#define PYBERT_TOKENIZER_VOCAB_H_

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pybert {

// Raised for unusable vocabularies; the message names the source and line.
class VocabError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The first min(n, 8) bytes of p as a little-endian integer, zero-padded:
// equal for two strings of length <= 8 iff the strings are equal.
uint64_t LoadPrefix(const char* p, size_t n);

// Exact-match string -> id table (open addressing, linear probing).
class StringTable {
 public:
  void Build(const std::vector<std::pair<std::string_view, int32_t>>& entries);
  // Returns the id of `key` or -1.
  int32_t Find(const char* key, size_t len) const { return Find(key, len, Hash(key, len)); }
  // The same with the key's Hash() computed beforehand.
  int32_t Find(const char* key, size_t len, uint64_t hash) const;
  static uint64_t Hash(const char* key, size_t len);
  // Starts loading the slot where a lookup of `hash` begins (a hint only).
  void Prefetch(uint64_t hash) const {
    if (!slots_.empty()) __builtin_prefetch(&slots_[hash & mask_]);
  }
  size_t max_len() const { return max_len_; }

 private:
  // 16 bytes, so a probe touches one cache line: most word pieces are at most
  // 8 bytes long and are compared through `prefix` alone.
  struct Slot {
    uint64_t prefix;  // first 8 bytes of the token, zero-padded
    int32_t id;       // token id; -1 marks an empty slot
    uint32_t len;     // token length in bytes
  };
  std::vector<Slot> slots_;
  std::vector<uint32_t> offsets_;  // per slot: token bytes in pool_ (used when len > 8)
  std::string pool_;
  uint64_t mask_ = 0;
  size_t max_len_ = 0;
};

class Vocab {
 public:
  // Parses vocab file contents. `source` (the file name) is used in errors.
  // Throws VocabError for invalid UTF-8, duplicate tokens or an empty vocab.
  static Vocab FromText(std::string_view text, const std::string& source);

  int32_t Find(std::string_view token) const;  // full token, "##" included; -1 if absent
  int32_t FindHead(const char* p, size_t n) const { return head_.Find(p, n); }
  int32_t FindHead(const char* p, size_t n, uint64_t hash) const { return head_.Find(p, n, hash); }
  void PrefetchHead(uint64_t hash) const { head_.Prefetch(hash); }
  int32_t FindContinuation(const char* p, size_t n) const { return cont_.Find(p, n); }
  int32_t FindContinuation(const char* p, size_t n, uint64_t hash) const {
    return cont_.Find(p, n, hash);
  }
  size_t max_head_len() const { return head_.max_len(); }
  size_t max_continuation_len() const { return cont_.max_len(); }

  size_t size() const { return tokens_.size(); }
  const std::string& token(size_t id) const { return tokens_[id]; }
  const std::vector<std::string>& tokens() const { return tokens_; }
  const std::string& source() const { return source_; }

 private:
  void BuildTables();

  std::vector<std::string> tokens_;
  std::string source_;
  StringTable head_;
  StringTable cont_;
};

}  // namespace pybert

#endif  // PYBERT_TOKENIZER_VOCAB_H_
