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
#include <cstring>
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
inline uint64_t LoadPrefix(const char* p, size_t n) {
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

// Exact-match string -> id table (open addressing, linear probing), with a
// small filter in front: the greedy matcher's probes mostly miss (it tries
// the longest candidate first), and a miss the filter answers costs one load
// from the filter (64 KB for BERT's English vocab, 256 KB for the multilingual
// one) instead of one from the megabytes of slots.
class StringTable {
 public:
  void Build(const std::vector<std::pair<std::string_view, int32_t>>& entries);
  // Returns the id of `key` or -1.
  int32_t Find(const char* key, size_t len) const { return Find(key, len, Hash(key, len)); }
  // The same with the key's Hash() computed beforehand.
  int32_t Find(const char* key, size_t len, uint64_t hash) const {
    if (!MayContain(hash)) return -1;
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
  static uint64_t Hash(const char* key, size_t len) {
    uint64_t h = 0x9E3779B97F4A7C15ULL * (len + 1);
    while (len > 8) {
      uint64_t v;
      std::memcpy(&v, key, 8);
      h = Mix(h ^ v) + 0x632BE59BD9B4E019ULL;
      key += 8;
      len -= 8;
    }
    return Mix(h ^ LoadPrefix(key, len) ^ 0xA0761D6478BD642FULL);
  }
  // Starts loading the filter word and the slot where a lookup of `hash`
  // begins (a hint only).
  void Prefetch(uint64_t hash) const {
    if (slots_.empty()) return;
    __builtin_prefetch(&filter_[FilterWord(hash)]);
    __builtin_prefetch(&slots_[hash & mask_]);
  }
  size_t max_len() const { return max_len_; }
  // False only for hashes of strings that are not in the table.
  bool MayContain(uint64_t hash) const {
    if (slots_.empty()) return false;
    const uint64_t bits = FilterBits(hash);
    return (filter_[FilterWord(hash)] & bits) == bits;
  }

 private:
  static uint64_t Mix(uint64_t x) {
    x ^= x >> 32;
    x *= 0xD6E8FEB86659FD93ULL;
    x ^= x >> 32;
    return x;
  }
  // Filter: two bits per key in one 64-bit word (a blocked Bloom filter),
  // chosen by hash bits 20-39 and 52-63; the slot index takes the low bits
  // and the tokenizer's lookup memo bits 40-51.
  size_t FilterWord(uint64_t hash) const { return (hash >> 20) & filter_mask_; }
  static uint64_t FilterBits(uint64_t hash) {
    return (uint64_t{1} << ((hash >> 52) & 63)) | (uint64_t{1} << (hash >> 58));
  }

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
  std::vector<uint64_t> filter_;  // 16-32 bits per key (a power of two of words)
  uint64_t filter_mask_ = 0;
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
