#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <utility>

#include "tokenizer/unicode_tables.h"
#include "tokenizer/utf8.h"

namespace pybert {
namespace {

// Byte classes of ASCII for the fast path.
enum AsciiClass : uint8_t {
  kWord = 0,   // printable, not punctuation
  kPunct = 1,  // printable punctuation (33-47, 58-64, 91-96, 123-126)
  kSpace = 2,  // ' ', \t, \n, \r
  kDrop = 3,   // other controls: removed by cleaning (do not split tokens)
  kHigh = 4,   // >= 0x80: start of a multi-byte character
};

struct AsciiTables {
  uint8_t cls[256];
  char lower[256];
  constexpr AsciiTables() : cls(), lower() {
    for (int b = 0; b < 256; ++b) {
      uint8_t c = kHigh;
      if (b < 0x80) {
        if (b == ' ' || b == '\t' || b == '\n' || b == '\r') {
          c = kSpace;
        } else if (b < 0x20 || b == 0x7F) {
          c = kDrop;
        } else if ((b >= 33 && b <= 47) || (b >= 58 && b <= 64) || (b >= 91 && b <= 96) ||
                   (b >= 123 && b <= 126)) {
          c = kPunct;
        } else {
          c = kWord;
        }
      }
      cls[b] = c;
      lower[b] = static_cast<char>((b >= 'A' && b <= 'Z') ? b + 32 : b);
    }
  }
};
constexpr AsciiTables kAscii;

constexpr char32_t kHangulBase = 0xAC00, kHangulEnd = 0xD7A3;
constexpr char32_t kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr int kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount;
constexpr char32_t kCapitalSigma = 0x3A3, kSmallSigma = 0x3C3, kFinalSigma = 0x3C2;

const unicode::Decomposition* FindDecomposition(char32_t cp) {
  const auto* begin = unicode::kDecompositions;
  const auto* end = begin + unicode::kNumDecompositions;
  const auto* it = std::lower_bound(begin, end, cp, [](const unicode::Decomposition& d, char32_t c) {
    return d.cp < c;
  });
  return (it != end && it->cp == cp) ? it : nullptr;
}

const unicode::SpecialLower* FindSpecialLower(char32_t cp) {
  for (int i = 0; i < unicode::kNumSpecialLowers; ++i) {
    if (unicode::kSpecialLowers[i].cp == cp) return &unicode::kSpecialLowers[i];
  }
  return nullptr;
}

inline uint16_t Flags(char32_t cp) { return unicode::Lookup(cp).flags; }

}  // namespace

// Per-thread working memory, reused across calls.
struct BertTokenizer::Scratch {
  std::string lowered;             // ASCII fast path: lower-cased token
  std::vector<char32_t> cps;       // general path: cleaned code points of the token
  std::vector<int32_t> cp_char;    // ... and their char index in the input
  std::vector<char32_t> norm;      // normalized code points
  std::vector<int32_t> norm_char;  // ... and the input char each came from
  std::string word;                // UTF-8 of the current word
  std::vector<int32_t> word_map;   // input char index of each byte of `word`
  // Encode collects all basic words of a text first (prefetching their vocab
  // slots), then runs WordPiece on them: the table lookups, which miss the
  // cache, then overlap instead of stalling one after the other.
  struct WordRef {
    uint32_t offset;    // bytes in `arena`
    uint32_t nbytes;    // length in bytes
    uint32_t nchars;    // length in characters
    int32_t char_base;  // input char of byte 0 (ASCII words)
    int32_t map;        // offset in `arena_map`, or -1 for ASCII words
    uint64_t hash;      // head-table hash of the whole word, when `hashed`
    bool hashed;
  };
  std::string arena;
  std::vector<int32_t> arena_map;
  std::vector<WordRef> words;
  // Direct-mapped memo of recent vocab lookups of pieces of at most 8 bytes
  // (hits and misses), keyed by the exact bytes. The vocab tables are
  // megabytes and each probe misses the CPU cache; the few thousand pieces
  // that make up most of any text fit here, densely.
  struct MemoEntry {
    uint64_t prefix;  // LoadPrefix of the piece
    uint32_t tag;     // length | 0x100 for head pieces; 0 = empty
    int32_t id;       // vocab id or -1
  };
  static constexpr size_t kMemoSize = 4096;
  std::vector<MemoEntry> memo;
  uint64_t memo_owner = 0;  // serial of the tokenizer the memo belongs to
};

namespace {
std::atomic<uint64_t> next_serial{1};
}  // namespace

BertTokenizer::BertTokenizer(Vocab vocab, TokenizerOptions options)
    : vocab_(std::move(vocab)), options_(std::move(options)), serial_(next_serial.fetch_add(1)) {
  if (options_.max_input_chars_per_word <= 0) {
    throw std::invalid_argument("max_input_chars_per_word must be positive, got " +
                                std::to_string(options_.max_input_chars_per_word));
  }
  unk_id_ = vocab_.Find(options_.unk_token);
  if (unk_id_ < 0) {
    throw VocabError(vocab_.source() + ": the vocabulary has no unknown token '" +
                     options_.unk_token + "'");
  }
}

void BertTokenizer::WordPiece(const char* word, size_t nbytes, size_t nchars,
                              const int32_t* char_map, int32_t char_base, PieceSink sink,
                              const uint64_t* head_hash, Scratch* scratch) const {
  auto lookup = [&](bool head, const char* p, size_t len, const uint64_t* hash) -> int32_t {
    const uint64_t h = hash ? *hash : StringTable::Hash(p, len);
    if (scratch == nullptr || len > 8) {
      return head ? vocab_.FindHead(p, len, h) : vocab_.FindContinuation(p, len, h);
    }
    const uint64_t prefix = LoadPrefix(p, len);
    const uint32_t tag = static_cast<uint32_t>(len) | (head ? 0x100u : 0u);
    Scratch::MemoEntry& e = scratch->memo[((h >> 40) ^ (head ? 0x5A5 : 0)) & (Scratch::kMemoSize - 1)];
    if (e.tag == tag && e.prefix == prefix) return e.id;
    const int32_t id = head ? vocab_.FindHead(p, len, h) : vocab_.FindContinuation(p, len, h);
    e = Scratch::MemoEntry{prefix, tag, id};
    return id;
  };
  const auto* u = reinterpret_cast<const uint8_t*>(word);
  // Offsets of bytes [b, e) of the word in input characters. With a char map
  // (general path) a piece spans the min..max input character it came from:
  // canonical reordering can move marks of different input characters.
  size_t counted_bytes = 0;   // characters in bytes [0, counted_bytes) of the word:
  int32_t counted_chars = 0;  // pieces come in order, so each byte is counted once
  auto chars_before = [&](size_t b) {
    if (b < counted_bytes) counted_bytes = 0, counted_chars = 0;
    for (; counted_bytes < b; ++counted_bytes) counted_chars += !IsContinuationByte(u[counted_bytes]);
    return counted_chars;
  };
  auto span_of = [&](size_t b, size_t e, int32_t* begin, int32_t* end) {
    if (char_map == nullptr) {
      // A contiguous piece of the input: count characters (UTF-8 lead bytes),
      // unless every byte is one.
      if (nchars == nbytes) {
        *begin = char_base + static_cast<int32_t>(b);
        *end = char_base + static_cast<int32_t>(e);
        return;
      }
      *begin = char_base + chars_before(b);
      *end = char_base + chars_before(e);
      return;
    }
    int32_t lo = char_map[b], hi = char_map[b];
    for (size_t k = b + 1; k < e; ++k) {
      lo = std::min(lo, char_map[k]);
      hi = std::max(hi, char_map[k]);
    }
    *begin = lo;
    *end = hi + 1;
  };
  auto push_span = [&](size_t b, size_t e) {
    int32_t begin, end;
    span_of(b, e, &begin, &end);
    sink.offsets->push_back(begin);
    sink.offsets->push_back(end);
  };
  if (nchars > static_cast<size_t>(options_.max_input_chars_per_word)) {
    sink.ids->push_back(unk_id_);
    if (sink.offsets) push_span(0, nbytes);
    return;
  }
  const size_t mark = sink.ids->size();
  size_t start = 0;
  while (start < nbytes) {
    const bool head = (start == 0);
    size_t limit = head ? vocab_.max_head_len() : vocab_.max_continuation_len();
    size_t end = std::min(nbytes, start + limit);
    // Candidate ends must fall on character boundaries.
    while (end > start && end < nbytes && IsContinuationByte(u[end])) --end;
    int32_t id = -1;
    if (head && end == nbytes && head_hash != nullptr) {
      // First probe of the whole word: its hash was computed (and its slot
      // prefetched) while the text was being split.
      id = lookup(true, word, nbytes, head_hash);
      if (id < 0) {
        --end;
        while (end > start && IsContinuationByte(u[end])) --end;
      }
    }
    while (id < 0 && end > start) {
      id = lookup(head, word + start, end - start, nullptr);
      if (id >= 0) break;
      --end;
      while (end > start && IsContinuationByte(u[end])) --end;
    }
    if (id < 0) {
      // Unmatchable remainder: the whole word becomes the unknown token.
      sink.ids->resize(mark);
      sink.ids->push_back(unk_id_);
      if (sink.offsets) {
        sink.offsets->resize(2 * mark);
        push_span(0, nbytes);
      }
      return;
    }
    sink.ids->push_back(id);
    if (sink.offsets) push_span(start, end);
    start = end;
  }
}

// Printable-ASCII token (no controls, no multi-byte characters).
template <typename Fn>
void BertTokenizer::AsciiToken(const char* p, size_t n, int32_t char_base, Scratch& scratch,
                               Fn&& on_word) const {
  if (options_.lower_case) {
    scratch.lowered.resize(n);
    for (size_t j = 0; j < n; ++j) {
      scratch.lowered[j] = kAscii.lower[static_cast<uint8_t>(p[j])];
    }
    p = scratch.lowered.data();
  }
  if (!options_.split_on_punc) {
    on_word(p, n, n, nullptr, char_base);
    return;
  }
  size_t w = 0;
  for (size_t j = 0; j < n; ++j) {
    if (kAscii.cls[static_cast<uint8_t>(p[j])] == kPunct) {
      if (j > w) on_word(p + w, j - w, j - w, nullptr, char_base + static_cast<int32_t>(w));
      on_word(p + j, 1, 1, nullptr, char_base + static_cast<int32_t>(j));
      w = j + 1;
    }
  }
  if (n > w) on_word(p + w, n - w, n - w, nullptr, char_base + static_cast<int32_t>(w));
}

// Whether a non-ASCII character needs the general path: under lower-casing,
// anything whose normalization is not a same-length 1:1 code point mapping.
bool BertTokenizer::NeedsGeneral(char32_t cp) const {
  if (!options_.lower_case) return false;
  const auto& rec = unicode::Lookup(cp);
  if ((rec.flags & (unicode::kDecomposes | unicode::kSpecialLower | unicode::kMn)) || rec.ccc != 0 ||
      cp == kCapitalSigma || (cp >= kHangulBase && cp <= kHangulEnd)) {
    return true;
  }
  if (rec.lower_delta == 0) return false;
  const char32_t low = static_cast<char32_t>(static_cast<int32_t>(cp) + rec.lower_delta);
  return Utf8Length(low) != Utf8Length(cp);
}

// A token with non-ASCII characters that all normalize 1:1 to characters of
// the same UTF-8 length, and no removed characters: lower-cased in place
// (same byte layout), split on punctuation, offsets by counting characters.
template <typename Fn>
void BertTokenizer::UnicodeToken(const char* p, size_t n, int32_t char_base, Scratch& scratch,
                                 Fn&& on_word) const {
  const auto* u = reinterpret_cast<const uint8_t*>(p);
  if (options_.lower_case) {
    scratch.lowered.clear();
    for (size_t i = 0; i < n;) {
      char32_t cp;
      i += DecodeUtf8(u + i, n - i, &cp);
      AppendUtf8(static_cast<char32_t>(static_cast<int32_t>(cp) + unicode::Lookup(cp).lower_delta),
                 &scratch.lowered);
    }
    p = scratch.lowered.data();
    u = reinterpret_cast<const uint8_t*>(p);
  }
  if (!options_.split_on_punc) {
    size_t nchars = 0;
    for (size_t i = 0; i < n; ++i) nchars += !IsContinuationByte(u[i]);
    on_word(p, n, nchars, nullptr, char_base);
    return;
  }
  size_t w = 0;         // current word: bytes [w, i)
  int32_t wc = 0;       // ... its first character's index in the token
  int32_t c = 0;        // characters seen
  for (size_t i = 0; i < n;) {
    char32_t cp;
    const size_t len = DecodeUtf8(u + i, n - i, &cp);
    if (Flags(cp) & unicode::kPunct) {
      if (i > w) on_word(p + w, i - w, static_cast<size_t>(c - wc), nullptr, char_base + wc);
      on_word(p + i, len, 1, nullptr, char_base + c);
      w = i + len;
      wc = c + 1;
    }
    i += len;
    ++c;
  }
  if (n > w) on_word(p + w, n - w, static_cast<size_t>(c - wc), nullptr, char_base + wc);
}

// Any other whitespace-delimited token: decode, clean, normalize, split.
template <typename Fn>
void BertTokenizer::GeneralToken(const uint8_t* p, size_t n, int32_t char_base, Scratch& s,
                                 Fn&& on_word) const {
  s.cps.clear();
  s.cp_char.clear();
  int32_t ci = char_base;
  for (size_t i = 0; i < n;) {
    char32_t cp;
    i += DecodeUtf8(p + i, n - i, &cp);
    if (!(Flags(cp) & unicode::kDrop)) {
      s.cps.push_back(cp);
      s.cp_char.push_back(ci);
    }
    ++ci;
  }
  const std::vector<char32_t>* chars = &s.cps;
  const std::vector<int32_t>* chars_at = &s.cp_char;
  if (options_.lower_case) {
    s.norm.clear();
    s.norm_char.clear();
    const size_t m = s.cps.size();
    auto emit_nfd = [&](char32_t c, int32_t at) {
      if (c >= kHangulBase && c <= kHangulEnd) {
        const int index = static_cast<int>(c - kHangulBase);
        s.norm.push_back(kLBase + index / kNCount);
        s.norm_char.push_back(at);
        s.norm.push_back(kVBase + (index % kNCount) / kTCount);
        s.norm_char.push_back(at);
        if (index % kTCount != 0) {
          s.norm.push_back(kTBase + index % kTCount);
          s.norm_char.push_back(at);
        }
        return;
      }
      if (Flags(c) & unicode::kDecomposes) {
        const unicode::Decomposition* d = FindDecomposition(c);
        if (d != nullptr) {
          for (uint32_t k = 0; k < d->length; ++k) {
            s.norm.push_back(unicode::kDecompositionPool[d->offset + k]);
            s.norm_char.push_back(at);
          }
          return;
        }
      }
      s.norm.push_back(c);
      s.norm_char.push_back(at);
    };
    for (size_t k = 0; k < m; ++k) {
      const char32_t c = s.cps[k];
      const auto& rec = unicode::Lookup(c);
      const int32_t at = s.cp_char[k];
      if (c == kCapitalSigma) {
        // CPython's Final_Sigma: cased, case-ignorable*, Σ, not (case-ignorable*, cased).
        size_t j = k;
        while (j > 0 && (Flags(s.cps[j - 1]) & unicode::kCaseIgnorable)) --j;
        bool final_sigma = j > 0 && (Flags(s.cps[j - 1]) & unicode::kCased);
        if (final_sigma) {
          size_t q = k + 1;
          while (q < m && (Flags(s.cps[q]) & unicode::kCaseIgnorable)) ++q;
          final_sigma = (q == m) || !(Flags(s.cps[q]) & unicode::kCased);
        }
        emit_nfd(final_sigma ? kFinalSigma : kSmallSigma, at);
      } else if (rec.flags & unicode::kSpecialLower) {
        const unicode::SpecialLower* sl = FindSpecialLower(c);
        if (sl != nullptr) {
          for (uint32_t q = 0; q < sl->length; ++q) emit_nfd(sl->out[q], at);
        } else {
          emit_nfd(c, at);
        }
      } else {
        emit_nfd(static_cast<char32_t>(static_cast<int32_t>(c) + rec.lower_delta), at);
      }
    }
    // Canonical reordering: stable sort of each run of non-starters by ccc.
    const size_t nn = s.norm.size();
    for (size_t a = 0; a < nn;) {
      if (unicode::Lookup(s.norm[a]).ccc == 0) {
        ++a;
        continue;
      }
      size_t b = a;
      while (b < nn && unicode::Lookup(s.norm[b]).ccc != 0) ++b;
      if (b - a > 32) {  // a long run (no real text has one): O(n log n), not quadratic
        std::vector<std::pair<uint8_t, size_t>> order;
        order.reserve(b - a);
        for (size_t x = a; x < b; ++x) order.emplace_back(unicode::Lookup(s.norm[x]).ccc, x);
        std::stable_sort(order.begin(), order.end(),
                         [](const auto& l, const auto& r) { return l.first < r.first; });
        std::vector<char32_t> chars(b - a);
        std::vector<int32_t> from(b - a);
        for (size_t x = 0; x < order.size(); ++x) {
          chars[x] = s.norm[order[x].second];
          from[x] = s.norm_char[order[x].second];
        }
        std::copy(chars.begin(), chars.end(), s.norm.begin() + a);
        std::copy(from.begin(), from.end(), s.norm_char.begin() + a);
        a = b;
        continue;
      }
      for (size_t x = a + 1; x < b; ++x) {  // insertion sort (runs are short)
        char32_t c = s.norm[x];
        int32_t at = s.norm_char[x];
        uint8_t cc = unicode::Lookup(c).ccc;
        size_t y = x;
        while (y > a && unicode::Lookup(s.norm[y - 1]).ccc > cc) {
          s.norm[y] = s.norm[y - 1];
          s.norm_char[y] = s.norm_char[y - 1];
          --y;
        }
        s.norm[y] = c;
        s.norm_char[y] = at;
      }
      a = b;
    }
    // Strip accents: drop Mn.
    size_t out = 0;
    for (size_t k = 0; k < nn; ++k) {
      if (Flags(s.norm[k]) & unicode::kMn) continue;
      s.norm[out] = s.norm[k];
      s.norm_char[out] = s.norm_char[k];
      ++out;
    }
    s.norm.resize(out);
    s.norm_char.resize(out);
    chars = &s.norm;
    chars_at = &s.norm_char;
  }
  // Punctuation split (and str.split() once more, as the original re-splits).
  s.word.clear();
  s.word_map.clear();
  size_t word_chars = 0;
  auto flush = [&]() {
    if (!s.word.empty()) on_word(s.word.data(), s.word.size(), word_chars, s.word_map.data(), 0);
    s.word.clear();
    s.word_map.clear();
    word_chars = 0;
  };
  const size_t m = chars->size();
  for (size_t k = 0; k < m; ++k) {
    const char32_t c = (*chars)[k];
    const int32_t at = (*chars_at)[k];
    const uint16_t f = Flags(c);
    if (f & unicode::kPySpace) {
      flush();
    } else if (options_.split_on_punc && (f & unicode::kPunct)) {
      flush();
      size_t len = AppendUtf8(c, &s.word);
      s.word_map.insert(s.word_map.end(), len, at);
      word_chars = 1;
      flush();
    } else {
      size_t len = AppendUtf8(c, &s.word);
      s.word_map.insert(s.word_map.end(), len, at);
      ++word_chars;
    }
  }
  flush();
}

// Steps 1-3: finds whitespace-delimited tokens and hands each to the ASCII or
// the general path, which call on_word(bytes, nbytes, nchars, char_map, char_base)
// for every basic token.
template <typename Fn>
void BertTokenizer::Run(std::string_view text, Scratch& scratch, Fn&& on_word) const {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  int32_t ci = 0;
  bool in_tok = false;
  // The cheapest path the current token can take; only ever goes up.
  enum Kind { kAsciiToken = 0, kUnicodeToken = 1, kGeneralToken = 2 } kind = kAsciiToken;
  size_t tok_b = 0;
  int32_t tok_c = 0;
  auto flush = [&](size_t end_byte) {
    if (!in_tok) return;
    if (kind == kAsciiToken) {
      AsciiToken(text.data() + tok_b, end_byte - tok_b, tok_c, scratch, on_word);
    } else if (kind == kUnicodeToken) {
      UnicodeToken(text.data() + tok_b, end_byte - tok_b, tok_c, scratch, on_word);
    } else {
      GeneralToken(s + tok_b, end_byte - tok_b, tok_c, scratch, on_word);
    }
    in_tok = false;
  };
  auto start = [&]() {
    if (!in_tok) {
      in_tok = true;
      kind = kAsciiToken;
      tok_b = i;
      tok_c = ci;
    }
  };
  while (i < n) {
    const uint8_t b = s[i];
    const uint8_t cls = kAscii.cls[b];
    if (cls <= kPunct) {
      start();
      ++i;
      ++ci;
      continue;
    }
    if (cls == kSpace) {
      flush(i);
      ++i;
      ++ci;
      continue;
    }
    if (cls == kDrop) {
      // Removed by cleaning: does not end the token, but the token's
      // characters are no longer contiguous: general path.
      kind = kGeneralToken;
      ++i;
      ++ci;
      continue;
    }
    char32_t cp;
    const size_t len = DecodeUtf8(s + i, n - i, &cp);
    const uint16_t f = Flags(cp);
    if (f & unicode::kDrop) {
      kind = kGeneralToken;
    } else if (f & (unicode::kSpace | unicode::kPySpace)) {
      flush(i);
    } else if (f & unicode::kCjk) {
      flush(i);
      if (NeedsGeneral(cp)) {
        GeneralToken(s + i, len, ci, scratch, on_word);
      } else {
        on_word(text.data() + i, len, 1, nullptr, ci);
      }
    } else {
      start();
      if (kind != kGeneralToken) kind = NeedsGeneral(cp) ? kGeneralToken : kUnicodeToken;
    }
    i += len;
    ++ci;
  }
  flush(n);
}

// The calling thread's own working memory (for calls without a workspace; only
// those pay for finding it).
BertTokenizer::Scratch& BertTokenizer::ThreadScratch() {
  thread_local Scratch scratch;
  return scratch;
}

void BertTokenizer::Encode(std::string_view text, PieceSink sink, Workspace* workspace) const {
  Scratch& s = workspace ? *workspace->scratch_ : ThreadScratch();
  s.arena.clear();
  s.arena_map.clear();
  s.words.clear();
  if (s.memo_owner != serial_) {
    s.memo.assign(Scratch::kMemoSize, Scratch::MemoEntry{0, 0, -1});
    s.memo_owner = serial_;
  }
  const size_t max_head = vocab_.max_head_len();
  Run(text, s, [&](const char* w, size_t nbytes, size_t nchars, const int32_t* map, int32_t base) {
    Scratch::WordRef ref{static_cast<uint32_t>(s.arena.size()), static_cast<uint32_t>(nbytes),
                         static_cast<uint32_t>(nchars), base, -1, 0, false};
    s.arena.append(w, nbytes);
    if (map != nullptr) {
      ref.map = static_cast<int32_t>(s.arena_map.size());
      s.arena_map.insert(s.arena_map.end(), map, map + nbytes);
    }
    if (nbytes <= max_head && nchars <= static_cast<size_t>(options_.max_input_chars_per_word)) {
      ref.hash = StringTable::Hash(w, nbytes);
      ref.hashed = true;
      vocab_.PrefetchHead(ref.hash);
    }
    s.words.push_back(ref);
  });
  for (const Scratch::WordRef& ref : s.words) {
    WordPiece(s.arena.data() + ref.offset, ref.nbytes, ref.nchars,
              ref.map >= 0 ? s.arena_map.data() + ref.map : nullptr, ref.char_base, sink, ref.hashed ? &ref.hash : nullptr, &s);
  }
}

std::vector<std::string> BertTokenizer::BasicTokenize(std::string_view text) const {
  std::vector<std::string> out;
  Run(text, ThreadScratch(), [&](const char* w, size_t nbytes, size_t, const int32_t*, int32_t) {
    out.emplace_back(w, nbytes);
  });
  return out;
}

BertTokenizer::Workspace::Workspace() : scratch_(std::make_unique<Scratch>()) {}
BertTokenizer::Workspace::~Workspace() = default;

void BertTokenizer::BasicTokenizeJoined(std::string_view text, std::string* joined,
                                        Workspace* workspace) const {
  Scratch& scratch = workspace ? *workspace->scratch_ : ThreadScratch();
  Run(text, scratch, [&](const char* w, size_t nbytes, size_t, const int32_t*, int32_t) {
    if (!joined->empty()) joined->push_back(' ');
    joined->append(w, nbytes);
  });
}

std::vector<int32_t> BertTokenizer::WordpieceIds(std::string_view word) const {
  std::vector<int32_t> ids;
  size_t nchars = 0;
  for (unsigned char c : word) nchars += !IsContinuationByte(c);
  if (!word.empty()) WordPiece(word.data(), word.size(), nchars, nullptr, 0, PieceSink{&ids, nullptr});
  return ids;
}

}  // namespace pybert
